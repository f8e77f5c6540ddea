package org.hpsock;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Predicate;

/**
 * A listener that overrides every event method, records every event (with a copy of its bytes)
 * and lets a test wait for the one it expects. Subclasses change what a method returns by
 * overriding {@link #react(Ev)}.
 */
class Recorder implements Listener {
  /** One recorded event. */
  static final class Ev {
    final String type;
    final long conn;
    final Operation op;
    final int error;
    final byte[] data;
    final long n;
    final String thread;

    Ev(String type, long conn, Operation op, int error, byte[] data, long n) {
      this.type = type;
      this.conn = conn;
      this.op = op;
      this.error = error;
      this.data = data;
      this.n = n;
      this.thread = Thread.currentThread().getName();
    }

    String errorName() {
      return error == 0 ? "0" : Hpsock.errorName(error);
    }

    @Override
    public String toString() {
      return type + "(conn=" + Long.toHexString(conn)
          + (op != null ? ", op=" + op + ", error=" + errorName() : "")
          + (data != null ? ", " + data.length + " bytes" : "")
          + (type.equals("PULL") ? ", available=" + n : "")
          + (type.endsWith("_WATER") ? ", unsent=" + n : "") + ")";
    }
  }

  private final List<Ev> events = new ArrayList<>();

  /** What the event's method returns; default OK. Runs on the event's thread. */
  HandleResult react(TcpEndpoint ep, Ev ev) {
    return HandleResult.OK;
  }

  private HandleResult add(TcpEndpoint ep, Ev ev) {
    synchronized (events) {
      events.add(ev);
      events.notifyAll();
    }
    return react(ep, ev);
  }

  static byte[] bytes(ByteBuffer b) {
    byte[] a = new byte[b.remaining()];
    b.duplicate().get(a);
    return a;
  }

  @Override
  public HandleResult onPrepare(TcpEndpoint ep, long connId, long socket) {
    return add(ep, new Ev("PREPARE", connId, null, 0, null, socket));
  }

  @Override
  public HandleResult onAccept(TcpEndpoint ep, long connId) {
    return add(ep, new Ev("ACCEPT", connId, null, 0, null, 0));
  }

  @Override
  public HandleResult onConnect(TcpEndpoint ep, long connId) {
    return add(ep, new Ev("CONNECT", connId, null, 0, null, 0));
  }

  @Override
  public HandleResult onHandShake(TcpEndpoint ep, long connId) {
    return add(ep, new Ev("HANDSHAKE", connId, null, 0, null, 0));
  }

  @Override
  public HandleResult onReceive(TcpEndpoint ep, long connId, ByteBuffer data) {
    return add(ep, new Ev("RECEIVE", connId, null, 0, bytes(data), data.remaining()));
  }

  @Override
  public HandleResult onReceive(TcpEndpoint ep, long connId, int available) {
    return add(ep, new Ev("PULL", connId, null, 0, null, available));
  }

  @Override
  public HandleResult onSend(TcpEndpoint ep, long connId, ByteBuffer data) {
    return add(ep, new Ev("SEND", connId, null, 0, bytes(data), data.remaining()));
  }

  @Override
  public HandleResult onClose(TcpEndpoint ep, long connId, Operation op, int error) {
    return add(ep, new Ev("CLOSE", connId, op, error, null, 0));
  }

  @Override
  public HandleResult onShutdown(TcpEndpoint ep) {
    return add(ep, new Ev("SHUTDOWN", 0, null, 0, null, 0));
  }

  @Override
  public HandleResult onHighWater(TcpEndpoint ep, long connId, long unsent) {
    return add(ep, new Ev("HIGH_WATER", connId, null, 0, null, unsent));
  }

  @Override
  public HandleResult onLowWater(TcpEndpoint ep, long connId, long unsent) {
    return add(ep, new Ev("LOW_WATER", connId, null, 0, null, unsent));
  }

  /** A snapshot of every event so far. */
  List<Ev> events() {
    synchronized (events) {
      return new ArrayList<>(events);
    }
  }

  /** The events matching, so far. */
  List<Ev> events(Predicate<Ev> p) {
    List<Ev> out = new ArrayList<>();
    for (Ev e : events()) {
      if (p.test(e)) {
        out.add(e);
      }
    }
    return out;
  }

  static Predicate<Ev> is(String type) {
    return e -> e.type.equals(type);
  }

  static Predicate<Ev> is(String type, long conn) {
    return e -> e.type.equals(type) && e.conn == conn;
  }

  /** Waits for the first event matching; fails the test after timeoutMillis. */
  Ev await(Predicate<Ev> p, long timeoutMillis, String what) {
    long deadline = System.nanoTime() + timeoutMillis * 1_000_000L;
    synchronized (events) {
      int seen = 0;
      while (true) {
        for (; seen < events.size(); seen++) {
          if (p.test(events.get(seen))) {
            return events.get(seen);
          }
        }
        long left = (deadline - System.nanoTime()) / 1_000_000L;
        if (left <= 0) {
          throw new AssertionError("timed out after " + timeoutMillis + " ms waiting for " + what
              + "; events: " + events);
        }
        try {
          events.wait(left);
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new AssertionError("interrupted waiting for " + what);
        }
      }
    }
  }

  Ev await(Predicate<Ev> p, String what) {
    return await(p, TestSupport.TIMEOUT_MS, what);
  }

  /** Concatenated RECEIVE bytes of a connection so far. */
  byte[] received(long conn) {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    for (Ev e : events(is("RECEIVE", conn))) {
      out.write(e.data, 0, e.data.length);
    }
    return out.toByteArray();
  }
}

package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.Socket;
import java.net.SocketException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.parallel.Isolated;

/**
 * A listener that throws: the exception is reported through the thread's uncaught-exception
 * handler, that connection is treated as ERROR, and the JVM and the other connections go on.
 */
@Isolated // replaces the default uncaught-exception handler and System.err
class ListenerThrowsTest {
  static final class Boom extends RuntimeException {
    private static final long serialVersionUID = 1L;

    Boom(String m) {
      super(m);
    }
  }

  final List<Throwable> reported = new CopyOnWriteArrayList<>();
  final List<String> reportedOn = new CopyOnWriteArrayList<>();
  Thread.UncaughtExceptionHandler saved;

  @BeforeEach
  void captureUncaught() {
    saved = Thread.getDefaultUncaughtExceptionHandler();
    Thread.setDefaultUncaughtExceptionHandler((t, e) -> {
      reported.add(e);
      reportedOn.add(t.getName());
    });
  }

  @AfterEach
  void restore() {
    Thread.setDefaultUncaughtExceptionHandler(saved);
  }

  /** Echoes, but throws on a message starting with "boom" and from ACCEPT when armed. */
  static final class Thrower extends Recorder {
    volatile boolean throwOnAccept;

    @Override
    HandleResult react(TcpEndpoint ep, Ev ev) {
      if (ev.type.equals("ACCEPT") && throwOnAccept) {
        throw new Boom("from onAccept");
      }
      if (ev.type.equals("RECEIVE")) {
        if (new String(ev.data, StandardCharsets.US_ASCII).startsWith("boom")) {
          throw new Boom("from onReceive");
        }
        ep.send(ev.conn, ev.data);
      }
      if (ev.type.equals("CLOSE")) {
        throw new Boom("from onClose"); // ignored result; must not disturb anything
      }
      return HandleResult.OK;
    }
  }

  /** The server's ID for the connection of a peer socket. */
  static long idOf(TcpServer server, Recorder rec, Socket peer) {
    for (Recorder.Ev e : rec.events(Recorder.is("ACCEPT"))) {
      if (server.remoteAddress(e.conn).getPort() == peer.getLocalPort()) {
        return e.conn;
      }
    }
    throw new AssertionError("no ACCEPT for port " + peer.getLocalPort());
  }

  static boolean peerClosed(Socket s) {
    try {
      return s.getInputStream().read() < 0;
    } catch (SocketException e) {
      return true; // reset
    } catch (java.io.IOException e) {
      return false;
    }
  }

  static void echoes(Socket s, String msg) throws Exception {
    byte[] b = msg.getBytes(StandardCharsets.US_ASCII);
    s.getOutputStream().write(b);
    assertArrayEquals(b, TestSupport.readFully(s, b.length), "echo of " + msg);
  }

  @Test
  void throwingReceiveClosesOnlyThatConnection() throws Exception {
    Thrower rec = new Thrower();
    try (TcpServer server = TestSupport.server(rec, 2)) {
      server.start("127.0.0.1", 0);
      try (Socket a = TestSupport.connect(server); Socket b = TestSupport.connect(server)) {
        echoes(a, "hello a");
        echoes(b, "hello b");
        long idA = idOf(server, rec, a);
        a.getOutputStream().write("boom".getBytes(StandardCharsets.US_ASCII));
        Recorder.Ev close = rec.await(Recorder.is("CLOSE", idA), "CLOSE of a");
        assertEquals(Operation.RECEIVE, close.op);
        assertEquals(Hpsock.EHANDLER, close.error);
        assertTrue(peerClosed(a), "a is closed");
        TestSupport.await(() -> reported.stream().anyMatch(
            e -> e instanceof Boom && e.getMessage().equals("from onReceive")), "the report");
        assertTrue(reportedOn.stream().allMatch(n -> n.startsWith("hpsock-loop-")), reportedOn.toString());
        // the other connection and the server go on
        echoes(b, "still here");
        assertEquals(State.STARTED, server.state());
        try (Socket c = TestSupport.connect(server)) {
          echoes(c, "new one");
        }
      }
    }
  }

  @Test
  void aUdpNodeWhoseReceiveThrowsIsNotMadeDeaf() throws Exception {
    // Its one connection is the socket: the exception is reported and that datagram is lost,
    // but the node goes on receiving (issue 19, point 7).
    List<String> seen = new CopyOnWriteArrayList<>();
    List<String> closes = new CopyOnWriteArrayList<>();
    Listener l = new Listener() {
      @Override
      public HandleResult onReceiveFrom(
          TcpEndpoint ep, long conn, java.nio.ByteBuffer data, java.net.InetSocketAddress from) {
        String m = StandardCharsets.US_ASCII.decode(data).toString();
        seen.add(m);
        if (m.equals("first")) {
          throw new Boom("from onReceiveFrom");
        }
        return HandleResult.OK;
      }

      @Override
      public HandleResult onClose(TcpEndpoint ep, long conn, Operation op, int error) {
        closes.add(op + " " + Hpsock.errorName(error));
        return HandleResult.OK;
      }
    };
    try (UdpNode node = new UdpNode(l);
        java.net.DatagramSocket peer = new java.net.DatagramSocket(0,
            java.net.InetAddress.getByName("127.0.0.1"))) {
      node.start("127.0.0.1", 0);
      java.net.InetSocketAddress to = new java.net.InetSocketAddress("127.0.0.1", node.port());
      byte[] first = "first".getBytes(StandardCharsets.US_ASCII);
      peer.send(new java.net.DatagramPacket(first, first.length, to));
      TestSupport.await(() -> reported.stream().anyMatch(
          e -> e instanceof Boom && e.getMessage().equals("from onReceiveFrom")), "the report");
      assertTrue(reportedOn.stream().allMatch(n -> n.startsWith("hpsock-loop-")),
          reportedOn.toString());
      byte[] second = "second".getBytes(StandardCharsets.US_ASCII);
      peer.send(new java.net.DatagramPacket(second, second.length, to));
      TestSupport.await(() -> seen.contains("second"), "the second datagram; seen " + seen
          + ", closes " + closes);
      assertEquals(List.of("first", "second"), seen);
      assertEquals(List.of(), closes, "the node's connection stays open");
      assertEquals(State.STARTED, node.state());
    }
  }

  @Test
  void throwingAcceptRefusesThatConnection() throws Exception {
    Thrower rec = new Thrower();
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.start("127.0.0.1", 0);
      rec.throwOnAccept = true;
      try (Socket a = TestSupport.connect(server)) {
        assertTrue(peerClosed(a), "refused");
        TestSupport.await(() -> reported.stream().anyMatch(
            e -> e.getMessage().equals("from onAccept")), "the report");
      }
      rec.throwOnAccept = false;
      try (Socket b = TestSupport.connect(server)) {
        echoes(b, "after the refusal");
      }
    }
  }

  @Test
  void anErrorThrownIsHandledLikeAnException() throws Exception {
    Recorder rec = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        if (ev.type.equals("RECEIVE")) {
          throw new AssertionError("an Error from onReceive");
        }
        return HandleResult.OK;
      }
    };
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.start("127.0.0.1", 0);
      try (Socket a = TestSupport.connect(server)) {
        a.getOutputStream().write(1);
        Recorder.Ev close = rec.await(Recorder.is("CLOSE"), "CLOSE");
        assertEquals(Hpsock.EHANDLER, close.error);
        TestSupport.await(() -> reported.stream().anyMatch(e -> e instanceof AssertionError),
            "the report");
      }
    }
  }

  @Test
  void aThrowingUncaughtHandlerIsPrintedAndCleared() throws Exception {
    // The handler itself throws: the bridge prints the exception (stack trace on System.err),
    // clears it and treats the event as ERROR.
    Thread.setDefaultUncaughtExceptionHandler((t, e) -> {
      throw new IllegalStateException("handler failed too");
    });
    PrintStream err = System.err;
    ByteArrayOutputStream captured = new ByteArrayOutputStream();
    System.setErr(new PrintStream(captured, true, "UTF-8"));
    Thrower rec = new Thrower();
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.start("127.0.0.1", 0);
      try (Socket a = TestSupport.connect(server); Socket b = TestSupport.connect(server)) {
        echoes(b, "b first");
        a.getOutputStream().write("boom".getBytes(StandardCharsets.US_ASCII));
        assertTrue(peerClosed(a), "a is closed");
        echoes(b, "b goes on");
      }
    } finally {
      System.setErr(err);
    }
    String printed = captured.toString("UTF-8");
    assertTrue(printed.contains("handler failed too"), "printed: " + printed);
    assertTrue(printed.contains("\tat "), "with its stack trace: " + printed);
  }
}

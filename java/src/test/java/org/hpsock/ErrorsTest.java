package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.file.Paths;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.hpsock.internal.NativeConstants;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** Errors: codes, names, stale IDs, states, roles, models, limits. */
class ErrorsTest {
  static HpsockException fails(int code, Executable call) {
    HpsockException e = assertThrows(HpsockException.class, call);
    assertEquals(code, e.code(), "code of: " + e.getMessage());
    return e;
  }

  @Test
  void javaConstantsMatchTheHeader() throws Exception {
    int n = 0;
    for (Field f : Hpsock.class.getFields()) {
      if (Modifier.isStatic(f.getModifiers()) && f.getType() == int.class) {
        Field c = NativeConstants.class.getField("HPS_" + f.getName());
        assertEquals(c.getInt(null), f.getInt(null), f.getName());
        assertEquals("HPS_" + f.getName(), Hpsock.errorName(f.getInt(null)));
        n++;
      }
    }
    assertEquals(31, n, "every HPS_E* code has a constant");
    for (Option o : Option.values()) {
      assertEquals(NativeConstants.class.getField("HPS_OPT_" + o.name()).getInt(null), o.key());
    }
    for (Counter c : Counter.values()) {
      assertEquals(NativeConstants.class.getField("HPS_CNT_" + c.name()).getInt(null), c.key());
    }
    int counters = 0;
    int events = 0;
    for (Field f : NativeConstants.class.getFields()) {
      counters += f.getName().startsWith("HPS_CNT_") ? 1 : 0;
      events += f.getName().startsWith("HPS_EV_") ? 1 : 0;
    }
    assertEquals(Counter.values().length, counters, "every HPS_CNT_* has a Counter");
    assertEquals(10, events, "event types in the header");
    String[] names = {"PREPARE", "ACCEPT", "CONNECT", "HANDSHAKE", "RECEIVE", "SEND", "CLOSE",
        "SHUTDOWN", "HIGH_WATER", "LOW_WATER"};
    for (String name : names) {
      int want = NativeConstants.class.getField("HPS_EV_" + name).getInt(null);
      assertEquals(want, TcpEndpoint.class.getDeclaredField("EV_" + name).getInt(null), name);
    }
    long all = 0;
    for (String name : names) {
      all |= 1L << NativeConstants.class.getField("HPS_EV_" + name).getInt(null);
    }
    assertEquals(NativeConstants.HPS_EVENTS_ALL, all, "HPS_EVENTS_ALL is every event's bit");
    for (HandleResult r : HandleResult.values()) {
      assertEquals(NativeConstants.class.getField("HPS_HR_" + r.name()).getInt(null), r.code());
    }
    for (Operation o : Operation.values()) {
      assertEquals(NativeConstants.class.getField("HPS_OP_" + o.name()).getInt(null), o.code());
    }
    for (ReceiveModel m : ReceiveModel.values()) {
      assertEquals(NativeConstants.class.getField("HPS_MODEL_" + m.name()).getInt(null), m.code());
    }
    for (State s : State.values()) {
      assertEquals(NativeConstants.class.getField("HPS_STATE_" + s.name()).getInt(null),
          s.ordinal());
    }
    assertEquals(NativeConstants.HPS_VERSION_HEX, Hpsock.versionHex());
    assertEquals(NativeConstants.HPS_VERSION_MAJOR + "." + NativeConstants.HPS_VERSION_MINOR + "."
        + NativeConstants.HPS_VERSION_PATCH, Hpsock.version());
  }

  @Test
  void exceptionCarriesCodeNameAndMessage() {
    HpsockException e = new HpsockException(Hpsock.ENOTFOUND, "send");
    assertEquals(Hpsock.ENOTFOUND, e.code());
    assertEquals("HPS_ENOTFOUND", e.errorName());
    assertEquals("send: HPS_ENOTFOUND: connection not found", e.getMessage());
    assertTrue(RuntimeException.class.isInstance(e), "unchecked");
    HpsockException sys = new HpsockException(-104, null);
    assertEquals("ECONNRESET", sys.errorName());
    assertEquals("unknown error", Hpsock.errorMessage(-29999));
  }

  @Test
  void staleAndUnknownIdsAreNotFound() throws Exception {
    Recorder rec = new Recorder();
    // One loop: the ID is dropped right after onClose returns, on the loop thread, so the second
    // connection's HANDSHAKE (same loop, later) comes after it; it also takes over the slot.
    // With two loops the HANDSHAKE could come from the other loop before the drop.
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.start("127.0.0.1", 0);
      long id;
      try (Socket s = TestSupport.connect(server)) {
        id = rec.await(Recorder.is("HANDSHAKE"), "HANDSHAKE").conn;
      }
      rec.await(Recorder.is("CLOSE", id), "CLOSE");
      // a new connection must not answer to the old ID
      try (Socket s2 = TestSupport.connect(server)) {
        long id2 = rec.await(e -> e.type.equals("HANDSHAKE") && e.conn != id, "HANDSHAKE 2").conn;
        assertTrue(id2 != id);
        for (long stale : new long[] {id, 0x7fff_0000_00ffL, 12345, -1L}) {
          fails(Hpsock.ENOTFOUND, () -> server.send(stale, new byte[] {1}));
          fails(Hpsock.ENOTFOUND, () -> server.disconnect(stale));
          fails(Hpsock.ENOTFOUND, () -> server.pauseReceive(stale, true));
          fails(Hpsock.ENOTFOUND, () -> server.getExtra(stale));
          fails(Hpsock.ENOTFOUND, () -> server.setExtra(stale, 1));
          fails(Hpsock.ENOTFOUND, () -> server.stats(stale));
          fails(Hpsock.ENOTFOUND, () -> server.remoteAddress(stale));
          fails(Hpsock.ENOTFOUND, () -> server.localAddress(stale));
          fails(Hpsock.ENOTFOUND, () -> server.sendv(stale, new byte[] {1}));
          fails(Hpsock.ENOTFOUND, () -> server.unsent(stale));
        }
        server.send(id2, new byte[] {9}); // the live one still works
        assertEquals(9, TestSupport.readFully(s2, 1)[0]);
      }
    }
  }

  @Test
  void lifeCycleErrors() throws Exception {
    TcpServer server = TestSupport.server(new Recorder(), 1);
    fails(Hpsock.ESTATE, server::stop);
    fails(Hpsock.ESTATE, server::listenAddress);
    server.start("127.0.0.1", 0);
    fails(Hpsock.ESTATE, () -> server.start("127.0.0.1", 0));
    fails(Hpsock.ESTATE, () -> server.setOption(Option.WORKERS, 2));
    server.setOption(Option.EVENTS, 0x7fe); // live
    server.setSendWaterMarks(1 << 16, 1 << 12); // live
    fails(Hpsock.ESTATE, () -> server.setAutoPause(true));
    fails(Hpsock.ESTATE, () -> server.setCloseTimeout(1000));
    int port = server.port();
    try (TcpServer second = TestSupport.server(new Recorder(), 1)) {
      HpsockException e = fails(-98, () -> second.start("127.0.0.1", port));
      assertEquals("EADDRINUSE", e.errorName());
      fails(Hpsock.EADDR, () -> second.start("no.such.host.invalid", 0));
    }
    server.close();
    assertTrue(server.isClosed());
    server.close(); // again: nothing
    fails(Hpsock.EHANDLE, server::state);
    fails(Hpsock.EHANDLE, () -> server.send(1, new byte[] {1}));
    fails(Hpsock.EHANDLE, () -> server.start("127.0.0.1", 0));
  }

  @Test
  void optionErrors() {
    try (TcpServer s = new TcpServer(new Recorder())) {
      fails(Hpsock.EINVAL, () -> s.setOption(Option.WORKERS, 0));
      fails(Hpsock.EINVAL, () -> s.setOption(Option.WORKERS, 65));
      fails(Hpsock.EINVAL, () -> s.setOption(Option.PACK_MAX, 4194304));
      fails(Hpsock.EINVAL, () -> s.setOption(Option.EVENTS, 1 << 12));
      fails(Hpsock.EINVAL, () -> s.setOption(Option.EVENTS, 1 << 11)); // past the last event
      fails(Hpsock.EINVAL, () -> s.setSendHighWater(0));
      fails(Hpsock.EINVAL, () -> s.setSendHighWater((1L << 30) + 1));
      fails(Hpsock.EINVAL, () -> s.setOption(Option.AUTO_PAUSE, 2));
      fails(Hpsock.EINVAL, () -> s.setCloseTimeout(0));
      assertThrows(IllegalArgumentException.class, () -> s.start("127.0.0.1", 65536));
    }
  }

  @Test
  void roleAndModelErrors() throws Exception {
    try (TcpAgent agent = new TcpAgent(new Recorder())) {
      fails(Hpsock.ESTATE, () -> agent.connect("127.0.0.1", 1));
      agent.setWorkers(1);
      agent.start();
      fails(Hpsock.EROLE, () -> agent.address(0, 0, "listenAddress"));
      fails(Hpsock.EADDR, () -> agent.connect("", 1));
      fails(Hpsock.EADDR, () -> agent.connect("no.such.host.invalid", 1));
    }
    Recorder rec = new Recorder();
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.setReceiveModel(ReceiveModel.PACK);
      server.setOption(Option.PACK_MAX, 100);
      server.start("127.0.0.1", 0);
      try (Socket s = TestSupport.connect(server)) {
        long id = rec.await(Recorder.is("HANDSHAKE"), "HANDSHAKE").conn;
        fails(Hpsock.EMODEL, () -> server.fetch(id, new byte[1]));
        fails(Hpsock.EMODEL, () -> server.peek(id, ByteBuffer.allocate(1)));
        fails(Hpsock.EMODEL, () -> server.sendFile(id, Paths.get("/etc/hostname")));
        fails(Hpsock.EPACKSIZE, () -> server.send(id, new byte[101]));
        fails(Hpsock.EPACKEMPTY, () -> server.send(id, new byte[0]));
        fails(Hpsock.EPACKEMPTY, () -> server.sendv(id, new byte[0], new byte[0]));
        assertThrows(IndexOutOfBoundsException.class, () -> server.send(id, new byte[4], 3, 2));
      }
    }
  }

  @Test
  void sendQueueAndConnectionLimits() throws Exception {
    Recorder rec = new Recorder();
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.setOption(Option.MAX_SEND_QUEUE, 1000);
      server.start("127.0.0.1", 0);
      try (Socket s = TestSupport.connect(server)) {
        long id = rec.await(Recorder.is("HANDSHAKE"), "HANDSHAKE").conn;
        fails(Hpsock.ESENDQ, () -> server.send(id, new byte[2000]));
      }
      Recorder ag = new Recorder();
      try (TcpAgent agent = new TcpAgent(ag)) {
        agent.setWorkers(1);
        agent.setOption(Option.MAX_CONNECTIONS, 1);
        agent.start();
        agent.connect("127.0.0.1", server.port());
        fails(Hpsock.ELIMIT, () -> agent.connect("127.0.0.1", server.port()));
      }
    }
  }

  @Test
  void closeFromItsOwnListenerIsRefusedButStopWorks() throws Exception {
    CompletableFuture<Throwable> closeResult = new CompletableFuture<>();
    Recorder rec = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        if (ev.type.equals("RECEIVE")) {
          try {
            ep.close();
            closeResult.complete(null);
          } catch (Throwable t) {
            closeResult.complete(t);
          }
          assertFalse(ep.isClosed());
          ep.stop(); // asynchronous from inside
          fails(Hpsock.EINLOOP, () -> ep.awaitStop(0));
        }
        return HandleResult.OK;
      }
    };
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.start("127.0.0.1", 0);
      Socket s = TestSupport.connect(server);
      s.getOutputStream().write(1);
      Throwable t = closeResult.get(TestSupport.TIMEOUT_MS, TimeUnit.MILLISECONDS);
      assertTrue(t instanceof HpsockException, String.valueOf(t));
      assertEquals(Hpsock.EINLOOP, ((HpsockException) t).code());
      rec.await(Recorder.is("SHUTDOWN"), "SHUTDOWN after the stop from inside");
      assertTrue(server.awaitStop(TestSupport.TIMEOUT_MS));
      s.close();
    }
  }

  /** Two servers whose listeners stop each other at the same moment: a stop inside any
   * endpoint's listener only begins, so neither waits for the other's busy loop. */
  @Test
  void listenersStoppingEachOtherDoNotDeadlock() throws Exception {
    java.util.concurrent.CountDownLatch[] entered = {
        new java.util.concurrent.CountDownLatch(1), new java.util.concurrent.CountDownLatch(1)};
    TcpServer[] servers = new TcpServer[2];
    java.util.concurrent.ConcurrentHashMap<Integer, State> seen =
        new java.util.concurrent.ConcurrentHashMap<>();
    Recorder[] recs = new Recorder[2];
    for (int i = 0; i < 2; i++) {
      final int me = i;
      final int other = 1 - i;
      recs[i] = new Recorder() {
        @Override
        HandleResult react(TcpEndpoint ep, Ev ev) {
          if (ev.type.equals("ACCEPT")) {
            entered[me].countDown();
            try {
              entered[other].await(TestSupport.TIMEOUT_MS, TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            }
            servers[other].stop();
            seen.put(me, servers[other].state());
          }
          return HandleResult.OK;
        }
      };
    }
    try (TcpServer a = TestSupport.server(recs[0], 1); TcpServer b = TestSupport.server(recs[1], 1)) {
      servers[0] = a;
      servers[1] = b;
      a.start("127.0.0.1", 0);
      b.start("127.0.0.1", 0);
      try (Socket sa = TestSupport.connect(a); Socket sb = TestSupport.connect(b)) {
        assertTrue(a.awaitStop(2 * TestSupport.TIMEOUT_MS), "the stops deadlocked");
        assertTrue(b.awaitStop(2 * TestSupport.TIMEOUT_MS), "the stops deadlocked");
      }
      assertEquals(2, seen.size());
      for (State st : seen.values()) {
        assertTrue(st == State.STOPPING || st == State.STOPPED, String.valueOf(st));
      }
    }
  }

  @Test
  void closeFromAServersPrepareOnTheStartingThreadIsRefused() {
    CompletableFuture<Throwable> got = new CompletableFuture<>();
    Recorder rec = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        if (ev.type.equals("PREPARE")) {
          try {
            ep.close();
            got.complete(null);
          } catch (Throwable t) {
            got.complete(t);
          }
        }
        return HandleResult.OK;
      }
    };
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.start("127.0.0.1", 0);
      Throwable t = got.getNow(null);
      assertTrue(t instanceof HpsockException, String.valueOf(t));
      assertEquals(Hpsock.EINLOOP, ((HpsockException) t).code());
      assertEquals(State.STARTED, server.state());
    }
  }
}

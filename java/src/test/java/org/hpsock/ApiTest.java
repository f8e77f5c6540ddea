package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every operation of the C ABI, through the Java API. */
class ApiTest {
  static byte[] ascii(String s) {
    return s.getBytes(StandardCharsets.US_ASCII);
  }

  /** A server with a recorder, one plain-socket peer, the connection's ID. */
  static final class Rig implements AutoCloseable {
    final Recorder rec;
    final TcpServer server;
    final Socket peer;
    final long id;

    Rig(Recorder rec, ReceiveModel model) throws Exception {
      this.rec = rec;
      server = TestSupport.server(rec, 2);
      server.setReceiveModel(model);
      server.start("127.0.0.1", 0);
      peer = TestSupport.connect(server);
      id = rec.await(Recorder.is("HANDSHAKE"), "HANDSHAKE").conn;
    }

    Rig() throws Exception {
      this(new Recorder(), ReceiveModel.PUSH);
    }

    @Override
    public void close() throws java.io.IOException {
      peer.close();
      server.close();
    }
  }

  @Test
  void eventsOfAConnectionComeInOrderOnOneThread() throws Exception {
    try (Rig r = new Rig()) {
      r.peer.getOutputStream().write(ascii("hi"));
      r.rec.await(Recorder.is("RECEIVE", r.id), "RECEIVE");
      r.peer.close();
      r.rec.await(Recorder.is("CLOSE", r.id), "CLOSE");
      List<Recorder.Ev> evs = r.rec.events(e -> e.conn == r.id);
      StringBuilder order = new StringBuilder();
      Set<String> threads = new HashSet<>();
      for (Recorder.Ev e : evs) {
        order.append(e.type).append(' ');
        threads.add(e.thread);
      }
      assertTrue(order.toString().matches("ACCEPT HANDSHAKE (RECEIVE )+CLOSE "), order.toString());
      assertEquals(1, threads.size(), "one loop thread per connection: " + threads);
      assertTrue(threads.iterator().next().startsWith("hpsock-loop-"), threads.toString());
      r.server.stop();
      r.rec.await(Recorder.is("SHUTDOWN"), "SHUTDOWN");
      assertEquals(State.STOPPED, r.server.state());
    }
  }

  @Test
  void serverPrepareGetsTheListeningSocket() throws Exception {
    Recorder rec = new Recorder();
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.start("127.0.0.1", 0);
      Recorder.Ev p = rec.await(Recorder.is("PREPARE"), "PREPARE");
      assertEquals(0, p.conn);
      assertTrue(p.n >= 0, "fd " + p.n);
      assertEquals(Thread.currentThread().getName(), p.thread, "runs on the starting thread");
    }
  }

  @Test
  void addressesAndListenAddress() throws Exception {
    try (Rig r = new Rig()) {
      InetSocketAddress la = r.server.listenAddress();
      assertEquals("127.0.0.1", la.getAddress().getHostAddress());
      assertNotEquals(0, la.getPort());
      assertEquals(la.getPort(), r.server.port());
      assertEquals(new InetSocketAddress("127.0.0.1", la.getPort()), r.server.localAddress(r.id));
      assertEquals(new InetSocketAddress("127.0.0.1", r.peer.getLocalPort()),
          r.server.remoteAddress(r.id));
    }
  }

  @Test
  void extraDataIsPerConnection() throws Exception {
    try (Rig r = new Rig()) {
      assertEquals(0, r.server.getExtra(r.id));
      r.server.setExtra(r.id, 0x1234_5678_9abc_def0L);
      assertEquals(0x1234_5678_9abc_def0L, r.server.getExtra(r.id));
      r.server.setExtra(r.id, -1L);
      assertEquals(-1L, r.server.getExtra(r.id));
    }
  }

  @Test
  void statsCountBytesAndMessages() throws Exception {
    Recorder echo = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        if (ev.type.equals("RECEIVE")) {
          ep.send(ev.conn, ev.data);
        }
        return HandleResult.OK;
      }
    };
    try (Rig r = new Rig(echo, ReceiveModel.PUSH)) {
      r.peer.getOutputStream().write(new byte[1000]);
      TestSupport.readFully(r.peer, 1000);
      Stats s = r.server.stats(r.id);
      assertEquals(1000, s.bytesReceived());
      assertEquals(1000, s.bytesSent());
      assertTrue(s.msgsReceived() >= 1 && s.msgsSent() == s.msgsReceived(), s.toString());
      Stats total = r.server.stats(0);
      assertEquals(1000, total.bytesReceived(), total.toString());
      assertEquals(1000, total.bytesSent(), total.toString());
      assertTrue(s.ageMillis() >= 0 && s.silenceMillis() >= 0);
    }
  }

  @Test
  void connectionCountAndIds() throws Exception {
    Recorder rec = new Recorder();
    try (TcpServer server = TestSupport.server(rec, 2)) {
      server.start("127.0.0.1", 0);
      assertEquals(0, server.connectionCount());
      assertEquals(0, server.connectionIds().length);
      Socket a = TestSupport.connect(server);
      Socket b = TestSupport.connect(server);
      Socket c = TestSupport.connect(server);
      rec.await(e -> rec.events(Recorder.is("HANDSHAKE")).size() == 3, "3 HANDSHAKEs");
      assertEquals(3, server.connectionCount());
      Set<Long> ids = new HashSet<>();
      for (long id : server.connectionIds()) {
        ids.add(id);
      }
      Set<Long> accepted = new HashSet<>();
      for (Recorder.Ev e : rec.events(Recorder.is("ACCEPT"))) {
        accepted.add(e.conn);
      }
      assertEquals(accepted, ids);
      a.close();
      b.close();
      c.close();
      TestSupport.await(() -> server.connectionCount() == 0, "count back to 0");
    }
  }

  @Test
  void sendVariantsAndBufferPositions() throws Exception {
    try (Rig r = new Rig()) {
      r.server.send(r.id, ascii("ab"));
      r.server.send(r.id, ascii("xcdx"), 1, 2);
      ByteBuffer heap = ByteBuffer.wrap(ascii("__ef__"), 2, 2);
      r.server.send(r.id, heap);
      assertEquals(4, heap.position(), "heap buffer consumed");
      assertTrue(org.hpsock.internal.DirectAddress.AVAILABLE, "the fast direct path is used");
      ByteBuffer direct = ByteBuffer.allocateDirect(8);
      direct.put(ascii("__gh")).flip().position(2);
      r.server.send(r.id, direct);
      assertFalse(direct.hasRemaining(), "direct buffer consumed");
      r.server.send(r.id, ByteBuffer.wrap(ascii("ij")).asReadOnlyBuffer());
      r.server.sendv(r.id, ascii("k"), ascii("lm"));
      ByteBuffer d2 = ByteBuffer.allocateDirect(4);
      d2.put(ascii("o")).flip();
      r.server.sendv(r.id, ByteBuffer.wrap(ascii("n")), d2,
          ByteBuffer.wrap(ascii("p")).asReadOnlyBuffer(), ByteBuffer.allocate(0));
      assertEquals("abcdefghijklmnop", new String(TestSupport.readFully(r.peer, 16),
          StandardCharsets.US_ASCII));
    }
  }

  @Test
  void packSendvIsOneFrame() throws Exception {
    Recorder rec = new Recorder();
    try (Rig r = new Rig(rec, ReceiveModel.PACK)) {
      r.server.sendv(r.id, ascii("he"), ascii("llo"));
      byte[] got = TestSupport.readFully(r.peer, 9);
      byte[] want = new byte[9];
      System.arraycopy(TestSupport.packHeader(0, 5), 0, want, 0, 4);
      System.arraycopy(ascii("hello"), 0, want, 4, 5);
      assertArrayEquals(want, got);
      // and a frame from the peer arrives whole
      r.peer.getOutputStream().write(want);
      Recorder.Ev e = r.rec.await(Recorder.is("RECEIVE", r.id), "frame");
      assertArrayEquals(ascii("hello"), e.data);
    }
  }

  @Test
  void sendEventsCarryTheBytesSent() throws Exception {
    try (Rig r = new Rig()) {
      r.server.send(r.id, ascii("hello"));
      TestSupport.readFully(r.peer, 5);
      Recorder.Ev e = r.rec.await(Recorder.is("SEND", r.id), "SEND");
      assertArrayEquals(ascii("hello"), e.data);
    }
  }

  @Test
  void sendFileWholeAndPart(@TempDir Path dir) throws Exception {
    byte[] content = new byte[300_000];
    for (int i = 0; i < content.length; i++) {
      content[i] = (byte) (i * 31 + 7);
    }
    Path f = dir.resolve("data.bin");
    Files.write(f, content);
    try (Rig r = new Rig()) {
      r.server.sendFile(r.id, f);
      assertArrayEquals(content, TestSupport.readFully(r.peer, content.length));
      r.server.sendFile(r.id, f, 1000, 50);
      assertArrayEquals(Arrays.copyOfRange(content, 1000, 1050), TestSupport.readFully(r.peer, 50));
      r.server.send(r.id, ascii("!")); // ordered behind the file
      assertEquals('!', TestSupport.readFully(r.peer, 1)[0]);
      HpsockException e = org.junit.jupiter.api.Assertions.assertThrows(HpsockException.class,
          () -> r.server.sendFile(r.id, dir.resolve("missing")));
      assertEquals(Hpsock.EFILE, e.code());
      e = org.junit.jupiter.api.Assertions.assertThrows(HpsockException.class,
          () -> r.server.sendFile(r.id, f, content.length + 1, 1));
      assertEquals(Hpsock.EFILE, e.code());
    }
  }

  @Test
  void pauseReceiveHoldsEventsUntilResumed() throws Exception {
    // Paused from its HANDSHAKE, on the loop thread, so it takes effect before any byte can come.
    Recorder rec = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        if (ev.type.equals("HANDSHAKE")) {
          ep.pauseReceive(ev.conn, true);
        }
        return HandleResult.OK;
      }
    };
    try (Rig r = new Rig(rec, ReceiveModel.PUSH)) {
      r.peer.getOutputStream().write(ascii("held"));
      // a negative check needs a window: nothing may arrive within it
      Thread.sleep(200);
      assertEquals(0, r.rec.events(Recorder.is("RECEIVE", r.id)).size(), "RECEIVE while paused");
      r.server.pauseReceive(r.id, false);
      TestSupport.await(() -> r.rec.received(r.id).length == 4, "the held bytes");
      assertArrayEquals(ascii("held"), r.rec.received(r.id));
      r.server.pauseReceive(r.id, true); // from another thread too
      r.server.pauseReceive(r.id, false);
    }
  }

  @Test
  void packListenerPauseHoldsTheRestOfTheRead() throws Exception {
    // The listener pauses on the first frame: the 19 read with it wait for the resume.
    java.util.concurrent.atomic.AtomicInteger seen = new java.util.concurrent.atomic.AtomicInteger();
    Recorder rec = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        if (ev.type.equals("RECEIVE") && seen.getAndIncrement() == 0) {
          ep.pauseReceive(ev.conn, true);
        }
        return HandleResult.OK;
      }
    };
    try (Rig r = new Rig(rec, ReceiveModel.PACK)) {
      java.io.ByteArrayOutputStream all = new java.io.ByteArrayOutputStream();
      for (int i = 0; i < 20; i++) {
        all.write(TestSupport.packHeader(0, 8));
        all.write(ascii(String.format("frame-%02d", i)));
      }
      r.peer.getOutputStream().write(all.toByteArray()); // one write
      r.rec.await(Recorder.is("RECEIVE", r.id), "the first frame");
      // a negative check needs a window: nothing may arrive within it
      Thread.sleep(200);
      assertEquals(1, r.rec.events(Recorder.is("RECEIVE", r.id)).size(), "frames after the pause");
      r.server.pauseReceive(r.id, false);
      TestSupport.await(() -> r.rec.events(Recorder.is("RECEIVE", r.id)).size() == 20, "the held frames");
      List<Recorder.Ev> got = r.rec.events(Recorder.is("RECEIVE", r.id));
      for (int i = 0; i < 20; i++) {
        assertArrayEquals(ascii(String.format("frame-%02d", i)), got.get(i).data, "frame " + i);
      }
    }
  }

  @Test
  void pullFetchAndPeek() throws Exception {
    try (Rig r = new Rig(new Recorder(), ReceiveModel.PULL)) {
      r.peer.getOutputStream().write(ascii("0123456789"));
      TestSupport.await(() -> {
        List<Recorder.Ev> p = r.rec.events(Recorder.is("PULL", r.id));
        return !p.isEmpty() && p.get(p.size() - 1).n == 10;
      }, "10 bytes waiting");
      byte[] four = new byte[4];
      assertTrue(r.server.peek(r.id, four));
      assertArrayEquals(ascii("0123"), four);
      assertTrue(r.server.fetch(r.id, four));
      assertArrayEquals(ascii("0123"), four);
      assertFalse(r.server.fetch(r.id, new byte[7]), "only 6 wait");
      byte[] two = new byte[5];
      assertTrue(r.server.peek(r.id, two, 1, 2));
      assertArrayEquals(new byte[] {0, '4', '5', 0, 0}, two);
      ByteBuffer direct = ByteBuffer.allocateDirect(5);
      direct.position(2);
      assertTrue(r.server.fetch(r.id, direct));
      assertEquals(5, direct.position());
      assertEquals('4', direct.get(2));
      assertEquals('6', direct.get(4));
      ByteBuffer heap = ByteBuffer.allocate(3);
      assertTrue(r.server.peek(r.id, heap));
      assertTrue(r.server.fetch(r.id, ByteBuffer.allocate(3)));
      assertArrayEquals(ascii("789"), heap.array());
      assertFalse(r.server.fetch(r.id, new byte[1]), "nothing waits");
    }
  }

  @Test
  void disconnectLongClosesOldConnections() throws Exception {
    try (Rig r = new Rig()) {
      TestSupport.await(() -> r.server.stats(r.id).ageMillis() >= 20, "age 20 ms");
      assertEquals(1, r.server.disconnectLong(20));
      Recorder.Ev e = r.rec.await(Recorder.is("CLOSE", r.id), "CLOSE");
      assertEquals(Operation.CLOSE, e.op);
      assertEquals(0, e.error);
      assertEquals(-1, r.peer.getInputStream().read(), "the peer sees the close");
    }
  }

  @Test
  void gracefulDisconnectSendsQueuedBytesFirst() throws Exception {
    try (Rig r = new Rig()) {
      byte[] big = new byte[4 << 20];
      Arrays.fill(big, (byte) 'z');
      r.server.send(r.id, big);
      r.server.disconnect(r.id);
      InputStream in = r.peer.getInputStream();
      ByteArrayOutputStream got = new ByteArrayOutputStream();
      byte[] buf = new byte[65536];
      int n;
      while ((n = in.read(buf)) > 0) {
        got.write(buf, 0, n);
      }
      assertEquals(big.length, got.size(), "every queued byte before the close");
      assertEquals(Operation.CLOSE, r.rec.await(Recorder.is("CLOSE", r.id), "CLOSE").op);
    }
  }

  @Test
  void optionsRoundTripAndEventMaskFollowsTheListener() {
    Listener onlyReceive = new Listener() {
      @Override
      public HandleResult onReceive(TcpEndpoint ep, long id, ByteBuffer data) {
        return HandleResult.OK;
      }
    };
    try (TcpServer s = new TcpServer(onlyReceive)) {
      assertEquals((1 << 5) | (1 << 7) | (1 << 8), s.getOption(Option.EVENTS));
      assertEquals(1024, s.getOption(Option.BACKLOG));
      s.setOption(Option.BACKLOG, 77);
      assertEquals(77, s.getOption(Option.BACKLOG));
      s.setWorkers(3);
      assertEquals(3, s.getOption(Option.WORKERS));
      s.setReceiveModel(ReceiveModel.PULL);
      assertEquals(ReceiveModel.PULL, s.receiveModel());
      for (Option o : Option.values()) {
        s.getOption(o); // every key is known to the library
      }
    }
    try (TcpServer s = new TcpServer(new Listener() {})) {
      assertEquals((1 << 7) | (1 << 8), s.getOption(Option.EVENTS));
    }
    try (TcpServer s = new TcpServer(new Recorder())) {
      // a listener overriding every method asks for every event of the header
      assertEquals(org.hpsock.internal.NativeConstants.HPS_EVENTS_ALL, s.getOption(Option.EVENTS));
      assertEquals(0x7fe, s.getOption(Option.EVENTS), "10 event types, bits 1..10");
    }
    Listener water = new Listener() {
      @Override
      public HandleResult onHighWater(TcpEndpoint ep, long id, long unsent) {
        return HandleResult.OK;
      }

      @Override
      public HandleResult onLowWater(TcpEndpoint ep, long id, long unsent) {
        return HandleResult.OK;
      }
    };
    try (TcpServer s = new TcpServer(water)) {
      assertEquals((1 << 7) | (1 << 8) | (1 << 9) | (1 << 10), s.getOption(Option.EVENTS));
    }
  }

  @Test
  void flowControlOptionsRoundTrip() {
    try (TcpServer s = new TcpServer(new Listener() {})) {
      assertEquals(1 << 20, s.getOption(Option.SEND_HIGH_WATER), "default high water");
      assertEquals(256 << 10, s.getOption(Option.SEND_LOW_WATER), "default low water");
      assertEquals(0, s.getOption(Option.AUTO_PAUSE), "auto pause off by default");
      assertEquals(30_000, s.getOption(Option.CLOSE_TIMEOUT), "default close deadline");
      s.setSendHighWater(2 << 20);
      s.setSendLowWater(1 << 20);
      assertEquals(2 << 20, s.getOption(Option.SEND_HIGH_WATER));
      assertEquals(1 << 20, s.getOption(Option.SEND_LOW_WATER));
      // both marks move past each other in one call, whichever way
      s.setSendWaterMarks(64 << 20, 32 << 20);
      assertEquals(64 << 20, s.getOption(Option.SEND_HIGH_WATER));
      assertEquals(32 << 20, s.getOption(Option.SEND_LOW_WATER));
      s.setSendWaterMarks(4096, 1024);
      assertEquals(4096, s.getOption(Option.SEND_HIGH_WATER));
      assertEquals(1024, s.getOption(Option.SEND_LOW_WATER));
      org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
          () -> s.setSendWaterMarks(1024, 1024));
      s.setAutoPause(true);
      assertEquals(1, s.getOption(Option.AUTO_PAUSE));
      s.setCloseTimeout(1500);
      assertEquals(1500, s.getOption(Option.CLOSE_TIMEOUT));
      for (Counter c : Counter.values()) {
        assertEquals(0, s.counter(c), c + " of a new endpoint");
      }
    }
  }

  @Test
  void tlsKeyPasswordIsWriteOnly() {
    try (TcpServer s = new TcpServer(new Listener() {})) {
      s.setTlsKeyPassword("secret");
      HpsockException e = org.junit.jupiter.api.Assertions.assertThrows(HpsockException.class,
          () -> s.getOption(StringOption.TLS_KEY_PASSWORD));
      assertEquals(Hpsock.EINVAL, e.code(), "reading the password back: " + e.getMessage());
      s.setTlsKeyPassword(null); // clears
    }
  }

  @Test
  void unsentCountsWhatAPeerHasNotTakenYet() throws Exception {
    try (Rig r = new Rig()) {
      assertEquals(0, r.server.unsent(r.id), "nothing sent yet");
      // more than every socket buffer on the way can hold: the rest waits in the queue
      byte[] big = new byte[12 << 20];
      for (int i = 0; i < big.length; i++) {
        big[i] = (byte) (i * 13 + 5);
      }
      r.server.send(r.id, big);
      long queued = r.server.unsent(r.id);
      assertTrue(queued > 0 && queued <= big.length, "unsent after 12 MiB to a peer not reading: "
          + queued);
      assertArrayEquals(big, TestSupport.readFully(r.peer, big.length), "the bytes");
      TestSupport.await(() -> r.server.unsent(r.id) == 0, "unsent back to 0 once the peer read");
    }
  }

  @Test
  void restartAfterStop() throws Exception {
    Recorder rec = new Recorder();
    try (TcpServer server = TestSupport.server(rec, 2)) {
      assertEquals(State.CREATED, server.state());
      for (int i = 0; i < 3; i++) {
        server.start("127.0.0.1", 0);
        assertEquals(State.STARTED, server.state());
        try (Socket s = TestSupport.connect(server)) {
          s.getOutputStream().write(ascii("x"));
          int round = i;
          TestSupport.await(() -> rec.events(Recorder.is("RECEIVE")).size() == round + 1,
              "RECEIVE in run " + i);
        }
        server.stop();
        assertEquals(State.STOPPED, server.state());
        assertTrue(server.awaitStop(0));
      }
      assertEquals(3, rec.events(Recorder.is("SHUTDOWN")).size());
    }
  }

  @Test
  void clientConnectsSendsAndDisconnects() throws Exception {
    Recorder srv = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        if (ev.type.equals("RECEIVE")) {
          ep.send(ev.conn, ev.data);
        }
        return HandleResult.OK;
      }
    };
    Recorder cli = new Recorder();
    try (TcpServer server = TestSupport.server(srv, 1); TcpClient client = new TcpClient(cli)) {
      server.start("127.0.0.1", 0);
      client.start("127.0.0.1", server.port());
      Recorder.Ev c = cli.await(Recorder.is("CONNECT"), "CONNECT");
      assertEquals(c.conn, client.connectionId());
      assertEquals(server.port(), client.remoteAddress(0).getPort());
      client.send(ascii("ab"));
      client.send(ascii("xcdx"), 1, 2);
      client.send(ByteBuffer.wrap(ascii("ef")));
      TestSupport.await(() -> cli.received(c.conn).length == 6, "6 echoed bytes");
      assertArrayEquals(ascii("abcdef"), cli.received(c.conn));
      client.disconnect();
      Recorder.Ev close = cli.await(Recorder.is("CLOSE", c.conn), "CLOSE");
      assertEquals(Operation.CLOSE, close.op);
      assertEquals(0, client.connectionId());
    }
  }

  @Test
  void agentPrepareConnectAndManyConnections() throws Exception {
    Recorder srv = new Recorder();
    Recorder ag = new Recorder();
    try (TcpServer server = TestSupport.server(srv, 2); TcpAgent agent = new TcpAgent(ag)) {
      server.start("127.0.0.1", 0);
      agent.setWorkers(2);
      agent.start();
      long[] ids = new long[5];
      for (int i = 0; i < ids.length; i++) {
        ids[i] = agent.connect("127.0.0.1", server.port());
      }
      for (long id : ids) {
        Recorder.Ev p = ag.await(Recorder.is("PREPARE", id), "PREPARE");
        assertTrue(p.n >= 0, "fd");
        ag.await(Recorder.is("HANDSHAKE", id), "HANDSHAKE");
        agent.send(id, ascii("x"));
      }
      TestSupport.await(() -> srv.events(Recorder.is("RECEIVE")).size() == 5, "5 receives");
      assertEquals(5, agent.connectionCount());
    }
  }

  @Test
  void acceptErrorRefusesTheConnection() throws Exception {
    Recorder rec = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        return ev.type.equals("ACCEPT") ? HandleResult.ERROR : HandleResult.OK;
      }
    };
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.start("127.0.0.1", 0);
      try (Socket s = TestSupport.connect(server)) {
        long id = rec.await(Recorder.is("ACCEPT"), "ACCEPT").conn;
        int r;
        try {
          r = s.getInputStream().read();
        } catch (java.net.SocketException e) {
          r = -1; // reset
        }
        assertEquals(-1, r, "the peer sees the refusal");
        server.stop();
        assertTrue(rec.events(Recorder.is("CLOSE", id)).isEmpty(), "no CLOSE for a refused one");
        assertTrue(rec.events(Recorder.is("HANDSHAKE", id)).isEmpty(), "no HANDSHAKE");
      }
    }
  }

  @Test
  void prepareErrorAbortsTheStart() {
    Recorder rec = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        return ev.type.equals("PREPARE") ? HandleResult.ERROR : HandleResult.OK;
      }
    };
    try (TcpServer server = TestSupport.server(rec, 1)) {
      HpsockException e = org.junit.jupiter.api.Assertions.assertThrows(HpsockException.class,
          () -> server.start("127.0.0.1", 0));
      assertEquals(Hpsock.EHANDLER, e.code());
      State st = server.state();
      assertTrue(st == State.CREATED || st == State.STOPPED, st.toString());
    }
  }

  @Test
  void receiveResultsNullIgnoreAndOkKeepTheConnectionAndTheBufferIsFresh() throws Exception {
    // Every received block: exactly its bytes, position 0, big-endian, whatever the listener did
    // to the buffer of the block before; a null or IGNORE result is OK (the connection stays).
    AtomicInteger calls = new AtomicInteger();
    List<String> problems = new java.util.concurrent.CopyOnWriteArrayList<>();
    Listener l = new Listener() {
      @Override
      public HandleResult onReceive(TcpEndpoint ep, long connId, ByteBuffer data) {
        int n = calls.getAndIncrement();
        if (data.position() != 0 || data.order() != ByteOrder.BIG_ENDIAN || !data.isDirect()) {
          problems.add("buffer " + data + " " + data.order());
        }
        ep.send(connId, data);
        data.order(ByteOrder.LITTLE_ENDIAN).limit(data.capacity()).position(7); // mess it up
        return n % 3 == 0 ? null : n % 3 == 1 ? HandleResult.IGNORE : HandleResult.OK;
      }
    };
    try (TcpServer server = TestSupport.server(l, 1)) {
      server.start("127.0.0.1", 0);
      try (Socket s = TestSupport.connect(server)) {
        for (int i = 0; i < 6; i++) {
          byte[] msg = ascii("message " + i);
          s.getOutputStream().write(msg);
          assertArrayEquals(msg, TestSupport.readFully(s, msg.length), "echo " + i);
        }
      }
    }
    assertTrue(calls.get() >= 6, "calls " + calls.get());
    assertTrue(problems.isEmpty(), problems.toString());
  }
}

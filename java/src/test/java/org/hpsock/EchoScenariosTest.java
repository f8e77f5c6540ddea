package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** tests/fixtures/echo/scenarios.txt: echo round trips through every receive model. */
class EchoScenariosTest {
  static final class Scenario {
    final String name;
    final int conns;
    final int size;
    final int rounds;
    final ReceiveModel model;

    Scenario(String line) {
      String[] f = line.split("\\s+");
      name = f[0];
      Map<String, String> kv = new HashMap<>();
      for (int i = 1; i < f.length; i++) {
        int eq = f[i].indexOf('=');
        if (eq < 0) {
          throw new IllegalArgumentException(name + ": field without '=': " + f[i]);
        }
        String k = f[i].substring(0, eq);
        if (!Set.of("conns", "size", "rounds", "model").contains(k)) {
          throw new IllegalArgumentException(name + ": unknown key " + k);
        }
        kv.put(k, f[i].substring(eq + 1));
      }
      conns = Integer.parseInt(kv.get("conns"));
      size = Integer.parseInt(kv.get("size"));
      rounds = Integer.parseInt(kv.get("rounds"));
      String m = kv.get("model");
      if (!Set.of("push", "pull", "pack").contains(m)) {
        throw new IllegalArgumentException(name + ": unknown model " + m);
      }
      model = ReceiveModel.valueOf(m.toUpperCase(java.util.Locale.ROOT));
    }

    @Override
    public String toString() {
      return name;
    }
  }

  static Stream<Scenario> scenarios() throws Exception {
    List<Scenario> out = new ArrayList<>();
    for (String l : TestSupport.lines("echo/scenarios.txt")) {
      out.add(new Scenario(l));
    }
    return out.stream();
  }

  @Test
  void fixtureHasScenarios() throws Exception {
    assertTrue(scenarios().count() >= 5, "echo/scenarios.txt has too few scenarios");
  }

  static byte[] payload(int c, int r, int size) {
    byte[] b = new byte[size];
    for (int j = 0; j < size; j++) {
      b[j] = (byte) ((7 * c + 13 * r + j) % 251);
    }
    return b;
  }

  /** The echo server of the fixture: sends back what it gets, in every model. */
  static final class EchoServer extends Recorder {
    @Override
    public HandleResult onReceive(TcpEndpoint ep, long connId, ByteBuffer data) {
      ep.send(connId, data);
      return HandleResult.OK;
    }

    @Override
    public HandleResult onReceive(TcpEndpoint ep, long connId, int available) {
      byte[] all = new byte[available];
      if (!ep.fetch(connId, all)) {
        throw new AssertionError("fetch of the " + available + " bytes announced failed");
      }
      ep.send(connId, all);
      return HandleResult.OK;
    }
  }

  /** The client side: collects each connection's echo, completes its round when all came. */
  static final class Collector extends Recorder {
    final Map<Long, ByteArrayOutputStream> got = new ConcurrentHashMap<>();
    final Map<Long, CompletableFuture<byte[]>> rounds = new ConcurrentHashMap<>();
    final Map<Long, Integer> expect = new ConcurrentHashMap<>();
    volatile ReceiveModel model;

    void expect(long conn, int size) {
      got.put(conn, new ByteArrayOutputStream());
      expect.put(conn, size);
      rounds.put(conn, new CompletableFuture<>());
    }

    private void add(long conn, byte[] b) {
      ByteArrayOutputStream o = got.get(conn);
      o.write(b, 0, b.length);
      if (model == ReceiveModel.PACK && b.length != expect.get(conn)) {
        rounds.get(conn).completeExceptionally(
            new AssertionError("frame of " + b.length + " bytes, expected " + expect.get(conn)));
      } else if (o.size() >= expect.get(conn)) {
        rounds.get(conn).complete(o.toByteArray());
      }
    }

    @Override
    public HandleResult onReceive(TcpEndpoint ep, long connId, ByteBuffer data) {
      add(connId, bytes(data));
      return HandleResult.OK;
    }

    @Override
    public HandleResult onReceive(TcpEndpoint ep, long connId, int available) {
      byte[] all = new byte[available];
      if (!ep.fetch(connId, all)) {
        throw new AssertionError("fetch of the " + available + " bytes announced failed");
      }
      add(connId, all);
      return HandleResult.OK;
    }
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("scenarios")
  void echo(Scenario sc) throws Exception {
    EchoServer srv = new EchoServer();
    Collector col = new Collector();
    col.model = sc.model;
    try (TcpServer server = TestSupport.server(srv, 2);
        TcpAgent agent = new TcpAgent(col)) {
      server.setReceiveModel(sc.model);
      server.start("127.0.0.1", 0);
      agent.setWorkers(2);
      agent.setReceiveModel(sc.model);
      agent.start();
      List<Long> ids = new ArrayList<>();
      for (int c = 0; c < sc.conns; c++) {
        long id = agent.connect("127.0.0.1", server.port());
        ids.add(id);
        col.await(Recorder.is("CONNECT", id), "CONNECT of connection " + c);
      }
      srv.await(e -> srv.events(Recorder.is("HANDSHAKE")).size() == sc.conns,
          "the server's HANDSHAKEs");
      for (int r = 0; r < sc.rounds; r++) {
        for (int c = 0; c < sc.conns; c++) {
          col.expect(ids.get(c), sc.size);
          agent.send(ids.get(c), payload(c, r, sc.size));
        }
        for (int c = 0; c < sc.conns; c++) {
          byte[] back = col.rounds.get(ids.get(c)).get(TestSupport.TIMEOUT_MS, TimeUnit.MILLISECONDS);
          assertEquals(sc.size, back.length, "connection " + c + " round " + r + ": echo length");
          assertArrayEquals(payload(c, r, sc.size), back,
              "connection " + c + " round " + r + ": echoed bytes");
        }
      }
      for (long id : ids) {
        agent.disconnect(id);
      }
      for (long id : ids) {
        Recorder.Ev e = col.await(Recorder.is("CLOSE", id), "the client's CLOSE");
        assertEquals("0", e.errorName(), "client CLOSE error");
      }
      srv.await(e -> srv.events(Recorder.is("CLOSE")).size() == sc.conns, "the server's CLOSEs");
      for (Recorder.Ev e : srv.events(Recorder.is("CLOSE"))) {
        assertEquals("0", e.errorName(), "server CLOSE error of " + e);
      }
      server.stop();
      agent.stop();
      // exactly one CLOSE per connection on each side, even after the stops
      assertEquals(sc.conns, col.events(Recorder.is("CLOSE")).size(), "client CLOSE count");
      assertEquals(new HashSet<>(ids), closedIds(col), "client CLOSE per connection");
      assertEquals(sc.conns, srv.events(Recorder.is("CLOSE")).size(), "server CLOSE count");
      assertEquals(sc.conns, closedIds(srv).size(), "server CLOSE per connection");
    }
  }

  static Set<Long> closedIds(Recorder r) {
    Set<Long> s = new HashSet<>();
    for (Recorder.Ev e : r.events(Recorder.is("CLOSE"))) {
      s.add(e.conn);
    }
    return s;
  }
}

package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.channels.ServerSocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * tests/fixtures/close/cases.txt: what onClose says for each way a connection ends. Every case
 * named in the file must have a procedure here (see tests/fixtures/README.md, "close/").
 */
class CloseCasesTest {
  static final class Case {
    final String name;
    final Operation op;
    final String error;

    Case(String line) {
      String[] f = line.split("\\s+");
      if (f.length != 3 || !f[1].startsWith("op=") || !f[2].startsWith("error=")) {
        throw new IllegalArgumentException("bad case line: " + line);
      }
      name = f[0];
      op = Operation.valueOf(f[1].substring(3));
      error = f[2].substring(6);
    }

    @Override
    public String toString() {
      return name;
    }
  }

  static Stream<Case> cases() throws Exception {
    List<Case> out = new ArrayList<>();
    for (String l : TestSupport.lines("close/cases.txt")) {
      out.add(new Case(l));
    }
    return out.stream();
  }

  @Test
  void fixtureHasCases() throws Exception {
    assertTrue(cases().count() >= 10, "close/cases.txt has too few cases");
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void close(Case c) throws Exception {
    Recorder.Ev ev = run(c.name);
    assertEquals(c.op, ev.op, c.name + ": op of " + ev);
    assertEquals(c.error, ev.errorName(), c.name + ": error of " + ev);
  }

  /** Runs the case's procedure; returns the CLOSE event it checks. */
  static Recorder.Ev run(String name) throws Exception {
    switch (name) {
      case "peer_close":
        return serverCase(name, (server, s, id) -> s.close());
      case "local_disconnect":
        return serverCase(name, (server, s, id) -> server.disconnect(id, false));
      case "local_disconnect_force":
        return serverCase(name, (server, s, id) -> server.disconnect(id, true));
      case "stop":
        return serverCase(name, (server, s, id) -> server.stop());
      case "peer_reset":
        return serverCase(name, (server, s, id) -> {
          s.setSoLinger(true, 0);
          s.close();
        });
      case "handler_error":
      case "disconnect_silent":
      case "silence_timeout":
      case "pull_full":
      case "pack_bad_flag":
      case "pack_oversize":
      case "pack_empty":
        return serverCase(name, (server, s, id) -> peerAction(name, server, s, id));
      case "connect_refused":
        return connectRefused();
      case "connect_timeout":
        return connectTimeout();
      default:
        fail("close/cases.txt names a case this suite does not know: " + name);
        return null;
    }
  }

  interface Action {
    void run(TcpServer server, Socket peer, long id) throws Exception;
  }

  /** The server's options for a case. */
  static void configure(String name, TcpServer server) {
    switch (name) {
      case "silence_timeout":
        server.setOption(Option.SILENCE_TIMEOUT, 200);
        break;
      case "pull_full":
        server.setReceiveModel(ReceiveModel.PULL);
        server.setOption(Option.PULL_MAX, 1000);
        break;
      case "pack_bad_flag":
        server.setReceiveModel(ReceiveModel.PACK);
        server.setOption(Option.PACK_FLAG, 1);
        break;
      case "pack_oversize":
        server.setReceiveModel(ReceiveModel.PACK);
        server.setOption(Option.PACK_MAX, 16);
        break;
      case "pack_empty":
        server.setReceiveModel(ReceiveModel.PACK);
        break;
      default:
        break;
    }
  }

  /** What the peer (and server) do in the cases that need bytes or time. */
  static void peerAction(String name, TcpServer server, Socket s, long id) throws Exception {
    switch (name) {
      case "handler_error":
        s.getOutputStream().write(new byte[] {1, 2, 3});
        break;
      case "disconnect_silent":
        TestSupport.await(() -> server.stats(id).silenceMillis() >= 100, "100 ms of silence");
        assertEquals(1, server.disconnectSilent(100), "connections selected");
        break;
      case "silence_timeout":
        break; // send nothing
      case "pull_full":
        s.getOutputStream().write(new byte[1500]);
        break;
      case "pack_bad_flag":
        s.getOutputStream().write(TestSupport.hex("01 00 80 00 41"));
        break;
      case "pack_oversize":
        s.getOutputStream().write(TestSupport.hex("11 00 00 00"));
        break;
      case "pack_empty":
        s.getOutputStream().write(TestSupport.hex("00 00 00 00"));
        break;
      default:
        fail("no peer action for " + name);
    }
  }

  /** A push (or configured) server on 127.0.0.1:0, one plain-socket peer. */
  static Recorder.Ev serverCase(String name, Action action) throws Exception {
    Recorder rec = new Recorder() {
      @Override
      HandleResult react(TcpEndpoint ep, Ev ev) {
        // handler_error: ERROR from the RECEIVE of the peer's first bytes
        if (name.equals("handler_error") && ev.type.equals("RECEIVE")) {
          return HandleResult.ERROR;
        }
        return HandleResult.OK;
      }
    };
    try (TcpServer server = TestSupport.server(rec, 1)) {
      configure(name, server);
      server.start("127.0.0.1", 0);
      Socket s = TestSupport.connect(server);
      try {
        long id = rec.await(Recorder.is("HANDSHAKE"), "HANDSHAKE").conn;
        action.run(server, s, id);
        return rec.await(Recorder.is("CLOSE", id), name + ": the server's CLOSE");
      } finally {
        s.close();
      }
    }
  }

  static Recorder.Ev connectRefused() throws Exception {
    Recorder rec = new Recorder();
    try (Socket bound = new Socket(); TcpAgent agent = new TcpAgent(rec)) {
      bound.bind(new InetSocketAddress("127.0.0.1", 0)); // bound, not listening
      agent.setWorkers(1);
      agent.start();
      long id = agent.connect("127.0.0.1", bound.getLocalPort());
      return rec.await(Recorder.is("CLOSE", id), "the agent's CLOSE");
    }
  }

  static Recorder.Ev connectTimeout() throws Exception {
    Recorder rec = new Recorder();
    List<Socket> fill = new ArrayList<>();
    try (ServerSocketChannel full = ServerSocketChannel.open(); TcpAgent agent = new TcpAgent(rec)) {
      // Backlog 1 (Java turns 0 into a default): fill the accept queue with
      // connections nobody accepts until one cannot complete, so SYNs drop.
      full.bind(new InetSocketAddress("127.0.0.1", 0), 1);
      int port = ((InetSocketAddress) full.getLocalAddress()).getPort();
      for (int i = 0; i < 64; i++) {
        Socket s = new Socket();
        fill.add(s);
        try {
          s.connect(new InetSocketAddress("127.0.0.1", port), 300);
        } catch (SocketTimeoutException e) {
          break; // the queue is full
        }
      }
      agent.setWorkers(1);
      agent.setOption(Option.CONNECT_TIMEOUT, 200);
      agent.start();
      long id = agent.connect("127.0.0.1", port);
      return rec.await(Recorder.is("CLOSE", id), "the agent's CLOSE");
    } finally {
      for (Socket s : fill) {
        try {
          s.close();
        } catch (IOException ignored) {
          // closing
        }
      }
    }
  }
}

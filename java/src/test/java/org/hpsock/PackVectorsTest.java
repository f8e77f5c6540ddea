package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.OutputStream;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * tests/fixtures/pack/vectors.txt through a real socket: a pack-model server with the vector's
 * flag and max receives the input from a plain socket; the frames it delivers and the error its
 * CLOSE carries must be the vector's. (The decoder's pending bytes are not observable here.)
 * Each input is sent whole, and byte by byte when short.
 */
class PackVectorsTest {
  static final class Vector {
    final String name;
    final int flag;
    final int max;
    final byte[] input;
    final List<String> frames = new ArrayList<>();
    final String error;

    Vector(String line) {
      String[] f = line.split("\\|", -1);
      if (f.length != 6) {
        throw new IllegalArgumentException("not 6 fields: " + line);
      }
      name = f[0].trim();
      String[] cfg = f[1].trim().split("\\s+");
      flag = Integer.parseInt(strip(cfg[0], "flag="));
      max = Integer.parseInt(strip(cfg[1], "max="));
      input = TestSupport.hex(f[2]);
      String fr = strip(f[3].trim(), "frames=");
      if (!fr.equals("-")) {
        for (String x : fr.split(",")) {
          frames.add(x.replaceAll("\\s+", ""));
        }
      }
      error = strip(f[4].trim(), "error=");
      if (!Set.of("NONE", "EPACKFLAG", "EPACKSIZE", "EPACKEMPTY").contains(error)) {
        throw new IllegalArgumentException(name + ": unknown error " + error);
      }
      strip(f[5].trim(), "pending=");
    }

    static String strip(String s, String prefix) {
      if (!s.startsWith(prefix)) {
        throw new IllegalArgumentException("expected " + prefix + " in '" + s + "'");
      }
      return s.substring(prefix.length()).trim();
    }

    @Override
    public String toString() {
      return name;
    }
  }

  static List<Vector> vectors() throws Exception {
    List<Vector> out = new ArrayList<>();
    for (String l : TestSupport.lines("pack/vectors.txt")) {
      out.add(new Vector(l));
    }
    return out;
  }

  static Stream<Arguments> cases() throws Exception {
    List<Arguments> out = new ArrayList<>();
    for (Vector v : vectors()) {
      out.add(Arguments.of(v, "whole"));
      if (v.input.length <= 64) {
        out.add(Arguments.of(v, "bytewise"));
      }
    }
    return out.stream();
  }

  @Test
  void fixtureHasVectors() throws Exception {
    assertTrue(vectors().size() >= 20, "pack/vectors.txt has too few vectors");
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("cases")
  void decode(Vector v, String how) throws Exception {
    Recorder rec = new Recorder();
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.setReceiveModel(ReceiveModel.PACK);
      server.setOption(Option.PACK_FLAG, v.flag);
      server.setOption(Option.PACK_MAX, v.max);
      server.start("127.0.0.1", 0);
      try (Socket s = TestSupport.connect(server)) {
        Recorder.Ev acc = rec.await(Recorder.is("HANDSHAKE"), "HANDSHAKE");
        OutputStream out = s.getOutputStream();
        try {
          if (how.equals("whole")) {
            out.write(v.input);
          } else {
            for (byte b : v.input) {
              out.write(b);
              out.flush();
            }
          }
          out.flush();
        } catch (java.io.IOException e) {
          // the server may close on a bad header while the rest is still being written
          if (v.error.equals("NONE")) {
            throw e;
          }
        }
        if (v.error.equals("NONE")) {
          rec.await(e -> rec.events(Recorder.is("RECEIVE", acc.conn)).size() >= v.frames.size(),
              v.frames.size() + " frames");
          s.shutdownOutput(); // a normal close by the peer
        }
        Recorder.Ev close = rec.await(Recorder.is("CLOSE", acc.conn), "CLOSE");
        List<String> got = new ArrayList<>();
        for (Recorder.Ev e : rec.events(Recorder.is("RECEIVE", acc.conn))) {
          got.add(TestSupport.hex(e.data));
        }
        assertEquals(v.frames, got, "frames delivered");
        assertEquals(Operation.RECEIVE, close.op, "close op");
        String want = v.error.equals("NONE") ? "0" : "HPS_" + v.error;
        assertEquals(want, close.errorName(), "close error");
      }
    }
  }
}

package org.hpsock;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BooleanSupplier;

/** Shared helpers: fixtures, waiting with a deadline, raw sockets, hex. */
final class TestSupport {
  private TestSupport() {}

  /** Every wait in the suite has this deadline (ms), generous for slow machines. */
  static final long TIMEOUT_MS = 15_000;

  static Path fixtures() {
    String dir = System.getProperty("hpsock.fixtures");
    if (dir == null) {
      throw new IllegalStateException("system property hpsock.fixtures is not set "
          + "(the CTest test java_tests sets it to tests/fixtures)");
    }
    return Paths.get(dir);
  }

  /** The meaningful lines of a fixture file: no blanks, no comments. */
  static List<String> lines(String relative) throws IOException {
    List<String> out = new ArrayList<>();
    for (String l : Files.readAllLines(fixtures().resolve(relative))) {
      String t = l.trim();
      if (!t.isEmpty() && !t.startsWith("#")) {
        out.add(t);
      }
    }
    return out;
  }

  static void await(BooleanSupplier done, String what) {
    long deadline = System.nanoTime() + TIMEOUT_MS * 1_000_000L;
    while (!done.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out after " + TIMEOUT_MS + " ms waiting for " + what);
      }
      try {
        Thread.sleep(2);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError("interrupted waiting for " + what);
      }
    }
  }

  static byte[] hex(String s) {
    s = s.replaceAll("\\s+", "");
    if (s.equals("-")) {
      return new byte[0];
    }
    if (s.length() % 2 != 0) {
      throw new IllegalArgumentException("odd hex length: " + s);
    }
    byte[] out = new byte[s.length() / 2];
    for (int i = 0; i < out.length; i++) {
      out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
    }
    return out;
  }

  static String hex(byte[] b) {
    StringBuilder sb = new StringBuilder();
    for (byte x : b) {
      sb.append(String.format("%02x", x & 0xff));
    }
    return sb.toString();
  }

  /** A plain blocking socket connected to the server, with a read timeout. */
  static Socket connect(TcpServer server) throws IOException {
    Socket s = new Socket();
    s.setTcpNoDelay(true);
    s.setSoTimeout((int) TIMEOUT_MS);
    s.connect(new InetSocketAddress("127.0.0.1", server.port()), (int) TIMEOUT_MS);
    return s;
  }

  /** Reads exactly n bytes. */
  static byte[] readFully(Socket s, int n) throws IOException {
    byte[] b = new byte[n];
    int got = 0;
    while (got < n) {
      int r = s.getInputStream().read(b, got, n - got);
      if (r < 0) {
        throw new IOException("closed after " + got + " of " + n + " bytes");
      }
      got += r;
    }
    return b;
  }

  /** A server on 127.0.0.1, port 0, with the given loops, started. */
  static TcpServer server(Listener l, int workers) {
    TcpServer s = new TcpServer(l);
    s.setWorkers(workers);
    return s;
  }

  /** HP-Socket pack header: 4 bytes little-endian, (flag << 22) | length. */
  static byte[] packHeader(int flag, int len) {
    int h = (flag << 22) | len;
    return new byte[] {(byte) h, (byte) (h >>> 8), (byte) (h >>> 16), (byte) (h >>> 24)};
  }
}

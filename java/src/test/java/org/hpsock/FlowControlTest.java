package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.Test;

/**
 * Back-pressure (issue 19): water-mark events, unsent bytes, and automatic pausing, so that an
 * echo server configured like examples/java/EchoServer.java never drops a client however it
 * reads.
 */
class FlowControlTest {
  /** A byte stream every client can check at any offset: a prime period, so blocks differ. */
  static final int PERIOD = 65521;

  static final byte[] PATTERN = new byte[PERIOD + (1 << 20)];

  static {
    for (int i = 0; i < PATTERN.length; i++) {
      int k = i % PERIOD;
      PATTERN[i] = (byte) (k * 31 + (k >>> 8) * 7 + 1);
    }
  }

  /** Offset into PATTERN of client c's byte at stream offset i. */
  static int at(int c, long i) {
    return (int) ((i + c * 977L) % PERIOD);
  }

  /** The echo of examples/java/EchoServer.java, with the server's closes and highs recorded. */
  static final class Echo implements Listener {
    final List<String> closes = new CopyOnWriteArrayList<>();
    final List<Long> highs = new CopyOnWriteArrayList<>();

    @Override
    public HandleResult onHighWater(TcpEndpoint ep, long connId, long unsent) {
      highs.add(unsent);
      return HandleResult.OK;
    }

    @Override
    public HandleResult onReceive(TcpEndpoint ep, long connId, ByteBuffer data) {
      ep.send(connId, data);
      return HandleResult.OK;
    }

    @Override
    public HandleResult onClose(TcpEndpoint ep, long connId, Operation op, int error) {
      closes.add(Long.toHexString(connId) + " " + op + " "
          + (error == 0 ? "0" : Hpsock.errorName(error)));
      return HandleResult.OK;
    }
  }

  /** A client socket with small kernel buffers, so a few MiB are more than the path holds. */
  static Socket smallSocket(TcpServer server) throws IOException {
    Socket s = new Socket();
    s.setReceiveBufferSize(64 << 10);
    s.setSendBufferSize(64 << 10);
    s.setSoTimeout((int) TestSupport.TIMEOUT_MS);
    s.connect(new java.net.InetSocketAddress("127.0.0.1", server.port()),
        (int) TestSupport.TIMEOUT_MS);
    return s;
  }

  /** As the example configures it: push model, 2 loops, automatic pausing. */
  static TcpServer echoServer(Listener l) {
    TcpServer s = new TcpServer(l);
    s.setWorkers(2);
    s.setAutoPause(true);
    s.start("127.0.0.1", 0);
    return s;
  }

  @Test
  void waterMarkEventsComeForAClientThatDoesNotReadThenClearWhenItReads() throws Exception {
    Recorder rec = new Recorder();
    try (TcpServer server = TestSupport.server(rec, 1)) {
      server.setSendWaterMarks(64 << 10, 16 << 10);
      server.setOption(Option.SNDBUF, 64 << 10);
      server.start("127.0.0.1", 0);
      try (Socket peer = smallSocket(server)) {
        long id = rec.await(Recorder.is("HANDSHAKE"), "HANDSHAKE").conn;
        byte[] big = new byte[8 << 20]; // far more than the socket buffers on the way hold
        System.arraycopy(PATTERN, 0, big, 0, PERIOD);
        for (int i = PERIOD; i < big.length; i++) {
          big[i] = big[i - PERIOD];
        }
        server.send(id, big);
        Recorder.Ev high = rec.await(Recorder.is("HIGH_WATER", id), "HIGH_WATER");
        assertTrue(high.n > 64 << 10, "HIGH_WATER says the unsent bytes, above high water: " + high);
        assertTrue(server.unsent(id) > 16 << 10, "still unsent: " + server.unsent(id));
        assertTrue(rec.events(Recorder.is("LOW_WATER", id)).isEmpty(),
            "no LOW_WATER while the client has not read: " + rec.events());
        assertArrayEquals(big, TestSupport.readFully(peer, big.length), "the bytes, in order");
        Recorder.Ev low = rec.await(Recorder.is("LOW_WATER", id), "LOW_WATER");
        assertTrue(low.n <= 16 << 10, "LOW_WATER at or below low water: " + low);
        List<String> order = new ArrayList<>();
        for (Recorder.Ev e : rec.events(e -> e.conn == id && e.type.endsWith("_WATER"))) {
          order.add(e.type);
        }
        assertEquals(List.of("HIGH_WATER", "LOW_WATER"), order, "one crossing each way");
        assertEquals(0, server.unsent(id));
      }
    }
  }

  @Test
  void autoPauseHoldsANonReadingClientBoundedAndDropsNothing() throws Exception {
    Echo echo = new Echo();
    try (TcpServer server = echoServer(echo); Socket peer = smallSocket(server)) {
      TestSupport.await(() -> server.connectionCount() == 1, "the connection");
      long id = server.connectionIds()[0];
      long high = server.getOption(Option.SEND_HIGH_WATER);
      AtomicLong written = new AtomicLong();
      Thread writer = new Thread(() -> {
        try {
          OutputStream out = peer.getOutputStream();
          for (long i = 0; ; i += 16384) { // until the socket is closed under it
            out.write(PATTERN, at(0, i), 16384);
            written.addAndGet(16384);
          }
        } catch (IOException expected) {
          // the test closes the socket
        }
      }, "non-reading writer");
      writer.setDaemon(true);
      writer.start();
      TestSupport.await(() -> server.counter(Counter.AUTO_PAUSES) >= 1, "an automatic pause");
      // the pause is at once; its event comes where no handler of the connection runs
      TestSupport.await(() -> !echo.highs.isEmpty(), "HIGH_WATER");
      assertTrue(echo.highs.get(0) > high, "HIGH_WATER above high water: " + echo.highs);
      // a negative check needs a window: nothing may grow or close within it
      long before = written.get();
      Thread.sleep(300);
      long unsent = server.unsent(id);
      assertTrue(unsent <= high + (2 << 20), "unsent " + unsent + " held near high water " + high);
      assertEquals(List.of(), echo.closes, "closes while paused");
      assertTrue(written.get() - before < (16 << 20),
          "the client is held back by TCP, not queued for: " + (written.get() - before));
      // now it reads: every byte it wrote comes back, in order
      InputStream in = peer.getInputStream();
      byte[] buf = new byte[1 << 16];
      long got = 0;
      while (writer.isAlive() && got < written.get() + (1 << 20)) {
        int n = in.read(buf);
        assertTrue(n > 0, "closed after " + got + " bytes");
        for (int k = 0; k < n; k++, got++) {
          if (buf[k] != PATTERN[at(0, got)]) {
            throw new AssertionError("byte " + got + " differs");
          }
        }
        if (got > (24 << 20)) {
          break; // far past every bound: enough
        }
      }
      assertTrue(got > high, "echo resumed after the pause: " + got);
      assertEquals(List.of(), echo.closes, "closes");
    }
  }

  /**
   * A slow reader's stall: until its writer is {@code LAG} bytes ahead (more than every socket
   * buffer on the way plus the default send queue), or has made no progress for 50 ms (the server
   * paused it), or the writing time is over.
   */
  static void lag(AtomicLong progress, long got, long end) {
    final long lag = 48L << 20;
    long last = progress.get();
    long still = System.nanoTime();
    while (progress.get() - got < lag && System.nanoTime() < end) {
      LockSupport.parkNanos(1_000_000);
      long p = progress.get();
      if (p != last) {
        last = p;
        still = System.nanoTime();
      } else if (System.nanoTime() - still > 50_000_000L) {
        return;
      }
    }
  }

  @Test
  void autoPausedEchoServesEightStreamingClientsWithoutADrop() throws Exception {
    final int clients = 8;
    final int block = 16 << 10;
    final long runNanos = TimeUnit.SECONDS.toNanos(3);
    Echo echo = new Echo();
    try (TcpServer server = echoServer(echo)) {
      Socket[] socks = new Socket[clients];
      AtomicLong[] progress = new AtomicLong[clients]; // bytes written so far
      boolean[] done = new boolean[clients];
      long[] read = new long[clients];
      String[] failure = new String[clients];
      Thread[] threads = new Thread[2 * clients];
      for (int c = 0; c < clients; c++) {
        socks[c] = TestSupport.connect(server);
        progress[c] = new AtomicLong();
      }
      long end = System.nanoTime() + runNanos;
      for (int c = 0; c < clients; c++) {
        final int cc = c;
        final Socket s = socks[c];
        threads[2 * c] = new Thread(() -> {
          try {
            OutputStream out = s.getOutputStream();
            while (System.nanoTime() < end) {
              out.write(PATTERN, at(cc, progress[cc].get()), block);
              progress[cc].addAndGet(block);
            }
          } catch (IOException e) {
            failure[cc] = "write: " + e;
          }
          synchronized (done) {
            done[cc] = true;
          }
        }, "writer-" + c);
        threads[2 * c + 1] = new Thread(() -> {
          // Odd clients are slow readers: every 8 MiB they let their writer run ahead (see
          // lag), the load that made connections drop (HPS_ESENDQ) before automatic pausing.
          boolean slow = cc % 2 == 1;
          byte[] buf = new byte[block];
          long got = 0;
          try {
            InputStream in = s.getInputStream();
            while (true) {
              // Block in read only for bytes already written: their echo must come.
              if (got == progress[cc].get()) {
                boolean over;
                synchronized (done) {
                  over = done[cc];
                }
                if (over && got == progress[cc].get()) {
                  break;
                }
                LockSupport.parkNanos(100_000);
                continue;
              }
              int n = in.read(buf, 0, (int) Math.min(buf.length, progress[cc].get() - got));
              if (n < 0) {
                failure[cc] = "closed by the server after " + got + " bytes";
                break;
              }
              for (int k = 0; k < n; k++, got++) {
                if (buf[k] != PATTERN[at(cc, got)]) {
                  throw new IOException("byte " + got + " differs");
                }
              }
              if (slow && (got >>> 23) != ((got - n) >>> 23)) {
                lag(progress[cc], got, end);
              }
            }
          } catch (IOException e) {
            failure[cc] = "read: " + e;
          }
          read[cc] = got;
        }, "reader-" + c);
      }
      for (Thread t : threads) {
        t.start();
      }
      for (Thread t : threads) {
        t.join(TestSupport.TIMEOUT_MS + runNanos / 1_000_000);
        assertTrue(!t.isAlive(), t.getName() + " did not finish");
      }
      assertEquals(clients, server.connectionCount(), "every client still connected; server closes: "
          + echo.closes);
      for (int c = 0; c < clients; c++) {
        assertEquals(null, failure[c], "client " + c);
        assertTrue(progress[c].get() > 0, "client " + c + " wrote");
        assertEquals(progress[c].get(), read[c], "client " + c + ": every byte echoed and checked");
        socks[c].close();
      }
      TestSupport.await(() -> echo.closes.size() == clients, "the server sees every close");
      for (String close : echo.closes) {
        assertTrue(close.endsWith(" 0"), "a normal close by the client: " + close);
      }
    }
  }
}

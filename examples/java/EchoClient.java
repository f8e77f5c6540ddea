/*
 * EchoClient - an hpsock client that sends messages to an echo server and
 * checks every byte that comes back.
 *
 *   java -cp hpsock.jar:examples EchoClient [--host H] --port P [--size B]
 *                                            [--count N] [--mode push|pack]
 *
 * Sends --count messages of --size bytes one after another (the next after
 * the previous came back), prints the round trips per second and exits 0,
 * or exits 1 on a mismatch, a close or a 10 s stall.
 */
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.hpsock.HandleResult;
import org.hpsock.Hpsock;
import org.hpsock.Listener;
import org.hpsock.Operation;
import org.hpsock.ReceiveModel;
import org.hpsock.TcpClient;
import org.hpsock.TcpEndpoint;

public final class EchoClient {
  private EchoClient() {}

  /** Collects echoed bytes; completes the current round when all came back. */
  static final class Rounds implements Listener {
    final CompletableFuture<Void> connected = new CompletableFuture<>();
    volatile CompletableFuture<byte[]> round = new CompletableFuture<>();
    volatile String closed;
    private byte[] got = new byte[0];
    private int have;

    void expect(int size) {
      got = new byte[size];
      have = 0;
      round = new CompletableFuture<>();
    }

    @Override
    public HandleResult onConnect(TcpEndpoint ep, long connId) {
      connected.complete(null);
      return HandleResult.OK;
    }

    @Override
    public HandleResult onReceive(TcpEndpoint ep, long connId, ByteBuffer data) {
      int n = Math.min(data.remaining(), got.length - have);
      data.get(got, have, n);
      have += n;
      if (have == got.length) {
        round.complete(got);
      }
      return HandleResult.OK;
    }

    @Override
    public HandleResult onClose(TcpEndpoint ep, long connId, Operation op, int error) {
      closed = op + " " + (error == 0 ? "0" : Hpsock.errorName(error));
      connected.completeExceptionally(new IllegalStateException("closed: " + closed));
      round.completeExceptionally(new IllegalStateException("closed: " + closed));
      return HandleResult.OK;
    }
  }

  public static void main(String[] args) throws Exception {
    String host = "127.0.0.1";
    int port = -1;
    int size = 64;
    int count = 1000;
    ReceiveModel model = ReceiveModel.PUSH;
    for (int i = 0; i + 1 < args.length; i += 2) {
      String v = args[i + 1];
      switch (args[i]) {
        case "--host": host = v; break;
        case "--port": port = Integer.parseInt(v); break;
        case "--size": size = Integer.parseInt(v); break;
        case "--count": count = Integer.parseInt(v); break;
        case "--mode": model = v.equals("pack") ? ReceiveModel.PACK : ReceiveModel.PUSH; break;
        default: port = -1; i = args.length;
      }
    }
    if (port <= 0 || size <= 0 || count <= 0 || args.length % 2 != 0) {
      System.err.println("usage: EchoClient [--host H] --port P [--size B] [--count N]"
          + " [--mode push|pack]");
      System.exit(64);
    }
    Rounds rounds = new Rounds();
    try (TcpClient client = new TcpClient(rounds)) {
      client.setReceiveModel(model);
      client.start(host, port);
      rounds.connected.get(10, TimeUnit.SECONDS);
      byte[] msg = new byte[size];
      long t0 = System.nanoTime();
      for (int r = 0; r < count; r++) {
        for (int j = 0; j < size; j++) {
          msg[j] = (byte) (r * 13 + j);
        }
        rounds.expect(size);
        client.send(msg);
        byte[] back = rounds.round.get(10, TimeUnit.SECONDS);
        if (!Arrays.equals(back, msg)) {
          System.err.println("EchoClient: round " + r + ": echo differs");
          System.exit(1);
        }
      }
      double s = (System.nanoTime() - t0) / 1e9;
      System.out.printf("ok: %d round trips of %d bytes in %.3f s (%.0f/s)%n",
          count, size, s, count / s);
    }
  }
}

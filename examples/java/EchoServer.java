/*
 * EchoServer - the hpsock echo server in Java: every byte received is sent back.
 *
 *   java -cp hpsock.jar:examples EchoServer [--host H] [--port P] [--workers N]
 *                                            [--mode push|pack] [--flag F] [--max-pack B]
 *
 * Same command line as the C echo server (examples/echo_server.c). Prints
 * "listening on HOST:PORT" once ready (port 0 picks a free port) and runs
 * until SIGINT or SIGTERM. In pack mode every frame is echoed as one frame.
 * Reading pauses automatically while a client's echo waits unsent, so a
 * client that does not read is slowed down, never dropped.
 */
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.util.concurrent.CountDownLatch;
import org.hpsock.HandleResult;
import org.hpsock.Listener;
import org.hpsock.Option;
import org.hpsock.ReceiveModel;
import org.hpsock.TcpEndpoint;
import org.hpsock.TcpServer;

public final class EchoServer {
  private EchoServer() {}

  /** Echo: the event's buffer is direct, so the send reads it in place. */
  static final class Echo implements Listener {
    @Override
    public HandleResult onReceive(TcpEndpoint ep, long connId, ByteBuffer data) {
      ep.send(connId, data);
      return HandleResult.OK;
    }
  }

  static void usage() {
    System.err.println("usage: EchoServer [--host H] [--port P] [--workers N]"
        + " [--mode push|pack] [--flag F] [--max-pack B]");
    System.exit(64);
  }

  public static void main(String[] args) throws InterruptedException {
    String host = "127.0.0.1";
    int port = 0;
    int workers = 0;
    ReceiveModel model = ReceiveModel.PUSH;
    long flag = 0;
    long maxPack = 0;
    for (int i = 0; i < args.length; i += 2) {
      if (i + 1 >= args.length) {
        usage();
      }
      String v = args[i + 1];
      switch (args[i]) {
        case "--host": host = v; break;
        case "--port": port = Integer.parseInt(v); break;
        case "--workers": workers = Integer.parseInt(v); break;
        case "--mode":
          if (!v.equals("push") && !v.equals("pack")) {
            usage();
          }
          model = v.equals("pack") ? ReceiveModel.PACK : ReceiveModel.PUSH;
          break;
        case "--flag": flag = Long.parseLong(v); break;
        case "--max-pack": maxPack = Long.parseLong(v); break;
        default: usage();
      }
    }
    if (port < 0 || port > 65535) {
      usage();
    }

    TcpServer server = new TcpServer(new Echo()); // asks only for RECEIVE events
    if (workers > 0) {
      server.setWorkers(workers);
    }
    server.setReceiveModel(model);
    // A client that reads slower than it writes would make the echo queue without bound (and
    // the send fail with HPS_ESENDQ); with this the engine stops reading from it while its
    // unsent bytes are above the high water mark, and TCP slows the client down instead.
    server.setAutoPause(true);
    if (model == ReceiveModel.PACK) {
      server.setOption(Option.PACK_FLAG, flag);
      if (maxPack > 0) {
        server.setOption(Option.PACK_MAX, maxPack);
      }
    }
    server.start(host, port);
    InetSocketAddress a = server.listenAddress();
    System.out.println("listening on " + a.getAddress().getHostAddress() + ":" + a.getPort());
    System.out.flush();

    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      server.close();
      done.countDown();
    }));
    done.await();
  }
}

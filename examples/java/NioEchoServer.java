/*
 * NioEchoServer - a plain java.nio echo server, the baseline the hpsock
 * Java echo server is measured against (examples/perf/compare.py).
 *
 *   java -cp examples NioEchoServer [--host H] [--port P] [--workers N]
 *
 * Same command line and ready line as EchoServer. Built to be as fast as
 * plain NIO honestly gets: one Selector per worker thread, each with its own
 * SO_REUSEPORT listening socket (so the kernel spreads connections and no
 * thread hands sockets to another), select(Consumer) (no selected-key set),
 * one direct buffer per worker, TCP_NODELAY, and the read bytes written back
 * at once; only what the socket does not take is copied aside and finished
 * when the socket is writable again (reading pauses meanwhile).
 */
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardSocketOptions;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

public final class NioEchoServer {
  private NioEchoServer() {}

  static final class Worker implements Runnable, Consumer<SelectionKey> {
    final Selector selector;
    final ServerSocketChannel listener;
    final ByteBuffer buf = ByteBuffer.allocateDirect(64 * 1024);
    volatile boolean running = true;

    Worker(ServerSocketChannel listener) throws IOException {
      this.selector = Selector.open();
      this.listener = listener;
      listener.configureBlocking(false);
      listener.register(selector, SelectionKey.OP_ACCEPT);
    }

    @Override
    public void run() {
      try {
        while (running) {
          selector.select(this);
        }
      } catch (IOException e) {
        e.printStackTrace();
      }
    }

    @Override
    public void accept(SelectionKey key) {
      try {
        if (key.isAcceptable()) {
          SocketChannel ch;
          while ((ch = listener.accept()) != null) {
            ch.configureBlocking(false);
            ch.setOption(StandardSocketOptions.TCP_NODELAY, true);
            ch.register(selector, SelectionKey.OP_READ);
          }
          return;
        }
        SocketChannel ch = (SocketChannel) key.channel();
        if (key.isWritable()) {
          ByteBuffer pending = (ByteBuffer) key.attachment();
          ch.write(pending);
          if (pending.hasRemaining()) {
            return;
          }
          key.attach(null);
          key.interestOps(SelectionKey.OP_READ);
        }
        if (key.isReadable()) {
          buf.clear();
          int n = ch.read(buf);
          if (n < 0) {
            close(key);
            return;
          }
          if (n == 0) {
            return;
          }
          buf.flip();
          ch.write(buf);
          if (buf.hasRemaining()) { // the socket is full: keep the rest, stop reading
            ByteBuffer pending = ByteBuffer.allocate(buf.remaining());
            pending.put(buf).flip();
            key.attach(pending);
            key.interestOps(SelectionKey.OP_WRITE);
          }
        }
      } catch (IOException e) {
        close(key);
      }
    }

    static void close(SelectionKey key) {
      key.cancel();
      try {
        key.channel().close();
      } catch (IOException ignored) {
        // closing anyway
      }
    }
  }

  static void usage() {
    System.err.println("usage: NioEchoServer [--host H] [--port P] [--workers N]");
    System.exit(64);
  }

  public static void main(String[] args) throws Exception {
    String host = "127.0.0.1";
    int port = 0;
    int workers = Runtime.getRuntime().availableProcessors();
    for (int i = 0; i < args.length; i += 2) {
      if (i + 1 >= args.length) {
        usage();
      }
      String v = args[i + 1];
      switch (args[i]) {
        case "--host": host = v; break;
        case "--port": port = Integer.parseInt(v); break;
        case "--workers": workers = Integer.parseInt(v); break;
        default: usage();
      }
    }
    if (workers <= 0) {
      workers = Runtime.getRuntime().availableProcessors();
    }
    List<Worker> list = new ArrayList<>();
    InetSocketAddress bound = null;
    for (int i = 0; i < workers; i++) {
      ServerSocketChannel ss = ServerSocketChannel.open();
      ss.setOption(StandardSocketOptions.SO_REUSEADDR, true);
      if (workers > 1) {
        ss.setOption(StandardSocketOptions.SO_REUSEPORT, true);
      }
      // port 0: every other listener shares the port the kernel picked
      ss.bind(bound == null ? new InetSocketAddress(host, port) : bound, 1024);
      if (bound == null) {
        bound = (InetSocketAddress) ss.getLocalAddress();
      }
      list.add(new Worker(ss));
    }
    List<Thread> threads = new ArrayList<>();
    for (int i = 0; i < list.size(); i++) {
      Thread t = new Thread(list.get(i), "nio-echo-" + i);
      t.start();
      threads.add(t);
    }
    System.out.println(
        "listening on " + bound.getAddress().getHostAddress() + ":" + bound.getPort());
    System.out.flush();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      for (Worker w : list) {
        w.running = false;
        w.selector.wakeup();
      }
    }));
    for (Thread t : threads) {
      t.join();
    }
  }
}

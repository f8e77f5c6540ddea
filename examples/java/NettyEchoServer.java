/*
 * NettyEchoServer - a Netty 4 echo server (Debian's libnetty-java), a second
 * baseline for the hpsock Java echo server.
 *
 *   java -cp examples:/usr/share/java/netty-all.jar NettyEchoServer
 *        [--host H] [--port P] [--workers N]
 *
 * Same command line and ready line as EchoServer. NIO transport (Debian
 * ships no native epoll transport for Netty), pooled direct buffers, writes
 * flushed once per read batch, TCP_NODELAY; --workers event-loop threads
 * serve the connections and one more thread accepts.
 */
import io.netty.bootstrap.ServerBootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandler.Sharable;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.nio.NioEventLoopGroup;
import io.netty.channel.socket.SocketChannel;
import io.netty.channel.socket.nio.NioServerSocketChannel;
import java.net.InetSocketAddress;

public final class NettyEchoServer {
  private NettyEchoServer() {}

  @Sharable
  static final class Echo extends ChannelInboundHandlerAdapter {
    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      ctx.write(msg, ctx.voidPromise());
    }

    @Override
    public void channelReadComplete(ChannelHandlerContext ctx) {
      ctx.flush();
    }

    @Override
    public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
      ctx.close();
    }
  }

  static void usage() {
    System.err.println("usage: NettyEchoServer [--host H] [--port P] [--workers N]");
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
    EventLoopGroup boss = new NioEventLoopGroup(1);
    EventLoopGroup group = new NioEventLoopGroup(workers > 0 ? workers : 0);
    Echo echo = new Echo();
    ServerBootstrap b = new ServerBootstrap()
        .group(boss, group)
        .channel(NioServerSocketChannel.class)
        .option(ChannelOption.SO_BACKLOG, 1024)
        .childOption(ChannelOption.TCP_NODELAY, true)
        .childHandler(new ChannelInitializer<SocketChannel>() {
          @Override
          protected void initChannel(SocketChannel ch) {
            ch.pipeline().addLast(echo);
          }
        });
    Channel ch = b.bind(host, port).sync().channel();
    InetSocketAddress a = (InetSocketAddress) ch.localAddress();
    System.out.println("listening on " + a.getAddress().getHostAddress() + ":" + a.getPort());
    System.out.flush();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      ch.close().syncUninterruptibly();
      boss.shutdownGracefully();
      group.shutdownGracefully();
    }));
    ch.closeFuture().sync();
  }
}

package org.hpsock.consumer;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.hpsock.HandleResult;
import org.hpsock.Hpsock;
import org.hpsock.Listener;
import org.hpsock.TcpClient;
import org.hpsock.TcpEndpoint;
import org.hpsock.TcpServer;

/** Echoes one message through an hpsock server and client; prints "consumer ok VERSION". */
public final class Main {
  private Main() {}

  public static void main(String[] args) throws Exception {
    CompletableFuture<Void> connected = new CompletableFuture<>();
    CompletableFuture<String> echoed = new CompletableFuture<>();
    try (TcpServer server = new TcpServer(new Listener() {
          @Override
          public HandleResult onReceive(TcpEndpoint ep, long id, ByteBuffer data) {
            ep.send(id, data);
            return HandleResult.OK;
          }
        });
        TcpClient client = new TcpClient(new Listener() {
          @Override
          public HandleResult onConnect(TcpEndpoint ep, long id) {
            connected.complete(null);
            return HandleResult.OK;
          }

          @Override
          public HandleResult onReceive(TcpEndpoint ep, long id, ByteBuffer data) {
            echoed.complete(StandardCharsets.UTF_8.decode(data).toString());
            return HandleResult.OK;
          }
        })) {
      server.setWorkers(1);
      server.start("127.0.0.1", 0);
      client.start("127.0.0.1", server.port());
      connected.get(10, TimeUnit.SECONDS);
      client.send("hello from maven".getBytes(StandardCharsets.UTF_8));
      String back = echoed.get(10, TimeUnit.SECONDS);
      if (!back.equals("hello from maven")) {
        throw new AssertionError("echo differs: " + back);
      }
    }
    System.out.println("consumer ok " + Hpsock.version());
  }
}

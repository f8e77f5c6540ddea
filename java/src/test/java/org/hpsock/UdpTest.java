package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.DatagramPacket;
import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The UDP roles: server/client echo, node sendTo with the sender's address, cast over loopback
 * multicast, oversize refusal and reporting, idle detection. */
class UdpTest {
  /** One datagram or error seen by a listener. */
  static final class Got {
    final String kind;
    final byte[] data;
    final InetSocketAddress address;
    final int error;

    Got(String kind, byte[] data, InetSocketAddress address, int error) {
      this.kind = kind;
      this.data = data;
      this.address = address;
      this.error = error;
    }
  }

  /** Records receives (with the sender where there is one), errors and closes. */
  static class Rec implements Listener {
    final List<Got> got = new ArrayList<>();
    final boolean echo;

    Rec(boolean echo) {
      this.echo = echo;
    }

    void add(Got g) {
      synchronized (got) {
        got.add(g);
        got.notifyAll();
      }
    }

    @Override
    public HandleResult onReceive(TcpEndpoint ep, long conn, ByteBuffer data) {
      byte[] b = Recorder.bytes(data);
      add(new Got("receive", b, null, 0));
      if (echo) {
        ep.send(conn, b);
      }
      return HandleResult.OK;
    }

    @Override
    public HandleResult onReceiveFrom(
        TcpEndpoint ep, long conn, ByteBuffer data, InetSocketAddress from) {
      byte[] b = Recorder.bytes(data);
      add(new Got("receive", b, from, 0));
      if (echo) {
        ((UdpNode) ep).sendTo(from.getHostString(), from.getPort(), b);
      }
      return HandleResult.OK;
    }

    @Override
    public HandleResult onDatagramError(
        TcpEndpoint ep, long conn, Operation op, int error, InetSocketAddress address) {
      add(new Got("error", null, address, error));
      return HandleResult.OK;
    }

    @Override
    public HandleResult onClose(TcpEndpoint ep, long conn, Operation op, int error) {
      add(new Got("close", null, null, error));
      return HandleResult.OK;
    }

    List<Got> await(String kind, int n) throws InterruptedException {
      long end = System.currentTimeMillis() + TestSupport.TIMEOUT_MS;
      synchronized (got) {
        for (;;) {
          List<Got> out = new ArrayList<>();
          for (Got g : got) {
            if (g.kind.equals(kind)) {
              out.add(g);
            }
          }
          if (out.size() >= n) {
            return out;
          }
          long left = end - System.currentTimeMillis();
          if (left <= 0) {
            throw new AssertionError("no " + n + " " + kind + " events in time");
          }
          got.wait(left);
        }
      }
    }
  }

  static byte[] b(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void serverAndClientEcho() throws Exception {
    Rec srec = new Rec(true);
    Rec crec = new Rec(false);
    try (UdpServer server = new UdpServer(srec);
        UdpClient client = new UdpClient(crec)) {
      server.setWorkers(2);
      server.start("127.0.0.1", 0);
      client.start("127.0.0.1", server.port());
      client.send(b("ping"));
      client.sendv(0, b("ab"), b("cd")); // one datagram
      List<Got> got = crec.await("receive", 2);
      assertArrayEquals(b("ping"), got.get(0).data);
      assertArrayEquals(b("abcd"), got.get(1).data);
      assertEquals(1, server.connectionCount());
      long id = server.connectionIds()[0];
      assertEquals(client.localAddress(0), server.remoteAddress(id));
    }
  }

  @Test
  void nodeSendToCarriesTheSenderAddress() throws Exception {
    Rec arec = new Rec(false);
    Rec brec = new Rec(true);
    try (UdpNode a = new UdpNode(arec);
        UdpNode b = new UdpNode(brec)) {
      a.start("127.0.0.1", 0);
      b.start("127.0.0.1", 0);
      a.sendTo("127.0.0.1", b.port(), b("hello"));
      Got back = arec.await("receive", 1).get(0);
      assertArrayEquals(b("hello"), back.data);
      assertEquals(new InetSocketAddress("127.0.0.1", b.port()), back.address);
      Got there = brec.await("receive", 1).get(0);
      assertEquals(a.port(), there.address.getPort());
      HpsockException e = assertThrows(HpsockException.class, () -> a.send(0, b("x")));
      assertEquals(Hpsock.EROLE, e.code());
      e = assertThrows(HpsockException.class,
          () -> a.sendTo("no-such-host.invalid", 9, b("x")));
      assertEquals(Hpsock.EADDR, e.code());
    }
  }

  @Test
  void oversizeIsRefusedAndReported() throws Exception {
    Rec rec = new Rec(false);
    try (UdpNode node = new UdpNode(rec);
        DatagramSocket peer = new DatagramSocket(0, InetAddress.getByName("127.0.0.1"))) {
      node.setOption(Option.UDP_MAX_DATAGRAM, 16);
      node.start("127.0.0.1", 0);
      HpsockException e = assertThrows(HpsockException.class,
          () -> node.sendTo("127.0.0.1", node.port(), new byte[17]));
      assertEquals(Hpsock.EDGRAMSIZE, e.code());
      InetSocketAddress to = new InetSocketAddress("127.0.0.1", node.port());
      peer.send(new DatagramPacket(new byte[17], 17, to));
      peer.send(new DatagramPacket(new byte[16], 16, to));
      Got err = rec.await("error", 1).get(0);
      assertEquals(Hpsock.EDGRAMSIZE, err.error);
      assertEquals(peer.getLocalPort(), err.address.getPort());
      assertEquals(16, rec.await("receive", 1).get(0).data.length);
    }
  }

  @Test
  void serverClosesOversizeAndSilentPeers() throws Exception {
    Rec rec = new Rec(false);
    try (UdpServer server = new UdpServer(rec);
        DatagramSocket big = new DatagramSocket();
        DatagramSocket quiet = new DatagramSocket()) {
      server.setWorkers(1);
      server.setOption(Option.UDP_MAX_DATAGRAM, 32);
      server.setOption(Option.UDP_DETECT_INTERVAL, 100);
      server.setOption(Option.UDP_DETECT_ATTEMPTS, 2);
      server.start("127.0.0.1", 0);
      InetSocketAddress to = new InetSocketAddress("127.0.0.1", server.port());
      big.send(new DatagramPacket(new byte[33], 33, to));
      quiet.send(new DatagramPacket(new byte[1], 1, to));
      List<Got> closes = rec.await("close", 2);
      int a = closes.get(0).error;
      int c = closes.get(1).error;
      assertTrue((a == Hpsock.EDGRAMSIZE && c == Hpsock.EUDPIDLE)
          || (a == Hpsock.EUDPIDLE && c == Hpsock.EDGRAMSIZE), a + " " + c);
    }
  }

  @Test
  void castMulticastOverLoopback() throws Exception {
    Rec arec = new Rec(false);
    Rec brec = new Rec(false);
    try (UdpCast a = new UdpCast(arec);
        UdpCast b = new UdpCast(brec)) {
      a.setInterface("127.0.0.1");
      b.setInterface("127.0.0.1");
      a.start("239.255.77.3", 0);
      int port = a.listenAddress().getPort();
      b.start("239.255.77.3", port);
      a.send(b("group"));
      Got g = brec.await("receive", 1).get(0);
      assertArrayEquals(b("group"), g.data);
      assertNotNull(g.address);
      assertEquals(port, g.address.getPort());
      b.leaveGroup("239.255.77.3", "127.0.0.1");
      b.joinGroup("239.255.77.3", "127.0.0.1");
      HpsockException e = assertThrows(HpsockException.class,
          () -> b.joinGroup("127.0.0.1", null));
      assertEquals(Hpsock.EADDR, e.code());
    }
  }
}

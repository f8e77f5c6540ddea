package org.hpsock;

import static org.hpsock.TestSupport.await;
import static org.hpsock.TestSupport.fixtures;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * TLS: an echo through hpsock on both ends, a clear close error with its reason, the string
 * options and configuration errors. Certificates: tests/fixtures/tls (see gen.sh there).
 */
class TlsTest {
  private static String tls(String name) {
    return fixtures().resolve("tls").resolve(name).toString();
  }

  /** Records handshakes (with TLS facts), received bytes and closes (with the TLS reason). */
  static class TlsRecorder implements Listener {
    final boolean echo;
    final ByteArrayOutputStream received = new ByteArrayOutputStream();
    final List<String> handshakes = new ArrayList<>();
    final List<String> closes = new ArrayList<>();

    TlsRecorder(boolean echo) {
      this.echo = echo;
    }

    @Override
    public HandleResult onHandShake(TcpEndpoint ep, long connId) {
      String v = ep.tlsInfo(connId, TlsInfo.VERSION);
      String subject = ep.tlsInfo(connId, TlsInfo.PEER_SUBJECT);
      synchronized (this) {
        handshakes.add(v + "|" + subject);
      }
      return HandleResult.OK;
    }

    @Override
    public HandleResult onReceive(TcpEndpoint ep, long connId, ByteBuffer data) {
      byte[] b = new byte[data.remaining()];
      data.get(b);
      synchronized (this) {
        received.write(b, 0, b.length);
      }
      if (echo) {
        ep.send(connId, b);
      }
      return HandleResult.OK;
    }

    @Override
    public HandleResult onClose(TcpEndpoint ep, long connId, Operation op, int error) {
      String reason = error != 0 ? ep.tlsError(connId) : "";
      synchronized (this) {
        closes.add(op + "|" + error + "|" + reason);
      }
      return HandleResult.OK;
    }

    synchronized int receivedSize() {
      return received.size();
    }

    synchronized List<String> handshakes() {
      return new ArrayList<>(handshakes);
    }

    synchronized List<String> closes() {
      return new ArrayList<>(closes);
    }
  }

  private static TcpServer tlsServer(TlsRecorder rec) {
    TcpServer s = new TcpServer(rec);
    s.setWorkers(1);
    s.setTls(true);
    s.setOption(StringOption.TLS_CERT_FILE, tls("server.pem"));
    s.setOption(StringOption.TLS_KEY_FILE, tls("server.key"));
    return s;
  }

  @Test
  void echoThroughTlsServerAndClient() {
    TlsRecorder srvRec = new TlsRecorder(true);
    TlsRecorder cliRec = new TlsRecorder(false);
    try (TcpServer server = tlsServer(srvRec);
        TcpClient client = new TcpClient(cliRec)) {
      server.start("127.0.0.1", 0);
      client.setTls(true);
      client.setOption(StringOption.TLS_CA_FILE, tls("ca.pem"));
      client.setOption(StringOption.TLS_SNI, "localhost");
      client.start("127.0.0.1", server.port());
      await(() -> cliRec.handshakes().size() == 1, "the client's handshake");
      String hs = cliRec.handshakes().get(0);
      assertTrue(hs.startsWith("TLSv1."), hs);
      assertTrue(hs.contains("CN=localhost"), hs);
      byte[] payload = new byte[100_000];
      for (int i = 0; i < payload.length; i++) {
        payload[i] = (byte) (i * 31 + (i >> 8));
      }
      client.send(payload);
      await(() -> cliRec.receivedSize() >= payload.length, "the echo");
      synchronized (cliRec) {
        assertArrayEquals(payload, cliRec.received.toByteArray());
      }
      assertEquals("localhost", client.tlsInfo(0, TlsInfo.SERVER_NAME));
      // graceful: close_notify, a normal close for the server
      client.disconnect(0);
      await(() -> srvRec.closes().size() == 1, "the server's close");
      assertEquals("RECEIVE|0|", srvRec.closes().get(0));
    }
  }

  @Test
  void wrongCaIsAVerifyCloseErrorWithAReason() {
    TlsRecorder srvRec = new TlsRecorder(true);
    TlsRecorder agRec = new TlsRecorder(false);
    try (TcpServer server = tlsServer(srvRec);
        TcpAgent agent = new TcpAgent(agRec)) {
      server.start("127.0.0.1", 0);
      agent.setTls(true);
      agent.setOption(StringOption.TLS_CA_FILE, tls("wrong_ca.pem"));
      agent.start();
      agent.connect("127.0.0.1", server.port());
      await(() -> agRec.closes().size() == 1, "the agent's close");
      String c = agRec.closes().get(0);
      assertTrue(c.startsWith("CONNECT|" + Hpsock.ETLSVERIFY + "|certificate verify failed"), c);
      assertEquals("HPS_ETLSVERIFY", Hpsock.errorName(Hpsock.ETLSVERIFY));
      assertTrue(agRec.handshakes().isEmpty());
    }
  }

  @Test
  void stringOptionsAndConfigurationErrors() {
    try (TcpServer s = new TcpServer(new Listener() {})) {
      assertEquals("", s.getOption(StringOption.TLS_CIPHERS));
      s.setOption(StringOption.TLS_CIPHERS, "HIGH:!aNULL");
      assertEquals("HIGH:!aNULL", s.getOption(StringOption.TLS_CIPHERS));
      s.setOption(StringOption.TLS_CIPHERS, null);
      assertEquals("", s.getOption(StringOption.TLS_CIPHERS));
      assertEquals(TlsVerify.NONE.code(), s.getOption(Option.TLS_VERIFY));
      assertEquals(TlsVerify.V1_2, s.getOption(Option.TLS_MIN_VERSION));
      s.setTls(true);
      s.setOption(StringOption.TLS_CERT_FILE, tls("server.pem"));
      s.setOption(StringOption.TLS_KEY_FILE, tls("other.key"));
      HpsockException e = assertThrows(HpsockException.class, () -> s.start("127.0.0.1", 0));
      assertEquals(Hpsock.ETLSCONFIG, e.code());
      assertTrue(s.tlsConfigError().contains("mismatch"), s.tlsConfigError());
      s.addTlsCertificate("*.sni.test", tls("other.pem"), tls("other.key"));
      HpsockException bad = assertThrows(HpsockException.class,
          () -> s.addTlsCertificate("", tls("other.pem"), tls("other.key")));
      assertEquals(Hpsock.EINVAL, bad.code());
    }
    try (TcpAgent a = new TcpAgent(new Listener() {})) {
      assertEquals(TlsVerify.PEER.code(), a.getOption(Option.TLS_VERIFY));
      assertFalse(a.getOption(Option.TLS) != 0);
    }
  }
}

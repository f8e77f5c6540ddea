package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * A Java client and agent against the C example echo server (examples/echo_server.c), whose path
 * the CTest test passes in the system property hpsock.echoServer.
 */
class CEchoServerTest {
  static final Pattern READY = Pattern.compile("listening on (.+):(\\d+)\\s*$");

  interface Body {
    void run(String host, int port) throws Exception;
  }

  static void withServer(String mode, Body body) throws Exception {
    String path = System.getProperty("hpsock.echoServer");
    Assumptions.assumeTrue(path != null, "hpsock.echoServer not set (examples not built)");
    Process p = new ProcessBuilder(path, "--port", "0", "--workers", "2", "--mode", mode)
        .redirectError(ProcessBuilder.Redirect.INHERIT).start();
    try {
      BufferedReader r = new BufferedReader(
          new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
      String line = r.readLine();
      assertNotNull(line, "the C echo server printed nothing");
      Matcher m = READY.matcher(line);
      assertTrue(m.find(), "ready line: " + line);
      body.run(m.group(1), Integer.parseInt(m.group(2)));
    } finally {
      p.destroy();
      if (!p.waitFor(5, TimeUnit.SECONDS)) {
        p.destroyForcibly().waitFor();
      }
    }
  }

  @Test
  void javaClientAgainstCEchoServer() throws Exception {
    withServer("push", (host, port) -> {
      Recorder rec = new Recorder();
      try (TcpClient client = new TcpClient(rec)) {
        client.start(host, port);
        long id = rec.await(Recorder.is("CONNECT"), "CONNECT").conn;
        byte[] all = new byte[0];
        for (int i = 0; i < 50; i++) {
          byte[] msg = EchoScenariosTest.payload(0, i, 1000 + i);
          client.send(msg);
          byte[] grown = new byte[all.length + msg.length];
          System.arraycopy(all, 0, grown, 0, all.length);
          System.arraycopy(msg, 0, grown, all.length, msg.length);
          all = grown;
          int want = all.length;
          TestSupport.await(() -> rec.received(id).length >= want, "echo of round " + i);
        }
        assertArrayEquals(all, rec.received(id));
        client.disconnect();
        assertEquals(Operation.CLOSE, rec.await(Recorder.is("CLOSE", id), "CLOSE").op);
      }
    });
  }

  @Test
  void javaPackAgentAgainstCEchoServer() throws Exception {
    withServer("pack", (host, port) -> {
      Recorder rec = new Recorder();
      try (TcpAgent agent = new TcpAgent(rec)) {
        agent.setReceiveModel(ReceiveModel.PACK);
        agent.setWorkers(2);
        agent.start();
        long[] ids = new long[8];
        for (int c = 0; c < ids.length; c++) {
          ids[c] = agent.connect(host, port);
        }
        for (int c = 0; c < ids.length; c++) {
          rec.await(Recorder.is("CONNECT", ids[c]), "CONNECT");
          agent.send(ids[c], EchoScenariosTest.payload(c, 0, 70000));
        }
        for (int c = 0; c < ids.length; c++) {
          Recorder.Ev e = rec.await(Recorder.is("RECEIVE", ids[c]), "frame");
          assertArrayEquals(EchoScenariosTest.payload(c, 0, 70000), e.data, "frame " + c);
        }
      }
    });
  }
}

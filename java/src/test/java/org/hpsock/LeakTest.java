package org.hpsock;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.Socket;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import org.hpsock.internal.NativeJNI;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.parallel.Isolated;

/**
 * Creating and closing many endpoints leaks no JNI global refs, no native contexts and no
 * threads: loop threads are attached to the JVM once and detached when they end.
 */
@Isolated // counts every thread of the JVM
class LeakTest {
  static Set<String> liveThreads() {
    Set<String> names = new TreeSet<>();
    for (Thread t : Thread.getAllStackTraces().keySet()) {
      names.add(t.getName() + "#" + t.getId());
    }
    return names;
  }

  static void echoOnce(TcpServer server, Recorder rec) throws Exception {
    try (Socket s = TestSupport.connect(server)) {
      s.getOutputStream().write(new byte[] {42});
      assertEquals(42, TestSupport.readFully(s, 1)[0]);
    }
  }

  static final class Echo extends Recorder {
    @Override
    HandleResult react(TcpEndpoint ep, Ev ev) {
      if (ev.type.equals("RECEIVE")) {
        ep.send(ev.conn, ev.data);
      }
      return HandleResult.OK;
    }
  }

  @Test
  void thousandEndpointsLeakNoGlobalRefsOrThreads() throws Exception {
    // warm up: the library, the Cleaner thread, one full cycle
    try (TcpServer s = TestSupport.server(new Echo(), 2)) {
      s.start("127.0.0.1", 0);
      echoOnce(s, null);
    }
    long refs = NativeJNI.liveGlobalRefs();
    long contexts = NativeJNI.liveContexts();
    Set<String> before = liveThreads();
    assertEquals(0, NativeJNI.attachedThreads(), "loop threads attached before");

    Echo serverRec = new Echo();
    try (TcpServer target = TestSupport.server(serverRec, 2)) {
      target.start("127.0.0.1", 0);
      int port = target.port();
      for (int i = 0; i < 1000; i++) {
        switch (i % 4) {
          case 0: { // a server, used once in ten
            Echo rec = new Echo();
            try (TcpServer s = TestSupport.server(rec, 2)) {
              s.start("127.0.0.1", 0);
              if (i % 40 == 0) {
                echoOnce(s, rec);
              }
            }
            break;
          }
          case 1: { // an agent with a connection
            Recorder rec = new Recorder();
            try (TcpAgent a = new TcpAgent(rec)) {
              a.setWorkers(2);
              a.start();
              long id = a.connect("127.0.0.1", port);
              rec.await(Recorder.is("CONNECT", id), "CONNECT");
            }
            break;
          }
          case 2: { // a client with an echo
            Recorder rec = new Recorder();
            try (TcpClient c = new TcpClient(rec)) {
              c.start("127.0.0.1", port);
              long id = rec.await(Recorder.is("CONNECT"), "CONNECT").conn;
              c.send(new byte[] {7});
              rec.await(Recorder.is("RECEIVE", id), "echo");
              assertTrue(NativeJNI.attachedThreads() >= 1, "the client's loop thread is attached");
            }
            break;
          }
          default: { // created, never started
            try (TcpServer s = new TcpServer(new Recorder())) {
              s.setWorkers(1);
            }
          }
        }
      }
    }
    assertEquals(refs, NativeJNI.liveGlobalRefs(), "JNI global refs");
    assertEquals(contexts, NativeJNI.liveContexts(), "native endpoint contexts");
    assertEquals(0, NativeJNI.attachedThreads(), "loop threads still attached");
    // No thread was added (one of the JVM's own may have ended meanwhile, e.g. an idle
    // "process reaper" left by another test).
    Set<String> after = liveThreads();
    Set<String> added = new TreeSet<>(after);
    added.removeAll(before);
    assertEquals(Set.of(), added, "threads alive now that were not before");
    assertTrue(after.size() <= before.size(), "thread count " + before.size() + " -> " + after.size());
    for (String n : after) {
      assertTrue(!n.startsWith("hpsock-loop-"), "a loop thread lives on: " + n);
    }
  }

  @Test
  void unclosedEndpointsAreFreedByTheGarbageCollector() throws Exception {
    long contexts = NativeJNI.liveContexts();
    long refs = NativeJNI.liveGlobalRefs();
    List<TcpServer> started = new ArrayList<>();
    for (int i = 0; i < 100; i++) {
      TcpServer s = TestSupport.server(new Recorder(), 1);
      if (i % 10 == 0) {
        s.start("127.0.0.1", 0);
        started.add(s);
      }
    }
    for (TcpServer s : started) {
      s.stop(); // stopped, not closed: collectable
    }
    started.clear();
    TestSupport.await(() -> {
      System.gc();
      return NativeJNI.liveContexts() == contexts;
    }, "the Cleaner to free 100 unclosed endpoints");
    assertEquals(refs, NativeJNI.liveGlobalRefs(), "JNI global refs");
  }

  @Test
  void aRunningEndpointIsNotCollected() throws Exception {
    Echo rec = new Echo();
    TcpServer s = TestSupport.server(rec, 1);
    s.start("127.0.0.1", 0);
    int port = s.port();
    java.lang.ref.WeakReference<TcpServer> weak = new java.lang.ref.WeakReference<>(s);
    s = null;
    for (int i = 0; i < 5; i++) {
      System.gc();
      Thread.sleep(10);
    }
    TcpServer again = weak.get();
    assertTrue(again != null, "a started endpoint must stay reachable");
    try (Socket sock = new Socket("127.0.0.1", port)) {
      sock.getOutputStream().write(5);
      assertEquals(5, sock.getInputStream().read());
    }
    again.close();
  }
}

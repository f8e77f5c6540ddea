package org.hpsock;

/**
 * A TCP agent: makes many outbound connections, spread over its loop threads.
 *
 * <pre>{@code
 * try (TcpAgent agent = new TcpAgent(listener)) {
 *   agent.start();
 *   long id = agent.connect("127.0.0.1", 5555); // onConnect or onClose follows
 * }
 * }</pre>
 */
public final class TcpAgent extends TcpEndpoint {
  /**
   * An agent that is not started yet.
   *
   * @param listener receives its events
   */
  public TcpAgent(Listener listener) {
    super(ROLE_AGENT, listener);
  }

  /** Starts the loops; connect with {@link #connect(String, int)}. */
  public void start() {
    start0(null, 0);
  }

  /**
   * Opens a new connection. {@code onPrepare}, then {@code onConnect} or an {@code onClose} with
   * {@link Operation#CONNECT} follow; every ID returned gets exactly one {@code onClose}. Sending
   * before {@code onConnect} fails with {@link Hpsock#ESTATE}.
   *
   * @param host a numeric address or a name (resolved on this thread)
   * @param port 1..65535
   * @return the new connection's ID
   * @throws HpsockException e.g. {@link Hpsock#ESTATE} (not started), {@link Hpsock#EADDR},
   *     {@link Hpsock#ELIMIT}
   */
  public long connect(String host, int port) {
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("port out of range: " + port);
    }
    long[] out = new long[1];
    check(org.hpsock.internal.NativeJNI.connect(ep(), host, port, out), "connect");
    return out[0];
  }
}

package org.hpsock;

/**
 * A UDP node: connectionless. {@link #sendTo} sends to any address; {@link
 * Listener#onReceiveFrom} names each sender. One connection (ID 0) stands for the socket.
 */
public final class UdpNode extends DatagramEndpoint {
  /**
   * Create a UDP node.
   *
   * @param listener receives the events
   */
  public UdpNode(Listener listener) {
    super(ROLE_UDP_NODE, listener);
  }

  /**
   * Bind {@code host:port} (null host: every IPv4 address; port 0: a free one).
   *
   * @param host the address to bind
   * @param port the port
   */
  public void start(String host, int port) {
    start0(host, port);
  }

  /**
   * The bound port.
   *
   * @return the port
   */
  public int port() {
    return listenAddress().getPort();
  }
}

package org.hpsock;

import java.net.InetSocketAddress;

/**
 * A UDP server: one port, a connection per peer address. The first datagram from a new address is
 * {@code onAccept} (then {@code onHandShake}), every datagram one {@code onReceive}; {@code send}
 * goes to that peer as one datagram. A peer silent for {@link Option#UDP_DETECT_INTERVAL} times
 * {@link Option#UDP_DETECT_ATTEMPTS} ms closes with {@link Hpsock#EUDPIDLE}; one sending a
 * datagram larger than {@link Option#UDP_MAX_DATAGRAM} with {@link Hpsock#EDGRAMSIZE}. Push model
 * only.
 */
public final class UdpServer extends TcpEndpoint {
  /**
   * Create a UDP server.
   *
   * @param listener receives the events
   */
  public UdpServer(Listener listener) {
    super(ROLE_UDP_SERVER, listener);
  }

  /**
   * Bind {@code host:port} (null host: every IPv4 address; port 0: a free one).
   *
   * @param host the address to bind
   * @param port the port, 0 for any
   */
  public void start(String host, int port) {
    start0(host, port);
  }

  /**
   * The bound address.
   *
   * @return numeric address and port
   */
  public InetSocketAddress listenAddress() {
    return address(0, 0, "listenAddress");
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

package org.hpsock;

/**
 * A UDP client: one connected peer, made by {@code start} ({@code onConnect} and {@code
 * onHandShake} follow; it may send at once). Connection methods take ID 0 for its connection. An
 * ICMP port unreachable closes it with {@code ECONNREFUSED}; idle detection as for {@link
 * UdpServer} (an idle client sends heartbeats, which a UdpServer answers).
 */
public final class UdpClient extends ClientEndpoint {
  /**
   * Create a UDP client.
   *
   * @param listener receives the events
   */
  public UdpClient(Listener listener) {
    super(ROLE_UDP_CLIENT, listener);
  }

  /**
   * Open the socket connected to {@code host:port}.
   *
   * @param host the peer
   * @param port its port
   */
  public void start(String host, int port) {
    start0(host, port);
  }
}

package org.hpsock;

/**
 * What the client roles ({@link TcpClient}, {@link UdpClient}) have in common: one connection,
 * which every connection method of {@link TcpEndpoint} names as ID 0; the methods here without an
 * ID do just that. Package-private: the public types are the roles themselves.
 */
abstract class ClientEndpoint extends TcpEndpoint {
  ClientEndpoint(int role, Listener listener) {
    super(role, listener);
  }

  /**
   * Sends bytes on the connection (see {@link TcpEndpoint#send(long, byte[])}); on a UDP client,
   * one datagram to the peer.
   *
   * @param data the bytes (at least one)
   */
  public void send(byte[] data) {
    send(0, data, 0, data.length);
  }

  /** Closes the connection gracefully (see {@link TcpEndpoint#disconnect(long)}). */
  public void disconnect() {
    disconnect(0, false);
  }
}

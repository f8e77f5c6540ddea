package org.hpsock;

import org.hpsock.internal.Native;

/**
 * A UDP cast: sends to and receives from a multicast group (or, with {@link
 * Option#UDP_CAST_MODE} 1, a broadcast address). One connection (ID 0); {@link
 * Listener#onReceiveFrom} names each sender.
 */
public final class UdpCast extends DatagramEndpoint {
  /**
   * Create a UDP cast.
   *
   * @param listener receives the events
   */
  public UdpCast(Listener listener) {
    super(ROLE_UDP_CAST, listener);
  }

  /**
   * Before start: the interface (an address) to join on and send multicast from; null for the
   * system's choice.
   *
   * @param iface the interface address
   */
  public void setInterface(String iface) {
    check(Native.hps_cast_interface(ep(), iface), "setInterface");
  }

  /**
   * Bind {@code port} (0: a free one) on every address, join {@code group} (or allow broadcast
   * to it) and make {@code group:port} the destination of {@link #send(byte[])}.
   *
   * @param group the multicast group or broadcast address
   * @param port the port
   */
  public void start(String group, int port) {
    start0(group, port);
  }

  /**
   * Send one datagram to the group.
   *
   * @param data the datagram
   */
  public void send(byte[] data) {
    send(0, data, 0, data.length);
  }
}

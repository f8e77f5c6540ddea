package org.hpsock;

import java.net.InetSocketAddress;
import org.hpsock.internal.Native;
import org.hpsock.internal.NativeJNI;

/**
 * A UDP cast: sends to and receives from a multicast group (or, with {@link
 * Option#UDP_CAST_MODE} 1, a broadcast address). One connection (ID 0); {@link
 * Listener#onReceiveFrom} names each sender.
 */
public final class UdpCast extends TcpEndpoint {
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

  /**
   * Send one datagram to {@code host:port}.
   *
   * @param host numeric address or name
   * @param port the port
   * @param data the datagram
   */
  public void sendTo(String host, int port, byte[] data) {
    check(NativeJNI.sendTo(ep(), host, port, data, 0, data.length), "sendTo");
  }

  /**
   * Join a multicast group.
   *
   * @param group the group address
   * @param iface interface address, or null for the system's choice
   */
  public void joinGroup(String group, String iface) {
    check(Native.hps_join_group(ep(), group, iface), "joinGroup");
  }

  /**
   * Leave a multicast group.
   *
   * @param group the group address
   * @param iface interface address, or null
   */
  public void leaveGroup(String group, String iface) {
    check(Native.hps_leave_group(ep(), group, iface), "leaveGroup");
  }

  /**
   * The bound address.
   *
   * @return numeric address and port
   */
  public InetSocketAddress listenAddress() {
    return address(0, 0, "listenAddress");
  }
}

package org.hpsock;

import java.net.InetSocketAddress;
import org.hpsock.internal.Native;
import org.hpsock.internal.NativeJNI;

/**
 * What the connectionless UDP roles ({@link UdpCast}, {@link UdpNode}) have in common: one socket
 * (connection ID 0) that sends to any address and may join multicast groups. Package-private: the
 * public types are the roles themselves.
 */
abstract class DatagramEndpoint extends TcpEndpoint {
  DatagramEndpoint(int role, Listener listener) {
    super(role, listener);
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

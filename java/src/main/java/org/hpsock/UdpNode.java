package org.hpsock;

import java.net.InetSocketAddress;
import org.hpsock.internal.Native;
import org.hpsock.internal.NativeJNI;

/**
 * A UDP node: connectionless. {@link #sendTo} sends to any address; {@link
 * Listener#onReceiveFrom} names each sender. One connection (ID 0) stands for the socket.
 */
public final class UdpNode extends TcpEndpoint {
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
   * @param iface interface address, or null
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

  /**
   * The bound port.
   *
   * @return the port
   */
  public int port() {
    return listenAddress().getPort();
  }
}

package org.hpsock;

import java.net.InetSocketAddress;
import org.hpsock.internal.Native;

/**
 * A TCP server: listens and accepts many connections, spread over its loop threads.
 *
 * <pre>{@code
 * try (TcpServer server = new TcpServer(new Listener() {
 *       public HandleResult onReceive(TcpEndpoint ep, long id, ByteBuffer data) {
 *         ep.send(id, data); // echo
 *         return HandleResult.OK;
 *       }
 *     })) {
 *   server.start("127.0.0.1", 0);
 *   System.out.println("listening on " + server.listenAddress());
 *   ...
 * }
 * }</pre>
 */
public final class TcpServer extends TcpEndpoint {
  /**
   * A server that is not started yet.
   *
   * @param listener receives its events
   */
  public TcpServer(Listener listener) {
    super(ROLE_SERVER, listener);
  }

  /**
   * Binds and listens.
   *
   * @param host a numeric address or a name; null or "" = all IPv4 addresses, "::" = all IPv6
   *     (dual stack unless {@link Option#IPV6_ONLY})
   * @param port the port; 0 picks a free one (see {@link #listenAddress()})
   * @throws HpsockException e.g. {@link Hpsock#EADDR}, {@code EADDRINUSE}, {@link Hpsock#ESTATE}
   *     (already started)
   */
  public void start(String host, int port) {
    start0(host, port);
  }

  /**
   * The address the server listens on.
   *
   * @return its numeric address and bound port
   * @throws HpsockException {@link Hpsock#ESTATE} if not listening
   */
  public InetSocketAddress listenAddress() {
    return address(0, 0, "listenAddress");
  }

  /**
   * Serves another certificate to clients asking for server name {@code name} (SNI). Before start.
   *
   * @param name a host name, or "*.domain" for one label under domain; case is ignored
   * @param cert PEM text (beginning with "-----BEGIN") or a file path
   * @param key PEM text or a file path
   * @throws HpsockException {@link Hpsock#EINVAL} empty argument, {@link Hpsock#ESTATE} running
   */
  public void addTlsCertificate(String name, String cert, String key) {
    check(Native.hps_tls_add_cert(ep(), name, cert, key), "addTlsCertificate");
  }

  /**
   * The port the server listens on.
   *
   * @return the bound port
   */
  public int port() {
    return listenAddress().getPort();
  }
}

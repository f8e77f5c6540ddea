package org.hpsock;

import java.nio.ByteBuffer;

/**
 * A TCP client: owns one outbound connection on one loop thread. Every connection method of
 * {@link TcpEndpoint} takes ID 0 as "this client's current connection"; the methods here without
 * an ID do just that.
 *
 * <pre>{@code
 * try (TcpClient client = new TcpClient(listener)) {
 *   client.start("127.0.0.1", 5555); // onConnect or onClose follows
 *   ... after onConnect:
 *   client.send("hello".getBytes(StandardCharsets.UTF_8));
 * }
 * }</pre>
 */
public final class TcpClient extends ClientEndpoint {
  /**
   * A client that is not started yet.
   *
   * @param listener receives its events
   */
  public TcpClient(Listener listener) {
    super(ROLE_CLIENT, listener);
  }

  /**
   * Starts and connects; {@code onConnect} or an {@code onClose} with {@link Operation#CONNECT}
   * follows.
   *
   * @param host a numeric address or a name (resolved on this thread)
   * @param port 1..65535
   * @throws HpsockException e.g. {@link Hpsock#EADDR}, {@link Hpsock#ESTATE} (already started)
   */
  public void start(String host, int port) {
    start0(host, port);
  }

  /**
   * Sends {@code len} bytes of {@code data} from {@code off} on the connection.
   *
   * @param data the array
   * @param off the first byte
   * @param len how many bytes (at least one)
   */
  public void send(byte[] data, int off, int len) {
    send(0, data, off, len);
  }

  /**
   * Sends the buffer's remaining bytes on the connection (see {@link TcpEndpoint#send(long,
   * ByteBuffer)}).
   *
   * @param data the bytes from position to limit (at least one)
   */
  public void send(ByteBuffer data) {
    send(0, data);
  }

  /**
   * The ID of the current connection.
   *
   * @return its ID, or 0 if there is none
   */
  public long connectionId() {
    long[] ids = connectionIds();
    return ids.length > 0 ? ids[0] : 0;
  }
}

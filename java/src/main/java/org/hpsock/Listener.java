package org.hpsock;

import java.net.InetSocketAddress;
import java.nio.ByteBuffer;

/**
 * Receives an endpoint's events. Every method has a default that does nothing and returns {@link
 * HandleResult#OK}; override the ones you need. The endpoint asks the C library to deliver only
 * the events whose methods are overridden (found by reflection when the endpoint is made), so an
 * event nobody listens to costs no call into Java.
 *
 * <p>Threads: events run on the endpoint's loop threads (a server's first {@code onPrepare} runs
 * on the thread calling {@code start}). Events of one connection never run concurrently and
 * arrive in order; events of different connections may run at the same time on different loops.
 * Any endpoint method may be called from inside a listener method, except {@link
 * TcpEndpoint#close()} on its own endpoint (use {@link TcpEndpoint#stop()} there).
 *
 * <p>Byte buffers passed in are valid only during the call: copy what you keep. Their position is
 * 0 and their limit the number of bytes.
 *
 * <p>An exception thrown by a listener method never reaches the C library: it is reported to the
 * thread's uncaught-exception handler (by default printed with its stack trace on {@code
 * System.err}) and the event is treated as {@link HandleResult#ERROR}, so the connection is closed
 * with {@link Hpsock#EHANDLER}; the endpoint and its other connections go on. A {@link UdpCast}'s
 * or {@link UdpNode}'s one connection is its socket: ERROR (or an exception) from its receive or
 * send methods closes nothing, and it goes on receiving.
 *
 * <p>Guarantees: every connection that was accepted or connected gets exactly one {@code
 * onClose}; after {@code onShutdown} no event arrives until the next start.
 */
public interface Listener {
  /**
   * A socket was made, before listen (server; {@code connId} 0) or connect (agent, client).
   *
   * @param endpoint the endpoint
   * @param connId the connection, or 0 for a server's listening socket
   * @param socket the socket's file descriptor
   * @return {@link HandleResult#ERROR} aborts the listen or connect
   */
  default HandleResult onPrepare(TcpEndpoint endpoint, long connId, long socket) {
    return HandleResult.OK;
  }

  /**
   * A server accepted a connection.
   *
   * @param endpoint the endpoint
   * @param connId the new connection
   * @return {@link HandleResult#ERROR} refuses it (no {@code onClose} follows)
   */
  default HandleResult onAccept(TcpEndpoint endpoint, long connId) {
    return HandleResult.OK;
  }

  /**
   * An agent's or client's connection was established.
   *
   * @param endpoint the endpoint
   * @param connId the connection
   * @return {@link HandleResult#ERROR} closes it
   */
  default HandleResult onConnect(TcpEndpoint endpoint, long connId) {
    return HandleResult.OK;
  }

  /**
   * The connection is ready for traffic (after {@code onAccept} or {@code onConnect}).
   *
   * @param endpoint the endpoint
   * @param connId the connection
   * @return {@link HandleResult#ERROR} closes it
   */
  default HandleResult onHandShake(TcpEndpoint endpoint, long connId) {
    return HandleResult.OK;
  }

  /**
   * Bytes arrived (push model: one read; pack model: one whole frame body).
   *
   * @param endpoint the endpoint
   * @param connId the connection
   * @param data the bytes, valid only during the call; position 0, limit the length
   * @return {@link HandleResult#ERROR} closes the connection
   */
  default HandleResult onReceive(TcpEndpoint endpoint, long connId, ByteBuffer data) {
    return HandleResult.OK;
  }

  /**
   * Pull model: bytes wait to be taken with {@link TcpEndpoint#fetch(long, byte[])}.
   *
   * @param endpoint the endpoint
   * @param connId the connection
   * @param available how many bytes wait in total
   * @return {@link HandleResult#ERROR} closes the connection
   */
  default HandleResult onReceive(TcpEndpoint endpoint, long connId, int available) {
    return HandleResult.OK;
  }

  /**
   * Bytes were handed to the kernel.
   *
   * @param endpoint the endpoint
   * @param connId the connection
   * @param data the bytes sent (pack model: the body, without header), valid only during the call
   * @return {@link HandleResult#ERROR} closes the connection
   */
  default HandleResult onSend(TcpEndpoint endpoint, long connId, ByteBuffer data) {
    return HandleResult.OK;
  }

  /**
   * The connection closed. Its ID is no longer valid when this returns.
   *
   * @param endpoint the endpoint
   * @param connId the connection
   * @param operation the operation during which it closed
   * @param errorCode 0 for a normal close, else the error (see {@link Hpsock#errorName(int)})
   * @return ignored
   */
  default HandleResult onClose(
      TcpEndpoint endpoint, long connId, Operation operation, int errorCode) {
    return HandleResult.OK;
  }

  /**
   * The endpoint stopped; no event follows until it is started again.
   *
   * @param endpoint the endpoint
   * @return ignored
   */
  default HandleResult onShutdown(TcpEndpoint endpoint) {
    return HandleResult.OK;
  }

  /**
   * The connection's unsent bytes rose above {@link Option#SEND_HIGH_WATER}: stop producing for
   * it (or let {@link Option#AUTO_PAUSE} pause its reading) until {@link #onLowWater}. Comes once
   * per crossing; {@link TcpEndpoint#unsent(long)} reads the count at any time.
   *
   * @param endpoint the endpoint
   * @param connId the connection
   * @param unsent the bytes accepted for sending and not yet handed to the kernel
   * @return ignored
   */
  default HandleResult onHighWater(TcpEndpoint endpoint, long connId, long unsent) {
    return HandleResult.OK;
  }

  /**
   * After {@link #onHighWater}: the connection's unsent bytes fell to {@link
   * Option#SEND_LOW_WATER} or below. It is writable again.
   *
   * @param endpoint the endpoint
   * @param connId the connection
   * @param unsent the bytes accepted for sending and not yet handed to the kernel
   * @return ignored
   */
  default HandleResult onLowWater(TcpEndpoint endpoint, long connId, long unsent) {
    return HandleResult.OK;
  }

  /**
   * UDP cast and node only: a datagram arrived from {@code from}. The default passes it to {@link
   * #onReceive(TcpEndpoint, long, ByteBuffer)}.
   *
   * @param endpoint the endpoint
   * @param connId the endpoint's one connection
   * @param data the datagram, valid only during the call
   * @param from the sender (numeric host, unresolved)
   * @return ignored: the endpoint's one connection is its socket, which stays open
   */
  default HandleResult onReceiveFrom(
      TcpEndpoint endpoint, long connId, ByteBuffer data, InetSocketAddress from) {
    return onReceive(endpoint, connId, data);
  }

  /**
   * UDP cast and node only: a datagram to {@code to} was handed to the kernel. The default passes
   * it to {@link #onSend(TcpEndpoint, long, ByteBuffer)}.
   *
   * @param endpoint the endpoint
   * @param connId the endpoint's one connection
   * @param data the datagram, valid only during the call
   * @param to the destination (numeric host, unresolved)
   * @return ignored: the endpoint's one connection is its socket, which stays open
   */
  default HandleResult onSendTo(
      TcpEndpoint endpoint, long connId, ByteBuffer data, InetSocketAddress to) {
    return onSend(endpoint, connId, data);
  }

  /**
   * UDP cast and node only: a datagram was dropped, the endpoint goes on. {@code operation}
   * RECEIVE: one from {@code address} was larger than the max datagram ({@link
   * Hpsock#EDGRAMSIZE}); SEND: one to {@code address} failed after the send returned.
   *
   * @param endpoint the endpoint
   * @param connId the endpoint's one connection
   * @param operation RECEIVE or SEND
   * @param errorCode why
   * @param address the sender or destination
   * @return ignored: the endpoint's one connection is its socket, which stays open
   */
  default HandleResult onDatagramError(
      TcpEndpoint endpoint, long connId, Operation operation, int errorCode,
      InetSocketAddress address) {
    return HandleResult.OK;
  }
}

package org.hpsock;

import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.ReadOnlyBufferException;
import java.nio.file.Path;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;
import org.hpsock.internal.DirectAddress;
import org.hpsock.internal.Native;
import org.hpsock.internal.NativeJNI;

/**
 * What every TCP endpoint can do: {@link TcpServer}, {@link TcpAgent} and {@link TcpClient}.
 *
 * <p>An endpoint is one native hpsock endpoint in one role, with one {@link Listener}. Its
 * connections are known only by their IDs ({@code long}, opaque; a closed connection's ID is never
 * reused, so a stale ID fails with {@link Hpsock#ENOTFOUND} and never reaches another
 * connection). For a {@link TcpClient}, ID 0 means its current connection.
 *
 * <p>Every method may be called from any thread, including from inside a listener method (except
 * {@link #close()} on the listener's own endpoint). Failures throw {@link HpsockException} with
 * the C error code.
 *
 * <p>Life cycle: create, set options, start, ..., {@link #stop()} (may be started again), {@link
 * #close()}. An endpoint that was not closed is closed by the garbage collector once it is
 * unreachable; a started endpoint stays reachable until it stops, so its listener keeps running.
 * Do not call other methods concurrently with {@code close()}.
 */
public abstract class TcpEndpoint implements AutoCloseable {
  static final int EV_PREPARE = 1;
  static final int EV_ACCEPT = 2;
  static final int EV_CONNECT = 3;
  static final int EV_HANDSHAKE = 4;
  static final int EV_RECEIVE = 5;
  static final int EV_SEND = 6;
  static final int EV_CLOSE = 7;
  static final int EV_SHUTDOWN = 8;
  static final int EV_HIGH_WATER = 9;
  static final int EV_LOW_WATER = 10;

  static final int ROLE_SERVER = 1;
  static final int ROLE_AGENT = 2;
  static final int ROLE_CLIENT = 3;
  static final int ROLE_UDP_SERVER = 4;
  static final int ROLE_UDP_CLIENT = 5;
  static final int ROLE_UDP_CAST = 6;
  static final int ROLE_UDP_NODE = 7;

  private static final Cleaner CLEANER = Cleaner.create();

  /** The native handle (hps_endpoint *). */
  private final long ep;

  private final Listener listener;
  private final Release release;
  private final Cleaner.Cleanable cleanable;
  private final Object lifecycle = new Object();
  private final AtomicBoolean closing = new AtomicBoolean();
  private volatile boolean closed;

  /** Frees the native endpoint once: on close(), or when the endpoint was never closed. */
  private static final class Release implements Runnable {
    private final long ctx;

    Release(long ctx) {
      this.ctx = ctx;
    }

    @Override
    public void run() {
      NativeJNI.destroy(ctx);
    }
  }

  TcpEndpoint(int role, Listener listener) {
    this.listener = Objects.requireNonNull(listener, "listener");
    long ctx = NativeJNI.create(role);
    if (ctx < 0) {
      throw new HpsockException((int) ctx, "create");
    }
    this.ep = NativeJNI.handle(ctx);
    this.release = new Release(ctx);
    this.cleanable = CLEANER.register(this, release);
    check(Native.hps_setopt(ep, Option.EVENTS.key, eventMask(listener)), "set events");
  }

  // ---------------------------------------------------------------- events

  /** The events whose listener methods are overridden (close and shutdown always come). */
  static int eventMask(Listener l) {
    Class<?> c = l.getClass();
    Class<?> ep = TcpEndpoint.class;
    int m = 0;
    if (overrides(c, "onPrepare", ep, long.class, long.class)) {
      m |= 1 << EV_PREPARE;
    }
    if (overrides(c, "onAccept", ep, long.class)) {
      m |= 1 << EV_ACCEPT;
    }
    if (overrides(c, "onConnect", ep, long.class)) {
      m |= 1 << EV_CONNECT;
    }
    if (overrides(c, "onHandShake", ep, long.class)) {
      m |= 1 << EV_HANDSHAKE;
    }
    if (overrides(c, "onReceive", ep, long.class, ByteBuffer.class)
        || overrides(c, "onReceive", ep, long.class, int.class)) {
      m |= 1 << EV_RECEIVE;
    }
    if (overrides(c, "onSend", ep, long.class, ByteBuffer.class)) {
      m |= 1 << EV_SEND;
    }
    Class<?> sa = InetSocketAddress.class;
    if (overrides(c, "onReceiveFrom", ep, long.class, ByteBuffer.class, sa)) {
      m |= 1 << EV_RECEIVE;
    }
    if (overrides(c, "onSendTo", ep, long.class, ByteBuffer.class, sa)) {
      m |= 1 << EV_SEND;
    }
    if (overrides(c, "onDatagramError", ep, long.class, Operation.class, int.class, sa)) {
      m |= 1 << EV_RECEIVE | 1 << EV_SEND;
    }
    if (overrides(c, "onHighWater", ep, long.class, long.class)) {
      m |= 1 << EV_HIGH_WATER;
    }
    if (overrides(c, "onLowWater", ep, long.class, long.class)) {
      m |= 1 << EV_LOW_WATER;
    }
    return m | 1 << EV_CLOSE | 1 << EV_SHUTDOWN;
  }

  private static boolean overrides(Class<?> c, String name, Class<?>... params) {
    try {
      return c.getMethod(name, params).getDeclaringClass() != Listener.class;
    } catch (NoSuchMethodException | SecurityException e) {
      return true; // cannot tell: deliver it
    }
  }

  /**
   * Called by the native bridge for every event, on the event's thread. Never throws: a listener's
   * exception is reported and becomes ERROR.
   */
  final int dispatch(int type, long conn, int op, int error, long n, ByteBuffer data) {
    HandleResult r;
    try {
      switch (type) {
        case EV_RECEIVE:
          if (data != null) {
            r = listener.onReceive(this, conn, view(data, n));
          } else {
            r = listener.onReceive(this, conn, (int) n);
          }
          break;
        case EV_SEND:
          r = listener.onSend(this, conn, view(data, n));
          break;
        case EV_ACCEPT:
          r = listener.onAccept(this, conn);
          break;
        case EV_HANDSHAKE:
          r = listener.onHandShake(this, conn);
          break;
        case EV_CONNECT:
          r = listener.onConnect(this, conn);
          break;
        case EV_CLOSE:
          r = listener.onClose(this, conn, Operation.of(op), error);
          break;
        case EV_PREPARE:
          r = listener.onPrepare(this, conn, n);
          break;
        case EV_SHUTDOWN:
          r = listener.onShutdown(this);
          break;
        case EV_HIGH_WATER:
          r = listener.onHighWater(this, conn, n);
          break;
        case EV_LOW_WATER:
          r = listener.onLowWater(this, conn, n);
          break;
        default:
          r = HandleResult.OK;
      }
    } catch (Throwable e) {
      Thread t = Thread.currentThread();
      t.getUncaughtExceptionHandler().uncaughtException(t, e);
      return HandleResult.ERROR.code;
    }
    return r == null ? HandleResult.OK.code : r.code;
  }

  /** UDP cast/node RECEIVE and SEND, with the sender or destination (from the bridge). */
  final int dispatchFrom(
      int type, long conn, int op, int error, long n, ByteBuffer data, String host, int port) {
    HandleResult r;
    try {
      InetSocketAddress a = new InetSocketAddress(InetAddress.getByName(host), port); // numeric
      if (error != 0) {
        r = listener.onDatagramError(this, conn, Operation.of(op), error, a);
      } else if (type == EV_RECEIVE) {
        r = listener.onReceiveFrom(this, conn, view(data, n), a);
      } else {
        r = listener.onSendTo(this, conn, view(data, n), a);
      }
    } catch (Throwable e) {
      Thread t = Thread.currentThread();
      t.getUncaughtExceptionHandler().uncaughtException(t, e);
      return HandleResult.ERROR.code;
    }
    return r == null ? HandleResult.OK.code : r.code;
  }

  /**
   * Called by the native bridge for a RECEIVE event with bytes (push and pack models), the hot
   * event: three arguments and no event switch. Returns the result's code plus one, so that 0
   * means an exception escaped and the bridge asks the VM about exceptions only then. Never
   * throws past a listener: its exception is reported and becomes ERROR.
   */
  final int receive(long conn, int n, ByteBuffer data) {
    HandleResult r;
    try {
      data.clear().limit(n);
      r = listener.onReceive(this, conn, data.order(ByteOrder.BIG_ENDIAN));
    } catch (Throwable e) {
      Thread t = Thread.currentThread();
      t.getUncaughtExceptionHandler().uncaughtException(t, e);
      return HandleResult.ERROR.code + 1;
    }
    return r == null ? HandleResult.OK.code + 1 : r.code + 1;
  }

  private static ByteBuffer view(ByteBuffer data, long n) {
    data.clear().limit((int) n);
    return data.order(ByteOrder.BIG_ENDIAN);
  }

  // ---------------------------------------------------------------- helpers

  static void check(int r, String what) {
    if (r < 0) {
      throw new HpsockException(r, what);
    }
  }

  /** The native handle, or an exception once closed. */
  final long ep() {
    if (closed) {
      throw new HpsockException(Hpsock.EHANDLE, "endpoint is closed");
    }
    return ep;
  }

  final boolean onOwnLoop() {
    return Native.hps_wait(ep, 0) == Hpsock.EINLOOP;
  }

  final void start0(String host, int port) {
    if (port < 0 || port > 65535) {
      throw new IllegalArgumentException("port out of range: " + port);
    }
    if (!closed && onOwnLoop()) {
      throw new HpsockException(Hpsock.ESTATE, "start from its own listener");
    }
    synchronized (lifecycle) {
      ep();
      check(NativeJNI.start(release.ctx, this, host, port), "start");
    }
  }

  // ---------------------------------------------------------------- life cycle

  /**
   * The listener given at construction.
   *
   * @return the listener
   */
  public final Listener listener() {
    return listener;
  }

  /**
   * The endpoint's state.
   *
   * @return the state
   */
  public final State state() {
    int r = Native.state(ep());
    check(r, "state");
    return State.of(r);
  }

  /**
   * Stops: stops listening, closes every connection (each gets {@code onClose} with {@link
   * Operation#CLOSE}), then delivers {@code onShutdown}. From another thread it returns after
   * {@code onShutdown} ran; from inside a listener (of this endpoint or any other) it only begins
   * the stop. Stopping a stopped endpoint does nothing.
   *
   * @throws HpsockException {@link Hpsock#ESTATE} if it was never started
   */
  public final void stop() {
    check(Native.hps_stop(ep()), "stop");
  }

  /**
   * Waits until the endpoint is stopped.
   *
   * @param timeoutMillis the longest wait; negative: no limit
   * @return true if it is stopped (or was never started), false on timeout
   * @throws HpsockException {@link Hpsock#EINLOOP} from inside its own listener
   */
  public final boolean awaitStop(long timeoutMillis) {
    int t = timeoutMillis < 0 ? -1 : (int) Math.min(timeoutMillis, Integer.MAX_VALUE);
    int r = Native.hps_wait(ep(), t);
    if (r == Hpsock.ETIMEDOUT) {
      return false;
    }
    check(r, "awaitStop");
    return true;
  }

  /**
   * Stops the endpoint (as {@link #stop()}) and releases it. Further calls on it throw {@link
   * Hpsock#EHANDLE}; closing again does nothing.
   *
   * @throws HpsockException {@link Hpsock#EINLOOP} from inside its own listener (call {@link
   *     #stop()} there and close from another thread)
   */
  @Override
  public final void close() {
    if (!closing.compareAndSet(false, true)) {
      return; // closed, or being closed by another thread
    }
    if (onOwnLoop()) {
      closing.set(false);
      throw new HpsockException(Hpsock.EINLOOP, "close from its own listener");
    }
    synchronized (lifecycle) {
      Native.hps_stop(ep); // listeners still see a live endpoint while it stops
      closed = true;
      cleanable.clean();
    }
  }

  /**
   * Whether {@link #close()} was called.
   *
   * @return true once closed
   */
  public final boolean isClosed() {
    return closed;
  }

  // ---------------------------------------------------------------- options

  /**
   * Sets an option.
   *
   * @param option the option
   * @param value its value
   * @throws HpsockException {@link Hpsock#EINVAL} out of range, {@link Hpsock#ESTATE} running and
   *     the option is not live
   */
  public final void setOption(Option option, long value) {
    check(Native.hps_setopt(ep(), option.key, value), "set " + option);
  }

  /**
   * Reads an option.
   *
   * @param option the option
   * @return its value
   */
  public final long getOption(Option option) {
    long[] out = new long[1];
    check(NativeJNI.getopt(ep(), option.key, out), "get " + option);
    return out[0];
  }

  /**
   * Sets a string option (TLS certificates, CAs, ciphers, server name).
   *
   * @param option the option
   * @param value its value; null or "" clears it
   * @throws HpsockException {@link Hpsock#ESTATE} while running
   */
  public final void setOption(StringOption option, String value) {
    check(Native.hps_setopt_str(ep(), option.key, value), "set " + option);
  }

  /**
   * Reads a string option.
   *
   * @param option the option
   * @return its value, "" when unset
   * @throws HpsockException {@link Hpsock#EINVAL} for the write-only {@link
   *     StringOption#TLS_KEY_PASSWORD}
   */
  public final String getOption(StringOption option) {
    return str(Native.hpsw_getopt_str(ep(), option.key), "get " + option);
  }

  /**
   * Turns TLS on or off for every connection ({@link Option#TLS}); set a certificate and key on a
   * server, and trusted CAs on an agent or client ({@link StringOption}).
   *
   * @param on whether connections speak TLS
   */
  public final void setTls(boolean on) {
    setOption(Option.TLS, on ? 1 : 0);
  }

  /**
   * Sets how the peer is verified ({@link Option#TLS_VERIFY}).
   *
   * @param verify the mode
   */
  public final void setTlsVerify(TlsVerify verify) {
    setOption(Option.TLS_VERIFY, verify.code());
  }

  /**
   * Sets the passphrase of an encrypted private key ({@link StringOption#TLS_KEY_PASSWORD}).
   * Write-only: it cannot be read back, and the library wipes its copy when freed. Without it an
   * encrypted key fails {@code start} with {@link Hpsock#ETLSCONFIG}, never a prompt.
   *
   * @param password the passphrase; null or "" clears it
   */
  public final void setTlsKeyPassword(String password) {
    setOption(StringOption.TLS_KEY_PASSWORD, password);
  }

  /**
   * A TLS fact of a connection. Readable from onAccept/onConnect until onClose returns.
   *
   * @param connId the connection (0 = a client's own)
   * @param what what to read
   * @return the text
   * @throws HpsockException {@link Hpsock#ENOTFOUND}, {@link Hpsock#ENOTLS}
   */
  public final String tlsInfo(long connId, TlsInfo what) {
    return str(Native.hpsw_tls_info(ep(), connId, what.code), "tlsInfo");
  }

  /**
   * Why a TLS connection failed: call it from {@link Listener#onClose}, where the error is one of
   * the {@code Hpsock.ETLS*} codes.
   *
   * @param connId the connection
   * @return the reason, "" if it did not fail
   */
  public final String tlsError(long connId) {
    return tlsInfo(connId, TlsInfo.ERROR);
  }

  /**
   * Why the last start failed with {@link Hpsock#ETLSCONFIG}.
   *
   * @return the reason, "" if none
   */
  public final String tlsConfigError() {
    return tlsInfo(0, TlsInfo.CONFIG_ERROR);
  }

  private static String str(String s, String what) {
    if (s == null) {
      throw new HpsockException(Native.hpsw_error(), what);
    }
    return s;
  }

  /**
   * Sets the number of loop threads ({@link Option#WORKERS}).
   *
   * @param workers 1..64
   */
  public final void setWorkers(int workers) {
    setOption(Option.WORKERS, workers);
  }

  /**
   * Sets the receive model ({@link Option#RECV_MODEL}).
   *
   * @param model the model
   */
  public final void setReceiveModel(ReceiveModel model) {
    setOption(Option.RECV_MODEL, model.code());
  }

  /**
   * The receive model.
   *
   * @return the model
   */
  public final ReceiveModel receiveModel() {
    return ReceiveModel.of(getOption(Option.RECV_MODEL));
  }

  // ---------------------------------------------------------------- flow control

  /**
   * (Live) Sets the unsent bytes per connection above which {@link Listener#onHighWater} comes
   * ({@link Option#SEND_HIGH_WATER}).
   *
   * @param bytes 1..1 GiB; default 1 MiB
   */
  public final void setSendHighWater(long bytes) {
    setOption(Option.SEND_HIGH_WATER, bytes);
  }

  /**
   * (Live) Sets the unsent bytes at or below which {@link Listener#onLowWater} comes after a high
   * water ({@link Option#SEND_LOW_WATER}).
   *
   * @param bytes 0..1 GiB, below the high water mark; default 256 KiB
   */
  public final void setSendLowWater(long bytes) {
    setOption(Option.SEND_LOW_WATER, bytes);
  }

  /**
   * (Live) Sets both water marks, in the order that keeps the low one below the high one at every
   * step, so any valid pair can follow any other.
   *
   * @param high the high water mark ({@link #setSendHighWater(long)})
   * @param low the low water mark, below {@code high}
   * @throws IllegalArgumentException if {@code low >= high}
   */
  public final void setSendWaterMarks(long high, long low) {
    if (low >= high) {
      throw new IllegalArgumentException("low water " + low + " not below high water " + high);
    }
    if (low < getOption(Option.SEND_HIGH_WATER)) {
      setSendLowWater(low);
      setSendHighWater(high);
    } else {
      setSendHighWater(high);
      setSendLowWater(low);
    }
  }

  /**
   * Makes the engine pause reading on a connection while its unsent bytes are above the high
   * water mark and resume at the low one ({@link Option#AUTO_PAUSE}), so a peer that does not
   * read cannot make an echo or request/response server queue without bound. Before start.
   *
   * @param on whether to pause automatically; default false
   */
  public final void setAutoPause(boolean on) {
    setOption(Option.AUTO_PAUSE, on ? 1 : 0);
  }

  /**
   * Sets how long a graceful close may take to flush unsent bytes before it is forced with
   * {@link Hpsock#ECLOSETIMEOUT} ({@link Option#CLOSE_TIMEOUT}). Before start.
   *
   * @param millis 1..86400000; default 30000
   */
  public final void setCloseTimeout(long millis) {
    setOption(Option.CLOSE_TIMEOUT, millis);
  }

  /**
   * The bytes a connection has accepted for sending (pack headers included, and file bytes not
   * yet read) that are not yet handed to the kernel. Compare with the water marks, or wait for
   * {@link Listener#onLowWater}.
   *
   * @param connId the connection (0 = a client's own)
   * @return the unsent byte count
   * @throws HpsockException {@link Hpsock#ENOTFOUND}
   */
  public final long unsent(long connId) {
    long[] out = new long[1];
    check(NativeJNI.getUnsent(ep(), connId, out), "unsent");
    return out[0];
  }

  /**
   * An endpoint-wide counter of what overload and hostile peers cost, since the endpoint was
   * made (restarts keep it).
   *
   * @param counter which
   * @return its value
   */
  public final long counter(Counter counter) {
    long[] out = new long[1];
    check(NativeJNI.getCounter(ep(), counter.key, out), "counter " + counter);
    return out[0];
  }

  // ---------------------------------------------------------------- sending

  /**
   * Sends bytes (copied before return, or written at once). In the pack model they are one frame
   * body.
   *
   * @param connId the connection
   * @param data the bytes (at least one)
   * @throws HpsockException e.g. {@link Hpsock#ENOTFOUND}, {@link Hpsock#ESENDQ}, {@link
   *     Hpsock#EPACKSIZE}
   */
  public final void send(long connId, byte[] data) {
    send(connId, data, 0, data.length);
  }

  /**
   * Sends {@code len} bytes of {@code data} from {@code off}.
   *
   * @param connId the connection
   * @param data the array
   * @param off the first byte
   * @param len how many bytes (at least one)
   */
  public final void send(long connId, byte[] data, int off, int len) {
    Objects.checkFromIndexSize(off, len, data.length);
    check(NativeJNI.sendArray(ep(), connId, data, off, len), "send");
  }

  /**
   * Sends the buffer's remaining bytes and advances its position to its limit. A direct buffer is
   * read in place, without a copy in Java.
   *
   * @param connId the connection
   * @param data the bytes from position to limit (at least one)
   */
  public final void send(long connId, ByteBuffer data) {
    int pos = data.position();
    int len = data.limit() - pos;
    int r;
    if (data.isDirect()) {
      if (DirectAddress.AVAILABLE) {
        r = NativeJNI.sendAddress(ep(), connId, DirectAddress.of(data) + pos, len);
        Reference.reachabilityFence(data);
      } else {
        r = NativeJNI.sendDirect(ep(), connId, data, pos, len);
      }
    } else if (data.hasArray()) {
      r = NativeJNI.sendArray(ep(), connId, data.array(), data.arrayOffset() + pos, len);
    } else { // read-only heap buffer
      byte[] copy = new byte[len];
      data.duplicate().get(copy);
      r = NativeJNI.sendArray(ep(), connId, copy, 0, len);
    }
    check(r, "send");
    data.position(pos + len);
  }

  /**
   * Sends several buffers as one send: their bytes go out contiguously, never interleaved with
   * other sends on the connection; in the pack model they form one frame body. Each buffer's
   * position is advanced to its limit.
   *
   * @param connId the connection
   * @param data up to 1024 buffers, at least one byte in total
   */
  public final void sendv(long connId, ByteBuffer... data) {
    Object[] items = new Object[data.length];
    int[] offs = new int[data.length];
    int[] lens = new int[data.length];
    for (int i = 0; i < data.length; i++) {
      ByteBuffer b = data[i];
      int pos = b.position();
      lens[i] = b.limit() - pos;
      if (b.isDirect()) {
        items[i] = b;
        offs[i] = pos;
      } else if (b.hasArray()) {
        items[i] = b.array();
        offs[i] = b.arrayOffset() + pos;
      } else {
        byte[] copy = new byte[lens[i]];
        b.duplicate().get(copy);
        items[i] = copy;
      }
    }
    check(NativeJNI.sendv(ep(), connId, items, offs, lens), "sendv");
    for (ByteBuffer b : data) {
      b.position(b.limit());
    }
  }

  /**
   * Sends several arrays as one send (see {@link #sendv(long, ByteBuffer...)}).
   *
   * @param connId the connection
   * @param data up to 1024 arrays, at least one byte in total
   */
  public final void sendv(long connId, byte[]... data) {
    int[] offs = new int[data.length];
    int[] lens = new int[data.length];
    for (int i = 0; i < data.length; i++) {
      lens[i] = data[i].length;
    }
    check(NativeJNI.sendv(ep(), connId, data.clone(), offs, lens), "sendv");
  }

  /**
   * Sends part of a file, read in bounded chunks (memory stays bounded whatever its size). Push
   * and pull models only.
   *
   * @param connId the connection
   * @param file the file
   * @param offset the first byte
   * @param length how many bytes; negative: to the end of the file
   * @throws HpsockException {@link Hpsock#EFILE} (cannot open, or outside the file), {@link
   *     Hpsock#EMODEL} in the pack model
   */
  public final void sendFile(long connId, Path file, long offset, long length) {
    check(
        Native.hps_send_file(ep(), connId, file.toString(), offset, length), "sendFile " + file);
  }

  /**
   * Sends a whole file (see {@link #sendFile(long, Path, long, long)}).
   *
   * @param connId the connection
   * @param file the file
   */
  public final void sendFile(long connId, Path file) {
    sendFile(connId, file, 0, -1);
  }

  // ---------------------------------------------------------------- connections

  /**
   * Closes a connection gracefully: queued bytes are sent first. Its {@code onClose} has {@link
   * Operation#CLOSE} and error 0.
   *
   * @param connId the connection
   * @throws HpsockException {@link Hpsock#ENOTFOUND} if it is not open (or already closing)
   */
  public final void disconnect(long connId) {
    disconnect(connId, false);
  }

  /**
   * Closes a connection.
   *
   * @param connId the connection
   * @param force true: at once, unsent bytes dropped; false: after the queued bytes are sent
   */
  public final void disconnect(long connId, boolean force) {
    check(Native.hps_disconnect(ep(), connId, force ? 1 : 0), "disconnect");
  }

  /**
   * Stops or resumes reading from a connection. While paused no {@code onReceive} arrives for it
   * and TCP flow-controls the peer.
   *
   * @param connId the connection
   * @param pause true to pause, false to resume
   */
  public final void pauseReceive(long connId, boolean pause) {
    check(Native.hps_pause_receive(ep(), connId, pause ? 1 : 0), "pauseReceive");
  }

  /**
   * Pull model: takes exactly {@code dst.length} of the waiting bytes.
   *
   * @param connId the connection
   * @param dst where the bytes go
   * @return true, or false if fewer bytes wait (nothing is taken)
   * @throws HpsockException {@link Hpsock#EMODEL} if not the pull model
   */
  public final boolean fetch(long connId, byte[] dst) {
    return fetch(connId, dst, 0, dst.length);
  }

  /**
   * Pull model: takes exactly {@code len} of the waiting bytes into {@code dst} at {@code off}.
   *
   * @param connId the connection
   * @param dst where the bytes go
   * @param off the first byte of {@code dst} to fill
   * @param len how many bytes
   * @return true, or false if fewer bytes wait (nothing is taken)
   */
  public final boolean fetch(long connId, byte[] dst, int off, int len) {
    Objects.checkFromIndexSize(off, len, dst.length);
    return pulled(NativeJNI.fetchArray(ep(), connId, dst, off, len, true), "fetch");
  }

  /**
   * Pull model: takes exactly {@code dst.remaining()} of the waiting bytes and advances the
   * buffer's position.
   *
   * @param connId the connection
   * @param dst where the bytes go
   * @return true, or false if fewer bytes wait (nothing is taken)
   */
  public final boolean fetch(long connId, ByteBuffer dst) {
    return pull(connId, dst, true);
  }

  /**
   * Pull model: as {@link #fetch(long, byte[])}, but the bytes stay waiting.
   *
   * @param connId the connection
   * @param dst where a copy of the bytes goes
   * @return true, or false if fewer bytes wait
   */
  public final boolean peek(long connId, byte[] dst) {
    return peek(connId, dst, 0, dst.length);
  }

  /**
   * Pull model: as {@link #fetch(long, byte[], int, int)}, but the bytes stay waiting.
   *
   * @param connId the connection
   * @param dst where a copy of the bytes goes
   * @param off the first byte of {@code dst} to fill
   * @param len how many bytes
   * @return true, or false if fewer bytes wait
   */
  public final boolean peek(long connId, byte[] dst, int off, int len) {
    Objects.checkFromIndexSize(off, len, dst.length);
    return pulled(NativeJNI.fetchArray(ep(), connId, dst, off, len, false), "peek");
  }

  /**
   * Pull model: as {@link #fetch(long, ByteBuffer)}, but the bytes stay waiting.
   *
   * @param connId the connection
   * @param dst where a copy of the bytes goes
   * @return true, or false if fewer bytes wait
   */
  public final boolean peek(long connId, ByteBuffer dst) {
    return pull(connId, dst, false);
  }

  private boolean pull(long connId, ByteBuffer dst, boolean take) {
    if (dst.isReadOnly()) {
      throw new ReadOnlyBufferException();
    }
    int pos = dst.position();
    int len = dst.limit() - pos;
    String what = take ? "fetch" : "peek";
    boolean ok;
    if (dst.isDirect() && DirectAddress.AVAILABLE) {
      ok = pulled(
          NativeJNI.fetchAddress(ep(), connId, DirectAddress.of(dst) + pos, len, take), what);
      Reference.reachabilityFence(dst);
    } else if (dst.isDirect()) {
      ok = pulled(NativeJNI.fetchDirect(ep(), connId, dst, pos, len, take), what);
    } else {
      ok =
          pulled(
              NativeJNI.fetchArray(ep(), connId, dst.array(), dst.arrayOffset() + pos, len, take),
              what);
    }
    if (ok) {
      dst.position(pos + len);
    }
    return ok;
  }

  private static boolean pulled(int r, String what) {
    if (r == Hpsock.EAGAIN) {
      return false;
    }
    check(r, what);
    return true;
  }

  /**
   * The number of open connections.
   *
   * @return the count
   */
  public final int connectionCount() {
    int r = Native.hps_conn_count(ep());
    check(r, "connectionCount");
    return r;
  }

  /**
   * The IDs of the open connections, in no particular order.
   *
   * @return a new array
   */
  public final long[] connectionIds() {
    long[] ids = NativeJNI.connList(ep());
    if (ids == null) {
      throw new HpsockException(Hpsock.ENOMEM, "connectionIds");
    }
    return ids;
  }

  final InetSocketAddress address(long connId, int which, String what) {
    Object[] host = new Object[1];
    int port = NativeJNI.address(ep(), connId, which, host);
    check(port, what);
    try { // a numeric address: no name lookup
      return new InetSocketAddress(InetAddress.getByName((String) host[0]), port);
    } catch (UnknownHostException e) {
      throw new IllegalStateException("not a numeric address: " + host[0], e);
    }
  }

  /**
   * The local address of a connection.
   *
   * @param connId the connection
   * @return its numeric address and port
   */
  public final InetSocketAddress localAddress(long connId) {
    return address(connId, 1, "localAddress");
  }

  /**
   * The remote (peer) address of a connection.
   *
   * @param connId the connection
   * @return its numeric address and port
   */
  public final InetSocketAddress remoteAddress(long connId) {
    return address(connId, 2, "remoteAddress");
  }

  /**
   * Sets a connection's extra data: a value of the application's, 0 initially.
   *
   * @param connId the connection
   * @param extra the value
   */
  public final void setExtra(long connId, long extra) {
    check(Native.hps_set_extra(ep(), connId, extra), "setExtra");
  }

  /**
   * A connection's extra data.
   *
   * @param connId the connection
   * @return the value last set, or 0
   */
  public final long getExtra(long connId) {
    long[] out = new long[1];
    check(NativeJNI.getExtra(ep(), connId, out), "getExtra");
    return out[0];
  }

  /**
   * A connection's counters.
   *
   * @param connId the connection (0 on a server or agent: the endpoint's totals)
   * @return a snapshot
   */
  public final Stats stats(long connId) {
    long[] out = new long[6];
    check(NativeJNI.getStats(ep(), connId, out), "stats");
    return new Stats(out);
  }

  /**
   * Force-closes every connection that received nothing for at least {@code silenceMillis}; their
   * {@code onClose} has {@link Operation#CLOSE} and {@link Hpsock#ESILENCE}.
   *
   * @param silenceMillis at least 1
   * @return how many connections were selected
   */
  public final int disconnectSilent(long silenceMillis) {
    int r = Native.hps_disconnect_silent(ep(), silenceMillis);
    check(r, "disconnectSilent");
    return r;
  }

  /**
   * Force-closes every connection open for at least {@code ageMillis}; their {@code onClose} has
   * {@link Operation#CLOSE} and error 0.
   *
   * @param ageMillis at least 1
   * @return how many connections were selected
   */
  public final int disconnectLong(long ageMillis) {
    int r = Native.hps_disconnect_long(ep(), ageMillis);
    check(r, "disconnectLong");
    return r;
  }
}

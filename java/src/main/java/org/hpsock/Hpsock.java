package org.hpsock;

import org.hpsock.internal.Native;

/**
 * Library-wide facts: the version of the native library loaded, the library's error codes and
 * their names.
 *
 * <p>Error codes are negative. The {@code E*} constants here are hpsock's own ({@code HPS_E*} in
 * {@code hpsock.h}); any other negative code is a system error, {@code -errno} (for example
 * {@code ECONNRESET}), named by {@link #errorName(int)}.
 */
public final class Hpsock {
  private Hpsock() {}

  /** Invalid argument. */
  public static final int EINVAL = -30001;
  /** Invalid endpoint handle (also: the endpoint was closed). */
  public static final int EHANDLE = -30002;
  /** Connection not found: never existed, closed, or closing. */
  public static final int ENOTFOUND = -30003;
  /** Operation not allowed in the endpoint's current state. */
  public static final int ESTATE = -30004;
  /** Operation not supported by this endpoint's role. */
  public static final int EROLE = -30005;
  /** Operation not supported by this receive model. */
  public static final int EMODEL = -30006;
  /** Out of memory. */
  public static final int ENOMEM = -30007;
  /** Send queue limit exceeded ({@link Option#MAX_SEND_QUEUE}); nothing was queued. */
  public static final int ESENDQ = -30008;
  /** Connection limit reached ({@link Option#MAX_CONNECTIONS}). */
  public static final int ELIMIT = -30009;
  /** Not allowed from the endpoint's own loop thread (inside its listener). */
  public static final int EINLOOP = -30010;
  /** A listener returned {@link HandleResult#ERROR} (or threw). */
  public static final int EHANDLER = -30011;
  /** Invalid or unresolvable address. */
  public static final int EADDR = -30012;
  /** The endpoint is stopping. */
  public static final int ESTOPPING = -30013;
  /** Operation timed out. */
  public static final int ETIMEDOUT = -30014;
  /** Not enough data waiting (pull model). */
  public static final int EAGAIN = -30015;
  /** Pack header flag mismatch. */
  public static final int EPACKFLAG = -30016;
  /** Pack length exceeds the max pack size. */
  public static final int EPACKSIZE = -30017;
  /** Pack body is empty. */
  public static final int EPACKEMPTY = -30018;
  /** Pull buffer limit exceeded ({@link Option#PULL_MAX}). */
  public static final int EPULLFULL = -30019;
  /** Connection silent past the silence timeout. */
  public static final int ESILENCE = -30020;
  /** File cannot be read for sending. */
  public static final int EFILE = -30021;
  /** A graceful close passed {@link Option#CLOSE_TIMEOUT} with bytes unsent and was forced. */
  public static final int ECLOSETIMEOUT = -30022;
  /** UDP: datagram larger than the max datagram size. */
  public static final int EDGRAMSIZE = -30040;
  /** UDP: peer silent past the detect interval times attempts. */
  public static final int EUDPIDLE = -30041;
  /** TLS protocol error ({@link TcpEndpoint#tlsError(long)} says more). */
  public static final int ETLS = -30060;
  /** TLS peer certificate verification failed. */
  public static final int ETLSVERIFY = -30061;
  /** TLS configuration invalid ({@link TcpEndpoint#tlsConfigError()} says why). */
  public static final int ETLSCONFIG = -30062;
  /** TLS stream cut without close_notify. */
  public static final int ETLSEOF = -30063;
  /** The peer did not speak TLS. */
  public static final int ETLSNOTTLS = -30064;
  /** The peer sent a fatal TLS alert. */
  public static final int ETLSALERT = -30065;
  /** TLS is not enabled on this endpoint. */
  public static final int ENOTLS = -30066;

  /**
   * The version of the native library loaded.
   *
   * @return "MAJOR.MINOR.PATCH"
   */
  public static String version() {
    return Native.hps_version();
  }

  /**
   * The version of the native library loaded, as {@code (major << 16) | (minor << 8) | patch}.
   *
   * @return the version number
   */
  public static int versionHex() {
    return (int) Native.hps_version_hex();
  }

  /**
   * The symbolic name of an error code.
   *
   * @param code a negative error code
   * @return e.g. {@code "HPS_ENOTFOUND"} or {@code "ECONNRESET"}; never null
   */
  public static String errorName(int code) {
    return Native.hps_err_name(code);
  }

  /**
   * A human-readable message for an error code.
   *
   * @param code a negative error code
   * @return the message; {@code "unknown error"} for an unknown code
   */
  public static String errorMessage(int code) {
    return Native.hps_strerror(code);
  }
}

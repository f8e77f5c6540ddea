package org.hpsock;

/** What {@link TcpEndpoint#tlsInfo(long, TlsInfo)} reads. */
public enum TlsInfo {
  /** Why the connection failed ("" if it did not). */
  ERROR(1),
  /** The protocol version, e.g. "TLSv1.3". */
  VERSION(2),
  /** The cipher name. */
  CIPHER(3),
  /** The server name sent (client) or received (server). */
  SERVER_NAME(4),
  /** The peer certificate's subject, or "". */
  PEER_SUBJECT(5),
  /** "1" if the session was resumed, else "0". */
  RESUMED(6),
  /** Endpoint: why the last start failed with {@link Hpsock#ETLSCONFIG}. */
  CONFIG_ERROR(7);

  final int code;

  TlsInfo(int code) {
    this.code = code;
  }

  /**
   * The C value.
   *
   * @return the {@code HPS_TLS_INFO_*} value
   */
  public int code() {
    return code;
  }
}

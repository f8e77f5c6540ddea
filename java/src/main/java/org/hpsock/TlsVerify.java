package org.hpsock;

/** Peer verification ({@link Option#TLS_VERIFY}), and the TLS version constants. */
public enum TlsVerify {
  /** No check (a server asks for no client certificate). */
  NONE,
  /**
   * The peer's certificate must chain to a trusted CA and, for a client, match the server name.
   * Default for agents and clients.
   */
  PEER,
  /** As PEER; a server also fails a client that sends no certificate. */
  REQUIRE;

  /** {@link Option#TLS_MIN_VERSION}: TLS 1.2 (the default floor). */
  public static final int V1_2 = 0x0303;
  /** {@link Option#TLS_MIN_VERSION}: TLS 1.3 only. */
  public static final int V1_3 = 0x0304;

  /**
   * The C value.
   *
   * @return the {@code HPS_TLS_VERIFY_*} value
   */
  public int code() {
    return ordinal();
  }
}

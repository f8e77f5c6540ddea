package org.hpsock;

/**
 * String-valued endpoint options (TLS), set with {@link TcpEndpoint#setOption(StringOption,
 * String)} and read with {@link TcpEndpoint#getOption(StringOption)}. Keys match {@code enum
 * hps_option}. Set only while the endpoint is not running; null or "" clears one.
 */
public enum StringOption {
  /** Certificate (chain) PEM file. */
  TLS_CERT_FILE(80),
  /** Private key PEM file (encrypted: see {@link #TLS_KEY_PASSWORD}). */
  TLS_KEY_FILE(81),
  /** Certificate (chain) as PEM text. */
  TLS_CERT_PEM(82),
  /** Private key as PEM text. */
  TLS_KEY_PEM(83),
  /** Trusted CAs, PEM file; without any CA option the system's store is trusted. */
  TLS_CA_FILE(84),
  /** Trusted CAs, hashed directory. */
  TLS_CA_PATH(85),
  /** Trusted CAs as PEM text. */
  TLS_CA_PEM(86),
  /** TLS 1.2 cipher list (OpenSSL syntax). */
  TLS_CIPHERS(87),
  /** TLS 1.3 ciphersuites (OpenSSL syntax). */
  TLS_CIPHERSUITES(88),
  /**
   * Agent/client: the server name sent (SNI) and verified; default: the host given to connect or
   * start when it is a name.
   */
  TLS_SNI(89),
  /**
   * Passphrase of an encrypted private key. Write-only: reading it throws {@link Hpsock#EINVAL};
   * the library wipes its copy when freed. An encrypted key without it fails start with {@link
   * Hpsock#ETLSCONFIG}, never a prompt.
   */
  TLS_KEY_PASSWORD(90);

  final int key;

  StringOption(int key) {
    this.key = key;
  }

  /**
   * The C key of this option.
   *
   * @return the {@code HPS_OPT_*} value
   */
  public int key() {
    return key;
  }
}

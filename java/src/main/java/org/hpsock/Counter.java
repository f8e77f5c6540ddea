package org.hpsock;

/**
 * Endpoint-wide counters of what overload and hostile peers cost, read with {@link
 * TcpEndpoint#counter(Counter)}. They count from the endpoint's creation and survive restarts.
 * Keys match {@code enum hps_counter}.
 */
public enum Counter {
  /**
   * Accept failures (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...); each pauses accepting on that loop for
   * a back-off.
   */
  ACCEPT_ERRORS(1),
  /**
   * Connections accepted and closed at once because no descriptor or memory was left for them, or
   * {@link Option#MAX_CONNECTIONS} was reached (never reported: no {@code onAccept}).
   */
  ACCEPT_SHED(2),
  /** Graceful closes forced at {@link Option#CLOSE_TIMEOUT} ({@link Hpsock#ECLOSETIMEOUT}). */
  CLOSE_TIMEOUTS(3),
  /** Automatic pauses ({@link Option#AUTO_PAUSE}). */
  AUTO_PAUSES(4),
  /** UDP server: datagrams from new peer addresses dropped because the peer table was full. */
  UDP_PEERS_REFUSED(5),
  /** UDP server: unconfirmed peers evicted for a new address. */
  UDP_PEERS_EVICTED(6);

  final int key;

  Counter(int key) {
    this.key = key;
  }

  /**
   * The C key of this counter.
   *
   * @return the {@code HPS_CNT_*} value
   */
  public int key() {
    return key;
  }
}

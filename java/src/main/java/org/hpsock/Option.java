package org.hpsock;

/**
 * Endpoint options, set with {@link TcpEndpoint#setOption(Option, long)} and read with {@link
 * TcpEndpoint#getOption(Option)}. Keys match {@code enum hps_option}. Unless marked live, an option
 * can be set only while the endpoint is not running; a value out of range fails with {@link
 * Hpsock#EINVAL}.
 */
public enum Option {
  /** Loop threads, 1..64; default: the number of cores. Clients always use one. */
  WORKERS(1),
  /** The {@link ReceiveModel}'s {@code code()}; default {@code PUSH}. */
  RECV_MODEL(2),
  /** SO_SNDBUF bytes, 0 = system default. */
  SNDBUF(3),
  /** SO_RCVBUF bytes, 0 = system default. */
  RCVBUF(4),
  /**
   * Open connections at most, 1..16M; default: what the descriptor limit holds (TCP roles),
   * 100000 (UDP roles).
   */
  MAX_CONNECTIONS(5),
  /** Milliseconds idle before keepalive probes, 0 = off (default). */
  KEEPALIVE_TIME(6),
  /** Milliseconds between keepalive probes; default 20000. */
  KEEPALIVE_INTERVAL(7),
  /** TCP_NODELAY 0/1; default 1. */
  NODELAY(8),
  /** SO_REUSEADDR 0/1; default 1. */
  REUSE_ADDR(9),
  /** 1: an IPv6 socket accepts only IPv6; 0: dual stack (default). */
  IPV6_ONLY(10),
  /**
   * Bytes queued unsent per connection before a send fails with {@link Hpsock#ESENDQ}; 1..1 GiB,
   * default 16 MiB.
   */
  MAX_SEND_QUEUE(11),
  /** Free connection objects cached per loop, 0..1M; default 1024. */
  FREE_POOL(12),
  /** Connect timeout in milliseconds, 1..600000; default 10000. */
  CONNECT_TIMEOUT(13),
  /**
   * (Live) mask of {@code 1 << eventType} to deliver; close and shutdown are always delivered.
   * Set by the constructor to the events the listener overrides.
   */
  EVENTS(14),
  /** Listen backlog 1..65535; default 1024. */
  BACKLOG(15),
  /** Pack header flag 0..1023; 0 = incoming flags not checked (default). */
  PACK_FLAG(16),
  /** Max pack body 1..4194303 bytes; default 262144. */
  PACK_MAX(17),
  /**
   * Pull model: unread bytes per connection before it is closed with {@link Hpsock#EPULLFULL};
   * 1..1 GiB, default 4 MiB.
   */
  PULL_MAX(18),
  /**
   * Milliseconds without receiving after which a connection is closed with {@link
   * Hpsock#ESILENCE}; 0 = off (default).
   */
  SILENCE_TIMEOUT(19),
  /**
   * (Live) Unsent bytes per connection above which {@link Listener#onHighWater} comes (and, with
   * {@link #AUTO_PAUSE}, reading pauses); 1..1 GiB, default 1 MiB.
   */
  SEND_HIGH_WATER(20),
  /**
   * (Live) Unsent bytes at or below which {@link Listener#onLowWater} comes after a high water
   * (and an automatic pause resumes); 0..1 GiB, kept below {@link #SEND_HIGH_WATER}, default 256
   * KiB.
   */
  SEND_LOW_WATER(21),
  /**
   * 0/1: the engine pauses reading on a connection while its unsent bytes are above {@link
   * #SEND_HIGH_WATER} and resumes at {@link #SEND_LOW_WATER}; default 0.
   */
  AUTO_PAUSE(22),
  /**
   * Milliseconds a graceful close (disconnect without force, a close after a protocol error, a
   * peer's half-close) may go without its peer taking any of the unsent bytes; past it the
   * connection is closed by force with {@link Hpsock#ECLOSETIMEOUT}; 1..86400000, default 30000.
   */
  CLOSE_TIMEOUT(23),
  /** UDP: bytes per datagram, 1..65527; default 1432. */
  UDP_MAX_DATAGRAM(32),
  /** UDP server/client: detection interval in milliseconds, 0 = off; default 60000. */
  UDP_DETECT_INTERVAL(33),
  /** UDP server/client: silent intervals before a peer closes with EUDPIDLE; default 3. */
  UDP_DETECT_ATTEMPTS(34),
  /** UDP cast: 0 multicast (default), 1 broadcast. */
  UDP_CAST_MODE(35),
  /** UDP cast/node: multicast TTL 0..255; default 1. */
  UDP_MULTICAST_TTL(36),
  /** UDP cast/node: 1 = own multicast datagrams come back to this host (default). */
  UDP_MULTICAST_LOOP(37),
  /** 0/1: every connection speaks TLS; default 0. See {@link TcpEndpoint#setTls(boolean)}. */
  TLS(64),
  /**
   * The {@link TlsVerify}'s {@code code()}; default {@code PEER} for agents and clients, {@code
   * NONE} for servers.
   */
  TLS_VERIFY(65),
  /** Lowest TLS version accepted: {@link TlsVerify#V1_2} (default) or {@link TlsVerify#V1_3}. */
  TLS_MIN_VERSION(66),
  /** 0/1, default 1: session cache (server) and resumption (agent, client). */
  TLS_SESSION_CACHE(67),
  /** Milliseconds from accept/connect to the end of the TLS handshake; default 10000. */
  TLS_HANDSHAKE_TIMEOUT(68);

  final int key;

  Option(int key) {
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

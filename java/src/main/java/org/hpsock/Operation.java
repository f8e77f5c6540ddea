package org.hpsock;

/**
 * The operation during which a connection closed, as told to {@link Listener#onClose}. The values
 * match {@code enum hps_op}.
 */
public enum Operation {
  /** Not known. */
  UNKNOWN,
  /** Accepting the connection. */
  ACCEPT,
  /** Connecting (agent, client): refused, timed out, or refused by a listener. */
  CONNECT,
  /** Sending. */
  SEND,
  /** Receiving; includes a normal close by the peer (error 0). */
  RECEIVE,
  /** Closed locally: {@code disconnect}, {@code disconnectSilent/Long} or {@code stop}. */
  CLOSE;

  private static final Operation[] VALUES = values();

  static Operation of(int code) {
    return code >= 0 && code < VALUES.length ? VALUES[code] : UNKNOWN;
  }

  /**
   * The C value of this operation.
   *
   * @return 0 to 5
   */
  public int code() {
    return ordinal();
  }
}

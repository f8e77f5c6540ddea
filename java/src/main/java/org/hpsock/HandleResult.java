package org.hpsock;

/**
 * What a {@link Listener} method returns to hpsock.
 *
 * <p>The values match {@code enum hps_result} of the C ABI.
 */
public enum HandleResult {
  /** Go on. */
  OK(0),
  /** Go on; the event needs nothing more from hpsock. */
  IGNORE(1),
  /**
   * Something is wrong. From {@code onPrepare}: abort the listen/connect; from
   * {@code onAccept}: refuse the connection (no {@code onClose} follows); from
   * {@code onConnect}, {@code onHandShake}, {@code onReceive}, {@code onSend}:
   * close the connection with error {@link Hpsock#EHANDLER}. Ignored from
   * {@code onClose} and {@code onShutdown}.
   */
  ERROR(2);

  final int code;

  HandleResult(int code) {
    this.code = code;
  }

  /**
   * The C value of this result.
   *
   * @return 0, 1 or 2
   */
  public int code() {
    return code;
  }
}

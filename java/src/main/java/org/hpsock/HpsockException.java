package org.hpsock;

/**
 * An hpsock call failed. Unchecked. Carries the C error code ({@link #code()}: a negative {@code
 * HPS_E*} value, see the constants in {@link Hpsock}, or {@code -errno} for a system error) and its
 * symbolic name ({@link #errorName()}, e.g. {@code "HPS_ENOTFOUND"} or {@code "EADDRINUSE"}).
 */
public class HpsockException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  /** The negative error code. */
  private final int code;

  /** The error's symbolic name. */
  private final String errorName;

  /**
   * An exception for an error code.
   *
   * @param code the negative error code
   * @param what what was being done, for the message (may be null)
   */
  public HpsockException(int code, String what) {
    super(message(code, what));
    this.code = code;
    this.errorName = Hpsock.errorName(code);
  }

  private static String message(int code, String what) {
    String m = Hpsock.errorName(code) + ": " + Hpsock.errorMessage(code);
    return what == null ? m : what + ": " + m;
  }

  /**
   * The error code.
   *
   * @return a negative {@code HPS_E*} value or {@code -errno}
   */
  public int code() {
    return code;
  }

  /**
   * The error's symbolic name, as {@code hps_err_name()} gives it.
   *
   * @return e.g. {@code "HPS_ENOTFOUND"} or {@code "ECONNREFUSED"}
   */
  public String errorName() {
    return errorName;
  }
}

package org.hpsock;

/**
 * How an endpoint hands received bytes to its {@link Listener} (option {@link
 * Option#RECV_MODEL}). The values match {@code enum hps_model}.
 */
public enum ReceiveModel {
  /** Every read is delivered to {@link Listener#onReceive(TcpEndpoint, long, java.nio.ByteBuffer)}. */
  PUSH,
  /**
   * {@link Listener#onReceive(TcpEndpoint, long, int)} says how many bytes wait; the listener
   * takes exactly what it wants with {@link TcpEndpoint#fetch(long, byte[])} or looks with {@link
   * TcpEndpoint#peek(long, byte[])}.
   */
  PULL,
  /**
   * Length-prefixed frames (HP-Socket's pack header): every {@link Listener#onReceive(TcpEndpoint,
   * long, java.nio.ByteBuffer)} carries one whole frame body, and every send is one frame.
   */
  PACK;

  /**
   * The C value of this model.
   *
   * @return 0, 1 or 2
   */
  public int code() {
    return ordinal();
  }

  static ReceiveModel of(long code) {
    return values()[(int) code];
  }
}

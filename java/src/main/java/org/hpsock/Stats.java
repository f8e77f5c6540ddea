package org.hpsock;

/**
 * Counters of a connection, or of a whole server or agent (totals since its last start, closed
 * connections included). A snapshot: it does not change after it was read.
 */
public final class Stats {
  private final long bytesSent;
  private final long bytesReceived;
  private final long msgsSent;
  private final long msgsReceived;
  private final long ageMillis;
  private final long silenceMillis;

  Stats(long[] v) {
    bytesSent = v[0];
    bytesReceived = v[1];
    msgsSent = v[2];
    msgsReceived = v[3];
    ageMillis = v[4];
    silenceMillis = v[5];
  }

  /**
   * Bytes handed to the kernel.
   *
   * @return the byte count
   */
  public long bytesSent() {
    return bytesSent;
  }

  /**
   * Bytes read from the kernel.
   *
   * @return the byte count
   */
  public long bytesReceived() {
    return bytesReceived;
  }

  /**
   * Sends accepted ({@code send}, {@code sendv}, {@code sendFile} calls).
   *
   * @return the count
   */
  public long msgsSent() {
    return msgsSent;
  }

  /**
   * Receive events delivered.
   *
   * @return the count
   */
  public long msgsReceived() {
    return msgsReceived;
  }

  /**
   * Connection only: milliseconds since it was accepted or connected.
   *
   * @return the age, 0 for endpoint totals
   */
  public long ageMillis() {
    return ageMillis;
  }

  /**
   * Connection only: milliseconds since it last received.
   *
   * @return the silence, 0 for endpoint totals
   */
  public long silenceMillis() {
    return silenceMillis;
  }

  @Override
  public String toString() {
    return "Stats{bytesSent=" + bytesSent + ", bytesReceived=" + bytesReceived + ", msgsSent="
        + msgsSent + ", msgsReceived=" + msgsReceived + ", ageMillis=" + ageMillis
        + ", silenceMillis=" + silenceMillis + "}";
  }
}

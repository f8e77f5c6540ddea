package org.hpsock;

/** The life-cycle state of an endpoint. The values match {@code enum hps_state}. */
public enum State {
  /** Created, never started. */
  CREATED,
  /** Started: listening, connecting or connected. */
  STARTED,
  /** Stopping: connections are being closed. */
  STOPPING,
  /** Stopped ({@code onShutdown} was delivered); may be started again. */
  STOPPED;

  static State of(int code) {
    return values()[code];
  }
}

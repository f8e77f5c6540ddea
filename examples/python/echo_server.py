#!/usr/bin/env python3
"""echo_server.py - the hpsock echo server in Python: every byte received is
sent back.

    echo_server.py [--host H] [--port P] [--workers N] [--mode push|pack]
                   [--flag F] [--max-pack B] [--tls --cert F --key F]
                   [--auto-pause 0|1] [--max-send-queue B]

The same command line as the C example (examples/echo_server.c). Prints
"listening on HOST:PORT" once ready (port 0 picks a free port) and runs
until SIGINT or SIGTERM. In pack mode every frame is echoed as one frame.

A client that sends faster than it reads its echo makes the echo queue up
here. auto_pause (on unless --auto-pause 0, which is there for A/B runs)
makes hpsock stop reading from such a connection while its unsent bytes
are above send_high_water and resume at send_low_water, so TCP slows the
client down instead of the queue reaching max_send_queue (where send would
raise ESENDQ and the connection would close).
"""

import argparse
import signal
import sys

import hpsock


class Echo(hpsock.Handler):
    """Only on_receive is overridden, so only RECEIVE (and CLOSE/SHUTDOWN,
    which cost nothing here) reach Python, and sends keep hpsock's direct
    write path."""

    def on_receive(self, server, conn, data):
        server.send(conn, data)


def main(argv=None):
    ap = argparse.ArgumentParser(description="hpsock echo server (Python)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0,
                    help="loop threads (default: the library's, one per core)")
    ap.add_argument("--mode", choices=("push", "pack"), default="push")
    ap.add_argument("--flag", type=int, default=0, help="pack header flag")
    ap.add_argument("--max-pack", type=int, default=0, help="max pack body bytes")
    ap.add_argument("--tls", action="store_true", help="speak TLS (needs --cert and --key)")
    ap.add_argument("--cert", help="TLS certificate PEM file")
    ap.add_argument("--key", help="TLS private key PEM file")
    ap.add_argument("--auto-pause", type=int, choices=(0, 1), default=1,
                    help="pause reading while a connection's echo is above "
                         "high water (default 1)")
    ap.add_argument("--max-send-queue", type=int, default=0,
                    help="unsent bytes per connection before send fails "
                         "(default: the library's)")
    args = ap.parse_args(argv)
    if not 0 <= args.port <= 65535:
        ap.error("--port must be 0..65535")
    if args.tls and not (args.cert and args.key):
        ap.error("--tls needs --cert and --key")

    opts = {"auto_pause": bool(args.auto_pause)}
    if args.max_send_queue > 0:
        opts["max_send_queue"] = args.max_send_queue
    if args.workers > 0:
        opts["workers"] = args.workers
    if args.mode == "pack":
        opts.update(recv_model=hpsock.Model.PACK, pack_flag=args.flag)
        if args.max_pack > 0:
            opts["pack_max"] = args.max_pack
    if args.tls:
        opts.update(tls=True, tls_cert_file=args.cert, tls_key_file=args.key)

    # Block the stop signals before the loop threads exist (they inherit
    # the mask), so the main thread's sigwait receives them.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = None
    try:
        server = hpsock.TcpServer(Echo(), **opts)
        server.start(args.host, args.port)
    except hpsock.Error as e:
        why = ""
        if server is not None and e.code == hpsock.ETLSCONFIG:
            why = f" ({server.tls_config_error()})"
        print(f"echo_server.py: {e}{why}", file=sys.stderr)
        return 1
    with server:
        print("listening on %s:%d" % server.listen_address, flush=True)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""echo_client.py - an hpsock TCP client in Python: sends --count messages of
--size bytes to an echo server, one at a time, and verifies every echoed
byte.

    echo_client.py --port P [--host H] [--count N] [--size B]
                   [--mode push|pack] [--flag F]

Exit 0 when every message came back intact.
"""

import argparse
import functools
import sys
import threading
import time

import hpsock


@functools.lru_cache(maxsize=None)
def _ramp(size):
    return bytes((i * 7) & 0xFF for i in range(size))


def message(seq, size):
    """The seq-th message: byte i is (seq * 131 + i * 7) & 0xff (the C
    example's pattern)."""
    shift = seq * 131
    return _ramp(size).translate(bytes((b + shift) & 0xFF for b in range(256)))


class EchoCheck(hpsock.Handler):
    def __init__(self, count, size, pack):
        self.count, self.size, self.pack = count, size, pack
        self.seq = 0
        self.expect = message(0, size)
        self.got = bytearray()
        self.done = threading.Event()
        self.error = None

    def finish(self, error=None):
        self.error = error
        self.done.set()

    def on_handshake(self, client, conn):
        client.send(conn, self.expect)

    def on_receive(self, client, conn, data):
        self.got += data
        if self.pack and len(data) != self.size:
            return self.finish(f"message {self.seq}: a frame of {len(data)} bytes")
        if len(self.got) < self.size:
            return None
        if self.got != self.expect:
            return self.finish(f"message {self.seq}: the echo differs")
        self.got.clear()
        self.seq += 1
        if self.seq == self.count:
            return self.finish()
        self.expect = message(self.seq, self.size)
        client.send(conn, self.expect)
        return None

    def on_close(self, client, conn, op, error):
        if not self.done.is_set():
            self.finish(f"connection closed after {self.seq} messages "
                        f"(op {hpsock.Op(op).name}, {hpsock.err_name(error)})")


def main(argv=None):
    ap = argparse.ArgumentParser(description="hpsock echo client (Python)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--mode", choices=("push", "pack"), default="push")
    ap.add_argument("--flag", type=int, default=0, help="pack header flag")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole run")
    args = ap.parse_args(argv)
    if args.count < 1 or args.size < 1:
        ap.error("--count and --size must be >= 1")

    check = EchoCheck(args.count, args.size, args.mode == "pack")
    opts = {}
    if args.mode == "pack":
        opts.update(recv_model=hpsock.Model.PACK, pack_flag=args.flag)
    start = time.monotonic()
    with hpsock.TcpClient(check, **opts) as client:
        client.start(args.host, args.port)
        if not check.done.wait(args.timeout):
            check.error = f"timed out after {check.seq} messages"
    elapsed = time.monotonic() - start
    if check.error:
        print(f"echo_client.py: {check.error}", file=sys.stderr)
        return 1
    print(f"{args.count} messages of {args.size} bytes echoed intact in "
          f"{elapsed:.3f} s ({args.count / elapsed:,.0f} round trips/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

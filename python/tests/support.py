"""Helpers shared by the hpsock Python tests (imported as `support`)."""

import os
import socket
import threading
import time
from pathlib import Path

import pytest

import hpsock

FIXTURES = Path(os.environ.get("HPS_FIXTURES")
                or Path(__file__).resolve().parents[2] / "tests" / "fixtures")

# Every wait in the suite has this deadline: generous, so a loaded machine
# does not fail a test, while a hang still ends.
DEADLINE = 30.0


def wait_until(pred, timeout=DEADLINE, what="condition", interval=0.005):
    """Poll pred() until true; fail with `what` after timeout seconds."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Recorder(hpsock.Handler):
    """Records every event as a tuple ("name", conn, ...) and lets tests wait
    on them. Subclass and call super() to add behaviour."""

    def __init__(self):
        self.cond = threading.Condition()
        self.events = []
        self.received = {}  # conn -> bytearray (push/pack)

    def record(self, *ev):
        with self.cond:
            self.events.append(ev)
            self.cond.notify_all()

    def wait(self, pred, timeout=DEADLINE, what="events"):
        with self.cond:
            if not self.cond.wait_for(lambda: pred(self), timeout):
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; "
                            f"events: {self.events[-20:]}")

    def of(self, name, conn=None):
        with self.cond:
            return [e for e in self.events if e[0] == name and (conn is None or e[1] == conn)]

    def wait_event(self, name, conn=None, count=1, timeout=DEADLINE):
        self.wait(lambda r: len(r.of(name, conn)) >= count, timeout,
                  f"{count} {name} event(s)" + ("" if conn is None else f" on {conn}"))
        return self.of(name, conn)

    def on_prepare(self, ep, conn, fd):
        self.record("prepare", conn, fd)

    def on_accept(self, ep, conn):
        self.record("accept", conn)

    def on_connect(self, ep, conn):
        self.record("connect", conn)

    def on_handshake(self, ep, conn):
        self.record("handshake", conn)

    def on_receive(self, ep, conn, data):
        with self.cond:
            if isinstance(data, bytes):
                self.received.setdefault(conn, bytearray()).extend(data)
            self.events.append(("receive", conn, data))
            self.cond.notify_all()

    def on_send(self, ep, conn, data):
        self.record("send", conn, data)

    def on_close(self, ep, conn, op, error):
        self.record("close", conn, op, error)

    def on_shutdown(self, ep):
        self.record("shutdown", 0)

    def on_high_water(self, ep, conn, unsent):
        self.record("high_water", conn, unsent)

    def on_low_water(self, ep, conn, unsent):
        self.record("low_water", conn, unsent)


class EchoHandler(hpsock.Handler):
    """Echo in every model: push and pack send back what came, pull fetches
    everything waiting and sends it back."""

    def __init__(self, pull=False):
        self.pull = pull
        self.closes = []
        self.lock = threading.Lock()

    def on_receive(self, ep, conn, data):
        if self.pull:
            data = ep.fetch(conn, data)
        ep.send(conn, data)

    def on_close(self, ep, conn, op, error):
        with self.lock:
            self.closes.append((conn, op, error))


def connect_socket(server, timeout=DEADLINE):
    """A plain blocking socket connected to a started server."""
    host, port = server.listen_address
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError(f"peer closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def pack_header(length, flag=0):
    return ((flag << 22) | length).to_bytes(4, "little")


class StreamPattern:
    """Byte o of client c's stream is (o + 7*c) % 251: any slice can be
    checked with one comparison against a precomputed cycle."""

    MAX = 1 << 17  # longest slice checked at once

    def __init__(self):
        self.cycle = bytes(i % 251 for i in range(self.MAX + 251))

    def at(self, c, offset, n):
        """Bytes offset..offset+n of client c's stream; n <= MAX."""
        start = (offset + 7 * c) % 251
        return memoryview(self.cycle)[start:start + n]

    def matches(self, c, offset, data):
        """Whether data is client c's stream from offset on (any length)."""
        view = memoryview(data)
        return all(self.at(c, offset + i, len(view[i:i + self.MAX])) == view[i:i + self.MAX]
                   for i in range(0, len(view), self.MAX))


def stream_echo(host, port, clients=8, block=16384, seconds=3.0,
                stall_after=2 << 20, stall=1.0, pack_flag=None):
    """Run `clients` connections against an echo server at host:port, each
    with a writer thread sending `block`-byte blocks for `seconds` and a
    reader thread reading and checking the echo at the same time. Each
    reader stops reading for `stall` seconds once, after `stall_after`
    bytes, as a client that falls behind does; its writer goes on. Then
    every writer half-closes and every reader reads to the end.

    With pack_flag set, each block is one pack frame (a 4-byte header with
    that flag, then block - 4 body bytes), which a pack-mode echo sends
    back byte for byte.

    Returns (failures, bytes written per client, bytes echoed per client);
    a failure names the client and what differed (a reset, an early end, a
    wrong byte)."""
    pattern = StreamPattern()
    failures = []
    written = [0] * clients
    echoed = [0] * clients
    lock = threading.Lock()
    socks = []
    writers_done = [threading.Event() for _ in range(clients)]
    header = b"" if pack_flag is None else pack_header(block - 4, pack_flag)
    hlen = len(header)

    def fail(msg):
        with lock:
            failures.append(msg)

    def expected(c, offset, n):
        """Pieces (start, bytes) of c's stream over offset..offset+n: the
        pattern, except each frame's header."""
        i = 0
        while i < n:
            pos = (offset + i) % block
            if pos < hlen:
                k = min(hlen - pos, n - i)
                yield i, header[pos:pos + k]
            else:
                k = min(block - pos if hlen else StreamPattern.MAX, n - i)
                yield i, pattern.at(c, offset + i, k)
            i += k

    def writer(c, s):
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                s.sendall(header + pattern.at(c, written[c] + hlen, block - hlen))
                written[c] += block
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            fail(f"client {c}: write failed after {written[c]} bytes: {e!r}")
        finally:
            writers_done[c].set()

    def reader(c, s):
        got, stalled = 0, False
        try:
            while True:
                data = s.recv(StreamPattern.MAX)
                if not data:
                    break
                view = memoryview(data)
                for i, exp in expected(c, got, len(data)):
                    if view[i:i + len(exp)] != exp:
                        j = next(j for j in range(len(exp)) if view[i + j] != exp[j])
                        fail(f"client {c}: byte {got + i + j} is {data[i + j]}, "
                             f"expected {exp[j]}")
                        s.shutdown(socket.SHUT_RDWR)  # unblocks its writer
                        return
                got += len(data)
                echoed[c] = got
                if not stalled and got >= stall_after:
                    stalled = True
                    time.sleep(stall)
        except OSError as e:
            fail(f"client {c}: read failed after {got} bytes: {e!r}")
            return
        writers_done[c].wait(DEADLINE)
        if got != written[c]:
            fail(f"client {c}: the server closed after echoing {got} of "
                 f"{written[c]} bytes")

    threads = []
    try:
        for c in range(clients):
            s = socket.create_connection((host, port), timeout=DEADLINE)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(s)
        for c, s in enumerate(socks):
            threads += [threading.Thread(target=writer, args=(c, s), daemon=True),
                        threading.Thread(target=reader, args=(c, s), daemon=True)]
        for t in threads:
            t.start()
        end = time.monotonic() + seconds + stall + DEADLINE
        for t in threads:
            t.join(max(0, end - time.monotonic()))
        stuck = sum(t.is_alive() for t in threads)
        if stuck:
            fail(f"{stuck} client thread(s) still running after the deadline "
                 f"(written {written}, echoed {echoed})")
    finally:
        for s in socks:
            s.close()
    return failures, written, echoed

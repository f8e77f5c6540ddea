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

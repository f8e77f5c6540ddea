"""Flow control from Python (issue 19): the water-mark options and events,
unsent(), auto_pause, the overload counters, and the same streaming load
as the echo example against an in-process server of its configuration."""

import socket
import threading
import time

import pytest

import hpsock
from support import (DEADLINE, EchoHandler, Recorder, StreamPattern,
                     connect_socket, recv_exactly, stream_echo, wait_until)

KiB = 1024
MiB = 1024 * KiB


def test_flow_options_defaults_keywords_and_properties():
    with hpsock.TcpServer() as srv:
        assert (srv.send_high_water, srv.send_low_water) == (1 * MiB, 256 * KiB)
        assert srv.auto_pause is False
        assert srv.close_timeout == 30000
    with hpsock.TcpServer(send_high_water=64 * KiB, send_low_water=4 * KiB,
                          auto_pause=True, close_timeout=1500) as srv:
        assert (srv.send_high_water, srv.send_low_water) == (64 * KiB, 4 * KiB)
        assert srv.auto_pause is True
        assert srv.getopt(hpsock.Option.AUTO_PAUSE) == 1
        assert srv.close_timeout == 1500
        srv.setopt(hpsock.Option.CLOSE_TIMEOUT, 2500)
        assert srv.getopt(hpsock.Option.CLOSE_TIMEOUT) == 2500
        for name, bad in (("send_high_water", 0), ("send_high_water", (1 << 30) + 1),
                          ("close_timeout", 0), ("close_timeout", 86400001),
                          ("auto_pause", 2)):
            with pytest.raises(hpsock.Error) as ei:
                setattr(srv, name, bad)
            assert ei.value.code == hpsock.EINVAL, (name, bad)


def test_water_marks_are_live_the_other_flow_options_are_not(server_factory):
    srv = server_factory(auto_pause=True)
    srv.send_high_water = 128 * KiB
    srv.send_low_water = 8 * KiB
    assert (srv.send_high_water, srv.send_low_water) == (128 * KiB, 8 * KiB)
    for name, value in (("auto_pause", False), ("close_timeout", 1000)):
        with pytest.raises(hpsock.Error) as ei:
            setattr(srv, name, value)
        assert ei.value.code == hpsock.ESTATE, name


def test_counters_start_at_zero_and_unknown_ones_are_einval():
    for cls in (hpsock.TcpServer, hpsock.TcpAgent, hpsock.TcpClient,
                hpsock.UdpServer, hpsock.UdpNode):
        with cls() as ep:
            for kind in hpsock.Counter:
                value = ep.counter(kind)
                assert type(value) is int and value == 0, (cls, kind, value)
            for bad in (0, -1, 1000):
                with pytest.raises(hpsock.Error) as ei:
                    ep.counter(bad)
                assert ei.value.code == hpsock.EINVAL, bad


def test_unsent_of_an_idle_connection_is_zero_and_of_a_gone_one_enotfound(server_factory, endpoints):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        conn = rec.wait_event("handshake")[0][1]
        assert srv.unsent(conn) == 0
        srv.send(conn, b"x" * 1000)
        assert recv_exactly(s, 1000) == b"x" * 1000
        wait_until(lambda: srv.unsent(conn) == 0, what="unsent back at 0")
    rec.wait_event("close", conn)

    def gone():  # once its on_close has returned
        try:
            srv.unsent(conn)
        except hpsock.Error as e:
            assert e.code == hpsock.ENOTFOUND, e
            return True
        return False

    wait_until(gone, what="unsent() of a closed connection raising ENOTFOUND")
    crec = Recorder()
    client = hpsock.TcpClient(crec)
    endpoints.append(client)
    client.start(*srv.listen_address)
    crec.wait_event("handshake")
    assert client.unsent() == 0  # the client's own connection


def test_high_water_then_low_water_once_per_crossing(server_factory):
    high, low = 256 * KiB, 64 * KiB
    rec = Recorder()
    srv = server_factory(rec, workers=1, send_high_water=high,
                         send_low_water=low, sndbuf=32 * KiB)
    assert srv.events & hpsock.Event.HIGH_WATER.bit
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * KiB)
    s.settimeout(DEADLINE)
    s.connect(srv.listen_address)
    with s:
        conn = rec.wait_event("handshake")[0][1]
        pattern = StreamPattern()
        total = 0
        for crossing in (1, 2):
            sent = 0
            while not rec.of("high_water", conn)[crossing - 1:]:
                assert sent < 16 * MiB, (f"crossing {crossing}: no on_high_water after "
                                         f"{sent} bytes; unsent {srv.unsent(conn)}")
                srv.send(conn, pattern.at(0, total + sent, 64 * KiB))
                sent += 64 * KiB
                if srv.unsent(conn) > high:
                    rec.wait_event("high_water", conn, count=crossing)
            (_, _, unsent), = rec.of("high_water", conn)[crossing - 1:]
            # the client reads nothing, so what is unsent when the event is
            # delivered is still above high water
            assert high < unsent <= sent, (unsent, sent)
            assert len(rec.of("low_water", conn)) == crossing - 1, \
                "on_low_water came while the client read nothing"
            # the client reads everything: unsent falls to low water and below
            got = recv_exactly(s, sent)
            assert pattern.matches(0, total, got), f"crossing {crossing}: bytes differ"
            total += sent
            lows = rec.wait_event("low_water", conn, count=crossing)
            (_, _, unsent), = lows[crossing - 1:]
            assert 0 <= unsent <= low, unsent
            wait_until(lambda: srv.unsent(conn) == 0, what="unsent at 0 after reading")
            assert len(rec.of("high_water", conn)) == crossing, \
                "more than one on_high_water for one crossing"
        names = [e[0] for e in rec.events if e[0] in ("high_water", "low_water")]
        assert names == ["high_water", "low_water"] * 2
    rec.wait_event("close", conn)
    assert rec.of("close", conn)[0][3] == 0, rec.of("close", conn)


def test_exception_in_a_water_handler_is_reported_and_closes_that_connection(server_factory, catch_unraisable):
    """As in the other handlers (hpsock.h, "Water marks": ERROR closes the
    connection, op SEND, EHANDLER); the endpoint and its other connections
    go on."""
    unraisable = catch_unraisable()

    class Fragile(Recorder):
        def on_high_water(self, ep, conn, unsent):
            super().on_high_water(ep, conn, unsent)
            raise RuntimeError("on_high_water failed on purpose")

    rec = Fragile()
    srv = server_factory(rec, workers=1, send_high_water=64 * KiB,
                         send_low_water=16 * KiB)
    with connect_socket(srv) as other, connect_socket(srv) as s:
        conns = [c for _, c in rec.wait_event("handshake", count=2)]
        conn, = [c for c in conns if srv.remote_address(c) == s.getsockname()]
        other_conn, = [c for c in conns if c != conn]
        sent = 0
        while not rec.of("close", conn):
            assert sent < 16 * MiB, f"no close after {sent} bytes; events {rec.events[-5:]}"
            if not rec.of("high_water", conn):
                srv.send(conn, b"h" * (64 * KiB))
                sent += 64 * KiB
            if srv.unsent(conn) > 64 * KiB:
                rec.wait(lambda r: r.of("close", conn), what="the close")
        (_, _, op, error), = rec.of("close", conn)
        assert (op, error) == (hpsock.Op.SEND, hpsock.EHANDLER), \
            (hpsock.Op(op).name, hpsock.err_name(error))
        assert not rec.of("low_water", conn)
        wait_until(lambda: unraisable, what="the report")
        assert str(unraisable[0].exc_value) == "on_high_water failed on purpose"
        srv.send(other_conn, b"still here")
        assert recv_exactly(other, 10) == b"still here"
        assert not rec.of("close", other_conn)


class Producer(hpsock.Handler):
    """Sends `total` bytes of the stream pattern to each connection, in
    `chunk`s: while its unsent bytes are at or below high water, and again
    from on_low_water - the drained-callback idiom. (on_high_water comes
    after the handler whose send crossed returns, so a handler that sends
    in a loop checks unsent() itself.) Without it, a producer faster than
    its reader hits max_send_queue (send raises ESENDQ)."""

    def __init__(self, total, chunk):
        self.total, self.chunk = total, chunk
        self.pattern = StreamPattern()
        self.sent = {}
        self.highs, self.lows, self.closes, self.errors = [], [], [], []
        self.lock = threading.Lock()

    def pump(self, ep, conn):
        high = ep.send_high_water
        try:
            while self.sent[conn] < self.total and ep.unsent(conn) <= high:
                n = min(self.chunk, self.total - self.sent[conn])
                ep.send(conn, self.pattern.at(0, self.sent[conn], n))
                self.sent[conn] += n
        except hpsock.Error as e:
            self.errors.append((conn, self.sent[conn], e))
            raise

    def on_handshake(self, ep, conn):
        self.sent[conn] = 0
        self.pump(ep, conn)

    def on_high_water(self, ep, conn, unsent):
        self.highs.append((conn, unsent))

    def on_low_water(self, ep, conn, unsent):
        self.lows.append((conn, unsent))
        self.pump(ep, conn)

    def on_close(self, ep, conn, op, error):
        with self.lock:
            self.closes.append((conn, op, error))


def test_producer_paced_by_water_marks_sends_more_than_the_send_queue_holds(server_factory):
    total = 40 * MiB  # well past max_send_queue
    producer = Producer(total, 64 * KiB)
    # small socket buffers: what the reader has not taken queues in hpsock
    srv = server_factory(producer, workers=1, max_send_queue=4 * MiB,
                         send_high_water=512 * KiB, send_low_water=128 * KiB,
                         sndbuf=32 * KiB)
    pattern = StreamPattern()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * KiB)
    s.settimeout(DEADLINE)
    s.connect(srv.listen_address)
    with s:
        got = 0
        while got < total:
            data = s.recv(StreamPattern.MAX)
            assert data, f"the server closed after {got} of {total} bytes: " \
                         f"{producer.closes} {producer.errors}"
            assert pattern.at(0, got, len(data)) == data, f"bytes differ after {got}"
            got += len(data)
    assert not producer.errors, producer.errors
    assert producer.highs, "the producer never outran its reader: the test proves nothing"
    assert len(producer.lows) == len(producer.highs)
    # HIGH_WATER tells the unsent bytes when it is delivered: after the
    # handler that crossed returned, some may have gone out meanwhile
    assert all(0 <= u <= 4 * MiB for _, u in producer.highs), producer.highs
    assert all(u <= 128 * KiB for _, u in producer.lows), producer.lows


class Echo(hpsock.Handler):
    """examples/python/echo_server.py's handler: only on_receive, so
    neither SEND nor the water-mark events are in the mask."""

    def on_receive(self, server, conn, data):
        server.send(conn, data)


def test_auto_pause_stops_reading_from_a_client_that_does_not_read(server_factory):
    high, low = 256 * KiB, 64 * KiB
    closes = []

    class CountingEcho(Echo):
        def on_close(self, server, conn, op, error):
            closes.append((conn, op, error))

    srv = server_factory(CountingEcho(), workers=1, auto_pause=True,
                         send_high_water=high, send_low_water=low)
    assert srv.events & (hpsock.Event.HIGH_WATER.bit | hpsock.Event.LOW_WATER.bit) == 0
    pattern = StreamPattern()
    with connect_socket(srv) as s:
        (conn,) = wait_until(srv.conn_list, what="the connection")
        # Write without reading until the writes block for good: the
        # server stopped reading. Without auto_pause it reads on, its echo
        # queue reaches max_send_queue and the connection dies.
        s.setblocking(False)
        written, stuck_since, limit = 0, None, 256 * MiB
        end = time.monotonic() + DEADLINE
        while True:
            try:
                written += s.send(pattern.at(0, written, 64 * KiB))
                stuck_since = None
            except BlockingIOError:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > 0.5:
                    if srv.unsent(conn) > high:
                        break
                    stuck_since = None  # only slow, not paused: go on
                time.sleep(0.01)
            assert written < limit, f"the server read {written} bytes from a " \
                                    f"client that reads nothing"
            assert not closes, f"the connection closed: {closes}"
            assert time.monotonic() < end, \
                f"unsent never rose above high water ({srv.unsent(conn)})"
        unsent = srv.unsent(conn)
        # paused at high water: what is queued is high water plus at most
        # the echo of the one read that crossed it (a read takes 256 KiB)
        assert high < unsent <= high + 256 * KiB, unsent
        assert srv.counter(hpsock.Counter.AUTO_PAUSES) >= 1
        # the client reads: the server resumes and every byte comes back
        s.setblocking(True)
        s.settimeout(DEADLINE)
        got = 0
        while got < written:
            data = s.recv(StreamPattern.MAX)
            assert data, f"the server closed after echoing {got} of {written} bytes"
            assert pattern.at(0, got, len(data)) == data, f"bytes differ after {got}"
            got += len(data)
        s.sendall(b"still open")
        assert recv_exactly(s, 10) == b"still open"
    wait_until(lambda: closes, what="the close")
    assert closes[0][2] == 0, closes


def test_streaming_clients_against_the_echo_example_configuration(server_factory):
    """The load of test_examples' streaming test against an in-process
    server configured as examples/python/echo_server.py is (its handler,
    auto_pause, 2 workers): no dropped connection, every byte back."""
    srv = server_factory(Echo(), workers=2, auto_pause=True)
    failures, written, echoed = stream_echo(*srv.listen_address, clients=8,
                                            block=16384, seconds=3.0)
    assert not failures, "\n".join(failures)
    assert echoed == written and all(written), (written, echoed)
    assert srv.counter(hpsock.Counter.AUTO_PAUSES) >= 1, \
        "no client fell behind: the test proves nothing"

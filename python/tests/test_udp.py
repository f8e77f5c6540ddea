"""UDP roles from Python: UdpServer/UdpClient echo, UdpNode send_to with
the sender's address, UdpCast multicast over loopback, oversize refusal and
reporting, idle detection."""

import socket
import threading
import time

import pytest

import hpsock

WAIT = 5.0


class Rec(hpsock.Handler):
    """Records events; echoes datagrams when asked."""

    def __init__(self, echo=False):
        self.echo = echo
        self.cv = threading.Condition()
        self.events = []

    def _add(self, *ev):
        with self.cv:
            self.events.append(ev)
            self.cv.notify_all()

    def on_accept(self, ep, conn):
        self._add("accept", conn)

    def on_connect(self, ep, conn):
        self._add("connect", conn)

    def on_receive(self, ep, conn, data, address=None):
        self._add("receive", conn, data, address)
        if self.echo:
            if address is not None:
                ep.send_to(address[0], address[1], data)
            else:
                ep.send(conn, data)

    def on_close(self, ep, conn, op, error):
        self._add("close", conn, op, error)

    def on_error(self, ep, conn, op, error, address):
        self._add("error", conn, op, error, address)

    def wait(self, kind, n=1, timeout=WAIT):
        end = time.monotonic() + timeout
        with self.cv:
            while True:
                got = [e for e in self.events if e[0] == kind]
                if len(got) >= n:
                    return got
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)


def test_udp_server_and_client_echo(endpoints):
    srec, crec = Rec(echo=True), Rec()
    srv = hpsock.UdpServer(srec, workers=2)
    endpoints.append(srv)
    srv.start("127.0.0.1", 0)
    host, port = srv.listen_address
    assert srv.role == hpsock.Role.UDP_SERVER
    cli = hpsock.UdpClient(crec)
    endpoints.append(cli)
    cli.start(host, port)
    cli.send(b"ping")
    cli.sendv([b"ab", b"cd"])  # one datagram
    got = crec.wait("receive", 2)
    assert got is not None
    assert [e[2] for e in got] == [b"ping", b"abcd"]
    assert crec.wait("connect") is not None
    accepted = srec.wait("accept")
    assert accepted is not None and len(accepted) == 1
    assert srv.remote_address(accepted[0][1]) == cli.local_address()
    cli.close()
    srv.close()


def test_udp_node_send_to_carries_sender_address(endpoints):
    arec, brec = Rec(), Rec(echo=True)
    a, b = hpsock.UdpNode(arec), hpsock.UdpNode(brec)
    endpoints += [a, b]
    a.start("127.0.0.1", 0)
    b.start("127.0.0.1", 0)
    a.send_to("127.0.0.1", b.listen_address[1], b"hello")
    got = arec.wait("receive")
    assert got is not None
    _, _, data, address = got[0]
    assert data == b"hello"
    assert address == ("127.0.0.1", b.listen_address[1])
    sender = brec.wait("receive")[0][3]
    assert sender == ("127.0.0.1", a.listen_address[1])
    with pytest.raises(hpsock.Error) as e:
        a.send(b"no address")
    assert e.value.code == hpsock.EROLE
    with pytest.raises(hpsock.Error) as e:
        a.send_to("no-such-host.invalid", 9, b"x")
    assert e.value.code == hpsock.EADDR


def test_udp_oversize_is_refused_and_reported(endpoints):
    rec = Rec()
    node = hpsock.UdpNode(rec, udp_max_datagram=16)
    endpoints.append(node)
    node.start("127.0.0.1", 0)
    port = node.listen_address[1]
    assert node.udp_max_datagram == 16
    with pytest.raises(hpsock.Error) as e:
        node.send_to("127.0.0.1", port, b"x" * 17)
    assert e.value.code == hpsock.EDGRAMSIZE
    assert e.value.name == "HPS_EDGRAMSIZE"
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.1", 0))
        peer.sendto(b"y" * 17, ("127.0.0.1", port))
        peer.sendto(b"z" * 16, ("127.0.0.1", port))
        err = rec.wait("error")
        assert err is not None
        _, _, op, code, address = err[0]
        assert op == hpsock.Op.RECEIVE
        assert code == hpsock.EDGRAMSIZE
        assert address == peer.getsockname()
        got = rec.wait("receive")
        assert got is not None and got[0][2] == b"z" * 16
    finally:
        peer.close()


def test_udp_server_closes_oversize_and_idle_peers(endpoints):
    rec = Rec()
    srv = hpsock.UdpServer(rec, workers=1, udp_max_datagram=32,
                           udp_detect_interval=100, udp_detect_attempts=2)
    endpoints.append(srv)
    srv.start("127.0.0.1", 0)
    port = srv.listen_address[1]
    big, quiet = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                  for _ in range(2))
    try:
        big.sendto(b"b" * 33, ("127.0.0.1", port))
        quiet.sendto(b"q", ("127.0.0.1", port))
        closes = rec.wait("close", 2)
        assert closes is not None
        errors = sorted(e[3] for e in closes)
        assert errors == sorted([hpsock.EDGRAMSIZE, hpsock.EUDPIDLE])
    finally:
        big.close()
        quiet.close()


def test_udp_cast_multicast_on_loopback(endpoints):
    arec, brec = Rec(), Rec()
    a = hpsock.UdpCast(arec, interface="127.0.0.1")
    b = hpsock.UdpCast(brec, interface="127.0.0.1")
    endpoints += [a, b]
    a.start("239.255.77.2", 0)
    port = a.listen_address[1]
    b.start("239.255.77.2", port)
    a.send(b"to the group")
    got = brec.wait("receive")
    if got is None:
        pytest.skip("multicast does not reach the loopback interface here")
    assert got[0][2] == b"to the group"
    assert got[0][3] == ("127.0.0.1", port)
    b.leave_group("239.255.77.2", "127.0.0.1")
    with pytest.raises(hpsock.Error):
        b.leave_group("239.255.77.2", "127.0.0.1")
    b.join_group("239.255.77.2", "127.0.0.1")
    with pytest.raises(hpsock.Error) as e:
        b.join_group("127.0.0.1")
    assert e.value.code == hpsock.EADDR


def test_udp_cast_broadcast(endpoints):
    arec, brec = Rec(), Rec()
    a = hpsock.UdpCast(arec, udp_cast_mode=hpsock.CastMode.BROADCAST)
    b = hpsock.UdpCast(brec, udp_cast_mode=hpsock.CastMode.BROADCAST)
    endpoints += [a, b]
    a.start("127.255.255.255", 0)
    b.start("127.255.255.255", a.listen_address[1])
    a.send(b"everyone")
    got = brec.wait("receive")
    assert got is not None and got[0][2] == b"everyone"


class Fragile(Rec):
    """Raises from the first on_receive (and, with fail_send, the first
    on_send); records everything."""

    def __init__(self, fail_send=False):
        super().__init__()
        self.fail_send = fail_send
        self.received = 0
        self.sent = 0

    def on_receive(self, ep, conn, data, address=None):
        self._add("receive", conn, data, address)
        self.received += 1
        if self.received == 1:
            raise RuntimeError("on_receive failed on purpose")

    def on_send(self, ep, conn, data, address=None):
        self._add("send", conn, data, address)
        self.sent += 1
        if self.fail_send and self.sent == 1:
            raise RuntimeError("on_send failed on purpose")


def _assert_reported(unraisable, n, what):
    end = time.monotonic() + WAIT
    while len(unraisable) < n and time.monotonic() < end:
        time.sleep(0.005)
    assert len(unraisable) == n, f"expected {n} report(s), got {unraisable}"
    for info in unraisable:
        assert info.exc_type is RuntimeError, info
        assert what in str(info.exc_value), info


def test_udp_node_receive_exception_does_not_make_it_deaf(endpoints, catch_unraisable):
    unraisable = catch_unraisable()
    rec = Fragile()
    node = hpsock.UdpNode(rec)
    endpoints.append(node)
    node.start("127.0.0.1", 0)
    port = node.listen_address[1]
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.1", 0))
        peer.sendto(b"first", ("127.0.0.1", port))
        assert rec.wait("receive") is not None, "the first datagram never arrived"
        peer.sendto(b"second", ("127.0.0.1", port))
        got = rec.wait("receive", 2)
        assert got is not None, f"the node went deaf after its handler raised: {rec.events}"
        assert [e[2] for e in got] == [b"first", b"second"]
        assert got[1][3] == peer.getsockname()
        assert not [e for e in rec.events if e[0] == "close"], rec.events
        _assert_reported(unraisable, 1, "on_receive failed on purpose")
        # and it still sends
        node.send_to("127.0.0.1", peer.getsockname()[1], b"still here")
        peer.settimeout(WAIT)
        assert peer.recvfrom(100)[0] == b"still here"
    finally:
        peer.close()


def test_udp_node_send_exception_does_not_stop_it(endpoints, catch_unraisable):
    unraisable = catch_unraisable()
    rec = Fragile(fail_send=True)
    node = hpsock.UdpNode(rec)
    endpoints.append(node)
    node.start("127.0.0.1", 0)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(WAIT)
        dest = peer.getsockname()
        node.send_to(*dest, b"one")
        assert rec.wait("send") is not None, "no on_send for the first datagram"
        assert peer.recvfrom(100)[0] == b"one"
        node.send_to(*dest, b"two")
        assert peer.recvfrom(100)[0] == b"two", "the node stopped sending"
        peer.sendto(b"three", ("127.0.0.1", node.listen_address[1]))
        got = rec.wait("receive", 1)
        assert got is not None, f"the node went deaf after on_send raised: {rec.events}"
        assert rec.wait("send", 2) is not None
        assert not [e for e in rec.events if e[0] == "close"], rec.events
        # one report from on_send, one from the first on_receive
        _assert_reported(unraisable, 2, "failed on purpose")
    finally:
        peer.close()


def test_udp_cast_receive_exception_does_not_make_it_deaf(endpoints, catch_unraisable):
    unraisable = catch_unraisable()
    arec, brec = Rec(), Fragile()
    a = hpsock.UdpCast(arec, udp_cast_mode=hpsock.CastMode.BROADCAST)
    b = hpsock.UdpCast(brec, udp_cast_mode=hpsock.CastMode.BROADCAST)
    endpoints += [a, b]
    a.start("127.255.255.255", 0)
    b.start("127.255.255.255", a.listen_address[1])
    a.send(b"first")
    assert brec.wait("receive") is not None, "the first broadcast never arrived"
    a.send(b"second")
    got = brec.wait("receive", 2)
    assert got is not None, f"the cast went deaf after its handler raised: {brec.events}"
    assert [e[2] for e in got] == [b"first", b"second"]
    assert not [e for e in brec.events if e[0] == "close"], brec.events
    _assert_reported(unraisable, 1, "on_receive failed on purpose")

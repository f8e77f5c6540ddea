"""The callback bridge: event order and arguments, return values, handlers
that raise, stopping from a handler."""

import socket
import threading

import pytest

import hpsock
from support import (DEADLINE, EchoHandler, Recorder, connect_socket,
                     recv_exactly, wait_until)


def test_event_order_and_arguments(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    prepare = rec.of("prepare")
    assert len(prepare) == 1 and prepare[0][1] == 0 and prepare[0][2] >= 0
    with connect_socket(srv) as s:
        conn = rec.wait_event("handshake")[0][1]
        s.sendall(b"abc")
        rec.wait(lambda r: r.received.get(conn) == bytearray(b"abc"), what="abc")
        srv.send(conn, b"xyz")
        sent = rec.wait_event("send", conn)
        assert sent[0][2] == b"xyz"
        assert recv_exactly(s, 3) == b"xyz"
    rec.wait_event("close", conn)
    kinds = [e[0] for e in rec.events if e[1] == conn]
    assert kinds[:2] == ["accept", "handshake"]
    assert kinds[-1] == "close" and kinds.count("close") == 1
    srv.stop()
    assert rec.events[-1] == ("shutdown", 0)


def test_handler_gets_the_endpoint_object(server_factory):
    seen = []

    class Who(hpsock.Handler):
        def on_accept(self, ep, conn):
            seen.append(ep)

    srv = server_factory(Who())
    connect_socket(srv).close()
    wait_until(lambda: seen, what="on_accept")
    assert seen[0] is srv


def test_raising_handler_is_reported_and_only_its_connection_closes(server_factory, catch_unraisable):
    unraisable = catch_unraisable()
    class Fragile(EchoHandler):
        def on_receive(self, ep, conn, data):
            if data == b"boom":
                raise RuntimeError("handler failed on purpose")
            return super().on_receive(ep, conn, data)

    handler = Fragile()
    srv = server_factory(handler)
    with connect_socket(srv) as good, connect_socket(srv) as bad:
        good.sendall(b"ping")
        assert recv_exactly(good, 4) == b"ping"
        bad.sendall(b"boom")
        bad.settimeout(DEADLINE)
        assert bad.recv(10) == b""  # the server closed that connection
        wait_until(lambda: handler.closes, what="the failed connection's CLOSE")
        (conn, op, error), = handler.closes
        assert (op, error) == (hpsock.Op.RECEIVE, hpsock.EHANDLER)
        good.sendall(b"still there")
        assert recv_exactly(good, 11) == b"still there"
    with connect_socket(srv) as again:  # and the server accepts new ones
        again.sendall(b"new")
        assert recv_exactly(again, 3) == b"new"
    wait_until(lambda: unraisable, what="the report")
    info = unraisable[0]
    assert info.exc_type is RuntimeError
    assert "on purpose" in str(info.exc_value)
    assert info.exc_traceback is not None
    assert "on_receive" in repr(info.object)


@pytest.mark.parametrize("value", [7, -1, "yes", 1.0])
def test_bad_return_value_is_reported_as_error(server_factory, catch_unraisable, value):
    unraisable = catch_unraisable()
    class Bad(Recorder):
        def on_receive(self, ep, conn, data):
            super().on_receive(ep, conn, data)
            return value

    rec = Bad()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        s.sendall(b"x")
        close = rec.wait_event("close")[0]
    assert close[2:] == (hpsock.Op.RECEIVE, hpsock.EHANDLER)
    wait_until(lambda: unraisable, what="the report")
    assert unraisable[0].exc_type is ValueError


def test_ok_ignore_and_none_go_on(server_factory):
    results = iter([None, hpsock.OK, hpsock.IGNORE, 0, 1])

    class Returns(EchoHandler):
        def on_receive(self, ep, conn, data):
            super().on_receive(ep, conn, data)
            return next(results)

    srv = server_factory(Returns())
    with connect_socket(srv) as s:
        for i in range(5):
            s.sendall(b"%d" % i)
            assert recv_exactly(s, 1) == b"%d" % i


def test_error_from_accept_refuses_the_connection(server_factory):
    class Refuse(Recorder):
        def on_accept(self, ep, conn):
            super().on_accept(ep, conn)
            return hpsock.ERROR

    rec = Refuse()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        s.settimeout(DEADLINE)
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
    rec.wait_event("accept")
    assert srv.conn_count() == 0
    srv.stop()
    assert not rec.of("close") and not rec.of("handshake")


def test_error_from_server_prepare_aborts_start():
    class NoListen(hpsock.Handler):
        def on_prepare(self, ep, conn, fd):
            return hpsock.ERROR

    with hpsock.TcpServer(NoListen(), workers=1) as srv:
        with pytest.raises(hpsock.Error) as ei:
            srv.start("127.0.0.1", 0)
        assert ei.value.code == hpsock.EHANDLER


def test_raising_prepare_aborts_start(catch_unraisable):
    unraisable = catch_unraisable()
    class Raises(hpsock.Handler):
        def on_prepare(self, ep, conn, fd):
            raise KeyError("nope")

    with hpsock.TcpServer(Raises(), workers=1) as srv:
        with pytest.raises(hpsock.Error) as ei:
            srv.start("127.0.0.1", 0)
        assert ei.value.code == hpsock.EHANDLER
    assert unraisable and unraisable[0].exc_type is KeyError


def test_error_from_agent_prepare_closes_with_connect(server_factory, endpoints):
    srv = server_factory()

    class NoConnect(Recorder):
        def on_prepare(self, ep, conn, fd):
            super().on_prepare(ep, conn, fd)
            return hpsock.ERROR

    rec = NoConnect()
    agent = hpsock.TcpAgent(rec, workers=1)
    endpoints.append(agent)
    agent.start()
    conn = agent.connect(*srv.listen_address)
    close = rec.wait_event("close", conn)[0]
    assert close[2:] == (hpsock.Op.CONNECT, hpsock.EHANDLER)
    assert not rec.of("connect")


def test_raising_close_and_shutdown_handlers_do_not_stop_the_stop(catch_unraisable):
    unraisable = catch_unraisable()
    class Noisy(hpsock.Handler):
        def on_close(self, ep, conn, op, error):
            raise ValueError("close")

        def on_shutdown(self, ep):
            raise ValueError("shutdown")

    with hpsock.TcpServer(Noisy(), workers=1) as srv:
        srv.start("127.0.0.1", 0)
        s = socket.create_connection(srv.listen_address, timeout=DEADLINE)
        wait_until(lambda: srv.conn_count() == 1, what="the connection")
        srv.stop()
        s.close()
    assert sorted(str(u.exc_value) for u in unraisable) == ["close", "shutdown"]


def test_stop_from_inside_a_handler_is_asynchronous(server_factory):
    stopped_in_handler = threading.Event()

    class StopOnReceive(Recorder):
        def on_receive(self, ep, conn, data):
            super().on_receive(ep, conn, data)
            ep.stop()  # returns at once; SHUTDOWN follows after we return
            stopped_in_handler.set()

    rec = StopOnReceive()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        s.sendall(b"stop")
        assert srv.wait(DEADLINE)
    assert stopped_in_handler.is_set()
    assert rec.events[-1][0] == "shutdown"
    assert srv.state is hpsock.State.STOPPED


def test_handlers_stopping_each_other_do_not_deadlock(server_factory):
    """Each server's accept handler stops the other while the other's
    handler runs too: a stop inside any endpoint's handler only begins."""
    entered = {"a": threading.Event(), "b": threading.Event()}
    returned = {}
    servers = {}

    class StopTheOther(hpsock.Handler):
        def __init__(self, me, other):
            self.me, self.other = me, other

        def on_accept(self, ep, conn):
            entered[self.me].set()
            entered[self.other].wait(DEADLINE)  # releases the GIL
            servers[self.other].stop()
            returned[self.me] = servers[self.other].state

    servers["a"] = server_factory(StopTheOther("a", "b"), workers=1)
    servers["b"] = server_factory(StopTheOther("b", "a"), workers=1)
    with connect_socket(servers["a"]), connect_socket(servers["b"]):
        assert servers["a"].wait(3 * DEADLINE), "the stops deadlocked"
        assert servers["b"].wait(3 * DEADLINE), "the stops deadlocked"
    assert set(returned) == {"a", "b"}
    assert all(st in (hpsock.State.STOPPING, hpsock.State.STOPPED)
               for st in returned.values())


def test_handlers_may_call_the_api(server_factory):
    info = {}

    class Curious(hpsock.Handler):
        def on_handshake(self, ep, conn):
            info["remote"] = ep.remote_address(conn)
            info["count"] = ep.conn_count()
            ep.set_extra(conn, 42)

        def on_receive(self, ep, conn, data):
            info["extra"] = ep.get_extra(conn)
            info["stats"] = ep.stats(conn)
            ep.sendv(conn, [data, data])

    srv = server_factory(Curious())
    with connect_socket(srv) as s:
        s.sendall(b"ab")
        assert recv_exactly(s, 4) == b"abab"
        assert info["remote"] == s.getsockname()
    assert info["count"] == 1 and info["extra"] == 42
    assert info["stats"].bytes_received == 2


def test_send_events_only_when_overridden(server_factory):
    class NoSend(Recorder):
        on_send = hpsock.Handler.on_send  # back to the default: not delivered

    srv = server_factory(NoSend())
    assert not srv.events & hpsock.Event.SEND.bit
    assert srv.events & hpsock.Event.RECEIVE.bit

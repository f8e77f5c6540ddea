"""Package basics: version, constants, errors, options, life cycle."""

import gc
import os
import re
import socket
import weakref

import pytest

import hpsock
from support import DEADLINE, Recorder, wait_until


def test_imported_from_the_installed_package():
    assert "site-packages" in hpsock.__file__ or "dist-packages" in hpsock.__file__


def test_bundled_library_is_the_one_loaded():
    pkg = os.path.dirname(hpsock.__file__)
    assert any(n.startswith("libhpsock.so.") for n in os.listdir(pkg))
    with open("/proc/self/maps") as f:
        maps = f.read()
    loaded = {line.split()[-1] for line in maps.splitlines() if "libhpsock.so" in line}
    assert loaded and all(p.startswith(pkg) for p in loaded), loaded


def test_version_matches_the_c_library():
    assert re.fullmatch(r"\d+\.\d+\.\d+", hpsock.__version__)
    major, minor, patch = map(int, hpsock.__version__.split("."))
    assert hpsock.version_hex == (major << 16) | (minor << 8) | patch


def test_error_codes_and_names():
    names = ["EINVAL", "EHANDLE", "ENOTFOUND", "ESTATE", "EROLE", "EMODEL",
             "ENOMEM", "ESENDQ", "ELIMIT", "EINLOOP", "EHANDLER", "EADDR",
             "ESTOPPING", "ETIMEDOUT", "EAGAIN", "EPACKFLAG", "EPACKSIZE",
             "EPACKEMPTY", "EPULLFULL", "ESILENCE", "EFILE", "ECLOSETIMEOUT"]
    values = [getattr(hpsock, n) for n in names]
    assert values == list(range(-30001, -30023, -1))
    for n, v in zip(names, values):
        assert hpsock.err_name(v) == "HPS_" + n
        assert hpsock.strerror(v) and hpsock.strerror(v) != "unknown error"
    assert hpsock.err_name(-104) == "ECONNRESET"


def test_error_carries_code_name_and_message():
    e = hpsock.Error(hpsock.ENOTFOUND)
    assert e.code == hpsock.ENOTFOUND
    assert e.name == "HPS_ENOTFOUND"
    assert e.message == "connection not found"
    assert str(e) == "HPS_ENOTFOUND: connection not found"
    assert e.args == (hpsock.ENOTFOUND,)
    assert isinstance(e, Exception)


def test_enums_match_the_header():
    assert [int(x) for x in hpsock.Event] == list(range(1, 11))
    assert (hpsock.Event.HIGH_WATER, hpsock.Event.LOW_WATER) == (9, 10)
    assert hpsock.EVENTS_ALL == sum(e.bit for e in hpsock.Event) == 0x7fe
    assert (hpsock.OK, hpsock.IGNORE, hpsock.ERROR) == (0, 1, 2)
    assert [int(m) for m in hpsock.Model] == [0, 1, 2]
    assert hpsock.Op.RECEIVE == 4 and hpsock.Op.CLOSE == 5
    assert [int(r) for r in hpsock.Role] == [1, 2, 3, 4, 5, 6, 7]
    assert [int(c) for c in hpsock.Counter] == [1, 2, 3, 4, 5, 6]
    assert (hpsock.Option.SEND_HIGH_WATER, hpsock.Option.SEND_LOW_WATER,
            hpsock.Option.AUTO_PAUSE, hpsock.Option.CLOSE_TIMEOUT) == (20, 21, 22, 23)
    assert hpsock.StrOption.TLS_KEY_PASSWORD == 90


def test_roles_and_initial_state():
    for cls, role in ((hpsock.TcpServer, hpsock.Role.TCP_SERVER),
                      (hpsock.TcpAgent, hpsock.Role.TCP_AGENT),
                      (hpsock.TcpClient, hpsock.Role.TCP_CLIENT)):
        with cls() as ep:
            assert ep.role is role
            assert ep.state is hpsock.State.CREATED


def test_options_as_keywords_and_properties():
    with hpsock.TcpServer(workers=3, recv_model=hpsock.Model.PACK, pack_flag=7,
                          pack_max=1000, nodelay=False, silence_timeout=500) as srv:
        assert srv.workers == 3
        assert srv.recv_model is hpsock.Model.PACK
        assert (srv.pack_flag, srv.pack_max) == (7, 1000)
        assert srv.nodelay is False
        assert srv.silence_timeout == 500
        srv.max_send_queue = 1 << 20
        assert srv.getopt(hpsock.Option.MAX_SEND_QUEUE) == 1 << 20
        srv.setopt(hpsock.Option.BACKLOG, 77)
        assert srv.backlog == 77
        assert srv.reuse_addr is True  # a default
        assert srv.connect_timeout == 10000


def test_option_errors():
    with hpsock.TcpServer() as srv:
        with pytest.raises(hpsock.Error) as ei:
            srv.workers = 0
        assert ei.value.code == hpsock.EINVAL
        with pytest.raises(hpsock.Error) as ei:
            srv.getopt(999)
        assert ei.value.name == "HPS_EINVAL"
        with pytest.raises(TypeError):
            srv.workers = 2.5  # no silent truncation
    with pytest.raises(TypeError, match="unknown option 'wrokers'"):
        hpsock.TcpServer(wrokers=2)


def test_options_fixed_while_started_except_events(server_factory):
    srv = server_factory()
    with pytest.raises(hpsock.Error) as ei:
        srv.workers = 1
    assert ei.value.code == hpsock.ESTATE
    srv.events = hpsock.Event.RECEIVE.bit  # live
    assert srv.events == hpsock.Event.RECEIVE.bit


def test_events_mask_follows_the_overridden_methods(server_factory):
    class OnlyReceive(hpsock.Handler):
        def on_receive(self, ep, conn, data):
            pass

    assert server_factory(OnlyReceive()).events == hpsock.Event.RECEIVE.bit

    class OnlyLowWater(hpsock.Handler):
        def on_low_water(self, ep, conn, unsent):
            pass

    assert server_factory(OnlyLowWater()).events == hpsock.Event.LOW_WATER.bit
    assert server_factory().events == 0
    assert server_factory(Recorder()).events == hpsock.EVENTS_ALL

    class Duck:  # not a Handler subclass: its methods count
        def on_accept(self, ep, conn):
            pass

    assert server_factory(Duck()).events == hpsock.Event.ACCEPT.bit


def test_explicit_events_option_wins(server_factory):
    srv = server_factory(Recorder(), events=hpsock.Event.ACCEPT.bit)
    assert srv.events == hpsock.Event.ACCEPT.bit


def test_life_cycle_start_stop_restart(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    assert srv.state is hpsock.State.STARTED
    host, port = srv.listen_address
    assert host == "127.0.0.1" and port > 0
    with pytest.raises(hpsock.Error) as ei:
        srv.start("127.0.0.1", 0)
    assert ei.value.code == hpsock.ESTATE
    srv.stop()
    assert srv.state is hpsock.State.STOPPED
    assert rec.of("shutdown")
    srv.stop()  # stopping a stopped endpoint is fine
    assert srv.wait(0)
    srv.start("127.0.0.1", 0)  # a stopped endpoint starts again
    assert srv.state is hpsock.State.STARTED
    assert srv.wait(0.05) is False  # still running: times out
    srv.stop()
    assert len(rec.of("shutdown")) == 2


def test_stop_never_started_is_estate():
    with hpsock.TcpAgent() as agent:
        with pytest.raises(hpsock.Error) as ei:
            agent.stop()
        assert ei.value.code == hpsock.ESTATE


def test_calls_after_close_raise_ehandle():
    srv = hpsock.TcpServer()
    srv.start("127.0.0.1", 0)
    srv.close()
    assert srv.closed
    srv.close()  # twice is fine
    for call in (lambda: srv.send(1, b"x"), lambda: srv.state,
                 lambda: srv.conn_count(), lambda: srv.listen_address,
                 lambda: srv.start("127.0.0.1", 0), lambda: srv.workers):
        with pytest.raises(hpsock.Error) as ei:
            call()
        assert ei.value.code == hpsock.EHANDLE
    assert "closed" in repr(srv)


def test_context_manager_stops_and_frees():
    rec = Recorder()
    with hpsock.TcpServer(rec, workers=1) as srv:
        srv.start("127.0.0.1", 0)
    assert rec.of("shutdown")
    assert srv.closed


def test_start_failure_raises_and_releases_the_handler():
    with hpsock.TcpServer(workers=1) as first:
        first.start("127.0.0.1", 0)
        port = first.listen_address[1]
        rec = Recorder()
        ref = weakref.ref(rec)
        second = hpsock.TcpServer(rec, workers=1, reuse_addr=False)
        with pytest.raises(hpsock.Error) as ei:
            second.start("127.0.0.1", port)
        assert ei.value.name == "EADDRINUSE"
        assert second.state in (hpsock.State.CREATED, hpsock.State.STOPPED)
        del ei, rec  # the traceback's frames reference the handler too
        second.close()
        del second
        gc.collect()
        assert ref() is None


def test_running_endpoint_is_kept_alive_and_released_after_shutdown():
    """No Python reference needed while running; none kept after SHUTDOWN."""
    rec = Recorder()
    rec_ref = weakref.ref(rec)

    def start():
        srv = hpsock.TcpServer(rec, workers=1)
        srv.start("127.0.0.1", 0)
        return weakref.ref(srv)

    srv_ref = start()
    del rec
    gc.collect()
    assert srv_ref() is not None, "a running endpoint was collected"
    srv_ref().stop()
    gc.collect()
    wait_until(lambda: srv_ref() is None and rec_ref() is None, DEADLINE,
               "the stopped endpoint and its handler to be collected")


def test_last_reference_dropped_on_a_loop_thread():
    """An endpoint stopped from its own handler, referenced by nothing else,
    is freed from its loop thread's SHUTDOWN without deadlock or crash."""
    import socket

    class StopOnAccept(hpsock.Handler):
        def on_accept(self, ep, conn):
            ep.stop()  # asynchronous from inside a handler

    def start():
        srv = hpsock.TcpServer(StopOnAccept(), workers=1)
        srv.start("127.0.0.1", 0)
        return weakref.ref(srv), srv.listen_address

    ref, addr = start()
    gc.collect()
    assert ref() is not None
    socket.create_connection(addr, timeout=DEADLINE).close()
    wait_until(lambda: ref() is None, DEADLINE, "the endpoint to be released")


def test_close_inside_own_handler_is_einloop(server_factory):
    import socket
    result = []

    class CloseInHandler(hpsock.Handler):
        def on_accept(self, ep, conn):
            try:
                ep.close()
            except hpsock.Error as e:
                result.append(e.code)

    srv = server_factory(CloseInHandler())
    socket.create_connection(srv.listen_address, timeout=DEADLINE).close()
    wait_until(lambda: result, what="the handler to run")
    assert result == [hpsock.EINLOOP]
    assert not srv.closed


def test_handler_is_replaced_only_while_not_started(server_factory):
    srv = server_factory()
    with pytest.raises(hpsock.Error) as ei:
        srv.handler = Recorder()
    assert ei.value.code == hpsock.ESTATE
    srv.stop()
    rec = Recorder()
    srv.handler = rec
    srv.start("127.0.0.1", 0)
    assert srv.handler is rec
    assert srv.events == hpsock.EVENTS_ALL
    assert rec.of("prepare")


def test_handlers_may_call_the_endpoint_while_close_stops_it():
    results = []

    class AsksOnClose(Recorder):
        def on_close(self, ep, conn, op, error):
            try:
                results.append(("close", ep.stats(conn).bytes_received))
            except hpsock.Error as e:
                results.append(("close", e))

        def on_shutdown(self, ep):
            try:
                results.append(("shutdown", ep.conn_count()))
            except hpsock.Error as e:
                results.append(("shutdown", e))

    rec = AsksOnClose()
    srv = hpsock.TcpServer(rec, workers=1)
    srv.start("127.0.0.1", 0)
    with socket.create_connection(srv.listen_address, timeout=DEADLINE) as s:
        s.sendall(b"four")
        rec.wait(lambda r: len(r.received.get(r.of("accept")[0][1], b"")) == 4
                 if r.of("accept") else False, what="the bytes")
        srv.close()
    assert results == [("close", 4), ("shutdown", 0)], results

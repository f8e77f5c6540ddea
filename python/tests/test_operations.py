"""Every connection operation of the C ABI, through the Python API."""

import array
import os
import socket
import threading

import pytest

import hpsock
from support import (DEADLINE, EchoHandler, Recorder, connect_socket,
                     pack_header, recv_exactly, wait_until)


def accepted(rec, count=1):
    return [e[1] for e in rec.wait_event("handshake", count=count)]


def code_of(call):
    with pytest.raises(hpsock.Error) as ei:
        call()
    return ei.value.code


# ---- send, sendv, send_file ------------------------------------------------

def test_send_takes_any_contiguous_buffer(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
        big = bytearray(b"0123456789")
        parts = [b"ab", bytearray(b"cd"), memoryview(b"xxefxx")[2:4],
                 memoryview(big)[3:5], array.array("B", [103, 104])]
        for p in parts:
            srv.send(conn, p)
        assert recv_exactly(s, 10) == b"abcdef34gh"


def test_send_rejects_what_is_not_a_buffer(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv):
        conn = accepted(rec)[0]
        with pytest.raises(TypeError):
            srv.send(conn, "text")
        with pytest.raises((TypeError, BufferError)):
            srv.send(conn, memoryview(b"abcdef")[::2])  # not contiguous
        assert code_of(lambda: srv.send(conn, b"")) == hpsock.EINVAL
        with pytest.raises(OverflowError):
            srv.send(-1, b"x")


def test_sendv_gathers_buffers_into_one_send(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
        srv.sendv(conn, [b"he", bytearray(b""), memoryview(b"llo"), b" world"])
        srv.sendv(conn, (b"!" for _ in range(3)))  # any iterable
        assert recv_exactly(s, 14) == b"hello world!!!"
        assert code_of(lambda: srv.sendv(conn, [])) == hpsock.EINVAL
        assert code_of(lambda: srv.sendv(conn, [b"", b""])) == hpsock.EINVAL
        with pytest.raises(TypeError):
            srv.sendv(conn, 5)
        with pytest.raises(TypeError):
            srv.sendv(conn, [b"ok", "not bytes"])


def test_sendv_in_the_pack_model_is_one_frame(server_factory):
    rec = Recorder()
    srv = server_factory(rec, recv_model=hpsock.Model.PACK)
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
        srv.sendv(conn, [b"abc", b"de"])
        srv.send(conn, b"f")
        assert recv_exactly(s, 4 + 5 + 4 + 1) == pack_header(5) + b"abcde" + pack_header(1) + b"f"
        assert code_of(lambda: srv.send(conn, b"x" * (srv.pack_max + 1))) == hpsock.EPACKSIZE


def test_send_file_whole_and_ranges(server_factory, tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
        srv.send_file(conn, path)  # PathLike
        assert recv_exactly(s, len(data)) == data
        srv.send_file(conn, str(path), 1000, 5000)
        assert recv_exactly(s, 5000) == data[1000:6000]
        srv.send_file(conn, str(path), len(data) - 10)  # to the end
        srv.send(conn, b"after")  # ordered behind the file
        assert recv_exactly(s, 15) == data[-10:] + b"after"
        assert code_of(lambda: srv.send_file(conn, path, len(data) + 1, 1)) == hpsock.EFILE
        assert code_of(lambda: srv.send_file(conn, tmp_path / "missing")) == hpsock.EFILE
        assert code_of(lambda: srv.send_file(conn, path, -1)) == hpsock.EINVAL


def test_send_file_refused_in_the_pack_model(server_factory, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    rec = Recorder()
    srv = server_factory(rec, recv_model=hpsock.Model.PACK)
    with connect_socket(srv):
        conn = accepted(rec)[0]
        assert code_of(lambda: srv.send_file(conn, path)) == hpsock.EMODEL


def test_send_queue_limit_is_esendq(server_factory):
    rec = Recorder()
    srv = server_factory(rec, max_send_queue=1000)
    with connect_socket(srv):
        conn = accepted(rec)[0]
        assert code_of(lambda: srv.send(conn, b"x" * 2000)) == hpsock.ESENDQ


def test_sends_from_many_python_threads(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
        n, per = 8, 200

        def sender(k):
            for i in range(per):
                srv.send(conn, bytes([k]) * 10)

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        got = recv_exactly(s, n * per * 10)
        for t in threads:
            t.join()
        # sends are atomic: every 10-byte block is one sender's
        blocks = [got[i:i + 10] for i in range(0, len(got), 10)]
        assert all(b == b[:1] * 10 for b in blocks)
        assert sorted(b[0] for b in blocks) == sorted(k for k in range(n) for _ in range(per))


# ---- disconnect, pause -----------------------------------------------------

def test_disconnect_sends_queued_bytes_first(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
        data = os.urandom(4 << 20)
        srv.send(conn, data)
        srv.disconnect(conn)
        got = bytearray()
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
        assert bytes(got) == data
        close = rec.wait_event("close", conn)[0]
        assert close[2:] == (hpsock.Op.CLOSE, 0)
        assert code_of(lambda: srv.disconnect(conn)) == hpsock.ENOTFOUND


def test_disconnect_force_closes_at_once(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
        srv.disconnect(conn, force=True)
        assert rec.wait_event("close", conn)[0][2:] == (hpsock.Op.CLOSE, 0)
        s.settimeout(DEADLINE)
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass


def test_pause_and_resume_receive(server_factory):
    rec = Recorder()
    srv = server_factory(rec, workers=1)
    with connect_socket(srv) as a, connect_socket(srv) as b:
        ca, cb = accepted(rec, 2)
        srv.pause_receive(ca)
        a.sendall(b"held")
        # b's round trip runs through the same loop after a's bytes were sent
        b.sendall(b"ping")
        rec.wait(lambda r: r.received.get(cb) == bytearray(b"ping"), what="b's bytes")
        assert ca not in rec.received, "a paused connection received"
        srv.resume_receive(ca)
        rec.wait(lambda r: r.received.get(ca) == bytearray(b"held"), what="a's bytes after resume")
        srv.pause_receive(ca, True)
        srv.pause_receive(ca, False)



def test_pack_handler_pause_holds_the_rest_of_the_read(server_factory):
    """A pack handler pausing its connection gets no further frame, even of
    the bytes already read with it; the resume delivers them, in order."""

    class PauseOnFirst(Recorder):
        def on_receive(self, ep, conn, data):
            if not self.of("receive", conn):
                ep.pause_receive(conn)
            super().on_receive(ep, conn, data)

    rec = PauseOnFirst()
    srv = server_factory(rec, workers=1, recv_model=hpsock.Model.PACK)
    frames = [b"frame-%02d" % i for i in range(20)]
    with connect_socket(srv) as a, connect_socket(srv) as b:
        ca, cb = accepted(rec, 2)
        a.sendall(b"".join(pack_header(len(f)) + f for f in frames))  # one write
        rec.wait_event("receive", ca)
        # b's frame goes through the same loop after a's read was delivered
        b.sendall(pack_header(4) + b"ping")
        rec.wait_event("receive", cb)
        assert [e[2] for e in rec.of("receive", ca)] == frames[:1]
        srv.resume_receive(ca)
        rec.wait_event("receive", ca, count=len(frames))
        assert [e[2] for e in rec.of("receive", ca)] == frames


# ---- pull model: fetch / peek ----------------------------------------------

def test_fetch_and_peek_in_the_pull_model(server_factory):
    rec = Recorder()
    srv = server_factory(rec, recv_model=hpsock.Model.PULL)
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
        s.sendall(b"hello world")
        rec.wait(lambda r: any(e[2] == 11 for e in r.of("receive", conn)), what="11 bytes waiting")
        assert srv.peek(conn, 5) == b"hello"
        assert srv.fetch(conn, 6) == b"hello "
        assert code_of(lambda: srv.fetch(conn, 6)) == hpsock.EAGAIN  # nothing taken
        assert srv.peek(conn, 5) == b"world"
        assert srv.fetch(conn, 5) == b"world"
        assert code_of(lambda: srv.fetch(conn, 0)) == hpsock.EINVAL
        assert code_of(lambda: srv.peek(conn, 1)) == hpsock.EAGAIN


def test_fetch_outside_the_pull_model_is_emodel(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv):
        conn = accepted(rec)[0]
        assert code_of(lambda: srv.fetch(conn, 1)) == hpsock.EMODEL
        assert code_of(lambda: srv.peek(conn, 1)) == hpsock.EMODEL


# ---- connection list, addresses, extra data, stats --------------------------

def test_conn_list_and_count(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    socks = [connect_socket(srv) for _ in range(3)]
    try:
        ids = accepted(rec, 3)
        assert srv.conn_count() == 3
        assert sorted(srv.conn_list()) == sorted(ids)
        socks[0].close()
        closed = rec.wait_event("close")[0][1]
        assert srv.conn_count() == 2
        assert sorted(srv.conn_list()) == sorted(set(ids) - {closed})
    finally:
        for s in socks:
            s.close()
    wait_until(lambda: srv.conn_count() == 0, what="no connections")
    assert srv.conn_list() == []


def test_addresses(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
        assert srv.remote_address(conn) == s.getsockname()
        assert srv.local_address(conn) == s.getpeername() == srv.listen_address


def test_ipv6_server(server_factory):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    rec = Recorder()
    srv = hpsock.TcpServer(rec, workers=1)
    try:
        try:
            srv.start("::1", 0)
        except hpsock.Error as e:
            pytest.skip(f"no IPv6 loopback: {e}")
        host, port = srv.listen_address
        assert host == "::1"
        with socket.create_connection(("::1", port), timeout=DEADLINE) as s:
            conn = accepted(rec)[0]
            assert srv.remote_address(conn) == s.getsockname()[:2]
    finally:
        srv.close()


def test_extra_data(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    with connect_socket(srv):
        conn = accepted(rec)[0]
        assert srv.get_extra(conn) == 0
        srv.set_extra(conn, 12345)
        assert srv.get_extra(conn) == 12345
        srv.set_extra(conn, 2 ** 64 - 1)
        assert srv.get_extra(conn) == 2 ** 64 - 1
        with pytest.raises(OverflowError):
            srv.set_extra(conn, -1)


def test_stats_per_connection_and_totals(server_factory):
    srv = server_factory(EchoHandler())
    with connect_socket(srv) as s:
        s.sendall(b"x" * 1000)
        recv_exactly(s, 1000)
        conn = srv.conn_list()[0]
        # counted just after the write: the peer may see the bytes first
        st = wait_until(lambda: (lambda st: st.bytes_sent == 1000 and st)(srv.stats(conn)),
                        what="the send to be counted")
        assert isinstance(st, hpsock.Stats)
        assert st.bytes_received == 1000 and st.bytes_sent == 1000
        assert st.msgs_received >= 1 and st.msgs_sent == st.msgs_received
        assert st.age_ms >= 0 and st.silence_ms >= 0
    wait_until(lambda: srv.conn_count() == 0, what="the close")
    total = srv.stats()
    assert total.bytes_received == 1000 and total.bytes_sent == 1000


def test_disconnect_long_and_silent(server_factory):
    rec = Recorder()
    srv = server_factory(rec)
    socks = [connect_socket(srv) for _ in range(2)]
    try:
        ids = accepted(rec, 2)
        assert code_of(lambda: srv.disconnect_long(0)) == hpsock.EINVAL
        assert code_of(lambda: srv.disconnect_silent(-5)) == hpsock.EINVAL
        assert srv.disconnect_long(10 ** 9) == 0  # nobody that old
        wait_until(lambda: all(srv.stats(c).age_ms >= 50 for c in ids), what="50 ms of age")
        assert srv.disconnect_long(50) == 2
        closes = rec.wait_event("close", count=2)
        assert sorted(c[1] for c in closes) == sorted(ids)
        assert all(c[2:] == (hpsock.Op.CLOSE, 0) for c in closes)
    finally:
        for s in socks:
            s.close()


# ---- agent and client ------------------------------------------------------

def test_agent_connects_and_talks(server_factory, endpoints):
    srv = server_factory(EchoHandler())
    rec = Recorder()
    agent = hpsock.TcpAgent(rec, workers=2)
    endpoints.append(agent)
    assert code_of(lambda: agent.connect(*srv.listen_address)) == hpsock.ESTATE
    agent.start()
    ids = [agent.connect(*srv.listen_address) for _ in range(4)]
    assert len(set(ids)) == 4
    for c in ids:
        rec.wait_event("handshake", c)
        agent.send(c, b"hi %d" % c)
    for c in ids:
        rec.wait(lambda r: r.received.get(c) == bytearray(b"hi %d" % c), what=f"echo on {c}")
        assert agent.remote_address(c) == srv.listen_address
    kinds = [e[0] for e in rec.events if e[1] == ids[0]]
    assert kinds[:3] == ["prepare", "connect", "handshake"]
    assert code_of(lambda: agent.connect("", 1)) == hpsock.EADDR
    assert code_of(lambda: agent.connect("127.0.0.1", 0)) == hpsock.EADDR
    with pytest.raises(hpsock.Error) as ei:  # listen_address is a server's
        hpsock.TcpServer.listen_address.fget(agent)
    assert ei.value.code == hpsock.EROLE


def test_agent_send_before_connect_is_estate(endpoints):
    with socket.socket() as lst:  # listening, never accepting: connect completes
        lst.bind(("127.0.0.1", 0))
        lst.listen(8)
        gate = threading.Event()

        class Blocking(hpsock.Handler):
            def on_prepare(self, ep, conn, fd):
                gate.wait(DEADLINE)  # hold the connect back

        agent = hpsock.TcpAgent(Blocking(), workers=1)
        endpoints.append(agent)
        agent.start()
        conn = agent.connect(*lst.getsockname())
        try:
            assert code_of(lambda: agent.send(conn, b"x")) == hpsock.ESTATE
        finally:
            gate.set()


def test_client_round_trip_and_conn_zero(server_factory, endpoints):
    srv = server_factory(EchoHandler())
    rec = Recorder()
    cli = hpsock.TcpClient(rec, recv_model=hpsock.Model.PUSH)
    endpoints.append(cli)
    cli.start(*srv.listen_address)
    conn = rec.wait_event("handshake")[0][1]
    cli.send(b"one ")             # current connection
    cli.send(0, b"two ")          # 0 = current
    cli.send(conn, b"three")      # its ID
    cli.sendv([b"!", b"?"])
    rec.wait(lambda r: r.received.get(conn) == bytearray(b"one two three!?"), what="the echoes")
    assert cli.conn_list() == [conn]
    assert cli.remote_address() == srv.listen_address == cli.remote_address(conn)
    assert cli.local_address()[0] == "127.0.0.1"
    cli.disconnect()
    assert rec.wait_event("close", conn)[0][2:] == (hpsock.Op.CLOSE, 0)


def test_client_pull_fetch_overloads(server_factory, endpoints, tmp_path):
    srv = server_factory(EchoHandler())
    rec = Recorder()
    cli = hpsock.TcpClient(rec, recv_model=hpsock.Model.PULL)
    endpoints.append(cli)
    cli.start(*srv.listen_address)
    conn = rec.wait_event("handshake")[0][1]
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    cli.send_file(path)
    cli.send_file(conn, path, 3)
    rec.wait(lambda r: any(e[2] == 9 for e in r.of("receive")), what="9 bytes waiting")
    assert cli.peek(3) == b"abc"
    assert cli.fetch(conn, 4) == b"abcd"
    assert cli.fetch(5) == b"efdef"


def test_client_connect_refused(endpoints):
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        rec = Recorder()
        cli = hpsock.TcpClient(rec)
        endpoints.append(cli)
        cli.start(*lst.getsockname())
        close = rec.wait_event("close")[0]
    assert close[2] == hpsock.Op.CONNECT
    assert hpsock.err_name(close[3]) == "ECONNREFUSED"


# ---- stale and foreign IDs -------------------------------------------------

def test_stale_ids_are_enotfound(server_factory):
    rec = Recorder()
    srv = server_factory(rec, recv_model=hpsock.Model.PULL)
    other = server_factory(Recorder())
    with connect_socket(srv) as s:
        conn = accepted(rec)[0]
    rec.wait_event("close", conn)
    with connect_socket(srv):  # a new connection may reuse the slot
        newer = accepted(rec, 2)[1]
        assert newer != conn
        for call in (lambda: srv.send(conn, b"x"), lambda: srv.sendv(conn, [b"x"]),
                     lambda: srv.disconnect(conn), lambda: srv.pause_receive(conn),
                     lambda: srv.fetch(conn, 1), lambda: srv.peek(conn, 1),
                     lambda: srv.get_extra(conn), lambda: srv.set_extra(conn, 1),
                     lambda: srv.stats(conn), lambda: srv.remote_address(conn),
                     lambda: srv.local_address(conn),
                     lambda: srv.send(12345, b"x"),
                     lambda: other.send(newer, b"x")):
            assert code_of(call) == hpsock.ENOTFOUND
        srv.send(newer, b"fine")  # the live one still works

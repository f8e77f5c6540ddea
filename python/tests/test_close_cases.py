"""Close semantics from tests/fixtures/close/cases.txt: for each way a
connection ends, the op and error its on_close reports; and the deadline of
a graceful close (close_timeout)."""

import socket
import struct
import time

import pytest

import hpsock
from support import (DEADLINE, FIXTURES, Recorder, connect_socket, recv_exactly,
                     wait_until)

OPS = {op.name for op in hpsock.Op}


def parse_cases(path):
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, *fields = line.split()
        kv = dict(f.split("=", 1) for f in fields)
        if set(kv) != {"op", "error"} or kv["op"] not in OPS:
            raise ValueError(f"{path}:{lineno}: bad case {line!r}")
        out.append((name, kv["op"], kv["error"]))
    if not out:
        raise ValueError(f"{path}: no cases")
    return out


CASES = parse_cases(FIXTURES / "close" / "cases.txt")


class ErrorOnReceive(Recorder):
    def on_receive(self, ep, conn, data):
        super().on_receive(ep, conn, data)
        return hpsock.ERROR


def server_close(make, setup, handler=None, **opts):
    """Start a server, connect a plain socket, run setup(srv, sock, conn),
    return the server's CLOSE for that connection as (op, error)."""
    rec = handler or Recorder()
    srv = make(rec, **opts)
    sock = connect_socket(srv)
    try:
        conn = rec.wait_event("accept")[0][1]
        rec.wait_event("handshake", conn)
        setup(srv, sock, conn)
        close = rec.wait_event("close", conn)
    finally:
        sock.close()
    assert len(close) == 1, close
    return close[0][2], close[0][3]


def agent_close(endpoints, host, port, **opts):
    rec = Recorder()
    agent = hpsock.TcpAgent(rec, workers=1, **opts)
    endpoints.append(agent)
    agent.start()
    conn = agent.connect(host, port)
    close = rec.wait_event("close", conn)
    assert not rec.of("connect", conn)
    return close[0][2], close[0][3]


def linger_reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def case_peer_close(make, endpoints):
    return server_close(make, lambda srv, s, c: s.shutdown(socket.SHUT_WR))


def case_local_disconnect(make, endpoints):
    return server_close(make, lambda srv, s, c: srv.disconnect(c))


def case_local_disconnect_force(make, endpoints):
    return server_close(make, lambda srv, s, c: srv.disconnect(c, force=True))


def case_stop(make, endpoints):
    return server_close(make, lambda srv, s, c: srv.stop())


def case_peer_reset(make, endpoints):
    return server_close(make, lambda srv, s, c: linger_reset(s))


def case_handler_error(make, endpoints):
    return server_close(make, lambda srv, s, c: s.sendall(b"x"), ErrorOnReceive())


def case_connect_refused(make, endpoints):
    with socket.socket() as lst:  # bound, not listening
        lst.bind(("127.0.0.1", 0))
        return agent_close(endpoints, *lst.getsockname())


def case_connect_timeout(make, endpoints):
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        addr = lst.getsockname()
        fillers = []
        try:
            # Fill the accept queue; once a connect stays unanswered, SYNs
            # to this listener are dropped.
            for _ in range(16):
                f = socket.socket()
                fillers.append(f)
                f.settimeout(0.3)
                try:
                    f.connect(addr)
                except (socket.timeout, OSError):
                    break
            return agent_close(endpoints, *addr, connect_timeout=200)
        finally:
            for f in fillers:
                f.close()


def case_disconnect_silent(make, endpoints):
    def setup(srv, s, conn):
        wait_until(lambda: srv.stats(conn).silence_ms >= 100, DEADLINE,
                   "100 ms of silence")
        assert srv.disconnect_silent(100) >= 1
    return server_close(make, setup)


def case_silence_timeout(make, endpoints):
    return server_close(make, lambda srv, s, c: None, silence_timeout=200)


def case_pull_full(make, endpoints):
    return server_close(make, lambda srv, s, c: s.sendall(b"p" * 1500),
                        recv_model=hpsock.Model.PULL, pull_max=1000)


def case_pack_bad_flag(make, endpoints):
    return server_close(make, lambda srv, s, c: s.sendall(bytes.fromhex("0100800041")),
                        recv_model=hpsock.Model.PACK, pack_flag=1)


def case_pack_oversize(make, endpoints):
    return server_close(make, lambda srv, s, c: s.sendall(bytes.fromhex("11000000")),
                        recv_model=hpsock.Model.PACK, pack_max=16)


def case_pack_empty(make, endpoints):
    return server_close(make, lambda srv, s, c: s.sendall(bytes.fromhex("00000000")),
                        recv_model=hpsock.Model.PACK)


@pytest.mark.parametrize("name,op,error", CASES, ids=[c[0] for c in CASES])
def test_close_case(name, op, error, server_factory, endpoints):
    procedure = globals().get("case_" + name)
    if procedure is None:
        pytest.fail(f"close case {name!r} has no procedure in the Python suite")
    got_op, got_error = procedure(server_factory, endpoints)
    assert hpsock.Op(got_op).name == op, f"op {hpsock.Op(got_op).name}, expected {op}"
    if error == "0":
        assert got_error == 0, f"error {hpsock.err_name(got_error)}, expected 0"
    else:
        assert hpsock.err_name(got_error) == error


class EchoRecorder(Recorder):
    def on_receive(self, ep, conn, data):
        super().on_receive(ep, conn, data)
        ep.send(conn, data)


@pytest.mark.parametrize("how", ["peer_half_close", "own_disconnect"])
def test_graceful_close_that_cannot_flush_is_forced_at_close_timeout(how, server_factory):
    """A graceful close whose peer reads nothing ends at close_timeout with
    ECLOSETIMEOUT; meanwhile the connection is counted and listed, and
    afterwards its MAX_CONNECTIONS slot serves a new client."""
    rec = EchoRecorder()
    srv = server_factory(rec, workers=1, close_timeout=1000, sndbuf=32 * 1024,
                         max_connections=1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    s.settimeout(DEADLINE)
    s.connect(srv.listen_address)
    with s:
        conn = rec.wait_event("handshake")[0][1]
        block = b"q" * 65536
        for _ in range(64):  # 4 MiB: far more than the socket buffers hold
            srv.send(conn, block)
        wait_until(lambda: srv.unsent(conn) > 1 << 20, what="unsent bytes queued")
        if how == "peer_half_close":
            s.shutdown(socket.SHUT_WR)  # FIN, and it never reads
        else:
            srv.disconnect(conn)
        started = time.monotonic()
        assert srv.conn_count() == 1 and srv.conn_list() == [conn], \
            "a closing connection is not counted or listed"
        rec.wait(lambda r: r.of("close", conn), timeout=10.0,
                 what="the forced close")
        elapsed = time.monotonic() - started
        (_, _, op, error), = rec.of("close", conn)
        assert error == hpsock.ECLOSETIMEOUT, (hpsock.Op(op).name, hpsock.err_name(error))
        assert 0.8 <= elapsed < 6.0, f"forced after {elapsed:.2f} s, close_timeout 1 s"
        assert srv.counter(hpsock.Counter.CLOSE_TIMEOUTS) == 1
    wait_until(lambda: srv.conn_count() == 0, what="the slot to be free")
    with connect_socket(srv) as again:
        again.sendall(b"again")
        assert recv_exactly(again, 5) == b"again"

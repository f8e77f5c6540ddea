"""A Python client talking to the C example echo server
(examples/echo_server.c; CTest passes its path in HPS_ECHO_SERVER)."""

import os
import re
import select
import subprocess
import time

import pytest

import hpsock
from support import DEADLINE, Recorder

SERVER = os.environ.get("HPS_ECHO_SERVER")
pytestmark = pytest.mark.skipif(not SERVER, reason="HPS_ECHO_SERVER is not set")


@pytest.fixture
def c_server():
    """Start the C echo server with extra arguments; yields (host, port)."""
    procs = []

    def start(*args):
        proc = subprocess.Popen([SERVER, "--host", "127.0.0.1", "--port", "0",
                                 "--workers", "2", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        procs.append(proc)
        line = b""
        end = time.monotonic() + DEADLINE
        while not line.endswith(b"\n"):
            left = end - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(0, left))
            if not ready:
                pytest.fail("the C echo server printed no 'listening on' line")
            ch = proc.stdout.read(1)
            if not ch:
                pytest.fail(f"the C echo server exited: {proc.stderr.read().decode()}")
            line += ch
        m = re.match(rb"listening on (.+):(\d+)$", line.strip())
        assert m, line
        return m.group(1).decode(), int(m.group(2))

    yield start
    for proc in procs:
        proc.terminate()
        try:
            assert proc.wait(DEADLINE) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_python_client_push_echo(c_server, endpoints):
    host, port = c_server()
    rec = Recorder()
    cli = hpsock.TcpClient(rec)
    endpoints.append(cli)
    cli.start(host, port)
    conn = rec.wait_event("handshake")[0][1]
    data = bytes(range(256)) * 1000
    cli.send(data)
    rec.wait(lambda r: len(r.received.get(conn, b"")) >= len(data), what="the echo")
    assert bytes(rec.received[conn]) == data
    cli.disconnect()
    assert rec.wait_event("close")[0][2:] == (hpsock.Op.CLOSE, 0)


def test_python_client_pack_echo(c_server, endpoints):
    host, port = c_server("--mode", "pack", "--flag", "5")
    rec = Recorder()
    cli = hpsock.TcpClient(rec, recv_model=hpsock.Model.PACK, pack_flag=5)
    endpoints.append(cli)
    cli.start(host, port)
    rec.wait_event("handshake")
    frames = [b"a", b"bc" * 1000, bytes(range(200))]
    for f in frames:
        cli.send(f)
    rec.wait(lambda r: len(r.of("receive")) == 3, what="three frames")
    assert [e[2] for e in rec.of("receive")] == frames


def test_python_agent_many_connections(c_server, endpoints):
    host, port = c_server()
    rec = Recorder()
    agent = hpsock.TcpAgent(rec, workers=2)
    endpoints.append(agent)
    agent.start()
    ids = [agent.connect(host, port) for _ in range(16)]
    for c in ids:
        rec.wait_event("handshake", c)
        agent.send(c, b"conn %d" % c)
    for c in ids:
        rec.wait(lambda r: r.received.get(c) == bytearray(b"conn %d" % c), what=f"echo on {c}")

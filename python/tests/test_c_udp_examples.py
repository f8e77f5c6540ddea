"""The C UDP examples driven from Python: hps_udp_echo_server (same command
line and ready line as the TCP echo server) with a Python UdpClient and
hps_perf --udp, and two hps_udp_cast_chat processes talking over loopback
multicast. CTest passes the programs' paths in the environment."""

import os
import re
import select
import socket
import subprocess
import time

import pytest

import hpsock
from support import DEADLINE

SERVER = os.environ.get("HPS_UDP_ECHO_SERVER")
CHAT = os.environ.get("HPS_UDP_CAST_CHAT")
PERF = os.environ.get("HPS_PERF")


def read_line(proc, what):
    line = b""
    end = time.monotonic() + DEADLINE
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [],
                                    max(0, end - time.monotonic()))
        if not ready:
            pytest.fail(f"{what}: no line in time (got {line!r})")
        ch = proc.stdout.read(1)
        if not ch:
            pytest.fail(f"{what} exited: {proc.stderr.read().decode()}")
        line += ch
    return line.decode().strip()


@pytest.fixture
def procs():
    made = []
    yield made
    for p in made:
        if p.poll() is None:
            p.terminate()
        try:
            p.wait(DEADLINE)
        finally:
            if p.poll() is None:
                p.kill()


@pytest.fixture
def udp_echo(procs):
    if not SERVER:
        pytest.skip("HPS_UDP_ECHO_SERVER is not set")
    proc = subprocess.Popen([SERVER, "--host", "127.0.0.1", "--port", "0",
                             "--workers", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            bufsize=0)
    procs.append(proc)
    m = re.match(r"listening on (.+):(\d+)$", read_line(proc, "udp echo server"))
    assert m
    return m.group(1), int(m.group(2))


def test_udp_echo_server_echoes_datagrams(udp_echo, endpoints):
    host, port = udp_echo
    got = []

    class H(hpsock.Handler):
        def on_receive(self, ep, conn, data):
            got.append(data)

    cli = hpsock.UdpClient(H())
    endpoints.append(cli)
    cli.start(host, port)
    for i in range(5):
        cli.send(b"d%d" % i)
    end = time.monotonic() + DEADLINE
    while len(got) < 5 and time.monotonic() < end:
        time.sleep(0.005)
    assert sorted(got) == [b"d%d" % i for i in range(5)]


def test_perf_udp_mode_reports_rate_and_loss(udp_echo):
    if not PERF:
        pytest.skip("HPS_PERF is not set")
    host, port = udp_echo
    out = subprocess.run([PERF, "--udp", "--host", host, "--port", str(port),
                          "--conns", "4", "--depth", "4", "--size", "64",
                          "--duration", "0.5", "--warmup", "0.1"],
                         capture_output=True, timeout=60, check=False)
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr.decode()
    assert re.search(r"datagrams/s=\d+", text), text
    assert re.search(r"lost=\d+ \(", text), text
    assert "verified=yes" in text


def test_cast_chat_over_loopback_multicast(procs):
    if not CHAT:
        pytest.skip("HPS_UDP_CAST_CHAT is not set")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    port = s.getsockname()[1]
    s.close()
    chats = []
    for name in ("ann", "bob"):
        p = subprocess.Popen([CHAT, "--group", "239.255.77.5", "--port",
                              str(port), "--iface", "127.0.0.1", "--name",
                              name], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             bufsize=0)
        procs.append(p)
        assert read_line(p, name).startswith("chatting on 239.255.77.5")
        chats.append(p)
    chats[0].stdin.write(b"hello bob\n")
    line = read_line(chats[1], "bob")
    assert re.match(r"\[127\.0\.0\.1:\d+\] ann: hello bob$", line), line
    for p in chats:
        p.stdin.close()  # end of input ends the chat
        assert p.wait(DEADLINE) == 0

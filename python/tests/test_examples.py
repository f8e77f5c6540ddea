"""The Python examples (examples/python): each server prints its ready line,
echoes for echo_client.py, and exits 0 on SIGTERM."""

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import DEADLINE, stream_echo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "python"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="no examples/python")


def start_server(script, *args):
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / script), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    line = b""
    end = time.monotonic() + DEADLINE
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stdout], [], [], max(0, end - time.monotonic()))
        ch = proc.stdout.read(1) if ready else b""
        if not ch:
            proc.kill()
            pytest.fail(f"{script} printed no ready line: {proc.stderr.read().decode()}")
        line += ch
    m = re.fullmatch(rb"listening on (.+):(\d+)", line.strip())
    assert m, line
    return proc, m.group(1).decode(), int(m.group(2))


def stop_server(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(DEADLINE) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("script,args,mode", [
    ("echo_server.py", ["--workers", "2"], "push"),
    ("echo_server.py", ["--workers", "1", "--mode", "pack", "--flag", "9"], "pack"),
    ("asyncio_echo.py", [], "push"),
])
def test_example_server_with_echo_client(script, args, mode):
    proc, host, port = start_server(script, *args)
    try:
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "echo_client.py"), "--host", host,
             "--port", str(port), "--count", "200", "--size", "700", "--mode", mode]
            + (["--flag", "9"] if mode == "pack" else []),
            capture_output=True, text=True, timeout=DEADLINE * 2)
        assert client.returncode == 0, client.stderr
        assert "200 messages of 700 bytes echoed intact" in client.stdout
    finally:
        stop_server(proc)


def test_echo_server_rejects_a_bad_port():
    r = subprocess.run([sys.executable, str(EXAMPLES / "echo_server.py"), "--port", "70000"],
                       capture_output=True, text=True, timeout=DEADLINE)
    assert r.returncode == 2 and "--port" in r.stderr


@pytest.mark.parametrize("mode", ["push", "pack"])
def test_echo_server_streaming_clients_are_never_dropped(mode):
    """8 clients write 16 KiB blocks (pack: 16 KiB frames) for 3 s while
    reading their echo, each falling behind once (a 1 s stall in reading):
    the example's auto_pause makes the server stop reading from a client
    whose echo queues up, so no connection reaches max_send_queue (4 MiB
    here: ESENDQ, a dropped connection) and every byte comes back in
    order."""
    args = ["--workers", "2", "--max-send-queue", str(4 << 20)]
    if mode == "pack":
        args += ["--mode", "pack", "--flag", "9"]
    proc, host, port = start_server("echo_server.py", *args)
    try:
        failures, written, echoed = stream_echo(
            host, port, clients=8, block=16384, seconds=3.0,
            pack_flag=9 if mode == "pack" else None)
        assert not failures, "\n".join(failures)
        assert all(w > 0 for w in written), written
        assert echoed == written
        print(f"streamed {sum(written) / 2**20:.0f} MiB through echo_server.py ({mode})")
    finally:
        stop_server(proc)

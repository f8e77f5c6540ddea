"""Endpoints still running when the interpreter exits: the process must end
promptly with its own exit status, never hang or crash."""

import subprocess
import sys
import textwrap

import pytest

from support import DEADLINE

# A server and an agent ping-ponging on several connections, started and
# then left running; each script then ends in its own way.
PRELUDE = textwrap.dedent("""
    import sys, threading, time
    import hpsock

    def send(ep, conn, data):
        try:
            ep.send(conn, data)
        except hpsock.Error:  # the connection is closing: exit stops all
            pass

    class Echo(hpsock.Handler):
        def on_receive(self, ep, conn, data):
            send(ep, conn, data)

    class PingPong(hpsock.Handler):
        def __init__(self):
            self.rounds = 0
            self.busy = threading.Event()
        def on_connect(self, ep, conn):
            send(ep, conn, b"ping" * 100)
        def on_receive(self, ep, conn, data):
            self.rounds += 1
            if self.rounds > 200:
                self.busy.set()
            send(ep, conn, data)
        def on_close(self, ep, conn, op, error):
            pass

    server = hpsock.TcpServer(Echo(), workers=2)
    server.start("127.0.0.1", 0)
    pp = PingPong()
    agent = hpsock.TcpAgent(pp, workers=2)
    agent.start()
    for _ in range(8):
        agent.connect(*server.listen_address)
    assert pp.busy.wait(30), "no traffic"
""")

ENDINGS = {
    "falls_off_the_end": ("", 0),
    "sys_exit": ("sys.exit(3)", 3),
    "unhandled_exception": ("raise SystemError('bye')", 1),
    "references_dropped": ("del server, agent, pp\nimport gc; gc.collect()", 0),
    "slow_handler_at_exit": (textwrap.dedent("""
        class Slow(hpsock.Handler):
            def on_receive(self, ep, conn, data):
                time.sleep(0.05)
                send(ep, conn, data)
        slow = hpsock.TcpServer(Slow(), workers=1)
        slow.start("127.0.0.1", 0)
        for _ in range(4):
            agent.connect(*slow.listen_address)
        time.sleep(0.2)
    """), 0),
    "daemon_thread_sending": (textwrap.dedent("""
        def spam():
            while True:
                for c in agent.conn_list():
                    try:
                        agent.send(c, b"x" * 100)
                    except hpsock.Error:
                        pass
        threading.Thread(target=spam, daemon=True).start()
        time.sleep(0.1)
    """), 0),
    "stopped_from_a_handler_at_exit": (textwrap.dedent("""
        class StopSelf(hpsock.Handler):
            def on_accept(self, ep, conn):
                ep.stop()
        s2 = hpsock.TcpServer(StopSelf(), workers=1)
        s2.start("127.0.0.1", 0)
        agent.connect(*s2.listen_address)
    """), 0),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_running_endpoints_at_interpreter_exit(ending, tmp_path):
    code, expected = ENDINGS[ending]
    script = tmp_path / "script.py"
    script.write_text(PRELUDE + code + "\n")
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True,
                              text=True, timeout=DEADLINE * 2)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the interpreter hung at exit; stderr: {e.stderr}")
    assert proc.returncode == expected, proc.stderr
    assert "Fatal Python error" not in proc.stderr
    assert "Segmentation fault" not in proc.stderr
    if ending == "unhandled_exception":
        assert "SystemError: bye" in proc.stderr
    else:
        assert "Traceback" not in proc.stderr, proc.stderr

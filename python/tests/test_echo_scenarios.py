"""Echo round trips from tests/fixtures/echo/scenarios.txt (every language's
suite runs the same ones): a Python server echoes, a Python agent drives
`conns` connections through `rounds` messages each."""

import threading

import pytest

import hpsock
from support import DEADLINE, FIXTURES, EchoHandler, wait_until

KEYS = {"conns", "size", "rounds", "model"}
MODELS = {"push": hpsock.Model.PUSH, "pull": hpsock.Model.PULL, "pack": hpsock.Model.PACK}


def parse_scenarios(path):
    """Parse scenarios.txt; unknown keys or models are errors."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, *fields = line.split()
        sc = {"name": name}
        for field in fields:
            key, eq, value = field.partition("=")
            if not eq or key not in KEYS:
                raise ValueError(f"{path}:{lineno}: unknown field {field!r}")
            sc[key] = value
        if set(sc) != KEYS | {"name"}:
            raise ValueError(f"{path}:{lineno}: missing {sorted(KEYS - set(sc))}")
        if sc["model"] not in MODELS:
            raise ValueError(f"{path}:{lineno}: unknown model {sc['model']!r}")
        for key in ("conns", "size", "rounds"):
            sc[key] = int(sc[key])
            if sc[key] < 1:
                raise ValueError(f"{path}:{lineno}: {key} must be >= 1")
        out.append(sc)
    if not out:
        raise ValueError(f"{path}: no scenarios")
    return out


SCENARIOS = parse_scenarios(FIXTURES / "echo" / "scenarios.txt")


class Payloads:
    """Byte j of round r on connection c is (7*c + 13*r + j) % 251."""

    def __init__(self, size):
        self.size = size
        self.cycle = bytes(i % 251 for i in range(size + 251))

    def __call__(self, c, r):
        start = (7 * c + 13 * r) % 251
        return self.cycle[start:start + self.size]


class EchoDriver(hpsock.Handler):
    """The client side: one message in flight per connection, next round
    once the whole echo came back and matched."""

    def __init__(self, sc):
        self.sc = sc
        self.payload = Payloads(sc["size"])
        self.pull = sc["model"] == "pull"
        self.pack = sc["model"] == "pack"
        self.cond = threading.Condition()
        self.index = {}     # conn -> c, in the order connections were opened
        self.round = {}
        self.buf = {}
        self.finished = set()
        self.failures = []
        self.closes = []

    def fail(self, msg):
        with self.cond:
            self.failures.append(msg)
            self.cond.notify_all()

    def on_connect(self, ep, conn):
        with self.cond:  # the opener holds it while recording the index
            c = self.index[conn]
            self.round[conn] = 0
            self.buf[conn] = bytearray()
        ep.send(conn, self.payload(c, 0))

    def on_receive(self, ep, conn, data):
        if self.pull:
            data = ep.fetch(conn, data)
        size = self.sc["size"]
        c, r, buf = self.index[conn], self.round[conn], self.buf[conn]
        if self.pack and len(data) != size:
            return self.fail(f"conn {c} round {r}: frame of {len(data)} bytes, expected {size}")
        buf += data
        if len(buf) < size:
            return None
        if len(buf) > size or bytes(buf) != self.payload(c, r):
            return self.fail(f"conn {c} round {r}: echo differs "
                             f"({len(buf)} bytes, first diff at "
                             f"{next((i for i, (a, b) in enumerate(zip(buf, self.payload(c, r))) if a != b), size)})")
        buf.clear()
        r += 1
        self.round[conn] = r
        if r == self.sc["rounds"]:
            with self.cond:
                self.finished.add(conn)
                self.cond.notify_all()
        else:
            ep.send(conn, self.payload(c, r))
        return None

    def on_close(self, ep, conn, op, error):
        with self.cond:
            self.closes.append((conn, op, error))
            self.cond.notify_all()

    def wait(self, pred, what):
        with self.cond:
            ok = self.cond.wait_for(lambda: pred() or self.failures, DEADLINE * 2)
            assert not self.failures, self.failures
            assert ok, f"timed out waiting for {what}: finished {len(self.finished)}, " \
                       f"closes {self.closes}"


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s["name"] for s in SCENARIOS])
def test_echo_scenario(sc):
    model = MODELS[sc["model"]]
    echo = EchoHandler(pull=model == hpsock.Model.PULL)
    driver = EchoDriver(sc)
    with hpsock.TcpServer(echo, workers=2, recv_model=model) as srv, \
            hpsock.TcpAgent(driver, workers=2, recv_model=model) as agent:
        srv.start("127.0.0.1", 0)
        agent.start()
        host, port = srv.listen_address
        for c in range(sc["conns"]):
            with driver.cond:
                driver.index[agent.connect(host, port)] = c
        conns = list(driver.index)
        driver.wait(lambda: len(driver.finished) == len(conns), "every round")
        for conn in conns:
            agent.disconnect(conn)
        driver.wait(lambda: len(driver.closes) == len(conns), "the client CLOSEs")
        assert sorted(c for c, _, _ in driver.closes) == sorted(conns)
        assert all(err == 0 for _, _, err in driver.closes), driver.closes
        assert all(op == hpsock.Op.CLOSE for _, op, _ in driver.closes), driver.closes
        wait_until(lambda: len(echo.closes) == len(conns), DEADLINE, "the server CLOSEs")
        assert len({c for c, _, _ in echo.closes}) == len(conns), echo.closes
        assert all(err == 0 for _, _, err in echo.closes), echo.closes
        assert srv.stats().msgs_received >= sc["conns"] * sc["rounds"]


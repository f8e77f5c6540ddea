"""pytest configuration and fixtures for the hpsock Python suite.

The suite runs against the installed wheel (python/run_tests.py makes the
venv); tests read the data every language's suite shares from
tests/fixtures (HPS_FIXTURES overrides the path). Helpers live in
support.py.
"""

import os
import sys
import threading
from pathlib import Path

import pytest

import hpsock
from support import FIXTURES


def pytest_report_header(config):
    return [f"hpsock {hpsock.__version__} from {os.path.dirname(hpsock.__file__)}",
            f"fixtures: {FIXTURES}"]


def pytest_sessionstart(session):
    # Tests run against the installed package, never the source tree.
    src = Path(__file__).resolve().parents[1] / "hpsock"
    where = Path(hpsock.__file__).resolve().parent
    if where == src:
        raise pytest.UsageError(f"hpsock was imported from the source tree ({where}); "
                                "run the suite against the installed wheel")


@pytest.fixture
def server_factory():
    """Make started servers on 127.0.0.1, port 0; all closed at the end."""
    made = []

    def make(handler=None, **opts):
        opts.setdefault("workers", 2)
        srv = hpsock.TcpServer(handler, **opts)
        made.append(srv)
        srv.start("127.0.0.1", 0)
        return srv

    yield make
    for srv in made:
        srv.close()


@pytest.fixture
def endpoints():
    """Collects endpoints to close at the end of the test."""
    made = []
    yield made
    for ep in made:
        ep.close()


@pytest.fixture
def catch_unraisable():
    """Collect what reaches sys.unraisablehook during the test.

    pytest installs its own hook around each test phase, so this one is
    installed lazily: the test calls the fixture's value once to start
    collecting, and gets the list back."""
    seen = []
    lock = threading.Lock()
    saved = []

    def hook(info):
        with lock:
            seen.append(info)

    def start():
        saved.append(sys.unraisablehook)
        sys.unraisablehook = hook
        return seen

    yield start
    if saved and sys.unraisablehook is hook:
        sys.unraisablehook = saved[0]

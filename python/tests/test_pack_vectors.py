"""The pack codec vectors of tests/fixtures/pack/vectors.txt, through
sockets: a plain socket sends each input to a pack-model server, which must
deliver exactly the expected frames and then, for an error case, close the
connection with that error (pending bytes are not observable here)."""

import socket

import pytest

import hpsock
from support import DEADLINE, FIXTURES, Recorder

ERRORS = {"NONE", "EPACKFLAG", "EPACKSIZE", "EPACKEMPTY"}


def unhex(text):
    text = "".join(text.split())
    return b"" if text == "-" else bytes.fromhex(text)


def parse_vectors(path):
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 6:
            raise ValueError(f"{path}:{lineno}: {len(fields)} fields, expected 6")
        name, config, data, frames, error, _pending = fields
        cfg = dict(kv.split("=", 1) for kv in config.split())
        if set(cfg) != {"flag", "max"}:
            raise ValueError(f"{path}:{lineno}: bad config {config!r}")
        if not frames.startswith("frames=") or not error.startswith("error="):
            raise ValueError(f"{path}:{lineno}: bad frames/error fields")
        frames = frames[len("frames="):]
        error = error[len("error="):]
        if error not in ERRORS:
            raise ValueError(f"{path}:{lineno}: unknown error {error!r}")
        out.append({
            "name": name, "flag": int(cfg["flag"]), "max": int(cfg["max"]),
            "input": unhex(data),
            "frames": [] if frames == "-" else [unhex(f) for f in frames.split(",")],
            "error": error,
        })
    if not out:
        raise ValueError(f"{path}: no vectors")
    return out


VECTORS = parse_vectors(FIXTURES / "pack" / "vectors.txt")


@pytest.mark.parametrize("feed", ["whole", "bytewise"])
@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_pack_vector(vec, feed):
    rec = Recorder()
    with hpsock.TcpServer(rec, workers=1, recv_model=hpsock.Model.PACK,
                          pack_flag=vec["flag"], pack_max=vec["max"]) as srv:
        srv.start("127.0.0.1", 0)
        with socket.create_connection(srv.listen_address, timeout=DEADLINE) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = rec.wait_event("accept")[0][1]
            try:
                if feed == "whole":
                    s.sendall(vec["input"])
                else:  # one byte per send: the reads may split anywhere
                    for i in range(len(vec["input"])):
                        s.sendall(vec["input"][i:i + 1])
            except OSError:
                assert vec["error"] != "NONE"  # the server closed on the error
            if vec["error"] == "NONE":
                rec.wait(lambda r: len(r.of("receive")) >= len(vec["frames"]),
                         what=f"{len(vec['frames'])} frames")
                s.shutdown(socket.SHUT_WR)  # the peer closes normally
            close = rec.wait_event("close", conn)[0]
    frames = [e[2] for e in rec.of("receive")]
    assert frames == vec["frames"]
    if vec["error"] == "NONE":
        assert (close[2], close[3]) == (hpsock.Op.RECEIVE, 0), close
    else:
        assert close[2] == hpsock.Op.RECEIVE, close
        assert hpsock.err_name(close[3]) == "HPS_" + vec["error"], close

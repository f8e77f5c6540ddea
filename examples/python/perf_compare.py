#!/usr/bin/env python3
"""perf_compare.py - hpsock-Python against stdlib asyncio, in one run.

Runs examples/perf/compare.py with two echo servers under the same hps_perf
load, interleaved: asyncio_echo.py (the reference) and echo_server.py (the
hpsock Python server; one per --workers value). Default load: 64
connections, 64-byte messages, depth 1 and 16. Prints compare.py's table,
then each hpsock server's ratios to asyncio and whether they reach --target
on both figures (messages/s and messages per server CPU-second).

    perf_compare.py [--build DIR] [--python PY] [--workers 1[,2...]]
                    [--duration S] [--reps N] [--target 1.1]

--python must import hpsock: by default the venv the python_tests CTest
test makes (DIR/python/venv), else this interpreter. Exit status: 0 when
every run succeeded and the target is met, 1 otherwise.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SCENARIOS = ["conns=64,size=64,depth=1", "conns=64,size=64,depth=16"]


def default_python(build):
    venv = os.path.join(build, "python", "venv", "bin", "python")
    return venv if os.access(venv, os.X_OK) else sys.executable


def medians(runs):
    """(median msgs/s, median msgs per server CPU-s) of the good runs."""
    ok = [r for r in runs if r["rc"] == 0 and r.get("json") and r.get("cpu_s")]
    if not ok:
        return None
    return (statistics.median(r["json"]["msgs_per_s"] for r in ok),
            statistics.median(r["json"]["msgs"] / r["cpu_s"] for r in ok))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-py"),
                    help="CMake build directory (for examples/perf/hps_perf)")
    ap.add_argument("--python", default=None, help="Python that imports hpsock")
    ap.add_argument("--workers", default="1",
                    help="comma-separated --workers values for the hpsock server(s)")
    ap.add_argument("--scenario", action="append", default=None,
                    help=f"compare.py scenario (repeatable; default {SCENARIOS})")
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--target", type=float, default=1.1)
    args = ap.parse_args()

    py = args.python or default_python(args.build)
    perf = os.path.join(args.build, "examples", "perf", "hps_perf")
    if subprocess.run([py, "-c", "import hpsock"], capture_output=True).returncode != 0:
        sys.exit(f"perf_compare.py: {py} cannot import hpsock; pass --python")
    servers = [("asyncio", f"{py} {HERE}/asyncio_echo.py --port 0")]
    for w in args.workers.split(","):
        servers.append((f"hpsock-py-w{int(w)}",
                        f"{py} {HERE}/echo_server.py --port 0 --workers {int(w)}"))
    scenarios = args.scenario or SCENARIOS

    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "runs.jsonl")
        cmd = [sys.executable, os.path.join(ROOT, "examples", "perf", "compare.py"),
               "--perf", perf, "--duration", str(args.duration),
               "--warmup", str(args.warmup), "--reps", str(args.reps), "--json-out", raw]
        for name, server in servers:
            cmd += ["--server", f"{name}={server}"]
        for sc in scenarios:
            cmd += ["--scenario", sc]
        print("perf_compare.py: " + shlex.join(cmd), flush=True)
        rc = subprocess.run(cmd).returncode
        runs = {}
        with open(raw) as f:
            for line in f:
                r = json.loads(line)
                key = (",".join(f"{k}={v}" for k, v in r["scenario"].items()), r["server"])
                runs.setdefault(key, []).append(r)

    met = rc == 0
    print(f"\nhpsock-Python vs asyncio (target >= {args.target:.2f}x on both figures):")
    for sc in scenarios:
        ref = medians(runs.get((sc, "asyncio"), []))
        for name, _ in servers[1:]:
            m = medians(runs.get((sc, name), []))
            if not ref or not m:
                print(f"  {sc} {name}: runs failed")
                met = False
                continue
            rate, cpu = m[0] / ref[0], m[1] / ref[1]
            ok = rate >= args.target and cpu >= args.target
            met = met and ok
            print(f"  {sc} {name}: msgs/s {rate:.2f}x, msgs per CPU-s {cpu:.2f}x "
                  f"-> {'met' if ok else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

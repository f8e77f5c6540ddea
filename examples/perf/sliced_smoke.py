#!/usr/bin/env python3
"""Smoke test of hps_perf's sliced mode (--targets) and compare.py --sliced.

    python3 examples/perf/sliced_smoke.py BUILD_DIR   (or the dir holding hps_perf)

Starts two hps_epoll_echo servers, runs a short sliced hps_perf against both
(echo and pack, with idle connections) and checks the JSON: every round has
every target once, in the rotated order; the per-round messages add up to the
totals; every slice lasted at least --slice-ms and the servers' CPU was seen;
the idle connections survived.  Then a server is killed in the middle of a
sliced run, which must fail (non-zero exit), and compare.py --sliced must
print a row per server.  Bounded: about 10 s; every subprocess has a timeout.
Exit 0 if all checks pass, 1 otherwise (CTest: perf_sliced_smoke).
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (Server: start, pids, stop)

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def sliced(perf, servers, rounds, slice_ms, extra):
    cmd = [perf, "--json", "--targets", ",".join(f"{s.host}:{s.port}" for s in servers),
           "--pids", ",".join(str(s.proc.pid) for s in servers), "--rounds", str(rounds),
           "--slice-ms", str(slice_ms), "--warmup-rounds", "1"] + extra
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return r, cmd


def check_run(r, cmd, n, rounds, slice_ms, conns, idle):
    what = " ".join(cmd[1:])
    check(r.returncode == 0, f"exit {r.returncode} ({what}): {r.stderr.strip()[-300:]}")
    if r.returncode != 0:
        return
    j = json.loads(r.stdout.strip().splitlines()[-1])
    check(j["test"] == "sliced" and j["verified"] is True and j["errors"] == 0,
          f"test/verified/errors: {j['test']} {j['verified']} {j['errors']}")
    ts = j["targets"]
    check(len(ts) == n, f"{len(ts)} targets, want {n}")
    check(j["msgs"] == sum(t["msgs"] for t in ts), "total msgs != sum over targets")
    for k, t in enumerate(ts):
        for key in ("round_msgs", "round_ns", "round_cpu_ns", "round_pos"):
            check(len(t[key]) == rounds, f"target {k}: {key} has {len(t[key])} entries")
        check(sum(t["round_msgs"]) == t["msgs"], f"target {k}: rounds add up to "
              f"{sum(t['round_msgs'])}, total says {t['msgs']}")
        check(all(m >= conns for m in t["round_msgs"]),
              f"target {k}: a slice echoed fewer messages than connections: {t['round_msgs']}")
        check(all(ns >= slice_ms * 1_000_000 for ns in t["round_ns"]),
              f"target {k}: a slice shorter than {slice_ms} ms: {t['round_ns']}")
        check(all(c > 0 for c in t["round_cpu_ns"]), f"target {k}: no server CPU seen")
        check(abs(t["active_s"] - sum(t["round_ns"]) / 1e9) < 1e-5, f"target {k}: active_s")
        check(t["idle_lost"] == 0 and t["errors"] == 0, f"target {k}: idle_lost/errors")
        check(t["p50_us"] > 0 and t["p99_us"] >= t["p50_us"], f"target {k}: latency")
    for r_ in range(rounds):
        pos = [t["round_pos"][r_] for t in ts]
        check(sorted(pos) == list(range(n)), f"round {r_}: positions {pos}")
        check(pos[r_ % n] == 0, f"round {r_}: target {r_ % n} did not go first ({pos})")
    check(len(ts) < 2 or j["idle"] == idle, "idle count")


def main():
    d = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    if not os.access(os.path.join(d, "hps_perf"), os.X_OK):
        d = os.path.join(d, "examples", "perf")
    perf = os.path.join(d, "hps_perf")
    echo = os.path.join(d, "hps_epoll_echo")
    servers = [compare.Server(f"e{i}", f"{echo} --port 0") for i in range(3)]
    t0 = time.monotonic()
    try:
        for s in servers:
            s.start()
        two = servers[:2]
        r, cmd = sliced(perf, two, 4, 50, ["--conns", "4", "--depth", "2", "--idle", "20"])
        check_run(r, cmd, 2, 4, 50, 4, 20)
        r, cmd = sliced(perf, two, 3, 30, ["--conns", "2", "--depth", "3", "--mode", "pack",
                                           "--size", "3000"])
        check_run(r, cmd, 2, 3, 30, 2, 0)
        # a refused option is a usage error, not a silent fallback
        r, _ = sliced(perf, two, 1, 10, ["--threads", "2"])
        check(r.returncode == 64, f"--threads 2 with --targets: exit {r.returncode}, want 64")
        # a server that dies during the run makes the run fail
        victim = servers[2]
        proc = subprocess.Popen(
            [perf, "--json", "--targets", f"{two[0].host}:{two[0].port},"
             f"{victim.host}:{victim.port}", "--pids", f"{two[0].proc.pid},{victim.proc.pid}",
             "--rounds", "40", "--slice-ms", "50", "--conns", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.6)
        victim.stop()
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            check(False, "hps_perf did not end after a server died")
        else:
            check(proc.returncode in (3, 4), f"server killed mid-run: exit {proc.returncode}, "
                  "want 3 or 4")
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                print(f"stopping {s.name}: {e}", file=sys.stderr)
    # the driver end to end: a table row per server
    c = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), "--perf", perf,
                        "--sliced", "--rounds", "2", "--slice-ms", "30",
                        "--server", f"a={echo} --port 0", "--server", f"b={echo} --port 0",
                        "--scenario", "conns=2,size=64,depth=1"],
                       capture_output=True, text=True, timeout=60)
    rows = [ln for ln in c.stdout.splitlines() if ln.startswith("| conns=2")]
    check(c.returncode == 0 and len(rows) == 2 and "1.00x" in rows[0],
          f"compare.py --sliced: exit {c.returncode}, rows {rows}: {c.stderr.strip()[-300:]}")
    print(f"sliced smoke: {'FAILED' if FAILS else 'ok'} ({len(FAILS)} failure(s), "
          f"{time.monotonic() - t0:.1f} s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Smoke test of hps_perf's sliced mode (--targets) and compare.py --sliced.

    python3 examples/perf/sliced_smoke.py BUILD_DIR   (or the dir holding hps_perf)

Starts four hps_epoll_echo servers (and two with --udp), runs short sliced
hps_perf runs against two (echo and pack, with idle connections;
--setup-rate, also with 1 ms slices; --udp) and checks the JSON: every round has every target once, in the
rotated order; the per-round messages (setup: cycles) add up to the totals;
every slice lasted at least --slice-ms, saw at least one message or cycle
per connection (setup: every slot's first cycle completes within its slice,
in-flight ones included) and the servers' CPU was seen; the idle connections
survived; every UDP datagram sent came back (sent = echoed + lost, none
lost); a server does no work in the other server's setup-rate slices;
--sets splits the rounds over several runs and merges them.  Then a server is killed in the middle of a sliced echo run and
another in a --setup-rate one: both runs must fail (exit 3 or 4, and 4 with
"refused" for the setup run), and compare.py --sliced must print a row per
server (echo and setup=1).  Bounded: about 5 s; every subprocess has a
timeout.
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


def check_run(r, cmd, n, rounds, slice_ms, conns, idle, setup=False, udp=False):
    what = " ".join(cmd[1:])
    check(r.returncode == 0, f"exit {r.returncode} ({what}): {r.stderr.strip()[-300:]}")
    if r.returncode != 0:
        return
    j = json.loads(r.stdout.strip().splitlines()[-1])
    check(j["test"] == "sliced" and j["verified"] is True and j["errors"] == 0,
          f"test/verified/errors: {j['test']} {j['verified']} {j['errors']}")
    check(j["setup_rate"] is setup, f"setup_rate: {j['setup_rate']}, want {setup}")
    check((j["mode"] == "udp") == udp, f"mode {j['mode']}, udp {udp}")
    ts = j["targets"]
    check(len(ts) == n, f"{len(ts)} targets, want {n}")
    check(j["msgs"] == sum(t["msgs"] for t in ts), "total msgs != sum over targets")
    for k, t in enumerate(ts):
        for key in ("round_msgs", "round_ns", "round_cpu_ns", "round_pos"):
            check(len(t[key]) == rounds, f"target {k}: {key} has {len(t[key])} entries")
        check(sum(t["round_msgs"]) == t["msgs"], f"target {k}: rounds add up to "
              f"{sum(t['round_msgs'])}, total says {t['msgs']}")
        # echo: every connection's first message comes back; setup: every
        # slot's first cycle completes (in-flight cycles finish in the slice)
        check(all(m >= conns for m in t["round_msgs"]),
              f"target {k}: a slice echoed fewer messages than connections: {t['round_msgs']}")
        check(all(ns >= slice_ms * 1_000_000 for ns in t["round_ns"]),
              f"target {k}: a slice shorter than {slice_ms} ms: {t['round_ns']}")
        check(all(c > 0 for c in t["round_cpu_ns"]), f"target {k}: no server CPU seen")
        check(abs(t["active_s"] - sum(t["round_ns"]) / 1e9) < 1e-5, f"target {k}: active_s")
        check(t["idle_lost"] == 0 and t["errors"] == 0, f"target {k}: idle_lost/errors")
        check(t["p50_us"] > 0 and t["p99_us"] >= t["p50_us"], f"target {k}: latency")
        if udp:
            # every datagram sent came back in time or was declared lost;
            # at a few in flight on loopback none is lost
            check(t["sent"] == t["echoed"] + t["lost"] and t["lost"] == 0 and t["late"] == 0
                  and t["echoed"] >= t["msgs"],
                  f"target {k}: sent {t['sent']} echoed {t['echoed']} lost {t['lost']} "
                  f"late {t['late']} msgs {t['msgs']}")
    for r_ in range(rounds):
        pos = [t["round_pos"][r_] for t in ts]
        check(sorted(pos) == list(range(n)), f"round {r_}: positions {pos}")
        check(pos[r_ % n] == 0, f"round {r_}: target {r_ % n} did not go first ({pos})")
    check(len(ts) < 2 or j["idle"] == idle, "idle count")



def run_and_kill(perf, targets_and_args, victim, delay):
    """hps_perf --json --targets ... with victim stopped after delay seconds:
    (exit code, stderr), or None if it did not end within 30 s."""
    proc = subprocess.Popen([perf, "--json", "--targets"] + targets_and_args,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    victim.stop()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    return proc.returncode, err

def main():
    d = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    if not os.access(os.path.join(d, "hps_perf"), os.X_OK):
        d = os.path.join(d, "examples", "perf")
    perf = os.path.join(d, "hps_perf")
    echo = os.path.join(d, "hps_epoll_echo")
    servers = [compare.Server(f"e{i}", f"{echo} --port 0") for i in range(4)]
    udp = [compare.Server(f"u{i}", f"{echo} --udp --port 0") for i in range(2)]
    t0 = time.monotonic()
    try:
        for s in servers + udp:
            s.start()
        two = servers[:2]
        r, cmd = sliced(perf, two, 4, 50, ["--conns", "4", "--depth", "2", "--idle", "20"])
        check_run(r, cmd, 2, 4, 50, 4, 20)
        r, cmd = sliced(perf, two, 3, 30, ["--conns", "2", "--depth", "3", "--mode", "pack",
                                           "--size", "3000"])
        check_run(r, cmd, 2, 3, 30, 2, 0)
        # setup rate sliced: connect+echo+close cycles, 3 at once, per slice
        r, cmd = sliced(perf, two, 3, 30, ["--setup-rate", "--conns", "3", "--size", "100"])
        check_run(r, cmd, 2, 3, 30, 3, 0, setup=True)
        # 1 ms slices: most of the 64 first cycles are still in flight when
        # the slice ends; they must complete and count in that slice
        r, cmd = sliced(perf, two, 4, 1, ["--setup-rate", "--conns", "64"])
        check_run(r, cmd, 2, 4, 1, 64, 0, setup=True)
        # no bleed: with both targets' --pids naming the first server, the
        # second target's records hold the first server's CPU during the
        # second's slices: its cycles (closes included) all end in its own
        # slice, so that is 0 (allowed once, for a starved server that was
        # still runnable when the 20 ms settle wait gave up)
        cmd = [perf, "--json", "--setup-rate", "--conns", "8", "--targets",
               ",".join(f"{s.host}:{s.port}" for s in two), "--pids",
               f"{two[0].proc.pid},{two[0].proc.pid}", "--rounds", "4", "--slice-ms", "30"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"bleed run: exit {r.returncode}: {r.stderr.strip()[-300:]}")
        if r.returncode == 0:
            own, other = json.loads(r.stdout.strip().splitlines()[-1])["targets"]
            check(all(c > 0 for c in own["round_cpu_ns"]) and
                  sum(c > 0 for c in other["round_cpu_ns"]) <= 1,
                  f"--setup-rate: server CPU in its own slices {own['round_cpu_ns']}, in the "
                  f"other target's slices {other['round_cpu_ns']} (want 0)")
        # UDP sliced against two hps_epoll_echo --udp
        r, cmd = sliced(perf, udp, 3, 30, ["--udp", "--conns", "4", "--depth", "2"])
        check_run(r, cmd, 2, 3, 30, 4, 0, udp=True)
        # --sets: 5 rounds as runs of 2, 2 and 1, merged into one result
        res = compare.run_sliced_sets(perf, two, ["--conns", "2", "--depth", "2"], 5, 30, 1, 3)
        j = res["json"]
        check(res["rc"] == 0 and j is not None and len(res["cmds"]) == 3 and j["rounds"] == 5
              and [c[c.index("--rounds") + 1] for c in res["cmds"]] == ["2", "2", "1"],
              f"--sets 3 of 5 rounds: rc {res['rc']}, cmds {res.get('cmds')}")
        if res["rc"] == 0 and j is not None:
            for t in j["targets"]:
                check(len(t["round_msgs"]) == 5 and len(t["round_cpu_ns"]) == 5 and
                      t["msgs"] == sum(t["round_msgs"]) and t["msgs"] > 0 and
                      abs(t["msgs_per_s"] - t["msgs"] / t["active_s"]) < 1e-6 * t["msgs_per_s"],
                      f"--sets merge of {t['target']}: {len(t['round_msgs'])} rounds, msgs "
                      f"{t['msgs']} vs {sum(t['round_msgs'])}")
            check(j["msgs"] == sum(t["msgs"] for t in j["targets"]), "--sets: total msgs")
        bad = {"rc": 4, "json": None, "stderr": ["x"], "cmd": ["y"]}
        check(compare.merge_sliced([res, bad]) is bad, "--sets: a failed run is the result")
        # a refused option is a usage error, not a silent fallback
        r, _ = sliced(perf, two, 1, 10, ["--threads", "2"])
        check(r.returncode == 64, f"--threads 2 with --targets: exit {r.returncode}, want 64")
        # a server that dies during the run makes the run fail
        victim = servers[2]
        ended = run_and_kill(perf, [f"{two[0].host}:{two[0].port},{victim.host}:{victim.port}",
                                    "--pids", f"{two[0].proc.pid},{victim.proc.pid}",
                                    "--rounds", "40", "--slice-ms", "50", "--conns", "4"],
                             victim, 0.6)
        check(ended is not None, "hps_perf did not end after a server died")
        if ended is not None:
            check(ended[0] in (3, 4), f"server killed mid-run: exit {ended[0]}, want 3 or 4")
        # --setup-rate: a server killed mid-run refuses the cycles of its
        # later slices; counted as errors, the run fails (no --pids here, so
        # it is the cycles that see it, not the /proc read)
        victim = servers[3]
        ended = run_and_kill(perf, [f"{two[0].host}:{two[0].port},{victim.host}:{victim.port}",
                                    "--rounds", "12", "--slice-ms", "50", "--setup-rate",
                                    "--conns", "4"],
                             victim, 0.4)
        check(ended is not None, "hps_perf --setup-rate did not end after a server died")
        if ended is not None:
            check(ended[0] == 4 and "refused" in ended[1].lower(),
                  f"--setup-rate, server killed mid-run: exit {ended[0]}, want 4: "
                  f"{ended[1].strip()[-300:]}")
    finally:
        for s in servers + udp:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                print(f"stopping {s.name}: {e}", file=sys.stderr)
    # the driver end to end: a table row per server
    c = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), "--perf", perf,
                        "--sliced", "--rounds", "2", "--slice-ms", "30", "--sets", "2",
                        "--server", f"a={echo} --port 0", "--server", f"b={echo} --port 0",
                        "--scenario", "conns=2,size=64,depth=1",
                        "--scenario", "conns=2,size=64,setup=1"],
                       capture_output=True, text=True, timeout=60)
    for sc in ("conns=2,size=64,depth=1", "conns=2,size=64,setup=1"):
        rows = [ln for ln in c.stdout.splitlines() if ln.startswith(f"| {sc} ")]
        check(c.returncode == 0 and len(rows) == 2 and "1.00x" in rows[0],
              f"compare.py --sliced {sc}: exit {c.returncode}, rows {rows}: "
              f"{c.stderr.strip()[-300:]}")
    print(f"sliced smoke: {'FAILED' if FAILS else 'ok'} ({len(FAILS)} failure(s), "
          f"{time.monotonic() - t0:.1f} s)")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())

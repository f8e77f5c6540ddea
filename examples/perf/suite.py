#!/usr/bin/env python3
"""hpsock performance suite: every scenario, three servers, one table.

    python3 examples/perf/suite.py --build build-perf

Builds nothing: --build names a build tree that already has
examples/hps_echo_server and examples/perf/{hps_perf,hps_epoll_echo,
hps_uv_echo,hps_idle_mem} (a Release build; see examples/perf/README.md).

Three servers: hps (examples/hps_echo_server), epoll (the raw-epoll
reference) and uv (the bare-libuv echo).  Every timed row is "sliced"
(compare.py --sliced): ONE hps_perf connects to all servers at once and
they take turns, one server busy at a time, in --slice-ms slices (50) over
--rounds rounds (100; the order rotates every round, one warm-up round
first); server CPU is read in ns from /proc/PID/task/*/schedstat at each
slice's edges.  In the setup-rate row a slice runs the connect+echo+close
cycles against its server only (the ones in flight at its end complete in
it); in the UDP rows a slice sends datagrams to its server only (the ones
out at its end are awaited, up to --loss-ms).  A row's rate is all its
messages (cycles, datagrams) over all its active time, "per CPU-s" all its
work over all its server CPU time, and a ratio is the median over the rounds
of the per-round ratio (the two servers' slices of the same round, a
fraction of a second apart), with the 25th-75th percentile of those
per-round ratios in brackets.  A row with 2 workers runs its rounds as
--sets (4) hps_perf runs in a row, each with new connections: SO_REUSEPORT
spreads a run's connections over a server's loops by a hash (26/38 to
33/31 in eight runs here), differently for every server and fixed for the
whole run, and the 2-worker ratios moved between runs (0.92x-1.01x) far
more than their per-round spread explains; four splits per row average
over that rather than hang the row on one.  With --whole-runs (the old
way) every row
runs hps_perf once per server and repetition for the whole --duration, in
an order that rotates every repetition; medians over --reps, brackets =
lowest-highest repetition; server CPU is sampled from /proc at the edges of
the measured window (see compare.py).  The UDP rows (1 and 2 workers; only
when the build has examples/hps_udp_echo_server and hps_perf --udp) run
hps_perf --udp against hps_udp_echo_server, hps_epoll_echo --udp and
hps_uv_echo --udp; lost and late datagrams per server follow the table.

After the timed rows come:
- instructions per echoed message (valgrind --tool=callgrind, user space
  only): each server runs twice under callgrind with hps_perf --count N1 and
  --count N2 on the same connections; (Ir(N2) - Ir(N1)) / (messages(N2) -
  messages(N1)) cancels start-up, connecting and shutdown.  Repeatable to a
  few instructions, so a regression shows without timing noise.
- syscalls per echoed message (strace -f -c, differenced the same way).
- user-space memory per idle hpsock connection (hps_idle_mem -n 10000).

Knobs: --rounds N (sliced rows, default 100), --slice-ms MS (50),
--warmup-rounds K (1), --sets K (2-worker rows, 4), --whole-runs (every row the old way, one whole run
per server and repetition), --duration S (measured seconds per whole run,
default 2), --warmup S (default 0.3), --reps R (whole runs, default 3),
--only REGEX (scenarios whose name
matches it, repeatable; --only UDP runs the two UDP rows, --only 'UDP.*1$'
the 1-worker one), --no-callgrind, --no-syscalls, --no-mem, --json-out FILE,
--control (adds a second raw-epoll instance, "epoll-2": an A/A control whose
ratios against "epoll" are pure measurement noise, a yardstick for how far
any ratio in that row can move with nothing different; about a third more
time).  Exit status 1 if any run failed or a server died.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (Server, run_client: the shared measuring code)

SERVERS = ("hps", "epoll", "uv")
# --control adds a second, separate instance of the raw-epoll reference: an
# A/A control.  Its ratios against the first instance are pure measurement
# noise (same binary, same load), so they show how far a ratio in the same
# row can stray from 1.00x with nothing different at all.
CONTROL = "epoll-2"

# name, hps_perf arguments, server workers, hpsock receive mode, rate unit.
# unit: msgs (messages/s), MB (MB/s of payload), conns (setup cycles/s).
SCENARIOS = [
    ("latency 1 conn x 64 B, depth 1", "--conns 1 --size 64 --depth 1", 1, "push", "msgs"),
    ("64 conns x 64 B, depth 1", "--conns 64 --size 64 --depth 1", 1, "push", "msgs"),
    ("64 conns x 64 B, depth 16", "--conns 64 --size 64 --depth 16", 1, "push", "msgs"),
    ("64 conns x 64 B, depth 16, 2 workers", "--conns 64 --size 64 --depth 16", 2, "push", "msgs"),
    ("1,000 conns x 64 B, depth 1", "--conns 1000 --size 64 --depth 1", 1, "push", "msgs"),
    ("10,000 conns: 100 active + 9,900 idle", "--conns 100 --idle 9900 --size 64 --depth 1", 1, "push", "msgs"),
    ("8 conns x 16 KiB stream, depth 4", "--conns 8 --size 16384 --depth 4", 1, "push", "MB"),
    ("setup rate: connect+echo+close, 64 at once", "--conns 64 --size 64 --setup-rate", 1, "push", "conns"),
    ("pack 64 conns x 64 B, depth 16", "--conns 64 --size 64 --depth 16 --mode pack", 1, "pack", "msgs"),
]

# UDP rows: added by themselves when the build has hps_udp_echo_server and
# hps_perf --udp.  Same three servers: name -> (binary under --build, its
# arguments besides --port 0 --workers N).
UDP_SCENARIOS = [
    ("UDP 64 peers x 64 B datagrams, depth 1", "--udp --conns 64 --size 64 --depth 1", 1, "udp", "msgs"),
    # one SO_REUSEPORT socket per worker; sliced, about 15 s (25 s as whole runs)
    ("UDP 64 peers x 64 B datagrams, depth 1, 2 workers", "--udp --conns 64 --size 64 --depth 1", 2,
     "udp", "msgs"),
]
UDP_SERVERS = {
    "hps": ("examples/hps_udp_echo_server", ""),
    "epoll": ("examples/perf/hps_epoll_echo", "--udp"),
    "uv": ("examples/perf/hps_uv_echo", "--udp"),
}

# callgrind: (label, hps_perf args, hpsock mode, N1, N2 messages per connection)
CALLGRIND = [
    ("1 conn x 64 B, depth 1", "--conns 1 --size 64 --depth 1", "push", 1000, 6000),
    ("64 conns x 64 B, depth 16", "--conns 64 --size 64 --depth 16", "push", 200, 1200),
    ("pack 64 conns x 64 B, depth 16", "--conns 64 --size 64 --depth 16 --mode pack", "pack", 200, 1200),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def server_cmd(build, name, workers, mode):
    if name == CONTROL:
        name = "epoll"
    if mode == "udp":
        prog, extra = UDP_SERVERS[name]
        return " ".join(filter(None, [os.path.join(build, prog), extra,
                                      f"--port 0 --workers {workers}"]))
    if name == "hps":
        return (f"{os.path.join(build, 'examples', 'hps_echo_server')} --port 0 "
                f"--workers {workers} --mode {mode}")
    prog = {"epoll": "hps_epoll_echo", "uv": "hps_uv_echo"}[name]
    return f"{os.path.join(build, 'examples', 'perf', prog)} --port 0 --workers {workers}"


def is_sliced(args, scenario):
    """every timed row (TCP echo, pack, setup rate, UDP) runs sliced unless --whole-runs"""
    return not args.whole_runs


def udp_available(build, perf):
    if not all(os.access(os.path.join(build, prog), os.X_OK) for prog, _ in UDP_SERVERS.values()):
        return False
    out = subprocess.run([perf, "--help"], capture_output=True, text=True).stdout
    return "--udp" in out


# ---------------------------------------------------------------- timed rows

def run_scenarios(args, perf, scenarios):
    """results[(scenario index, server)] = list of run results"""
    results = {}
    failed = False
    # Servers are started once per (workers, mode) and shared by scenarios.
    pool = {}
    try:
        for si, (label, cargs, workers, mode, unit) in enumerate(scenarios):
            servers = []
            for name in args.servers:
                # the references echo pack frames as plain bytes: one instance
                key = (name, workers, mode if name == "hps" or mode == "udp" else "push")
                if key not in pool:
                    s = compare.Server(name, server_cmd(args.build, name, workers, key[2]))
                    s.start()
                    log(f"started {name}: {s.cmd} (pid {s.proc.pid})")
                    pool[key] = s
                servers.append(pool[key])
            if is_sliced(args, scenarios[si]):
                for s in servers:
                    if not s.alive():
                        raise RuntimeError(f"server {s.name} died (status {s.proc.poll()})")
                res = compare.run_sliced_sets(perf, servers, shlex.split(cargs), args.rounds,
                                              args.slice_ms, args.warmup_rounds,
                                              args.sets if workers > 1 else 1)
                cmd = res["cmd"]
                res["servers"] = [s.name for s in servers]
                results[(si, None)] = res
                if res["rc"] != 0 or res["json"] is None:
                    failed = True
                    log(f"FAILED [{label}] sliced: exit {res['rc']}\n  " + shlex.join(cmd)
                        + "\n  " + "\n  ".join(res["stderr"][-10:]))
                else:
                    for s, t in zip(servers, res["json"]["targets"]):
                        f = compare.sliced_target(t, res["json"]["size"] if unit == "MB" else None)
                        log(f"[{label}] {s.name} sliced: {fmt(f['rate'])} {unit}/s "
                            f"{fmt(f['per_cpu'])} per CPU-s p99={t['p99_us']}us")
                if args.jsonf:
                    args.jsonf.write(json.dumps({"scenario": label, "sliced": True, **res}) + "\n")
                continue
            for rep in range(args.reps):
                k = rep % len(servers)
                for s in servers[k:] + servers[:k]:
                    if not s.alive():
                        raise RuntimeError(f"server {s.name} died (status {s.proc.poll()})")
                    cmd = [perf, "--host", s.host, "--port", str(s.port), "--json", "--marks",
                           "--duration", str(args.duration), "--warmup", str(args.warmup)]
                    cmd += shlex.split(cargs)
                    res = compare.run_client(cmd, args.duration + args.warmup + 40, s)
                    res["rep"] = rep
                    results.setdefault((si, s.name), []).append(res)
                    j = res["json"]
                    if res["rc"] != 0 or j is None or "cpu_s" not in res:
                        failed = True
                        log(f"FAILED [{label}] {s.name} rep {rep + 1}: exit {res['rc']}\n  "
                            + shlex.join(cmd) + "\n  " + "\n  ".join(res["stderr"][-10:]))
                    else:
                        loss = (f" lost={j['lost']}/{j['sent']} late={j['late']}"
                                if mode == "udp" else "")
                        log(f"[{label}] {s.name} rep {rep + 1}/{args.reps}: "
                            f"{rate_of(j, unit):,.1f} {unit}/s p99={j['p99_us']}us "
                            f"server_cpu={res['cpu_s']:.2f}s{loss}")
                    if args.jsonf:
                        args.jsonf.write(json.dumps({"scenario": label, "server": s.name,
                                                     "rep": rep + 1, **res}) + "\n")
    finally:
        for s in pool.values():
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {s.name}: {e}")
    return results, failed


def rate_of(j, unit):
    if unit == "conns":
        return j["conns_per_s"]
    if unit == "MB":
        return j["mb_per_s"]
    return j["msgs_per_s"]


def work_of(j, unit):
    """what per-CPU-s counts: connections, MB or messages"""
    if unit == "conns":
        return j["connects"]
    if unit == "MB":
        return j["mb_per_s"] * j["duration_s"]
    return j["msgs"]


def summarize(runs, unit):
    ok = [r for r in runs if r["rc"] == 0 and r["json"] and r.get("cpu_s")]
    if not ok:
        return None
    rates = [rate_of(r["json"], unit) for r in ok]
    med = statistics.median(rates)
    return {
        "n": len(ok), "of": len(runs), "rate": med,
        "spread": 100.0 * (max(rates) - min(rates)) / med if med else 0.0,
        "per_cpu": statistics.median(work_of(r["json"], unit) / r["cpu_s"] for r in ok),
        "p50": statistics.median(r["json"]["p50_us"] for r in ok),
        "p99": statistics.median(r["json"]["p99_us"] for r in ok),
        "p999": statistics.median(r["json"]["p999_us"] for r in ok),
    }


def rep_ratio(runs, ref_runs, unit, per_cpu):
    """Median over repetitions of this server's figure / the reference's in
    the same repetition: the runs of one repetition follow each other, so a
    change in the machine's load between repetitions cancels out."""
    def ok(r):
        return r["rc"] == 0 and r["json"] and r.get("cpu_s")

    def fig(r):
        j = r["json"]
        return work_of(j, unit) / r["cpu_s"] if per_cpu else rate_of(j, unit)
    ref = {r["rep"]: r for r in ref_runs if ok(r)}
    ratios = [fig(r) / fig(ref[r["rep"]]) for r in runs
              if ok(r) and r["rep"] in ref and fig(ref[r["rep"]]) > 0]
    if not ratios:
        return "n/a"
    if len(ratios) == 1 or runs is ref_runs:
        return f"{statistics.median(ratios):.2f}x"
    # the median, and the lowest and highest repetition's ratio
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def fmt(x):
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def print_sliced_row(label, res, unit, servers):
    """one sliced row: res is compare.run_sliced's result, targets in res['servers'] order"""
    u = {"msgs": "msg/s", "MB": "MB/s", "conns": "conn/s"}[unit]
    j = res["json"]
    if res["rc"] != 0 or not j:
        for name in servers:
            print(f"| {label} | {name} | FAILED | | | | | | | | | | sliced, exit {res['rc']} |")
        return
    size = j["size"] if unit == "MB" else None
    t = {n: compare.sliced_target(x, size) for n, x in zip(res["servers"], j["targets"])}
    for name in servers:
        m = t[name]
        lo, med, hi = compare.quartiles([r[0] for r in m["rounds"]])

        def vs(ref, per_cpu):
            if ref not in t:
                return "n/a"
            if ref == name:
                return "1.00x"
            return compare.fmt_quartiles(compare.round_ratios(m, t[ref], per_cpu))
        print(f"| {label} | {name} | {fmt(m['rate'])} {u} | "
              f"{100.0 * (hi - lo) / med if med else 0.0:.0f}% | {vs('epoll', False)} | "
              f"{vs('uv', False)} | {fmt(m['per_cpu'])} | {vs('epoll', True)} | "
              f"{vs('uv', True)} | {m['p50']:.0f} | {m['p99']:.0f} | {m['p999']:.0f} | "
              f"{len(m['rounds'])} rounds |")


def print_table(scenarios, results, args, servers):
    reps = args.reps
    print("| scenario | server | rate | spread | vs epoll | vs uv | per server CPU-s | vs epoll "
          "| vs uv | p50 us | p99 us | p99.9 us | runs ok |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for si, (label, _, workers, mode, unit) in enumerate(scenarios):
        if (si, None) in results:
            wl = f" [{workers}w]" if workers > 1 else ""
            print_sliced_row(label + wl, results[(si, None)], unit, servers)
            continue
        sums = {}
        for name in servers:
            sums[name] = summarize(results.get((si, name), []), unit)
        u = {"msgs": "msg/s", "MB": "MB/s", "conns": "conn/s"}[unit]
        wl = f" [{workers}w]" if workers > 1 else ""
        for name in servers:
            m = sums[name]
            runs = results.get((si, name), [])
            if m is None:
                print(f"| {label}{wl} | {name} | FAILED | | | | | | | | | | 0/{len(runs)} |")
                continue
            ref_ep = results.get((si, "epoll"), [])
            ref_uv = results.get((si, "uv"), [])
            print(f"| {label}{wl} | {name} | {fmt(m['rate'])} {u} | {m['spread']:.0f}% | "
                  f"{rep_ratio(runs, ref_ep, unit, False)} | {rep_ratio(runs, ref_uv, unit, False)} | "
                  f"{fmt(m['per_cpu'])} | {rep_ratio(runs, ref_ep, unit, True)} | "
                  f"{rep_ratio(runs, ref_uv, unit, True)} | {m['p50']:.0f} | {m['p99']:.0f} | "
                  f"{m['p999']:.0f} | {m['n']}/{m['of']} |")
    print()
    if any(k[1] is None for k in results):
        print(f"Rows ending in 'N rounds' are sliced: one hps_perf against all servers at once, "
              f"taking turns in {args.slice_ms} ms slices over N rounds (order rotated every "
              f"round, {args.warmup_rounds} warm-up round(s) not counted); rate = all messages "
              "(payload MB, setup cycles) / all active time, per server CPU-s = the same work / "
              "all server "
              "CPU time (ns on CPU from /proc/PID/task/*/schedstat over each slice); spread = "
              "interquartile range of the per-round rates over their median; a ratio is the "
              "median over the rounds of the per-round ratio (both servers' slices of the same "
              "round), with the 25th-75th percentile of those per-round ratios in brackets; "
              "latency over all measured slices.")
    if any(k[1] is not None for k in results):
        print(f"Rows ending in 'n/m' ran whole runs: medians over {reps} interleaved "
              "repetitions; spread = (highest - lowest) / median rate; a ratio is the median "
              "over the repetitions of the two servers' figures in the same repetition, with "
              "the lowest and highest repetition's ratio in brackets; per server CPU-s from "
              "/proc/PID/stat (user+sys, all threads) in the measured window.")
    print("rate: messages/s, MB/s of payload (stream) or connect+echo+close cycles/s (setup); "
          "[2w] = every server with 2 workers, else 1; latency = send to last byte echoed. "
          "Every echoed byte is verified.")
    udp = [(si, label) for si, (label, _, _, mode, _) in enumerate(scenarios) if mode == "udp"]
    if udp:
        print()
        print("UDP loss (hps_perf --udp: a datagram not echoed within --loss-ms 200 is lost; "
              "late = echoed after that), summed over the repetitions, or over a sliced run's "
              "slices (its warm-up round included):")
        print()
        for si, label in udp:
            wl = f" [{scenarios[si][2]}w]" if scenarios[si][2] > 1 else ""
            parts = []
            sl = results.get((si, None))
            for name in servers:
                if sl is not None:
                    js = [t for n, t in zip(sl.get("servers", []), (sl["json"] or {}).get(
                        "targets", [])) if n == name]
                else:
                    js = [r["json"] for r in results.get((si, name), []) if r["json"]]
                sent = sum(j["sent"] for j in js)
                lost = sum(j["lost"] for j in js)
                late = sum(j["late"] for j in js)
                pct = 100.0 * lost / sent if sent else 0.0
                parts.append(f"{name} {lost:,} of {sent:,} ({pct:.3f}%), {late:,} late")
            print(f"- {label}{wl}: " + "; ".join(parts))


# ---------------------------------------------------------------- callgrind

def fixed_work(perf, s, cargs, count, what):
    """Run hps_perf --count against the started server s; the messages echoed."""
    pc = [perf, "--host", s.host, "--port", str(s.port), "--json", "--count", str(count),
          "--duration", "60"] + shlex.split(cargs)
    r = subprocess.run(pc, capture_output=True, text=True, timeout=90)
    if r.returncode != 0:
        raise RuntimeError(f"{what} --count {count}: exit {r.returncode}: "
                           f"{r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])["msgs"]

def callgrind_total(build, perf, name, cargs, mode, count, tmp):
    out = os.path.join(tmp, f"cg.{name}.{count}")
    cmd = ("valgrind -q --tool=callgrind --callgrind-out-file=" + out + " "
           + server_cmd(build, name, 1, mode if name == "hps" else "push"))
    s = compare.Server(name, cmd)
    s.start(timeout=30)
    try:
        msgs = fixed_work(perf, s, cargs, count, f"callgrind run {name}")
    finally:
        s.stop()
    with open(out) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1]), msgs
    raise RuntimeError(f"no totals in {out}")


def run_callgrind(args, perf):
    rows = []
    tmp = tempfile.mkdtemp(prefix="hps-suite-cg.")
    try:
        for label, cargs, mode, n1, n2 in CALLGRIND:
            per = {}
            for name in SERVERS:
                ir1, m1 = callgrind_total(args.build, perf, name, cargs, mode, n1, tmp)
                ir2, m2 = callgrind_total(args.build, perf, name, cargs, mode, n2, tmp)
                per[name] = (ir2 - ir1) / (m2 - m1)
                log(f"callgrind [{label}] {name}: {per[name]:.0f} Ir/msg "
                    f"({ir1:,} Ir / {m1} msgs, {ir2:,} Ir / {m2} msgs)")
            rows.append((label, per))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def print_callgrind(rows):
    print("| callgrind: instructions per echoed message (1 worker) | hps | epoll | uv "
          "| hps vs epoll | hps vs uv |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, per in rows:
        print(f"| {label} | {per['hps']:.0f} | {per['epoll']:.0f} | {per['uv']:.0f} | "
              f"{per['hps'] / per['epoll']:.2f}x | {per['hps'] / per['uv']:.2f}x |")
    print()
    print("User-space instructions only (valgrind --tool=callgrind, Ir); each figure is "
          "(Ir at N2 - Ir at N1) / (messages at N2 - messages at N1) of two fixed-work "
          "runs (hps_perf --count), so start-up, connecting and shutdown cancel out. "
          "The references echo pack frames as plain bytes: the pack row is what parsing "
          "and re-framing cost hpsock, not a like-for-like ratio. callgrind counts a "
          "rep movsb copy per byte, so copies of 2 KiB and more weigh far more here "
          "than on the CPU.")


# ---------------------------------------------------------------- syscalls

SYSCALL_LOAD = ("64 conns x 64 B, depth 1", "--conns 64 --size 64 --depth 1", 50, 250)


def strace_counts(build, perf, name, cargs, count, tmp):
    """{syscall: calls} of the server over a fixed-work run, and messages"""
    out = os.path.join(tmp, f"st.{name}.{count}")
    s = compare.Server(name, f"strace -f -c -o {out} " + server_cmd(build, name, 1, "push"))
    s.start(timeout=30)
    try:
        msgs = fixed_work(perf, s, cargs, count, f"strace run {name}")
    finally:
        # end the server itself, not strace (which then writes its summary)
        kids = []
        try:
            with open(f"/proc/{s.proc.pid}/task/{s.proc.pid}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            pass
        for k in kids:
            try:
                os.kill(k, 15)
            except ProcessLookupError:
                pass
        try:
            s.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        s.stop()
    calls = {}
    with open(out) as f:
        for line in f:
            p = line.split()
            # % time, seconds, usecs/call, calls, [errors,] syscall
            if len(p) >= 5 and p[0][0].isdigit() and p[-1] != "total":
                calls[p[-1]] = int(p[3])
    return calls, msgs


def run_syscalls(args, perf):
    label, cargs, n1, n2 = SYSCALL_LOAD
    per = {}
    tmp = tempfile.mkdtemp(prefix="hps-suite-st.")
    try:
        for name in SERVERS:
            c1, m1 = strace_counts(args.build, perf, name, cargs, n1, tmp)
            c2, m2 = strace_counts(args.build, perf, name, cargs, n2, tmp)
            diff = {k: (c2.get(k, 0) - c1.get(k, 0)) / (m2 - m1) for k in set(c1) | set(c2)}
            per[name] = {k: v for k, v in diff.items() if v >= 0.005}
            log(f"syscalls [{label}] {name}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(per[name].items(), key=lambda kv: -kv[1])))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return label, per


def print_syscalls(st):
    label, per = st
    print(f"| syscalls per echoed message ({label}, 1 worker) | total | of which |")
    print("|---|---:|---|")
    for name in SERVERS:
        d = per[name]
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))
        print(f"| {name} | {sum(d.values()):.2f} | {parts} |")
    print()
    print("strace -f -c of the server over two fixed-work runs (hps_perf --count), differenced "
          "like the instruction counts.")


def run_idle_mem(args):
    prog = os.path.join(args.build, "examples", "perf", "hps_idle_mem")
    r = subprocess.run([prog, "-n", "10000"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"hps_idle_mem: exit {r.returncode}: {r.stderr.strip()}")
    kv = dict(p.split("=", 1) for p in r.stdout.split() if "=" in p)
    return int(kv["idle_conns"]), int(kv["rss_per_conn_bytes"])


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--build", required=True, help="build tree (a Release build; nothing is built)")
    ap.add_argument("--duration", type=float, default=2.0, help="measured seconds per run (default 2)")
    ap.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds per run (default 0.3)")
    ap.add_argument("--reps", type=int, default=3,
                    help="interleaved repetitions of whole-run rows (default 3)")
    compare.add_slice_args(ap, "sliced rows", sets_default=4,
                           sets_which="sliced rows with 2 workers")
    ap.add_argument("--whole-runs", action="store_true",
                    help="run every row the old way: one whole hps_perf run per server and "
                         "repetition (--reps, --duration), no slicing")
    ap.add_argument("--only", action="append", default=[], metavar="REGEX",
                    help="only scenarios whose name matches REGEX (re.search; repeatable)")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    ap.add_argument("--no-mem", action="store_true", help="skip the idle-memory figure")
    ap.add_argument("--no-syscalls", action="store_true", help="skip the syscall counts (strace)")
    ap.add_argument("--control", action="store_true",
                    help="also run a second raw-epoll instance (A/A control: its ratios vs "
                         "the first are the measurement noise of each row)")
    ap.add_argument("--json-out", default=None, help="write every run's raw result here (JSON lines)")
    args = ap.parse_args()
    if args.reps < 1 or args.rounds < 1 or args.slice_ms < 1 or args.warmup_rounds < 0:
        ap.error("--reps, --rounds and --slice-ms must be >= 1, --warmup-rounds >= 0")
    args.build = os.path.abspath(args.build)
    args.servers = SERVERS + ((CONTROL,) if args.control else ())
    perf = os.path.join(args.build, "examples", "perf", "hps_perf")
    for p in (perf, os.path.join(args.build, "examples", "hps_echo_server"),
              os.path.join(args.build, "examples", "perf", "hps_epoll_echo"),
              os.path.join(args.build, "examples", "perf", "hps_uv_echo")):
        if not os.access(p, os.X_OK):
            sys.exit(f"suite.py: {p} missing: build first (see examples/perf/README.md)")

    scenarios = list(SCENARIOS)
    if udp_available(args.build, perf):
        scenarios += UDP_SCENARIOS
    else:
        log("UDP row skipped: no UDP echo server / hps_perf --udp in this build")
    if args.only:
        scenarios = [s for s in scenarios if any(re.search(o, s[0]) for o in args.only)]

    t0 = time.monotonic()
    print("command: python3 " + shlex.join(sys.argv))
    whole = f"{args.reps} reps x ({args.warmup:g} s warm-up + {args.duration:g} s)"
    sliced = (f"{args.rounds} rounds x {args.slice_ms} ms slices per server "
              f"(+{args.warmup_rounds} warm-up round)")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}, "
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          + (f"whole runs: {whole}" if args.whole_runs
             else f"timed rows sliced: {sliced}"))
    print()
    sys.stdout.flush()
    args.jsonf = open(args.json_out, "w") if args.json_out else None
    failed = False
    try:
        results, failed = run_scenarios(args, perf, scenarios)
        cg = [] if args.no_callgrind or not shutil.which("valgrind") else run_callgrind(args, perf)
        st = None if args.no_syscalls or not shutil.which("strace") else run_syscalls(args, perf)
        mem = None if args.no_mem else run_idle_mem(args)
    finally:
        if args.jsonf:
            args.jsonf.close()

    print_table(scenarios, results, args, args.servers)
    print()
    if cg:
        print_callgrind(cg)
        print()
    if st:
        print_syscalls(st)
        print()
    if mem:
        print(f"idle memory: hpsock holds {mem[0]:,} idle connections with {mem[1]:,} bytes "
              "of user-space RSS each (hps_idle_mem -n 10000; target <= 1,024)")
        print()
    print(f"suite time: {time.monotonic() - t0:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        log(f"suite.py: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)

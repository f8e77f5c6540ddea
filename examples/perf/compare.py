#!/usr/bin/env python3
"""Compare echo servers under the same hps_perf load; print a Markdown table.

Every server is started once (its command must make it print
"listening on HOST:PORT"; put "--port 0" in the command so it picks a free
port), then for each scenario and each repetition hps_perf is run against each
server in turn (the order rotates every repetition, so no server always goes
first).  The server's CPU time (utime+stime from /proc/PID/stat, which covers
all its threads; summed over every process of the server's session, so a
shell wrapper does not hide it) is sampled exactly at the edges of the
measured window, which hps_perf reports with --marks.  All servers are
stopped at the end (SIGTERM, then SIGKILL after 3 s), errors included.

Example:
  python3 compare.py --perf build/examples/perf/hps_perf \\
      --server "epoll=build/examples/perf/hps_epoll_echo --port 0" \\
      --server "uv=build/examples/perf/hps_uv_echo --port 0" \\
      --scenario conns=64,size=64,depth=1 --scenario conns=64,size=64,depth=16 \\
      --duration 3 --reps 3

Scenario keys: conns, size, depth, mode (echo|pack), flag, threads (client
threads), duration, warmup, setup (1 = --setup-rate: connections/s).
--client-args NAME=ARGS adds hps_perf arguments for one server only, e.g. a
TLS row next to the plain one:
  --server "plain=build/examples/hps_echo_server --port 0" \\
  --server "tls=build/examples/hps_echo_server --port 0 --tls \\
      --cert tests/fixtures/tls/server.pem --key tests/fixtures/tls/server.key" \\
  --client-args "tls=--tls --ca tests/fixtures/tls/ca.pem --sni localhost"
The first server is the reference for the ratio columns.

--sliced: instead of one hps_perf run per server and repetition, ONE
hps_perf per scenario connects to every server at once and lets them take
turns in short slices (hps_perf --targets/--pids, --slice-ms, default 50;
--rounds R, default 100; the order rotates every round, one server busy at a
time, server CPU in ns from /proc/PID/task/*/schedstat over each slice).
Per server: msgs/s = all its messages / all its active time, per CPU-s =
all its messages / all its server CPU time; a ratio is the median over the
rounds of the per-round ratio (this server's slice against the reference's
slice of the same round), with the interquartile range of the per-round
ratios in brackets.  setup=1 slices connect+echo+close cycles: each slice
runs conns cycles at once against its server only, and /s = cycles/s.
Scenario keys duration, warmup and threads do not apply (--rounds,
--slice-ms, --warmup-rounds do).
Exit status: 0 if every run succeeded, 1 otherwise.
"""

import argparse
import json
import os
import re
import select
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_RE = re.compile(rb"listening on (.+):(\d+)\s*$")
SHELL_SYNTAX = re.compile(r"[|&;<>()$`\\\"'*?\[\]#~=%{}\n]")
SHELL_BUILTINS = {"exec", "cd", "export", "ulimit", "umask", "set", "."}
SCENARIO_KEYS = {"conns", "size", "depth", "mode", "flag", "threads", "duration", "warmup", "setup"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- servers

class Server:
    def __init__(self, name, cmd):
        self.name = name
        self.cmd = cmd
        self.proc = None
        self.host = None
        self.port = None
        self.client_args = []  # extra hps_perf arguments (--client-args)

    def start(self, timeout=10.0):
        # A plain "prog args..." is exec'd directly; anything using shell
        # syntax goes through /bin/sh.  Either way the server gets its own
        # session, so its whole process tree can be measured and signalled.
        argv = ["/bin/sh", "-c", self.cmd]
        if not SHELL_SYNTAX.search(self.cmd):
            words = shlex.split(self.cmd)
            if words and words[0] not in SHELL_BUILTINS:
                argv = words
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"server {self.name}: no 'listening on' line within {timeout:.0f} s")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"server {self.name} exited before it was ready "
                                   f"(status {self.proc.wait()})")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                m = READY_RE.search(line)
                if m:
                    host = m.group(1).decode()
                    self.host = host[1:-1] if host.startswith("[") else host
                    self.port = int(m.group(2))
                    # keep draining stdout so the server never blocks on a full pipe
                    threading.Thread(target=self._drain, daemon=True).start()
                    return

    def _drain(self):
        try:
            while os.read(self.proc.stdout.fileno(), 65536):
                pass
        except OSError:
            pass

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _session_procs(self):
        """(pid, state, utime+stime ticks) of every process in the server's
        session."""
        sid = self.proc.pid
        out = []
        for ent in os.listdir("/proc"):
            if not ent.isdigit():
                continue
            try:
                with open(f"/proc/{ent}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            fields = data[data.rfind(b")") + 2:].split()
            # fields[0] is field 3 (state): session = field 6, utime = 14, stime = 15
            if int(fields[3]) == sid:
                out.append((int(ent), fields[0], int(fields[11]) + int(fields[12])))
        return out

    def _session_stats(self):
        """(state, utime+stime ticks) of every process in the server's session."""
        return [(state, ticks) for _, state, ticks in self._session_procs()]

    def session_pids(self):
        """every live process of the server's session (hps_perf --pids P+P)"""
        return sorted(pid for pid, state, _ in self._session_procs() if state != b"Z")

    def cpu_seconds(self):
        """utime+stime of every process in the server's session (all threads)."""
        return sum(t for _, t in self._session_stats()) / CLK_TCK

    def _session_alive(self):
        return any(st != b"Z" for st, _ in self._session_stats())

    def stop(self):
        """SIGTERM the server's process group; SIGKILL whatever is left after 3 s."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            self.proc.poll()
            if self.proc.returncode is not None and not self._session_alive():
                return
            time.sleep(0.02)
        log(f"server {self.name}: still running 3 s after SIGTERM, sending SIGKILL")
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)


# ---------------------------------------------------------------- client runs

def parse_scenario(text):
    sc = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"scenario item '{part}' is not key=value")
        k, v = part.split("=", 1)
        k = k.strip()
        if k not in SCENARIO_KEYS:
            raise argparse.ArgumentTypeError(
                f"unknown scenario key '{k}' (known: {', '.join(sorted(SCENARIO_KEYS))})")
        sc[k] = v.strip()
    return sc


def scenario_label(sc):
    return ",".join(f"{k}={v}" for k, v in sc.items())


def client_cmd(perf, server, sc, args):
    cmd = [perf, "--host", server.host, "--port", str(server.port), "--json", "--marks"]
    duration = sc.get("duration", args.duration)
    warmup = sc.get("warmup", args.warmup)
    threads = sc.get("threads", args.client_threads)
    for key, val in (("conns", sc.get("conns")), ("size", sc.get("size")),
                     ("depth", sc.get("depth")), ("mode", sc.get("mode")),
                     ("flag", sc.get("flag")), ("threads", threads),
                     ("duration", duration), ("warmup", warmup)):
        if val is not None:
            cmd += [f"--{key}", str(val)]
    if sc.get("setup", "0") not in ("0", "", "no", "false"):
        cmd.append("--setup-rate")
    cmd += server.client_args
    limit = float(duration if duration is not None else 5) + float(warmup if warmup is not None else 1) + 20
    return cmd, limit


def run_client(cmd, limit, server):
    """Run hps_perf once; sample the server's CPU at the measured window's edges."""
    cpu_before_run = server.cpu_seconds()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    killer = threading.Timer(limit, proc.kill)
    killer.start()
    marks = {}
    other = []
    out = b""
    try:
        # stdout is one short JSON line at the end: reading stderr to EOF first
        # cannot deadlock on it
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            if line == "hps_perf: mark measure-start":
                marks["start"] = (time.monotonic(), server.cpu_seconds())
            elif line == "hps_perf: mark measure-end":
                marks["end"] = (time.monotonic(), server.cpu_seconds())
            else:
                other.append(line)
        out = proc.stdout.read()
        rc = proc.wait()
        cpu_after_run = server.cpu_seconds()
    finally:
        killer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    res = {"rc": rc, "stderr": other, "cmd": cmd}
    try:
        res["json"] = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        res["json"] = None
    if "start" in marks and "end" in marks:
        res["cpu_s"] = marks["end"][1] - marks["start"][1]
        res["wall_s"] = marks["end"][0] - marks["start"][0]
    res["cpu_run_s"] = cpu_after_run - cpu_before_run
    return res


# ---------------------------------------------------------------- sliced runs

SLICED_KEYS = {"conns", "size", "depth", "mode", "flag", "setup"}


def sliced_cmd(perf, servers, cargs, rounds, slice_ms, warmup_rounds):
    """hps_perf --targets over every server (in this order), --pids of each."""
    cmd = [perf, "--json",
           "--targets", ",".join(f"[{s.host}]:{s.port}" if ":" in s.host else f"{s.host}:{s.port}"
                                 for s in servers),
           "--pids", ",".join("+".join(str(p) for p in s.session_pids()) for s in servers),
           "--rounds", str(rounds), "--slice-ms", str(slice_ms),
           "--warmup-rounds", str(warmup_rounds)] + list(cargs)
    # connecting (5 s + 1 ms a connection, per target) + every slice + drains
    limit = (len(servers) * (rounds + warmup_rounds) * (slice_ms / 1000.0 + 0.2) + 30
             + len(servers) * 0.002 * sum(int(v) for k, v in zip(cargs, cargs[1:])
                                           if k in ("--conns", "--idle")))
    return cmd, limit


def run_sliced(cmd, limit):
    """Run one sliced hps_perf; its result dict (rc, stderr, json)."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=limit,
                           stdin=subprocess.DEVNULL)
        rc, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        rc, err = -9, "compare.py: hps_perf killed after its time limit"
    res = {"rc": rc, "stderr": err.splitlines(), "cmd": cmd}
    try:
        res["json"] = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        res["json"] = None
    return res


def merge_sliced(parts):
    """One result from the sliced runs of one scenario, in order: the
    rounds of every run, each target's counts and times added up (its rates
    recomputed from them), its latency percentiles the median of the runs'
    (max_us the largest). The first failed run is the result if any failed."""
    for r in parts:
        if r["rc"] != 0 or r["json"] is None:
            return r
    if len(parts) == 1:
        return parts[0]
    js = [r["json"] for r in parts]
    out = dict(js[0])
    for k in ("msgs", "errors", "rounds"):
        if k in out:
            out[k] = sum(j[k] for j in js)
    out["verified"] = all(j.get("verified", True) for j in js)
    targets = []
    for ts in zip(*(j["targets"] for j in js)):
        t = dict(ts[0])
        for k, v in ts[0].items():
            if isinstance(v, list) and k.startswith("round_"):
                t[k] = [x for u in ts for x in u[k]]
            elif k == "max_us":
                t[k] = max(u[k] for u in ts)
            elif k.endswith("_us"):
                t[k] = statistics.median(u[k] for u in ts)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and \
                    not k.endswith("_per_s") and not k.startswith("msgs_per"):
                t[k] = sum(u[k] for u in ts)
        if t.get("active_s"):
            t["msgs_per_s"] = t["msgs"] / t["active_s"]
            if "mb_per_s" in t:
                t["mb_per_s"] = t["msgs"] * out.get("size", 0) / 1e6 / t["active_s"]
        if t.get("cpu_s"):
            t["msgs_per_cpu_s"] = t["msgs"] / t["cpu_s"]
        targets.append(t)
    out["targets"] = targets
    out["sets"] = len(parts)
    return {"rc": 0, "stderr": [x for r in parts for x in r["stderr"]],
            "cmd": parts[0]["cmd"], "cmds": [r["cmd"] for r in parts], "json": out}


def run_sliced_sets(perf, servers, cargs, rounds, slice_ms, warmup_rounds, sets):
    """A sliced scenario as `sets` hps_perf runs of rounds/sets rounds each,
    merged (merge_sliced). Each run connects anew, so with several workers
    SO_REUSEPORT splits the connections among a server's loops anew: one
    split, fixed for a whole run and different for every server, moves a
    2-worker ratio by up to 10% from run to run; several average it out."""
    sets = max(1, min(sets, rounds))
    parts = []
    for k in range(sets):
        n = rounds // sets + (1 if k < rounds % sets else 0)
        cmd, limit = sliced_cmd(perf, servers, cargs, n, slice_ms, warmup_rounds)
        parts.append(run_sliced(cmd, limit))
        if parts[-1]["rc"] != 0 or parts[-1]["json"] is None:
            break
    return merge_sliced(parts)


def quartiles(xs):
    """(p25, median, p75) of a non-empty list"""
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def sliced_target(t, unit_bytes=None):
    """Totals of one target of a sliced run: rate (msgs/s, or MB/s of payload
    when unit_bytes is the message size), work per server CPU-s, and the
    per-round figures (rate, per CPU-s) for pairing."""
    scale = (unit_bytes / 1e6) if unit_bytes else 1.0
    ns = sum(t["round_ns"])
    cpu = sum(t["round_cpu_ns"])
    rounds = []
    for m, n, c in zip(t["round_msgs"], t["round_ns"], t["round_cpu_ns"]):
        rounds.append((m * scale / (n / 1e9) if n else 0.0, m * scale / (c / 1e9) if c else 0.0))
    return {"rate": t["msgs"] * scale / (ns / 1e9) if ns else 0.0,
            "per_cpu": t["msgs"] * scale / (cpu / 1e9) if cpu else 0.0,
            "util": 100.0 * cpu / ns if ns else 0.0,
            "rounds": rounds,
            "p50": t["p50_us"], "p99": t["p99_us"], "p999": t["p999_us"]}


def round_ratios(a, ref, per_cpu):
    """per-round ratios of target a against target ref (from sliced_target)"""
    i = 1 if per_cpu else 0
    return [x[i] / y[i] for x, y in zip(a["rounds"], ref["rounds"]) if y[i] > 0 and x[i] > 0]


def fmt_quartiles(xs):
    if not xs:
        return "n/a"
    lo, med, hi = quartiles(xs)
    return f"{med:.2f}x ({lo:.2f}-{hi:.2f})"


def add_slice_args(ap, which, sets_default=1, sets_which=None):
    """--rounds, --slice-ms, --warmup-rounds, --sets: what a sliced hps_perf
    run takes; `which` (`sets_which`) names the runs they apply to in the
    help"""
    ap.add_argument("--rounds", type=int, default=100,
                    help=f"{which}: measured rounds (default 100)")
    ap.add_argument("--slice-ms", type=int, default=50,
                    help=f"{which}: one server's turn in ms (default 50)")
    ap.add_argument("--warmup-rounds", type=int, default=1,
                    help=f"{which}: unmeasured rounds first (default 1)")
    ap.add_argument("--sets", type=int, default=sets_default,
                    help=f"{sets_which or which}: split the rounds over this many hps_perf "
                    "runs, each with its own connections (with several workers SO_REUSEPORT "
                    "then spreads them over a server's loops anew each time; "
                    f"default {sets_default})")


def print_sliced_table(args, servers, results):
    print()
    print("| scenario | server | /s | IQR | vs ref | per server CPU-s | vs ref "
          "| p50 us | p99 us | server CPU % | ok |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for si, sc in enumerate(args.scenario):
        res = results.get(si)
        label = scenario_label(sc)
        j = res and res["json"]
        if not j or res["rc"] != 0:
            for s in servers:
                print(f"| {label} | {s.name} | FAILED | | | | | | | | 0/1 |")
            continue
        ts = [sliced_target(t) for t in j["targets"]]
        ref = ts[0]
        for s, t in zip(servers, ts):
            lo, med, hi = quartiles([r[0] for r in t["rounds"]])
            iqr = 100.0 * (hi - lo) / med if med else 0.0
            same = t is ref
            print(f"| {label} | {s.name} | {fmt_num(t['rate'])} | {iqr:.0f}% | "
                  f"{'1.00x' if same else fmt_quartiles(round_ratios(t, ref, False))} | "
                  f"{fmt_num(t['per_cpu'])} | "
                  f"{'1.00x' if same else fmt_quartiles(round_ratios(t, ref, True))} | "
                  f"{t['p50']:.0f} | {t['p99']:.0f} | {t['util']:.0f} | 1/1 |")
    print()
    print(f"Sliced: one hps_perf per scenario, every server connected at once, taking turns "
          f"in {args.slice_ms} ms slices over {args.rounds} rounds (order rotated every round; "
          f"{args.warmup_rounds} warm-up round(s) not counted). /s = all messages / all active "
          "time; per server CPU-s = all messages / all server CPU time (ns on CPU, "
          "/proc/PID/task/*/schedstat, every thread); IQR = interquartile range of the per-round "
          "rates over their median; a ratio is the median over the rounds of the per-round "
          f"ratio against {servers[0].name}'s slice of the same round, with the 25th-75th "
          f"percentile of those per-round ratios in brackets. Machine: {os.cpu_count()} CPUs, "
          f"{os.uname().sysname} {os.uname().release}.")
    sys.stdout.flush()


# ---------------------------------------------------------------- report

def fmt_num(x):
    if x is None:
        return "n/a"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}"


def fmt_ratio(x, ref):
    if x is None or not ref:
        return "n/a"
    return f"{x / ref:.2f}x"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("--server", action="append", required=True, metavar="NAME=CMD",
                    help="server to compare (repeatable; the first is the reference)")
    ap.add_argument("--scenario", action="append", required=True, type=parse_scenario,
                    metavar="K=V,...", help="load scenario (repeatable)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per scenario and server (default 3)")
    ap.add_argument("--duration", type=float, default=None, help="measured seconds per run (hps_perf --duration)")
    ap.add_argument("--warmup", type=float, default=None, help="warm-up seconds per run (hps_perf --warmup)")
    ap.add_argument("--client-threads", type=int, default=None, help="hps_perf --threads unless the scenario sets it")
    ap.add_argument("--perf", default=None, help="path to hps_perf (default: <repo>/build/examples/perf/hps_perf, else PATH)")
    ap.add_argument("--json-out", default=None, help="also write every run's raw result to this file (JSON lines)")
    ap.add_argument("--sliced", action="store_true",
                    help="one hps_perf per scenario against every server, taking turns in "
                         "slices (see below)")
    add_slice_args(ap, "--sliced")
    ap.add_argument("--client-args", action="append", default=[], metavar="NAME=ARGS",
                    help="extra hps_perf arguments against server NAME, e.g. "
                         "'tls=--tls --ca tests/fixtures/tls/ca.pem --sni localhost' (repeatable)")
    args = ap.parse_args()

    if args.reps < 1:
        ap.error("--reps must be >= 1")
    servers = []
    for spec in args.server:
        if "=" not in spec:
            ap.error(f"--server '{spec}' is not NAME=CMD")
        name, cmd = spec.split("=", 1)
        if any(s.name == name.strip() for s in servers):
            ap.error(f"duplicate server name '{name}'")
        servers.append(Server(name.strip(), cmd.strip()))
    for spec in args.client_args:
        name, _, extra = spec.partition("=")
        match = [s for s in servers if s.name == name.strip()]
        if not match:
            ap.error(f"--client-args: no server named '{name}'")
        match[0].client_args += shlex.split(extra)
    perf = args.perf or find_perf()
    if args.sliced:
        if args.client_args:
            ap.error("--sliced runs one hps_perf for every server: no --client-args")
        if args.duration is not None or args.warmup is not None or args.client_threads:
            ap.error("--sliced: use --rounds, --slice-ms, --warmup-rounds "
                     "(not --duration, --warmup, --client-threads)")
        if args.rounds < 1 or args.slice_ms < 1 or args.warmup_rounds < 0:
            ap.error("--rounds and --slice-ms must be >= 1, --warmup-rounds >= 0")
        for sc in args.scenario:
            extra = set(sc) - SLICED_KEYS
            if extra:
                ap.error(f"--sliced: scenario key(s) {', '.join(sorted(extra))} do not apply "
                         f"(only {', '.join(sorted(SLICED_KEYS))})")

    # the script's command line exactly as given (argv[0] as typed), runnable as is
    print("command: python3 " + shlex.join(sys.argv))
    sys.stdout.flush()

    results = {}  # (scenario index, server name) -> list of run results
    failed = False
    jsonf = open(args.json_out, "w") if args.json_out else None
    try:
        for s in servers:
            s.start()
            log(f"started {s.name}: {s.cmd} -> {s.host}:{s.port} (pid {s.proc.pid})")
        for si, sc in enumerate(args.scenario):
            if args.sliced:
                for s in servers:
                    if not s.alive():
                        raise RuntimeError(f"server {s.name} died (status {s.proc.poll()})")
                cargs = []
                for key in ("conns", "size", "depth", "mode", "flag"):
                    if key in sc:
                        cargs += [f"--{key}", str(sc[key])]
                if sc.get("setup", "0") not in ("0", "", "no", "false"):
                    cargs.append("--setup-rate")
                res = run_sliced_sets(perf, servers, cargs, args.rounds, args.slice_ms,
                                      args.warmup_rounds, args.sets)
                cmd = res["cmd"]
                results[si] = res
                if res["rc"] != 0 or res["json"] is None:
                    failed = True
                    log(f"FAILED [{scenario_label(sc)}] sliced: exit {res['rc']}\n  "
                        + shlex.join(cmd) + "\n  " + "\n  ".join(res["stderr"][-10:]))
                else:
                    for s, t in zip(servers, res["json"]["targets"]):
                        f = sliced_target(t)
                        log(f"[{scenario_label(sc)}] {s.name}: {f['rate']:,.0f}/s "
                            f"{f['per_cpu']:,.0f}/CPU-s p99={t['p99_us']}us")
                if jsonf:
                    jsonf.write(json.dumps({"scenario": sc, "sliced": True,
                                            "servers": [s.name for s in servers], **res}) + "\n")
                    jsonf.flush()
                continue
            for rep in range(args.reps):
                k = rep % len(servers)
                for s in servers[k:] + servers[:k]:
                    if not s.alive():
                        raise RuntimeError(f"server {s.name} died (status {s.proc.poll()})")
                    cmd, limit = client_cmd(perf, s, sc, args)
                    res = run_client(cmd, limit, s)
                    results.setdefault((si, s.name), []).append(res)
                    j = res["json"]
                    if res["rc"] != 0 or j is None or "cpu_s" not in res:
                        failed = True
                        log(f"FAILED [{scenario_label(sc)}] {s.name} rep {rep + 1}: exit {res['rc']}\n  "
                            + shlex.join(cmd) + "\n  " + "\n  ".join(res["stderr"][-10:]))
                    else:
                        rate = j.get("conns_per_s", j.get("msgs_per_s"))
                        log(f"[{scenario_label(sc)}] {s.name} rep {rep + 1}/{args.reps}: "
                            f"{rate:,.0f}/s p50={j['p50_us']}us p99={j['p99_us']}us "
                            f"server_cpu={res['cpu_s']:.2f}s")
                    if jsonf:
                        jsonf.write(json.dumps({"scenario": sc, "server": s.name, "rep": rep + 1,
                                                **res}) + "\n")
                        jsonf.flush()
    finally:
        for s in servers:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log(f"stopping {s.name}: {e}")
        if jsonf:
            jsonf.close()

    if args.sliced:
        print_sliced_table(args, servers, results)
    else:
        print_table(args, servers, results)
    return 1 if failed else 0


def find_perf():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    for cand in (os.path.join(root, "build", "examples", "perf", "hps_perf"),
                 os.path.join(here, "hps_perf")):
        if os.access(cand, os.X_OK):
            return cand
    from shutil import which
    found = which("hps_perf")
    if not found:
        sys.exit("compare.py: hps_perf not found; pass --perf PATH")
    return found


def figures(r):
    """A run's rate (messages/s, or connections/s for a setup run) and its
    work per second of server CPU."""
    j = r["json"]
    setup = j.get("test") == "setup_rate"
    rate = j["conns_per_s"] if setup else j["msgs_per_s"]
    count = j["connects"] if setup else j["msgs"]
    return rate, count / r["cpu_s"] if r["cpu_s"] > 0 else float("nan")


def summarize(runs):
    ok = [r for r in runs if r["rc"] == 0 and r["json"] and "cpu_s" in r]
    if not ok:
        return None
    rates, per_cpu, p50, p99, util = [], [], [], [], []
    for r in ok:
        j = r["json"]
        setup = j.get("test") == "setup_rate"
        rate, work = figures(r)
        rates.append(rate)
        per_cpu.append(work)
        p50.append(j["p50_us"])
        p99.append(j["p99_us"])
        util.append(100.0 * r["cpu_s"] / r["wall_s"] if r["wall_s"] > 0 else float("nan"))
    med = statistics.median(rates)
    return {"n": len(ok), "of": len(runs), "setup": setup,
            "rate": med, "spread": 100.0 * (max(rates) - min(rates)) / med if med else 0.0, "per_cpu": statistics.median(per_cpu),
            "p50": statistics.median(p50), "p99": statistics.median(p99),
            "util": statistics.median(util)}


def print_table(args, servers, results):
    print()
    print("| scenario | server | median /s | spread | vs ref | median per server CPU-s | vs ref "
          "| p50 us | p99 us | server CPU % | runs ok |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for si, sc in enumerate(args.scenario):
        ref = summarize(results.get((si, servers[0].name), []))
        for s in servers:
            runs = results.get((si, s.name), [])
            m = summarize(runs)
            label = scenario_label(sc)
            if m is None:
                print(f"| {label} | {s.name} | FAILED | | | | | | | | 0/{len(runs)} |")
                continue
            unit = " conn" if m["setup"] else ""
            print(f"| {label} | {s.name} | {fmt_num(m['rate'])}{unit} | {m['spread']:.0f}% | "
                  f"{fmt_ratio(m['rate'], ref and ref['rate'])} | {fmt_num(m['per_cpu'])}{unit} | "
                  f"{fmt_ratio(m['per_cpu'], ref and ref['per_cpu'])} | {m['p50']:.0f} | "
                  f"{m['p99']:.0f} | {m['util']:.0f} | {m['n']}/{m['of']} |")
    print()
    print(f"Medians over {args.reps} interleaved run(s); /s = messages per second "
          "(connections per second for setup scenarios); spread = (max - min) / median "
          "of /s over the runs; per server CPU-s = messages "
          "echoed per second of server CPU (user+sys, all threads) in the measured window; "
          f"ratios vs {servers[0].name}. Machine: {os.cpu_count()} CPUs, "
          f"{os.uname().sysname} {os.uname().release}.")
    sys.stdout.flush()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:
        log(f"compare.py: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)

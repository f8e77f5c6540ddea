#!/usr/bin/env python3
"""Pack mode vs push mode of the hpsock echo server, in one run.

Starts `hps_echo_server --mode push` and `--mode pack` once each, then runs
hps_perf against them in turn (echo load against push, pack load against
pack; same connections, body size and depth), alternating which goes first
every repetition, and prints the medians and the pack/push ratio.

    pack_vs_push.py [--build DIR] [--conns 64] [--size 64] [--depth 16]
                    [--workers 2] [--reps 5] [--duration 3]
"""
import argparse, json, os, re, signal, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.search(r"listening on (.*):(\d+)$", line.strip())
    if not m:
        p.kill()
        sys.exit("server did not start: %r" % line)
    return p, int(m.group(2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3)
    a = ap.parse_args()
    server = os.path.join(a.build, "examples", "hps_echo_server")
    perf = os.path.join(a.build, "examples", "perf", "hps_perf")
    print("command:", " ".join(sys.argv))
    procs = {}
    try:
        for mode in ("push", "pack"):
            procs[mode] = start([server, "--port", "0", "--workers", str(a.workers), "--mode", mode])
        res = {"push": [], "pack": []}
        for rep in range(a.reps):
            order = ("push", "pack") if rep % 2 == 0 else ("pack", "push")
            for mode in order:
                out = subprocess.run(
                    [perf, "--port", str(procs[mode][1]), "--conns", str(a.conns),
                     "--size", str(a.size), "--depth", str(a.depth),
                     "--duration", str(a.duration), "--warmup", "0.5", "--json",
                     "--mode", "echo" if mode == "push" else "pack"],
                    capture_output=True, text=True, timeout=a.duration + 30)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                if out.returncode != 0 or not r.get("verified"):
                    sys.exit("%s run failed: %s %s" % (mode, out.stdout, out.stderr))
                res[mode].append(r["msgs_per_s"])
                print("rep %d %s: %.0f msgs/s" % (rep + 1, mode, r["msgs_per_s"]), file=sys.stderr)
        push, pack = statistics.median(res["push"]), statistics.median(res["pack"])
        print("| mode | median msgs/s | vs push |\n|---|---:|---:|")
        print("| push | %.0f | 1.00x |" % push)
        print("| pack | %.0f | %.2fx |" % (pack, pack / push))
        print("%d connections, %d-byte bodies, depth %d, %d workers, %d reps x %.1f s; every byte verified"
              % (a.conns, a.size, a.depth, a.workers, a.reps, a.duration))
    finally:
        for p, _ in procs.values():
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=5)


if __name__ == "__main__":
    main()

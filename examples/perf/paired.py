#!/usr/bin/env python3
"""Paired ratios from compare.py --json-out files: one server against another,
repetition by repetition.

    python3 examples/perf/paired.py RUNS.jsonl [RUNS2.jsonl ...] \
        --pair hpsock-java-w1:nio-w1 --pair nio2-w1:nio-w1

(compare.py or suite.py --json-out files.)

compare.py runs every server once per repetition, back to back, so two
servers' figures from the same repetition saw the same state of the machine.
For each scenario and pair A:B this prints the median over repetitions of
A's figure / B's figure (msgs/s, and messages per server CPU-s), with the
lowest and highest repetition's ratio and the number of pairs.  Several files
(separate runs of the same command) are pooled: pairs are only ever formed
within one file and one repetition.  Put an A/A pair (two instances of the
same server) beside the real ones: its spread is the noise floor.

compare.py --sliced records hold every server's per-round figures from one
hps_perf run: there a pair is two servers' slices of the same round, and the
cells also give the 25th-75th percentile of the per-round ratios.
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (figures: one run's rate and work per CPU-s)


def figures(r):
    if r.get("rc") != 0 or not r.get("json") or not r.get("cpu_s"):
        return None
    return compare.figures(r)


def label(sc):
    if isinstance(sc, str):  # suite.py --json-out names its rows
        return sc
    return ",".join(f"{k}={v}" for k, v in sc.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("files", nargs="+", help="compare.py --json-out files")
    ap.add_argument("--pair", action="append", required=True, metavar="A:B",
                    help="server A against server B (repeatable)")
    args = ap.parse_args()
    pairs = []
    for p in args.pair:
        a, sep, b = p.partition(":")
        if not sep or not a or not b:
            ap.error(f"--pair wants A:B, got {p!r}")
        pairs.append((a, b))

    # runs[(file, scenario label, rep)][server] = (rate, per_cpu)
    runs = {}
    order = []
    sliced = set()  # scenarios with sliced records
    for fi, path in enumerate(args.files):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                sc = label(r["scenario"])
                if sc not in order:
                    order.append(sc)
                if r.get("sliced"):
                    j = r.get("json")
                    if r.get("rc") != 0 or not j:
                        continue
                    sliced.add(sc)
                    for name, t in zip(r["servers"], j["targets"]):
                        f = compare.sliced_target(t)
                        for rnd, fig in enumerate(f["rounds"]):
                            runs.setdefault((fi, sc, ("round", rnd)), {})[name] = fig
                    continue
                fig = figures(r)
                if fig is not None:
                    runs.setdefault((fi, sc, r["rep"]), {})[r["server"]] = fig

    print("| scenario | A vs B | pairs | msgs/s ratio: median (lowest-highest) "
          "| per CPU-s ratio: median (lowest-highest) |")
    print("|---|---|---:|---:|---:|")
    for sc in order:
        for a, b in pairs:
            rate, cpu = [], []
            for (fi, s, rep), by in sorted(runs.items(), key=lambda kv: repr(kv[0])):
                if s == sc and a in by and b in by and by[b][0] > 0 and by[b][1] > 0:
                    rate.append(by[a][0] / by[b][0])
                    cpu.append(by[a][1] / by[b][1])
            if not rate:
                continue

            def cell(x):
                c = f"{statistics.median(x):.2f}x ({min(x):.2f}-{max(x):.2f})"
                if sc in sliced:
                    q = compare.quartiles(x)
                    c += f", p25-p75 {q[0]:.2f}-{q[2]:.2f}"
                return c
            print(f"| {sc} | {a} vs {b} | {len(rate)} | {cell(rate)} | {cell(cpu)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

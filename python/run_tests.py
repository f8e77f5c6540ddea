#!/usr/bin/env python3
"""Run the Python suite against the built wheel, as a user would get it.

Makes a fresh venv (with --system-site-packages, for Debian's pytest),
installs the one wheel in --dist with pip --no-index, and runs pytest on
--tests from --workdir (outside the source tree, so `import hpsock` can only
find the installed package). Exit status: pytest's, except that "no tests
collected" (5) is a failure too. The last line printed is pytest's summary.
CTest runs this as the test `python_tests`.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

# "===== 3 failed, 180 passed, 2 warnings in 12.30s (0:00:12) ====="
SUMMARY_RE = re.compile(r"^=+ (.*\bin [\d.]+s\b.*?) =+$")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dist", required=True, help="directory holding the wheel")
    ap.add_argument("--venv", required=True, help="venv to (re)create")
    ap.add_argument("--workdir", required=True, help="directory pytest runs in")
    ap.add_argument("--tests", required=True, help="the tests directory")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments")
    args = ap.parse_args()

    wheels = sorted(glob.glob(os.path.join(args.dist, "hpsock-*.whl")))
    if len(wheels) != 1:
        print(f"run_tests: expected one hpsock wheel in {args.dist}, found {wheels}"
              " (build the python_wheel target first)", flush=True)
        return 1
    shutil.rmtree(args.venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", args.venv],
                   check=True)
    py = os.path.join(args.venv, "bin", "python")
    subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-deps",
                    "--disable-pip-version-check", "-q", wheels[0]], check=True)

    os.makedirs(args.workdir, exist_ok=True)
    cmd = [py, "-m", "pytest", os.path.abspath(args.tests),
           "-p", "no:cacheprovider",
           "-o", "faulthandler_timeout=120", "-rfEs", "-v",
           *args.pytest_args]
    print("run_tests: " + " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # keep the sources clean
    proc = subprocess.Popen(cmd, cwd=args.workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    summary = None
    for line in proc.stdout:
        sys.stdout.write(line)
        m = SUMMARY_RE.match(line.rstrip())
        if m:
            summary = m.group(1)
    rc = proc.wait()
    sys.stdout.flush()
    if rc == 5:
        print("run_tests: pytest collected no tests: counted as a failure", flush=True)
        rc = 1
    print(f"run_tests: pytest summary: {summary or 'none printed'} (exit {rc})", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The main demo: build, start the hpsock echo server, drive it with the perf
# client (64 connections, 64-byte messages, 16 in flight) and print the
# throughput; then the same load against the raw-epoll reference server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
BUILD=${BUILD:-build-demo}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DHPS_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target hps_echo_server hps_perf hps_epoll_echo >/dev/null
DURATION=${DURATION:-5}
run() { # name, server command...
  local name=$1; shift
  local out; out=$(mktemp)
  "$@" --port 0 >"$out" &
  local pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
  local port; port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$out" | head -n1)
  echo "== $name: $(head -n1 "$out")"
  "$BUILD/examples/perf/hps_perf" --port "$port" --conns 64 --size 64 --depth 16 --duration "$DURATION" --warmup 1 || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -f "$out"
}
run "hpsock echo server" "$BUILD/examples/hps_echo_server" --workers 2
run "raw-epoll reference" "$BUILD/examples/perf/hps_epoll_echo" --workers 2

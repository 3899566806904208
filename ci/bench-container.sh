#!/usr/bin/env bash
# `make bench-container`: the same image 20 times through Roost (API create -> exit
# observed) and through `ctr run --rm` on one private containerd, interleaved; prints
# the medians and ends with `GOAL container_vs_ctr <ratio> 0.7 PASS|FAIL`.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
work=$(mktemp -d /tmp/roost-bench.XXXXXX)
cleanup() {
  ci/containerd.sh stop "$work/containerd" >/dev/null 2>&1 || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
ROOST_TEST_CONTAINERD_SOCKET=$(ci/containerd.sh start "$work/containerd")
export ROOST_TEST_CONTAINERD_SOCKET
export ROOST_BENCH_OUT="$work/report.txt"
export ROOST_BENCH_N="${ROOST_BENCH_N:-20}"
# Release binaries, the daemon and the benchmark's own client alike: a debug build
# measures the compiler's settings, not Roost.
cargo build --release --quiet -p roost
export ROOST_BIN="$PWD/target/release/roost"
echo "roost binary: $ROOST_BIN"
cargo test --release --quiet -p roost-tests --test container_bench -- --ignored --nocapture >"$work/test.log" 2>&1 || {
  cat "$work/test.log" >&2
  echo "bench-container: the benchmark run failed" >&2
  exit 1
}
cat "$ROOST_BENCH_OUT"

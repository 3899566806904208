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
# The debug binary (dependencies at opt-level 1) unless ROOST_BENCH_RELEASE=1: a
# release build costs minutes on a 2-core machine, and containerd's side dominates.
if [[ ${ROOST_BENCH_RELEASE:-0} == 1 ]]; then
  cargo build --release --quiet -p roost
  export ROOST_BIN="$PWD/target/release/roost"
else
  cargo build --quiet -p roost
  export ROOST_BIN="$PWD/target/debug/roost"
fi
echo "roost binary: $ROOST_BIN"
cargo test --quiet -p roost-tests --test container_bench -- --ignored --nocapture >"$work/test.log" 2>&1 || {
  cat "$work/test.log" >&2
  echo "bench-container: the benchmark run failed" >&2
  exit 1
}
cat "$ROOST_BENCH_OUT"

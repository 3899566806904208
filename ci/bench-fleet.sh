#!/usr/bin/env bash
# `make bench-fleet`: 1,000 / 5,000 / 10,000 simulated hosts in 1,000 subclouds against
# one release `roost central`: CPU, RSS, heartbeat lag, audit, deploy, rollout, and
# 1,000 links dropped at once. Prints a table and GOAL lines; writes target/bench-fleet.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
cargo build --release --quiet -p roost
cargo build --release --quiet -p roost-tests --bin bench-fleet
# 10,000 hosts hold 10,000 TLS connections on each side (and the simulator's keys).
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 12000 ] || { echo "bench-fleet: needs 12,000 open files (ulimit -n; hard limit here: $(ulimit -Hn))" >&2; exit 1; }
ROOST_BIN=$PWD/target/release/roost exec target/release/bench-fleet

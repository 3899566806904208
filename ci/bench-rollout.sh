#!/usr/bin/env bash
# `make bench-rollout`: a set rolled to 100 simulated subclouds, max-parallel 10, 1 s apply.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
cargo build --release --quiet -p roost
cargo build --release --quiet -p roost-tests --bin bench-rollout
ROOST_BIN=$PWD/target/release/roost exec target/release/bench-rollout

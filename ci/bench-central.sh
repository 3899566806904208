#!/usr/bin/env bash
# `make bench-central`: a set through a release central vs straight to the hosts.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
cargo build --release --quiet -p roost
cargo build --release --quiet -p roost-tests --bin bench-central
ROOST_BIN=$PWD/target/release/roost exec target/release/bench-central

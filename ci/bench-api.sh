#!/usr/bin/env bash
# `make bench-api`: 1,000 mock workloads through a release daemon's API.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh
cargo build --release --quiet -p roost
cargo build --release --quiet -p roost-tests --bin bench-api
ROOST_BIN=$PWD/target/release/roost exec target/release/bench-api

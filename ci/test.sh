#!/usr/bin/env bash
# `make test`: install what is missing, check formatting and lints, then run the
# whole suite with the real components it needs started here and stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== build"
cargo build --workspace --quiet

work=$(mktemp -d /tmp/roost-test.XXXXXX)
cleanup() {
  ci/containerd.sh stop "$work/containerd" || true
  ci/postgres.sh stop "$work/postgres" || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

echo "== starting a private containerd"
ROOST_TEST_CONTAINERD_SOCKET=$(ci/containerd.sh start "$work/containerd")
export ROOST_TEST_CONTAINERD_SOCKET
export ROOST_BIN="$PWD/target/debug/roost"

echo "== starting a private PostgreSQL (central's store tests run on it and on SQLite)"
# The server runs as user `postgres`, which must be able to reach its dir.
chmod 711 "$work"
ROOST_TEST_PG_URL=$(ci/postgres.sh start "$work/postgres")
export ROOST_TEST_PG_URL

echo "== tests"
cargo nextest run --workspace --no-fail-fast

#!/usr/bin/env bash
# `make demo`: a private containerd, `roost central`, one `roost host` joined to it,
# a demo container and a demo microVM — whatever of that exists so far; the rest is
# reported plainly. Ctrl-C stops everything.
set -uo pipefail
cd "$(dirname "$0")/.."
ci/deps.sh || exit 1
cargo build --release --quiet -p roost || exit 1
ROOST=$PWD/target/release/roost
export ROOST_HOME=${ROOST_HOME:-$PWD/.roost}
mkdir -p "$ROOST_HOME"
pids=()
stop_all() {
  echo
  echo "demo: stopping"
  # Workloads outlive their daemon by design; the demo removes its own first.
  if [[ -n ${ROOST_SOCKET:-} ]]; then
    for w in demo-container demo-vm demo-hello-vm; do
      timeout 20 "$ROOST" rm "$w" >/dev/null 2>&1 || true
    done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ci/containerd.sh stop "$ROOST_HOME/containerd" || true
  echo "demo: stopped"
  exit 0
}
trap stop_all INT TERM

sock=$(ci/containerd.sh start "$ROOST_HOME/containerd") || exit 1
echo "demo: containerd (private) on $sock"

"$ROOST" central --state-dir "$ROOST_HOME/central" 2>/dev/null ||
  echo "demo: NOT STARTED: roost central — the central controller is not built yet"
# shellcheck disable=SC1091
source ci/demo-host.sh || echo "demo: the host part of the demo failed (see above)"
echo "demo: running; press Ctrl-C to stop"
while true; do sleep 1; done

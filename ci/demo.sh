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
  if [[ -n ${CENTRAL_URL:-} ]]; then
    timeout 20 "$ROOST" central undeploy demo --target subcloud/demo-site --data-dir "$CENTRAL_DIR" >/dev/null 2>&1 || true
  fi
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

# The central controller, on loopback; its CA, operator token and store under
# $ROOST_HOME/central.
CENTRAL_DIR=$ROOST_HOME/central
CENTRAL_PORT=${ROOST_DEMO_CENTRAL_PORT:-7443}
setsid "$ROOST" central --data-dir "$CENTRAL_DIR" --listen "127.0.0.1:$CENTRAL_PORT" \
  --reconcile 5s >"$ROOST_HOME/central.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q 'ready on' "$ROOST_HOME/central.log" 2>/dev/null && break; sleep 0.1; done
if ! grep -q 'ready on' "$ROOST_HOME/central.log"; then
  echo "demo: roost central did not start; see $ROOST_HOME/central.log"; tail -5 "$ROOST_HOME/central.log"
else
  echo "demo: roost central on https://127.0.0.1:$CENTRAL_PORT (log: $ROOST_HOME/central.log)"
  D=(--data-dir "$CENTRAL_DIR")
  "$ROOST" central subcloud ls -o json "${D[@]}" | grep -q '"demo-site"' ||
    "$ROOST" central subcloud add demo-site "${D[@]}" >/dev/null
  if [[ ! -f $ROOST_HOME/host/central/host.pem ]]; then
    JOIN_TOKEN=$("$ROOST" central token create --subcloud demo-site --ttl 10m "${D[@]}" 2>/dev/null)
    export JOIN_TOKEN
  fi
  export CENTRAL_URL=https://127.0.0.1:$CENTRAL_PORT
fi
# shellcheck disable=SC1091
source ci/demo-host.sh || echo "demo: the host part of the demo failed (see above)"
echo "demo: running; press Ctrl-C to stop"
while true; do sleep 1; done

#!/usr/bin/env bash
# Start or stop a private containerd (its own root, state and sockets under DIR),
# never the system one.
#   ci/containerd.sh start DIR   -> prints the gRPC socket path once it answers
#   ci/containerd.sh stop DIR
set -euo pipefail
cmd=${1:?usage: containerd.sh start|stop DIR}
dir=$(realpath -m "${2:?usage: containerd.sh start|stop DIR}")
sock="$dir/containerd.sock"
case "$cmd" in
start)
  mkdir -p "$dir/root" "$dir/state"
  cat >"$dir/config.toml" <<CFG
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  level = "warn"
CFG
  if [[ -S $sock ]] && ctr --address "$sock" version >/dev/null 2>&1; then
    echo "$sock"; exit 0
  fi
  setsid containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
  echo $! >"$dir/containerd.pid"
  for _ in $(seq 1 100); do
    if ctr --address "$sock" version >/dev/null 2>&1; then echo "$sock"; exit 0; fi
    sleep 0.1
  done
  echo "containerd did not answer on $sock within 10 s; see $dir/containerd.log" >&2
  tail -20 "$dir/containerd.log" >&2 || true
  exit 1
  ;;
stop)
  if [[ -f $dir/containerd.pid ]]; then
    pid=$(cat "$dir/containerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/containerd.pid"
  fi
  ;;
*) echo "usage: containerd.sh start|stop DIR" >&2; exit 2 ;;
esac

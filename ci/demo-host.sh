# Sourced by ci/demo.sh: the host daemon, a demo container and a demo microVM.
# Expects: ROOST, ROOST_HOME, sock (containerd), pids (array).
cargo build --release --quiet -p roost-tests --bin demo-image || return 1
export ROOST_SOCKET=$ROOST_HOME/roost.sock
# Its own session: a Ctrl-C reaches the demo script, which removes the demo
# workloads through the daemon before stopping it.
setsid "$ROOST" host --state-dir "$ROOST_HOME/host" --socket "$ROOST_SOCKET" \
  --containerd-socket "$sock" >"$ROOST_HOME/host.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [[ -S $ROOST_SOCKET ]] && "$ROOST" ps >/dev/null 2>&1 && break; sleep 0.1; done
if ! "$ROOST" ps >/dev/null 2>&1; then
  echo "demo: roost host did not start; see $ROOST_HOME/host.log"; tail -5 "$ROOST_HOME/host.log"; return 1
fi
echo "demo: roost host on $ROOST_SOCKET (log: $ROOST_HOME/host.log)"
echo "demo: NOT JOINED: the host is not joined to a central controller — none is built yet"

# A demo image from Debian's busybox-static (no registry needed).
target/release/demo-image "$ROOST_HOME/busybox.tar" docker.io/library/busybox:demo >/dev/null
"$ROOST" image import --containerd-socket "$sock" "$ROOST_HOME/busybox.tar" >/dev/null &&
  echo "demo: imported docker.io/library/busybox:demo into containerd"

# Demo guests: built with GNU as/ld from vmm/guests.
vmm/guests/build.sh "$ROOST_HOME/guests" hello spin >/dev/null

cat >"$ROOST_HOME/demo.yaml" <<YAML
apiVersion: roost.dev/v1
kind: Workload
metadata: {name: demo-container, labels: {demo: "true"}}
spec:
  driver: container
  container:
    image: docker.io/library/busybox:demo
    command: [sh, -c, 'while true; do echo "hello from a Roost container"; sleep 5; done']
  resources: {cpu: 250m, memoryMiB: 64}
---
apiVersion: roost.dev/v1
kind: Workload
metadata: {name: demo-vm, labels: {demo: "true"}}
spec:
  driver: vm
  vm: {kernel: $ROOST_HOME/guests/spin, vcpus: 1, memoryMiB: 32}
---
apiVersion: roost.dev/v1
kind: Workload
metadata: {name: demo-hello-vm, labels: {demo: "true"}}
spec:
  driver: vm
  vm: {kernel: $ROOST_HOME/guests/hello, memoryMiB: 16}
  restartPolicy: never
YAML
"$ROOST" apply -f "$ROOST_HOME/demo.yaml" | sed 's/^/demo: /'
sleep 1
"$ROOST" ps
echo
echo "demo: console: NOT AVAILABLE — the central controller's web console is not built yet"
echo "demo: try these (ROOST_SOCKET=$ROOST_SOCKET):"
echo "  ROOST_SOCKET=$ROOST_SOCKET $ROOST ps"
echo "  ROOST_SOCKET=$ROOST_SOCKET $ROOST logs -f demo-container"
echo "  ROOST_SOCKET=$ROOST_SOCKET $ROOST logs demo-hello-vm"

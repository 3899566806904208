# Sourced by ci/demo.sh: the host daemon, a demo container and a demo microVM.
# Expects: ROOST, ROOST_HOME, sock (containerd), pids (array).
cargo build --release --quiet -p roost-tests --bin demo-image || return 1
export ROOST_SOCKET=$ROOST_HOME/roost.sock
# Its own session: a Ctrl-C reaches the demo script, which removes the demo
# workloads through the daemon before stopping it.
join=()
if [[ -n ${CENTRAL_URL:-} ]]; then
  join=(--join "$CENTRAL_URL" --name demo-host)
  [[ -n ${JOIN_TOKEN:-} ]] && join+=(--join-token "$JOIN_TOKEN")
fi
setsid "$ROOST" host --state-dir "$ROOST_HOME/host" --socket "$ROOST_SOCKET" \
  --containerd-socket "$sock" "${join[@]}" >"$ROOST_HOME/host.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [[ -S $ROOST_SOCKET ]] && "$ROOST" ps >/dev/null 2>&1 && break; sleep 0.1; done
if ! "$ROOST" ps >/dev/null 2>&1; then
  echo "demo: roost host did not start; see $ROOST_HOME/host.log"; tail -5 "$ROOST_HOME/host.log"; return 1
fi
echo "demo: roost host on $ROOST_SOCKET (log: $ROOST_HOME/host.log)"
if [[ -n ${CENTRAL_URL:-} ]]; then
  echo "demo: roost host joined central as demo-host in subcloud demo-site"
else
  echo "demo: NOT JOINED: central did not start"
fi

# A demo image from Debian's busybox-static (no registry needed).
target/release/demo-image "$ROOST_HOME/busybox.tar" docker.io/library/busybox:demo >/dev/null
"$ROOST" image import "$ROOST_HOME/busybox.tar" >/dev/null &&
  echo "demo: imported docker.io/library/busybox:demo into containerd"

# Demo guests: built with GNU as/ld from vmm/guests.
vmm/guests/build.sh "$ROOST_HOME/guests" hello spin >/dev/null

# The demo workloads, as one set deployed through central to the demo subcloud.
cat >"$ROOST_HOME/demo-set.yaml" <<YAML
apiVersion: roost.dev/v1
kind: WorkloadSet
metadata: {name: demo}
spec:
  workloads:
  - apiVersion: roost.dev/v1
    kind: Workload
    metadata: {name: demo-container, labels: {demo: "true"}}
    spec:
      driver: container
      container:
        image: docker.io/library/busybox:demo
        command: [sh, -c, 'while true; do echo "hello from a Roost container"; sleep 5; done']
      resources: {cpu: 250m, memoryMiB: 64}
  - apiVersion: roost.dev/v1
    kind: Workload
    metadata: {name: demo-vm, labels: {demo: "true"}}
    spec:
      driver: vm
      vm: {kernel: $ROOST_HOME/guests/spin, vcpus: 1, memoryMiB: 32}
  - apiVersion: roost.dev/v1
    kind: Workload
    metadata: {name: demo-hello-vm, labels: {demo: "true"}}
    spec:
      driver: vm
      vm: {kernel: $ROOST_HOME/guests/hello, memoryMiB: 16}
      restartPolicy: never
YAML
if [[ -n ${CENTRAL_URL:-} ]]; then
  "$ROOST" central deploy -f "$ROOST_HOME/demo-set.yaml" --target subcloud/demo-site "${D[@]}" | sed 's/^/demo: /'
  for _ in $(seq 1 100); do
    [[ $("$ROOST" ps -o json 2>/dev/null | grep -o '"demo-[a-z-]*"' | sort -u | wc -l) -ge 3 ]] && break
    sleep 0.1
  done
fi
sleep 1
"$ROOST" ps
echo
echo "demo: console: NOT AVAILABLE — the central controller's web console is not built yet"
if [[ -n ${CENTRAL_URL:-} ]]; then
  echo "demo: central: $CENTRAL_URL, operator token: $CENTRAL_DIR/operator.token, CA: $CENTRAL_DIR/ca.pem"
  echo "demo: try these against central:"
  echo "  $ROOST central status --data-dir $CENTRAL_DIR"
  echo "  $ROOST central subcloud show demo-site --data-dir $CENTRAL_DIR"
  echo "  $ROOST central host show demo-host --data-dir $CENTRAL_DIR"
  echo "  $ROOST central alarm ls --data-dir $CENTRAL_DIR"
  echo "  $ROOST central events -f --data-dir $CENTRAL_DIR"
fi
echo "demo: try these (ROOST_SOCKET=$ROOST_SOCKET):"
echo "  ROOST_SOCKET=$ROOST_SOCKET $ROOST ps"
echo "  ROOST_SOCKET=$ROOST_SOCKET $ROOST logs -f demo-container"
echo "  ROOST_SOCKET=$ROOST_SOCKET $ROOST logs demo-hello-vm"

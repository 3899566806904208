#!/usr/bin/env bash
# `make bench-rt`: does Roost's real-time placement protect a control loop from a noisy
# neighbour on this 2-core host (core 0 shared, core 1 isolated)?
#
# Interleaved, RUNS (3) rounds of, each BENCH_SECONDS (10) long:
#  (a) the probe as a control loop (1 kHz, 300 µs of work per period) in a container
#      submitted to a `roost host` daemon as a real-time workload (Roost places it on
#      isolated core 1 with SCHED_FIFO 80 and an rt budget in its rt cgroup), beside
#      `stress-ng --cpu 8` in a container submitted as a shared workload (Roost confines
#      it to the shared pool, core 0);
#  (b) the same image, probe and neighbour as plain containers (`ctr run`): no
#      placement, no real-time policy (a host without Roost's scheduler);
#  (c) the same loop as a native process under SCHED_FIFO 80 on core 1 with no
#      neighbour (the floor);
#  (d) reference, not a GOAL: (c) beside the same neighbour run natively and pinned to
#      core 0 by hand (taskset), i.e. perfect placement without Roost: what this
#      machine itself lets a neighbour on the other core cost;
#  (w) (a) without work, for its wake-up latency, beside the same neighbour;
#  (y) cyclictest SCHED_FIFO 80 on core 1 with no neighbour (native);
#  (z) reference, not a GOAL: (y) beside the neighbour pinned to core 0 by hand.
# The containers run in a private containerd started here. Ends with three GOAL lines.
# Every process, container and cgroup it starts is removed on exit (also on Ctrl-C),
# and every wait is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SECS=${BENCH_SECONDS:-10}
PERIOD=1000
WORK=300
PRIO=80
IMAGE=docker.io/library/roost-bench:rt
NS=roost-bench

die() { echo "bench-rt: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "needs root (cgroups and SCHED_FIFO)"
for t in stress-ng cyclictest python3 containerd ctr runc ldd taskset; do
  command -v "$t" >/dev/null || die "needs $t (run: make deps)"
done
[[ -f /sys/fs/cgroup/cpu/cpu.rt_runtime_us ]] || die "needs cgroup v1 cpu with CONFIG_RT_GROUP_SCHED"
[[ $(nproc --all) -ge 2 ]] || die "needs 2 CPUs"
[[ $RUNS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || die "RUNS and BENCH_SECONDS must be whole numbers ≥ 1"

# Always the release build (a ROOST_BIN from the environment, e.g. `make test`'s
# debug one, is not what a benchmark measures).
cargo build --release --quiet -p roost
ROOST_BIN=$PWD/target/release/roost
ROOST_BIN=$(realpath "$ROOST_BIN")
cargo build --release --quiet -p roost-tests --bin demo-image
DEMO_IMAGE=$PWD/target/release/demo-image

work=$(mktemp -d /tmp/roost-bench-rt.XXXXXX)
prefix="roost-bench-$$"   # Roost's cgroup tree (the daemon's --cgroup-prefix)
plain="$prefix-plain"     # parent cgroup of the plain `ctr run` containers of (b)
ctd="$work/containerd"
csock=""
daemon=""
export ROOST_SOCKET="$work/roost.sock"
export ROOST_CONTAINERD_NAMESPACE="$NS"

# Short client calls, bounded; --foreground keeps them in our process group so a
# Ctrl-C reaches them (bash drops a SIGINT its foreground child survived).
ctr_() { timeout --foreground 60 ctr -a "$csock" -n "$NS" "$@"; }
roost_() { timeout --foreground 60 "$ROOST_BIN" "$@"; }
# Long commands run in the background and are waited for: the INT/TERM trap then
# fires at once, and cleanup kills the command (background commands ignore SIGINT).
fg_pid=""
bg_pid=""   # (d)'s native neighbour while it runs
long() { "$@" & fg_pid=$!; wait "$fg_pid"; local rc=$?; fg_pid=""; return "$rc"; }

cleanup() {
  set +e
  trap - EXIT
  trap '' INT TERM   # a second Ctrl-C does not cut the cleanup short
  if [[ -n $fg_pid ]]; then
    kill -TERM "$fg_pid" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$fg_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$fg_pid" 2>/dev/null
    { wait "$fg_pid"; } 2>/dev/null
  fi
  if [[ -n $bg_pid ]]; then
    pkill -KILL -P "$bg_pid" 2>/dev/null
    kill -KILL "$bg_pid" 2>/dev/null
    { wait "$bg_pid"; } 2>/dev/null
  fi
  # Workloads outlive their daemon by design: remove them through it first.
  if [[ -n $daemon ]] && kill -0 "$daemon" 2>/dev/null; then
    for w in ctl noisy; do timeout 20 "$ROOST_BIN" rm "$w" >/dev/null 2>&1; done
    for _ in $(seq 50); do
      [[ $(timeout 5 "$ROOST_BIN" ps -o json 2>/dev/null | tr -d ' \n') == "[]" ]] && break
      sleep 0.1
    done
  fi
  if [[ -n $daemon ]]; then
    kill -TERM -- "-$daemon" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$daemon" 2>/dev/null
  fi
  # Whatever is left in the namespace ((b)'s containers, or Roost's if the daemon
  # could not remove them): kill, delete the task, delete the container.
  if [[ -n $csock && -S $csock ]]; then
    for c in $(timeout 10 ctr -a "$csock" -n "$NS" c ls -q 2>/dev/null); do
      timeout 10 ctr -a "$csock" -n "$NS" t kill -a -s SIGKILL "$c" >/dev/null 2>&1
      timeout 10 ctr -a "$csock" -n "$NS" t rm -f "$c" >/dev/null 2>&1
      timeout 10 ctr -a "$csock" -n "$NS" c rm "$c" >/dev/null 2>&1
    done
  fi
  ci/containerd.sh stop "$ctd" >/dev/null 2>&1
  # Shims of our containerd that outlived it (named by its unique socket path).
  for p in $(pgrep -f -- "-address $ctd/" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  # Overlay mounts of leftover containers would keep the temp dir busy.
  awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
  # cgroups: Roost's tree and runc's parents in every controller, children first
  # (a cpu cgroup's rt budget is dropped before its directory).
  for base in /sys/fs/cgroup/*/"$prefix" /sys/fs/cgroup/*/"$plain"; do
    [[ -d $base ]] || continue
    while read -r d; do
      [[ -f $d/cpu.rt_runtime_us ]] && { echo 0 >"$d/cpu.rt_runtime_us"; } 2>/dev/null
      rmdir "$d" 2>/dev/null
    done < <(find "$base" -depth -type d)
    [[ -d $base ]] && echo "bench-rt: could not remove cgroup $base" >&2
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$work/profile.toml" <<'TOML'
# This 2-core host: core 0 runs the platform and the shared pool, core 1 is isolated.
[cpu]
platform = "0"
isolated = "1"
share_platform = true
[realtime]
budget_us = 900000
workload_budget_us = 900000
TOML

cat >"$work/bench.py" <<'PY'
"""Helpers for ci/bench-rt.sh: one-line views of probe/cyclictest runs and the summary."""
import json, statistics, sys
from pathlib import Path


def cyclic(path):
    """(percentile function, samples, overflows) from a cyclictest -h histogram."""
    hist, over = [], 0
    for line in Path(path).read_text().splitlines():
        p = line.split()
        if len(p) == 2 and p[0].isdigit():
            hist.append((int(p[0]), int(p[1])))
        elif line.startswith("# Histogram Overflows:"):
            over = int(line.split(":")[1])
    total = sum(c for _, c in hist) + over

    def pct(q):
        acc = 0
        for us, c in hist:
            acc += c
            if acc >= q * total:
                return float(us)
        return 20000.0

    return pct, total, over


def show(path, kind):
    d = json.load(open(path))
    if kind == "wake":
        w = d["wakeup"]
        return "wake p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f us" % (w["p50"], w["p99"], w["p999"], w["max"])
    s = "missed %d/%d (%.2f %%)  wake p99 %.1f us  resp p50 %.1f  p99 %.1f us  on %s, %s" % (
        d["missed"], d["periods"], 100 * d["missRatio"], d["wakeup"]["p99"],
        d["response"]["p50"], d["response"]["p99"], d["cpus"], d["policy"])
    if "cgroup" in d:
        s += "  cgroup " + d["cgroup"]
    return s


def summary(w, runs):
    w = Path(w)
    js = lambda k: [json.load(open(w / ("%s.%d.json" % (k, r)))) for r in range(1, runs + 1)]
    a, b, c, d, wk = js("a"), js("b"), js("c"), js("d"), js("w")
    miss = lambda rs: sum(d["missed"] for d in rs)
    periods = lambda rs: sum(d["periods"] for d in rs)
    print("== summary over %d rounds of %s s at 1 kHz" % (runs, a[0]["config"]["seconds"]))
    for name, rs in (("(a) placed rt + neighbour", a), ("(b) unplaced + neighbour", b),
                     ("(c) SCHED_FIFO idle core 1", c), ("(d) (c) + neighbour on core 0", d)):
        print("%-28s missed %6d/%-6d (%.3f %%)  resp p99 median %.1f us  wake p99 median %.1f us" % (
            name, miss(rs), periods(rs), 100.0 * miss(rs) / max(1, periods(rs)),
            statistics.median(d["response"]["p99"] for d in rs),
            statistics.median(d["wakeup"]["p99"] for d in rs)))
    # Wake-up p99: each round's probe run is paired with the cyclictest run right
    # after it, so slow changes in background load cancel; the GOAL is the median of
    # the paired ratios (the ratio of the medians is printed too).
    wake_a = [d["wakeup"]["p99"] for d in wk]
    wake_y = [cyclic(w / ("y.%d.txt" % r))[0](0.99) for r in range(1, runs + 1)]
    pairs = [x / max(y, 1.0) for x, y in zip(wake_a, wake_y)]
    print("(w) placed probe, no work, wake-up p99 per round: %s us" % ", ".join("%.1f" % x for x in wake_a))
    print("(y) cyclictest SCHED_FIFO idle core 1, p99 per round: %s us" % ", ".join("%.0f" % y for y in wake_y))
    print("    paired ratios %s; ratio of medians %.3f" % (
        ", ".join("%.3f" % r for r in pairs),
        statistics.median(wake_a) / max(statistics.median(wake_y), 1.0)))
    zs = [w / ("z.%d.txt" % r) for r in range(1, runs + 1)]
    if all(z.exists() for z in zs):
        wake_z = [cyclic(z)[0](0.99) for z in zs]
        print("(z) cyclictest beside the neighbour pinned to core 0, p99 per round: %s us" % (
            ", ".join("%.0f" % z for z in wake_z)))
        print("REF cyclictest_pinned_by_hand_vs_idle %.3f (z over y, median of paired ratios: the neighbour's cost to wake-ups through this machine)" % (
            statistics.median(z / max(y, 1.0) for z, y in zip(wake_z, wake_y))))
    # What the machine allows, whatever the placement (not GOALs): a perfectly pinned
    # native loop beside the neighbour against the idle floor, and the idle floor
    # itself against the unplaced containers (no placement can score below it).
    print("REF pinned_by_hand_vs_floor %.3f (d over c: the neighbour's cost through this machine)" % (
        (miss(d) + 1) / (miss(c) + 1)))
    print("REF floor_vs_unplaced %.4f (c over b: the idle floor against the unplaced containers)" % (
        (miss(c) + 1) / (miss(b) + 1)))
    print("REF placed_vs_pinned_by_hand %.3f (a over d)" % ((miss(a) + 1) / (miss(d) + 1)))
    st = steal_totals(w, runs)
    if st:
        print("steal time of CPU 1 (the hypervisor running something else), ms per case over all rounds: %s" % (
            ", ".join("%s %d" % kv for kv in sorted(st.items()))))
    r1 = (miss(a) + 1) / (miss(c) + 1)
    r2 = (miss(a) + 1) / (miss(b) + 1)
    r3 = statistics.median(pairs)
    print("GOAL rt_miss_vs_floor %.3f 2.0 %s" % (r1, "PASS" if r1 <= 2.0 else "FAIL"))
    print("GOAL rt_miss_vs_unplaced %.4f 0.05 %s" % (r2, "PASS" if r2 <= 0.05 else "FAIL"))
    print("GOAL rt_wake_p99_vs_cyclictest %.3f 1.25 %s" % (r3, "PASS" if r3 <= 1.25 else "FAIL"))


def steal_ms(path):
    """Steal time of CPU 1 in ms between the two /proc/stat snapshots in `path`."""
    vals = []
    for line in Path(path).read_text().splitlines():
        p = line.split()
        if p and p[0] == "cpu1" and len(p) > 8:
            vals.append(int(p[8]))
    return (vals[-1] - vals[0]) * 1000 // 100 if len(vals) >= 2 else 0


def steal_totals(w, runs):
    out = {}
    for k in "abcd":
        fs = [Path(w) / ("%s.%d.steal" % (k, r)) for r in range(1, runs + 1)]
        if all(f.exists() for f in fs):
            out["(%s)" % k] = sum(steal_ms(f) for f in fs)
    return out


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "steal":
        print("%d" % steal_ms(sys.argv[2]))
    elif cmd == "show":
        print(show(sys.argv[2], sys.argv[3]))
    elif cmd == "cyc":
        pct, total, over = cyclic(sys.argv[2])
        print("wake p50 %.0f  p99 %.0f  p99.9 %.0f us  (%d samples, %d over 20 ms)" % (
            pct(0.5), pct(0.99), pct(0.999), total, over))
    else:
        summary(sys.argv[2], int(sys.argv[3]))
PY

cat >"$work/view.py" <<'PY'
"""Host-side view of container processes: policy, rt priority, allowed CPUs, cgroup."""
import sys

POL = {0: "SCHED_OTHER", 1: "SCHED_FIFO", 2: "SCHED_RR", 3: "SCHED_BATCH", 5: "SCHED_IDLE", 6: "SCHED_DEADLINE"}
out = []
for pid in sys.argv[1:]:
    try:
        stat = open("/proc/%s/stat" % pid).read()
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat[stat.rindex(")") + 2:].split()  # f[0] is field 3 (state)
        prio, pol = int(f[37]), int(f[38])       # fields 40 and 41
        cpus = [l.split()[1] for l in open("/proc/%s/status" % pid) if l.startswith("Cpus_allowed_list")][0]
        cg = [l.strip().split(":", 2)[2] for l in open("/proc/%s/cgroup" % pid) if ":cpuset:" in l]
        out.append("pid %s (%s) %s%s on cpus %s, cgroup %s" % (
            pid, comm, POL.get(pol, pol), " %d" % prio if pol in (1, 2) else "", cpus, cg[0] if cg else "?"))
    except (OSError, IndexError, ValueError):
        out.append("pid %s gone" % pid)
print("; ".join(out) if out else "no processes")
PY

echo "== host profile"
"$ROOST_BIN" host config check "$work/profile.toml" 2>/dev/null || cat "$work/profile.toml"

# The image: Debian's busybox-static plus /roost and /usr/bin/stress-ng with the
# shared libraries ldd lists for them.
"$DEMO_IMAGE" "$work/image.tar" "$IMAGE" --add "$ROOST_BIN:/roost" \
  --add "$(command -v stress-ng):/usr/bin/stress-ng" >/dev/null
csock=$(ci/containerd.sh start "$ctd") || die "containerd did not start"

# The Roost daemon for (a) and (w); its own session, so a Ctrl-C reaches only this
# script, which removes the workloads through the daemon before stopping it.
setsid "$ROOST_BIN" host --state-dir "$work/state" --socket "$ROOST_SOCKET" \
  --profile "$work/profile.toml" --containerd-socket "$csock" --cgroup-prefix "$prefix" \
  >"$work/host.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do
  [[ -S $ROOST_SOCKET ]] && "$ROOST_BIN" ps >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || break
  sleep 0.1
done
"$ROOST_BIN" ps >/dev/null 2>&1 || { tail -20 "$work/host.log" >&2; die "roost host did not start"; }
# Through the daemon, into the containerd and namespace its container driver uses.
"$ROOST_BIN" image import "$work/image.tar" >/dev/null

echo "NOTE: (a) and (w): the probe (\`/roost probe latency\`) and stress-ng run as containers of"
echo "      the image $IMAGE (busybox-static + roost + stress-ng + their"
echo "      shared libraries), submitted with \`roost apply\` to a \`roost host\` daemon (private"
echo "      containerd, namespace $NS, cgroup tree $prefix): ctl as a real-time"
echo "      workload (cores 1, fifo 80), noisy as a shared one (cpu 1000m). The probe gets no"
echo "      --cpu/--priority: its CPU, cgroup and SCHED_FIFO come from Roost's placement"
echo "      (the daemon sets the policy on the created task before starting it)."
echo "      (b): the same image, commands and neighbour as plain \`ctr run\` containers in the"
echo "      same containerd: no cpuset, no quota, no real-time policy."
echo "      (c) and (y): native host processes (probe --cpu 1 --priority $PRIO; cyclictest)."
echo "      The daemon and containerd stay up, idle, throughout; the daemon has moved"
echo "      containerd (and so the containers' shims) onto platform core 0."
echo "      CPU wake-up latency (/dev/cpu_dma_latency at 0): the daemon holds it while a"
echo "      real-time workload is admitted, so (a) and (w) have it; (c) and (y) hold it"
echo "      themselves, as cyclictest does; (b), a host without Roost, runs without it."

probe_cmd() { echo "/roost probe latency --period-us $PERIOD --seconds $SECS --work-us $1 --json"; }

# (a)/(w): the neighbour and the control loop as Roost workloads.
write_specs() {
  cat >"$work/noisy.yaml" <<YAML
apiVersion: roost.dev/v1
kind: Workload
metadata: {name: noisy}
spec:
  driver: container
  container:
    image: $IMAGE
    command: [/usr/bin/stress-ng, --cpu, "8", --timeout, "$((SECS + 30))", --quiet]
  resources: {cpu: "1000m"}
  restartPolicy: never
  stopGraceSeconds: 2
YAML
  cat >"$work/ctl.yaml" <<YAML
apiVersion: roost.dev/v1
kind: Workload
metadata: {name: ctl}
spec:
  driver: container
  container:
    image: $IMAGE
    command: [/bin/sh, -c, "exec $(probe_cmd "$1")"]
  resources:
    cores: 1
    realtime: {policy: fifo, priority: $PRIO}
  restartPolicy: never
  stopGraceSeconds: 2
YAML
}

phase() {
  roost_ inspect "$1" -o json 2>/dev/null |
    sed -n 's/^ *"phase": *"\([a-z]*\)".*/\1/p' | head -1
}

# Remove the workloads and wait until Roost and containerd hold none of them.
remove_all() {
  roost_ rm ctl >/dev/null 2>&1 || true
  roost_ rm noisy >/dev/null 2>&1 || true
  for _ in $(seq 300); do
    if [[ $(roost_ ps -o json | tr -d ' \n') == "[]" && -z $(ctr_ c ls -q) ]]; then
      return 0
    fi
    sleep 0.1
  done
  die "the workloads were not removed within 30 s"
}

placed() {
  local out=$1 work_us=$2 ph="" t0
  write_specs "$work_us"
  roost_ apply -f "$work/noisy.yaml" >/dev/null
  for _ in $(seq 100); do ph=$(phase noisy); [[ $ph == running ]] && break; sleep 0.1; done
  [[ $ph == running ]] || die "noisy did not start (phase '$ph'); see $(roost_ logs noisy | tail -3)"
  sleep 1
  roost_ apply -f "$work/ctl.yaml" >/dev/null
  t0=$SECONDS
  sleep 1.5
  # What the host sees of ctl's processes while the probe runs.
  local cid pids=""
  cid=$(ctr_ t ls | awk '$1 ~ /^ctl-/ {print $1; exit}')
  [[ -n $cid ]] && pids=$(ctr_ t ps "$cid" | awk 'NR > 1 {print $1}')
  # shellcheck disable=SC2086
  hostview=$(python3 "$work/view.py" $pids)
  # No polling while the probe runs: sleep until near its end.
  sleep "$((SECS - 1))"
  while ((SECONDS - t0 < SECS + 60)); do
    ph=$(phase ctl)
    [[ $ph == exited || $ph == failed || $ph == stopped ]] && break
    sleep 0.25
  done
  [[ $ph == exited ]] || { roost_ inspect ctl >&2 || true; die "ctl did not exit cleanly (phase '$ph')"; }
  roost_ logs ctl | grep '^{' | tail -1 >"$out"
  [[ -s $out ]] || { roost_ logs ctl >&2; die "ctl printed no JSON"; }
  remove_all
}

# (b): the same image as plain containers; the probe runs in the foreground and its
# stdout is the JSON.
unplaced() {
  local out=$1 r=$2
  ctr_ run -d --cgroup "/$plain/noisy-$r" "$IMAGE" "bench-b-noisy-$r" \
    /usr/bin/stress-ng --cpu 8 --timeout $((SECS + 30)) --quiet >/dev/null
  sleep 1
  # shellcheck disable=SC2046
  long timeout $((SECS + 60)) ctr -a "$csock" -n "$NS" run --rm --cgroup "/$plain/ctl-$r" \
    "$IMAGE" "bench-b-ctl-$r" $(probe_cmd "$WORK") </dev/null >"$out"
  ctr_ t kill -a -s SIGKILL "bench-b-noisy-$r" >/dev/null 2>&1 || true
  ctr_ t rm -f "bench-b-noisy-$r" >/dev/null 2>&1 || true
  ctr_ c rm "bench-b-noisy-$r" >/dev/null
}

check_placed() {
  python3 - "$1" <<'PY' || echo "    WARNING: the placed probe did not report CPU 1 under SCHED_FIFO (see the line above)"
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["cpus"] == "1" and d["policy"].startswith("SCHED_FIFO") else 1)
PY
}

# (d): the floor's loop beside the neighbour, both native, pinned by hand.
# The neighbour as a native process pinned to core 0 by hand, for (d) and (z).
pinned_neighbour_start() {
  taskset -c 0 stress-ng --cpu 8 --timeout $((SECS + 30)) --quiet &
  bg_pid=$!
  sleep 1
}
pinned_neighbour_stop() {
  kill -TERM "$bg_pid" 2>/dev/null || true
  wait "$bg_pid" 2>/dev/null || true
  bg_pid=""
}
pinned() {
  pinned_neighbour_start
  long "$ROOST_BIN" probe latency --period-us "$PERIOD" --seconds "$SECS" --json \
    --work-us "$WORK" --cpu 1 --priority "$PRIO" >"$1"
  pinned_neighbour_stop
}

# CPU 1's steal time (field 9 of its /proc/stat line) around a case: the hypervisor
# running something else on that vCPU's core.
snap() { grep '^cpu1 ' /proc/stat >>"$1"; }

for r in $(seq "$RUNS"); do
  echo "== round $r/$RUNS (load: $(cut -d' ' -f1-3 /proc/loadavg))"

  snap "$work/a.$r.steal"
  placed "$work/a.$r.json" "$WORK"
  snap "$work/a.$r.steal"
  echo "(a) placed:    $(python3 "$work/bench.py" show "$work/a.$r.json" loop)"
  echo "    host view of ctl: $hostview"
  check_placed "$work/a.$r.json"

  snap "$work/b.$r.steal"
  unplaced "$work/b.$r.json" "$r"
  snap "$work/b.$r.steal"
  echo "(b) unplaced:  $(python3 "$work/bench.py" show "$work/b.$r.json" loop)"

  snap "$work/c.$r.steal"
  long "$ROOST_BIN" probe latency --period-us "$PERIOD" --seconds "$SECS" --json \
    --work-us "$WORK" --cpu 1 --priority "$PRIO" >"$work/c.$r.json"
  snap "$work/c.$r.steal"
  echo "(c) floor:     $(python3 "$work/bench.py" show "$work/c.$r.json" loop)"

  snap "$work/d.$r.steal"
  pinned "$work/d.$r.json"
  snap "$work/d.$r.steal"
  echo "(d) pinned by hand, reference: $(python3 "$work/bench.py" show "$work/d.$r.json" loop)"

  placed "$work/w.$r.json" 0
  echo "(w) placed, no work: $(python3 "$work/bench.py" show "$work/w.$r.json" wake)"
  echo "    host view of ctl: $hostview"
  check_placed "$work/w.$r.json"

  long cyclictest -m -q -p "$PRIO" --policy=fifo -a 1 -t 1 -i "$PERIOD" -D "$SECS" -h 20000 \
    >"$work/y.$r.txt" 2>/dev/null
  echo "(y) cyclictest: $(python3 "$work/bench.py" cyc "$work/y.$r.txt")"

  pinned_neighbour_start
  long cyclictest -m -q -p "$PRIO" --policy=fifo -a 1 -t 1 -i "$PERIOD" -D "$SECS" -h 20000 \
    >"$work/z.$r.txt" 2>/dev/null
  pinned_neighbour_stop
  echo "(z) cyclictest beside the neighbour pinned by hand, reference: $(python3 "$work/bench.py" cyc "$work/z.$r.txt")"
done

python3 "$work/bench.py" summary "$work" "$RUNS"

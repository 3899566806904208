#!/usr/bin/env bash
# make bench-vmm: the `hello` test guest through `roost vmm` (one-shot, release build)
# and through `qemu-system-x86_64 -M microvm`, RUNS runs each (default 20), interleaved.
# Reports start -> first serial line, start -> process exit and peak RSS (GNU time), and
# the monitor's steady-state overhead: RSS outside guest RAM while a `spin` guest runs
# (/proc/PID/smaps, all mappings minus the guest-memory mapping, as Firecracker counts it).
# Then the devices: the `blk` guest's 4 KiB reads (ops/s) and 64 KiB sequential reads
# (MiB/s) on a raw image through Roost's virtio-blk and QEMU microvm's virtio-blk-device
# (both buffered by the host page cache), interleaved, each figure from the difference
# between N requests and 1 (so boot and teardown cancel out).
# Ends with the GOAL lines.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-20}

ci/deps.sh
if [[ ! -r /dev/kvm ]]; then
  echo "bench-vmm: needs /dev/kvm (KVM); none here" >&2
  exit 1
fi
# Always the release build (a ROOST_BIN from the environment, e.g. `make test`'s
# debug one, is not what a benchmark measures).
cargo build --release --quiet -p roost
ROOST_BIN=${CARGO_TARGET_DIR:-target}/release/roost
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
vmm/guests/build.sh "$work" hello spin blk

ROOST_BIN=$ROOST_BIN GUESTS=$work RUNS=$RUNS python3 - <<'PY'
import os, statistics, subprocess, tempfile, time

roost = os.environ["ROOST_BIN"]
guests = os.environ["GUESTS"]
runs = int(os.environ["RUNS"])
mem_mib = 128
hello = os.path.join(guests, "hello")
spin = os.path.join(guests, "spin")
qemu_base = [
    "qemu-system-x86_64", "-M", "microvm,x-option-roms=off,rtc=off,acpi=off",
    "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", str(mem_mib), "-smp", "1",
    "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
    "-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
]
cmds = {
    "roost": [roost, "vmm", "--kernel", hello, "--memory-mib", str(mem_mib)],
    "qemu": qemu_base + ["-kernel", hello],
}

def once(cmd):
    with tempfile.NamedTemporaryFile() as tf:
        t0 = time.perf_counter()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", tf.name] + cmd,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = p.stdout.readline()
        t1 = time.perf_counter()
        rest = p.stdout.read()
        p.wait()
        t2 = time.perf_counter()
        rss = int(open(tf.name).read().strip().splitlines()[-1])
    if b"Hello from a Roost guest" not in line:
        raise SystemExit(f"unexpected first line {line!r} from {cmd[0]}")
    return (t1 - t0) * 1e3, (t2 - t0) * 1e3, rss / 1024

res = {k: [] for k in cmds}
for i in range(runs):
    order = ["roost", "qemu"] if i % 2 == 0 else ["qemu", "roost"]
    for k in order:
        res[k].append(once(cmds[k]))

def med(xs):
    return statistics.median(xs)

def overhead(cmd, guest_mib, env=None):
    """RSS outside the guest-memory mapping of a running VM, in MiB (median of 3)."""
    vals = []
    for _ in range(3):
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, **(env or {})))
        p.stdout.readline()          # the guest is up and printing
        time.sleep(0.5)
        total = guest = 0
        size = 0
        with open(f"/proc/{p.pid}/smaps") as f:
            for l in f:
                parts = l.split()
                if "-" in parts[0] and len(parts) >= 5 and ":" not in parts[0]:
                    a, b = parts[0].split("-")
                    size = (int(b, 16) - int(a, 16)) // 1024
                    anon = len(parts) == 5
                elif parts[0] == "Rss:":
                    kb = int(parts[1])
                    total += kb
                    if anon and size >= guest_mib * 1024:
                        guest += kb
        p.kill()
        p.wait()
        vals.append((total - guest) / 1024)
    return med(vals)

print(f"bench-vmm: hello guest, {runs} runs each, interleaved; medians (min-max)")
print(f"{'':8} {'first line ms':>22} {'exit ms':>22} {'peak RSS MiB':>20}")
for k, v in res.items():
    cols = []
    for j in range(3):
        xs = [r[j] for r in v]
        cols.append(f"{med(xs):8.2f} ({min(xs):.2f}-{max(xs):.2f})")
    print(f"{k:8} {cols[0]:>22} {cols[1]:>22} {cols[2]:>20}")

spin_cmd = [roost, "vmm", "--kernel", spin, "--memory-mib", str(mem_mib)]
ro = overhead(spin_cmd, mem_mib)
ro_keep = overhead(spin_cmd, mem_mib, {"ROOST_VMM_NO_TRIM": "1"})
qo = overhead(qemu_base + ["-kernel", spin], mem_mib)
print(f"steady-state RSS outside guest RAM (spin guest, {mem_mib} MiB): roost {ro:.2f} MiB, qemu {qo:.2f} MiB")
print(f"  (roost with its start-up code pages still mapped, ROOST_VMM_NO_TRIM=1: {ro_keep:.2f} MiB)")
# --- devices: virtio-blk ---
blk = os.path.join(guests, "blk")
img = os.path.join(guests, "disk.img")
with open(img, "wb") as f:
    f.write(os.urandom(16 << 20))
def blk_cmd(kind, n, size):
    args = f"blk.n={n} blk.len={size}"
    if kind == "roost":
        return [roost, "vmm", "--kernel", blk, "--memory-mib", str(mem_mib),
                "--disk", img, "--cmdline", args]
    return qemu_base + ["-global", "virtio-mmio.force-legacy=false",
                        "-drive", f"id=d0,file={img},format=raw,if=none",
                        "-device", "virtio-blk-device,drive=d0",
                        "-kernel", blk, "-append", args]
def wall(cmd):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    t = time.perf_counter() - t0
    if b"blk: bench errors 0" not in out:
        raise SystemExit(f"blk guest failed under {cmd[0]}: {out!r}")
    return t
blk_runs = max(3, runs // 4)
figs = {}
for name, n, size in [("4k", 3000, 4096), ("seq", 400, 65536)]:
    t = {k: {1: [], n: []} for k in ("roost", "qemu")}
    for i in range(blk_runs):
        for k in (["roost", "qemu"] if i % 2 == 0 else ["qemu", "roost"]):
            for m in (1, n):
                t[k][m].append(wall(blk_cmd(k, m, size)))
    for k in t:
        dt = med(t[k][n]) - med(t[k][1])
        figs[(name, k)] = (n - 1) / dt if name == "4k" else (n - 1) * size / dt / (1 << 20)
print(f"virtio-blk, {blk_runs} runs each, interleaved (medians):")
print(f"  4 KiB reads: roost {figs[('4k', 'roost')]:.0f} ops/s, qemu {figs[('4k', 'qemu')]:.0f} ops/s")
print(f"  64 KiB sequential reads: roost {figs[('seq', 'roost')]:.1f} MiB/s, qemu {figs[('seq', 'qemu')]:.1f} MiB/s")
r_iops = figs[("4k", "roost")] / figs[("4k", "qemu")]
ro_dev = overhead(spin_cmd + ["--disk", img], mem_mib)
print(f"steady-state RSS outside guest RAM with a disk attached: roost {ro_dev:.2f} MiB")
print("SKIP vm_net_pps_vs_qemu: no virtio-net in Roost yet (issue 20, item 3)")
print("SKIP vm_vsock_rtt: no vsock in Roost yet (issue 20, item 4)")

r_first = med([r[0] for r in res["roost"]]) / med([r[0] for r in res["qemu"]])
r_exit = med([r[1] for r in res["roost"]]) / med([r[1] for r in res["qemu"]])
print(f"ratios roost/qemu: first line {r_first:.3f}, exit {r_exit:.3f}")
print(f"GOAL vmm_first_line_vs_qemu {r_first:.3f} 0.25 {'PASS' if r_first <= 0.25 else 'FAIL'}")
print(f"GOAL vmm_overhead_mib {ro:.2f} 3.0 {'PASS' if ro <= 3.0 else 'FAIL'}")
print(f"GOAL vm_blk_iops_vs_qemu {r_iops:.3f} 1.0 {'PASS' if r_iops >= 1.0 else 'FAIL'}")
# Only the disk so far: net and vsock are not built yet.
print(f"GOAL vmm_overhead_mib_devices {ro_dev:.2f} 3 {'PASS' if ro_dev <= 3.0 else 'FAIL'}")
PY

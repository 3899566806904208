//! Boot the test guests through the library on real KVM (skipped without /dev/kvm).
#![allow(clippy::unwrap_used)]

use roost_vmm::virtio::block::DiskConfig;
use roost_vmm::virtio::rate_limiter::RateLimit;
use roost_vmm::{BootProtocol, Vm, VmConfig, VmEnd};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);
impl Write for Capture {
    fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(d);
        Ok(d.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn kvm() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        eprintln!("SKIPPED: needs read-write /dev/kvm (KVM)");
    }
    ok
}

fn guest(name: &str) -> PathBuf {
    // Tests run in parallel: build each guest once per process, one build at a time
    // (two builds writing one ELF leave a torn file).
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guests");
    if built.iter().any(|n| n == name) {
        return dir.join(name);
    }
    built.push(name.to_string());
    let st = std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/guests/build.sh"))
        .arg(&dir)
        .arg(name)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "building guest {name} failed (needs GNU as and ld)"
    );
    dir.join(name)
}

fn boot(cfg: VmConfig) -> (VmEnd, String, roost_vmm::MetricsSnapshot) {
    let out = Capture::default();
    let vm = Vm::create(cfg, Box::new(out.clone())).unwrap();
    vm.start().unwrap();
    let end = vm.wait();
    (end, out.text(), vm.metrics())
}

#[test]
fn hello_prints_and_shuts_down_through_both_entry_points() {
    if !kvm() {
        return;
    }
    for proto in [BootProtocol::Auto, BootProtocol::Linux] {
        let mut cfg = VmConfig::new(guest("hello"));
        cfg.boot = proto;
        let (end, out, m) = boot(cfg);
        assert_eq!(end, VmEnd::Shutdown, "{proto:?}: {out}");
        assert_eq!(out, "Hello from a Roost guest\n", "{proto:?}");
        assert!(m.exits.io_out >= 25, "{m:?}");
    }
}

#[test]
fn fault_crashes_with_a_reason() {
    if !kvm() {
        return;
    }
    let (end, out, _) = boot(VmConfig::new(guest("fault")));
    assert!(out.contains("fault: jumping"), "{out}");
    match end {
        VmEnd::Crashed(r) => assert!(r.contains("vCPU 0"), "{r}"),
        other => panic!("expected a crash, got {other:?}"),
    }
}

#[test]
fn smp_every_vcpu_reports_its_apic_id() {
    if !kvm() {
        return;
    }
    for n in [1u32, 2, 4] {
        let mut cfg = VmConfig::new(guest("smp"));
        cfg.vcpus = n;
        let (end, out, _) = boot(cfg);
        assert_eq!(end, VmEnd::Shutdown, "{n} vCPUs: {out}");
        for id in 0..n {
            assert!(
                out.contains(&format!("smp: cpu {id} up\n")),
                "{n} vCPUs: {out}"
            );
        }
        assert!(out.contains(&format!("smp: {n} cpus up\n")), "{out}");
    }
}

/// The checksum the blk guest prints: over 64-bit little-endian words,
/// `sum = rol(sum, 1) + word`.
fn guest_sum(data: &[u8]) -> u64 {
    data.chunks_exact(8).fold(0u64, |s, w| {
        s.rotate_left(1)
            .wrapping_add(u64::from_le_bytes(w.try_into().unwrap()))
    })
}

fn disk_image(dir: &std::path::Path, sectors: usize) -> PathBuf {
    let p = dir.join("disk.img");
    let data: Vec<u8> = (0..sectors * 512)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn blk_reads_a_known_checksum_writes_and_flushes() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), 64);
    let before = std::fs::read(&img).unwrap();
    let mut cfg = VmConfig::new(guest("blk"));
    let mut d = DiskConfig::new(&img);
    d.id = Some("test-disk".into());
    cfg.disks = vec![d];
    let out = Capture::default();
    let vm = Vm::create(cfg, Box::new(out.clone())).unwrap();
    vm.start().unwrap();
    let end = vm.wait();
    let out = out.text();
    assert_eq!(end, VmEnd::Shutdown, "{out}");
    let want = format!(
        "blk: id test-disk\nblk: read 0 sum {:016x}\nblk: write 0\nblk: flush 0\nblk: done\n",
        guest_sum(&before[..4096])
    );
    assert_eq!(out, want);
    let after = std::fs::read(&img).unwrap();
    assert_eq!(
        &after[4096..4608],
        "roost-blk-write\n".repeat(32).as_bytes(),
        "the write landed in sector 8"
    );
    assert_eq!(&after[..4096], &before[..4096], "nothing else changed");
    assert_eq!(&after[4608..], &before[4608..], "nothing else changed");
    let m = &vm.block_metrics()[0];
    assert_eq!(m.requests.load(Ordering::Relaxed), 4);
    assert_eq!(m.errors.load(Ordering::Relaxed), 0);
}

#[test]
fn blk_read_only_disk_refuses_the_write_and_the_guest_sees_it() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), 64);
    let before = std::fs::read(&img).unwrap();
    let mut cfg = VmConfig::new(guest("blk"));
    let mut d = DiskConfig::new(&img);
    d.read_only = true;
    cfg.disks = vec![d];
    let (end, out, _) = boot(cfg);
    assert_eq!(end, VmEnd::Shutdown, "{out}");
    assert!(out.contains("blk: id roost-disk0\n"), "{out}");
    assert!(
        out.contains(&format!(
            "blk: read 0 sum {:016x}\n",
            guest_sum(&before[..4096])
        )),
        "{out}"
    );
    assert!(out.contains("blk: write 1\n"), "VIRTIO_BLK_S_IOERR: {out}");
    assert_eq!(
        std::fs::read(&img).unwrap(),
        before,
        "the image is untouched"
    );
}

#[test]
fn blk_rate_limits_hold_within_ten_percent() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), 2048); // 1 MiB
                                            // Bytes: 48 reads of 64 KiB (3 MiB) at 1 MiB/s; ops: 300 reads of 4 KiB at 150/s.
    for (limit, n, len, want) in [
        (
            RateLimit {
                bytes_per_sec: Some(1 << 20),
                ops_per_sec: None,
            },
            48u64,
            65536u64,
            (1u64 << 20) as f64,
        ),
        (
            RateLimit {
                bytes_per_sec: None,
                ops_per_sec: Some(150),
            },
            300,
            4096,
            150.0,
        ),
    ] {
        let mut cfg = VmConfig::new(guest("blk"));
        cfg.cmdline = format!("blk.n={n} blk.len={len}");
        let mut d = DiskConfig::new(&img);
        d.rate_limit = Some(limit);
        cfg.disks = vec![d];
        let out = Capture::default();
        let vm = Vm::create(cfg, Box::new(out.clone())).unwrap();
        vm.start().unwrap();
        // Measured at the device, from its counters: from the request that empties the
        // initial burst well behind us (a tenth of the run) to the last one, so boot,
        // teardown and the free burst are not in the figure.
        let m = vm.block_metrics()[0].clone();
        let count = |m: &roost_vmm::virtio::block::BlockMetrics| {
            if limit.bytes_per_sec.is_some() {
                m.bytes.load(Ordering::Relaxed)
            } else {
                m.requests.load(Ordering::Relaxed)
            }
        };
        let total = if limit.bytes_per_sec.is_some() {
            n * len
        } else {
            n
        };
        let from = total / 10;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut start = None;
        let mut stop = None;
        while stop.is_none() && std::time::Instant::now() < deadline {
            let c = count(&m);
            let now = std::time::Instant::now();
            if start.is_none() && c >= from {
                start = Some((now, c));
            }
            if c >= total {
                stop = Some((now, c));
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        let end = vm.wait();
        let out = out.text();
        assert_eq!(end, VmEnd::Shutdown, "{out}");
        assert!(out.contains("blk: bench errors 0\n"), "{out}");
        let ((t_a, c_a), (t_b, c_b)) = (start.unwrap(), stop.unwrap());
        let secs = (t_b - t_a).as_secs_f64();
        let got = (c_b - c_a) as f64 / secs;
        eprintln!("rate limit {limit:?}: measured {got:.1}/s over {secs:.2} s");
        assert!(
            (got / want - 1.0).abs() <= 0.10,
            "{limit:?}: measured {got:.1}/s, want {want} +-10%"
        );
    }
}

/// The same blk guest under QEMU's microvm machine with its virtio-mmio transport
/// (modern), as a check that the guest kit is a plain virtio driver and not one that
/// only works against our device.
#[test]
fn blk_guest_runs_under_qemu_microvm_too() {
    if !kvm() {
        return;
    }
    if std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: needs qemu-system-x86_64 (apt-get install qemu-system-x86)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path(), 64);
    let before = std::fs::read(&img).unwrap();
    let out = std::process::Command::new("timeout")
        .arg("60")
        .arg("qemu-system-x86_64")
        .args([
            "-M",
            "microvm,x-option-roms=off,rtc=off,acpi=off",
            "-enable-kvm",
            "-cpu",
            "host,-arch-capabilities",
            "-m",
            "64",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=4",
            "-global",
            "virtio-mmio.force-legacy=false",
            "-drive",
        ])
        .arg(format!("id=d0,file={},format=raw,if=none", img.display()))
        .args([
            "-device",
            "virtio-blk-device,drive=d0,serial=qemu-disk",
            "-kernel",
        ])
        .arg(guest("blk"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "blk: id qemu-disk\nblk: read 0 sum {:016x}\nblk: write 0\nblk: flush 0\nblk: done\n",
        guest_sum(&before[..4096])
    );
    assert_eq!(
        text,
        want,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        &std::fs::read(&img).unwrap()[4096..4608],
        "roost-blk-write\n".repeat(32).as_bytes()
    );
}

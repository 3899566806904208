//! Boot the test guests through the library on real KVM (skipped without /dev/kvm).
#![allow(clippy::unwrap_used)]

use roost_vmm::{BootProtocol, Vm, VmConfig, VmEnd};
use std::io::Write;
use std::path::PathBuf;
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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guests");
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

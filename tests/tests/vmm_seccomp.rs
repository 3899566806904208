//! The monitor's seccomp filters on real KVM: guests with a throttled disk run to the
//! end under them (the device thread's timer path included), and a forbidden call on
//! any thread kind kills the whole monitor with SIGSYS. (The daemon's report of such a
//! kill is in vmm_daemon.rs.)
#![allow(clippy::unwrap_used)]

use roost_tests::vmm::{guest, kvm_available, wait_output};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn vmm(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let child = Command::new(roost_tests::roost_bin())
        .arg("vmm")
        .args(args)
        .envs(env.iter().copied())
        .env_remove("ROOST_VMM_NO_SECCOMP")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, DEADLINE)
}

#[test]
fn guests_run_under_the_filters_and_a_forbidden_call_kills_the_monitor() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    std::fs::write(&img, vec![7u8; 64 * 512]).unwrap();
    let disk = format!("{},iops=100", img.display());
    let blk = guest("blk");
    // 40 reads at 100/s: the bucket empties and the timer path runs.
    let args = [
        "--kernel",
        blk.to_str().unwrap(),
        "--disk",
        &disk,
        "--cmdline",
        "blk.n=40",
    ];
    let out = vmm(&args, &[]);
    let so = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{so} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(so.contains("blk: bench errors 0"), "{so}");
    for kind in ["vcpu", "device", "api"] {
        let out = vmm(&args, &[("ROOST_VMM_SECCOMP_TRIP", kind)]);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "{kind}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

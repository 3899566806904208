//! `roost vmm --kernel …` one-shot on real KVM: every test guest, both entry points,
#![allow(clippy::unwrap_used)]
//! 1/2/4 vCPUs, exit codes, pinning and real-time priority.

use roost_tests::vmm::{guest, kvm_available, run_vmm, wait_output};
use std::process::{Command, Stdio};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(30);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn hello_prints_its_line_and_exits_0_through_pvh_and_linux_entries() {
    if !kvm_available() {
        return;
    }
    let g = guest("hello");
    for boot in ["auto", "linux"] {
        let out = run_vmm(&["--kernel", g.to_str().unwrap(), "--boot", boot], DEADLINE);
        let (so, se) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "boot {boot}: {so} {se}");
        assert_eq!(so, "Hello from a Roost guest\n", "boot {boot}");
        assert!(se.contains("shutdown"), "boot {boot}: {se}");
    }
}

#[test]
fn cmdline_reaches_the_guest_through_hvm_start_info_and_boot_params() {
    if !kvm_available() {
        return;
    }
    let g = guest("cmdline");
    for boot in ["auto", "linux"] {
        let line = format!("console=ttyS0 roost.test={boot}");
        let out = run_vmm(
            &[
                "--kernel",
                g.to_str().unwrap(),
                "--boot",
                boot,
                "--cmdline",
                &line,
            ],
            DEADLINE,
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("cmdline: {line}\n"));
    }
}

#[test]
fn smp_guest_sees_1_2_4_and_64_vcpus() {
    if !kvm_available() {
        return;
    }
    let g = guest("smp");
    for n in [1u32, 2, 4, 64] {
        let out = run_vmm(
            &["--kernel", g.to_str().unwrap(), "--vcpus", &n.to_string()],
            DEADLINE,
        );
        let so = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{n} vCPUs: {so} {}",
            text(&out.stderr)
        );
        for id in 0..n {
            assert!(
                so.contains(&format!("smp: cpu {id} up\n")),
                "{n} vCPUs: {so}"
            );
        }
        assert!(
            so.ends_with(&format!("smp: {n} cpus up\n")),
            "{n} vCPUs: {so}"
        );
    }
}

#[test]
fn fault_guest_crashes_with_a_reason_and_exit_code_3() {
    if !kvm_available() {
        return;
    }
    let g = guest("fault");
    let out = run_vmm(&["--kernel", g.to_str().unwrap()], DEADLINE);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{so} {se}");
    assert!(so.contains("fault: jumping to an unmapped address"), "{so}");
    assert!(se.contains("crashed"), "{se}");
    assert!(
        se.contains("triple fault") || se.contains("internal error"),
        "the reason should name the fault: {se}"
    );
}

#[test]
fn mmio_guest_survives_unhandled_accesses_and_they_are_counted() {
    if !kvm_available() {
        return;
    }
    let g = guest("mmio");
    let out = run_vmm(&["--kernel", g.to_str().unwrap()], DEADLINE);
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{so} {se}");
    assert!(so.contains("mmio: still running\n"), "{so}");
    assert!(so.contains("mmio: read all-ones\n"), "{so}");
    assert!(se.contains("unhandled_io=1 unhandled_mmio=2"), "{se}");
    assert!(
        se.contains("0xd0000000"),
        "the access should be logged: {se}"
    );
}

/// Fields 41 (policy) and 18 (priority) of /proc/PID/task/TID/stat, and the allowed CPUs.
fn thread_sched(pid: u32, name: &str) -> Option<(u32, i64, String)> {
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let dir = t.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // `rest[0]` is field 3.
        let prio: i64 = rest.get(15)?.parse().ok()?;
        let policy: u32 = rest.get(38)?.parse().ok()?;
        let status = std::fs::read_to_string(dir.join("status")).ok()?;
        let cpus = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))?
            .split(':')
            .nth(1)?
            .trim()
            .to_string();
        return Some((policy, prio, cpus));
    }
    None
}

#[test]
fn vcpu_threads_are_pinned_and_run_real_time() {
    if !kvm_available() {
        return;
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cpu = (cpus - 1).to_string();
    let g = guest("spin");
    let mut child = Command::new(roost_tests::roost_bin())
        .args([
            "vmm",
            "--kernel",
            g.to_str().unwrap(),
            "--vcpus",
            "2",
            "--cpus",
            &cpu,
        ])
        .args(["--rt-priority", "10", "--rt-policy", "rr"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut seen = None;
    roost_tests::vmm::eventually(Duration::from_secs(10), || {
        // The thread exists a moment before it has set its own policy.
        seen = thread_sched(pid, "vcpu1");
        seen.as_ref().is_some_and(|s| s.0 != 0) || child.try_wait().ok().flatten().is_some()
    });
    let main_cpus = thread_sched(pid, "roost").map(|t| t.2);
    let _ = child.kill();
    let out = wait_output(child, DEADLINE);
    let se = text(&out.stderr);
    if se.contains("real-time priority") && se.contains("Operation not permitted") {
        eprintln!("SKIPPED: SCHED_RR refused here (needs CAP_SYS_NICE and an rt budget): {se}");
        return;
    }
    let (policy, prio, allowed) = seen.unwrap_or_else(|| panic!("no vcpu1 thread seen: {se}"));
    assert_eq!(policy, 2, "SCHED_RR is policy 2");
    assert_eq!(prio, -11, "kernel priority of rt priority 10 is -(1+10)");
    assert_eq!(allowed, cpu);
    if cpus > 1 {
        let main_cpus = main_cpus.expect("the main thread");
        assert!(
            !main_cpus.contains(&cpu) || main_cpus.contains('-'),
            "main thread stays off the vCPU CPU: {main_cpus}"
        );
    }
}

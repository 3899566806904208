//! Bad input to `roost vmm`: each is one clear error naming the value and the fix, given
#![allow(clippy::unwrap_used)]
//! before any KVM object is created, and the process is gone afterwards.

use roost_tests::vmm::{guest, run_vmm};
use std::time::Duration;

fn fails_before_kvm(args: &[&str], must_contain: &[&str]) {
    let mut cmd = std::process::Command::new(roost_tests::roost_bin());
    cmd.arg("vmm").args(args).env("RUST_LOG", "roost_vmm=debug");
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = roost_tests::vmm::wait_output(child, Duration::from_secs(20));
    let se = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {se}");
    for s in must_contain {
        assert!(
            se.contains(s),
            "{args:?}: the error should mention {s:?}: {se}"
        );
    }
    assert!(
        !se.contains("opening /dev/kvm"),
        "{args:?}: the check must run before KVM is touched: {se}"
    );
    assert!(out.stdout.is_empty(), "no guest ran");
    assert!(!roost_tests::vmm::alive(pid), "no process left behind");
}

#[test]
fn missing_kernel() {
    fails_before_kvm(
        &["--kernel", "/nonexistent/vmlinux"],
        &["/nonexistent/vmlinux", "cannot open", "give the path"],
    );
}

#[test]
fn neither_elf_nor_bzimage() {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), b"#!/bin/sh\necho not a kernel\n").unwrap();
    let p = f.path().to_str().unwrap();
    fails_before_kvm(&["--kernel", p], &[p, "not an ELF", "bzImage"]);
}

#[test]
fn memory_larger_than_the_host() {
    let g = guest("hello");
    fails_before_kvm(
        &["--kernel", g.to_str().unwrap(), "--memory-mib", "100000000"],
        &["100000000 MiB", "larger than this host", "give at most"],
    );
}

#[test]
fn zero_and_65_vcpus() {
    let g = guest("hello");
    for n in ["0", "65"] {
        fails_before_kvm(
            &["--kernel", g.to_str().unwrap(), "--vcpus", n],
            &[&format!("vcpus {n}"), "between 1 and 64"],
        );
    }
}

#[test]
fn pinning_to_a_cpu_the_host_lacks() {
    let g = guest("hello");
    fails_before_kvm(
        &["--kernel", g.to_str().unwrap(), "--cpus", "0,4000"],
        &["CPU 4000", "not available", "pin to CPUs from"],
    );
}

#[test]
fn real_time_priority_out_of_range_and_bad_cpu_list() {
    let g = guest("hello");
    fails_before_kvm(
        &["--kernel", g.to_str().unwrap(), "--rt-priority", "100"],
        &["rt priority 100", "between 1 and 99"],
    );
    fails_before_kvm(
        &["--kernel", g.to_str().unwrap(), "--cpus", "two"],
        &["\"two\"", "0,2-3"],
    );
}

#[test]
fn a_good_run_does_reach_kvm_so_the_checks_above_mean_something() {
    if !roost_tests::vmm::kvm_available() {
        return;
    }
    let g = guest("hello");
    let mut cmd = std::process::Command::new(roost_tests::roost_bin());
    cmd.args(["vmm", "--kernel", g.to_str().unwrap()])
        .env("RUST_LOG", "roost_vmm=debug");
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("opening /dev/kvm"));
    let _ = run_vmm;
}

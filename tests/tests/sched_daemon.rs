//! The daemon on this machine's real cgroups: it runs itself and the containerd that
//! serves its socket on the platform cores, and moves each process it spawns (a mock,
//! a VM monitor) into its workload's cgroup, where cpuset, cpu and memory say what the
//! scheduler granted. Read back from /proc. Skipped without root and cgroup v1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::daemon::{mock_spec, Daemon};
use roost_tests::sched::{cgroup_of, containerd, skip_reason, status_field, Cleanup};
use roost_tests::vmm::{eventually, guest, kvm_available};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

fn workload_pid(d: &Daemon, name: &str) -> Option<u32> {
    let (_, v) = d.api("GET", &format!("/v1/workloads/{name}"), None);
    if v["status"]["phase"] != "running" {
        return None;
    }
    v["status"]["handle"]["data"]["proc"]["pid"]
        .as_u64()
        .map(|p| p as u32)
}

#[test]
fn daemon_and_containerd_on_platform_cores_and_workloads_in_their_cgroups() {
    if let Some(why) = skip_reason(false) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let prefix = format!("roost-test-{}-plat", std::process::id());
    let ctrd = containerd();
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        containerd: ctrd.as_ref().map(|c| c.1),
    };
    let mut flags = vec!["--cgroup-prefix", prefix.as_str()];
    if let Some((sock, _)) = &ctrd {
        flags.extend(["--containerd-socket", sock.as_str()]);
    }
    // No profile: core 0 is the platform, the rest is shared.
    let d = Daemon::start_with(&flags);
    let dpid = d.child.as_ref().unwrap().id();
    assert_eq!(cgroup_of(dpid, "cpuset"), format!("/{prefix}/platform"));
    assert_eq!(cgroup_of(dpid, "cpu"), format!("/{prefix}/platform"));
    assert_eq!(status_field(dpid, "Cpus_allowed_list:"), "0");

    match &ctrd {
        Some((_, cpid)) => {
            assert_eq!(
                cgroup_of(*cpid, "cpuset"),
                format!("/{prefix}/platform"),
                "containerd is moved onto the platform cores"
            );
            assert_eq!(status_field(*cpid, "Cpus_allowed_list:"), "0");
        }
        None => eprintln!(
            "note: containerd part skipped: needs ROOST_TEST_CONTAINERD_SOCKET (make test starts one)"
        ),
    }

    // A mock with a CPU share and a memory limit runs in roost/shared/<name>.
    let body = mock_spec(
        "placed",
        json!({}),
        json!({"resources": {"cpu": "250m", "memoryMiB": 48}}),
    );
    let (s, v) = d.api("POST", "/v1/workloads", Some(&body));
    assert_eq!(s, 201, "{v}");
    let mut pid = None;
    assert!(
        eventually(T, || {
            pid = workload_pid(&d, "placed");
            pid.is_some()
        }),
        "the mock runs; log:\n{}",
        d.log()
    );
    let pid = pid.unwrap();
    let want = format!("/{prefix}/shared/placed");
    for c in ["cpu", "memory"] {
        assert_eq!(cgroup_of(pid, c), want, "controller {c}");
    }
    // A shared workload runs in the pool's cpuset; it has none of its own.
    let pool = format!("/{prefix}/shared");
    assert_eq!(cgroup_of(pid, "cpuset"), pool);
    assert!(!Path::new(&format!("/sys/fs/cgroup/cpuset{want}")).exists());
    assert_eq!(status_field(pid, "Cpus_allowed_list:"), "1");
    let cg = |f: &str, c: &str, at: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{c}{at}/{f}"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(cg("cpuset.cpus", "cpuset", &pool), "1");
    assert_eq!(cg("cpuset.sched_load_balance", "cpuset", &pool), "1");
    let cg = |f: &str, c: &str| cg(f, c, &want);
    assert_eq!(cg("cpu.shares", "cpu"), "256");
    assert_eq!(cg("cpu.cfs_quota_us", "cpu"), "25000");
    assert_eq!(
        cg("memory.limit_in_bytes", "memory"),
        (48u64 << 20).to_string()
    );

    // A VM's monitor too, and its vCPU thread is pinned inside the shared pool.
    if !kvm_available() {
        eprintln!("note: VM part skipped: needs /dev/kvm");
        return;
    }
    let vm = json!({
        "apiVersion": "roost.dev/v1", "kind": "Workload",
        "metadata": {"name": "vm"},
        "spec": {"driver": "vm", "vm": {"kernel": guest("spin"), "vcpus": 1, "memoryMiB": 32}}
    })
    .to_string();
    let (s, v) = d.api("POST", "/v1/workloads", Some(&vm));
    assert_eq!(s, 201, "{v}");
    let mut mpid = None;
    assert!(
        eventually(T, || {
            mpid = workload_pid(&d, "vm");
            mpid.is_some()
        }),
        "the VM runs; log:\n{}",
        d.log()
    );
    let mpid = mpid.unwrap();
    let want = format!("/{prefix}/shared/vm");
    // Memory is per process: the whole monitor counts against the workload. The
    // main thread (what /proc/PID/cgroup shows for cpu and cpuset) is a helper, on
    // the platform cgroup; the vCPU thread's own cgroups are checked below.
    assert_eq!(
        cgroup_of(mpid, "memory"),
        want,
        "monitor, controller memory"
    );
    assert_eq!(cgroup_of(mpid, "cpu"), format!("/{prefix}/platform"));
    // Guest memory plus the monitor's overhead allowance.
    let (_, v): (u16, Value) = d.api("GET", "/v1/workloads/vm", None);
    assert_eq!(v["placement"]["memoryMib"], 32 + 32, "{v}");
    // Its vCPU thread runs in the pool; its other threads on the platform core.
    let tasks = std::fs::read_dir(format!("/proc/{mpid}/task")).unwrap();
    for t in tasks {
        let t = t.unwrap();
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap();
        let allowed = std::fs::read_to_string(t.path().join("status"))
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap();
        let vcpu = comm.starts_with("vcpu");
        assert_eq!(
            allowed,
            if vcpu { "1" } else { "0" },
            "monitor thread {comm}"
        );
        if vcpu {
            let cg = std::fs::read_to_string(t.path().join("cgroup")).unwrap();
            assert!(
                cg.lines()
                    .any(|l| l.ends_with(&format!(":{want}")) && l.contains("cpu")),
                "{cg}"
            );
            assert!(
                cg.lines()
                    .any(|l| l.contains(":cpuset:") && l.ends_with(&format!(":{pool}"))),
                "{cg}"
            );
        }
    }
}

/// The current PM QoS CPU latency target in µs (`/dev/cpu_dma_latency`).
fn cpu_latency_target() -> Option<i32> {
    let b = std::fs::read("/dev/cpu_dma_latency").ok()?;
    Some(i32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

#[test]
fn realtime_workloads_hold_cpu_wakeup_latency_at_zero() {
    if let Some(why) = skip_reason(true) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let Some(before) = cpu_latency_target() else {
        eprintln!("SKIPPED: needs /dev/cpu_dma_latency");
        return;
    };
    let prefix = format!("roost-test-{}-qos", std::process::id());
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        containerd: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.toml");
    std::fs::write(
        &profile,
        "[cpu]\nplatform = \"0\"\nisolated = \"1\"\nshare_platform = true\n\
         [realtime]\nbudget_us = 100000\nworkload_budget_us = 50000\n",
    )
    .unwrap();
    let d = Daemon::start_with(&[
        "--cgroup-prefix",
        prefix.as_str(),
        "--profile",
        profile.to_str().unwrap(),
    ]);
    let rt = mock_spec(
        "ctl",
        json!({}),
        json!({"resources": {"cores": 1, "realtime": {"policy": "fifo", "priority": 50}}}),
    );
    let (s, v) = d.api("POST", "/v1/workloads", Some(&rt));
    assert_eq!(s, 201, "{v}");
    assert_eq!(cpu_latency_target(), Some(0), "held while ctl is admitted");
    let (s, v) = d.api("DELETE", "/v1/workloads/ctl", None);
    assert!(s < 300, "{s} {v}");
    assert!(
        eventually(T, || d.api("GET", "/v1/workloads/ctl", None).0 == 404),
        "ctl removed"
    );
    if before != 0 {
        assert_eq!(
            cpu_latency_target(),
            Some(before),
            "released when no real-time workload is left"
        );
    } else {
        eprintln!("note: another process holds /dev/cpu_dma_latency at 0; release not checked");
    }
}

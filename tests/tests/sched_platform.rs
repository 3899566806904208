//! Platform cores hold the platform: after a VM and a container start, every thread
//! of the daemon, containerd, the container's shim and log copier, and every VM
//! monitor thread but the vCPUs, may run only on the platform cores; the vCPU threads
//! and the container's own processes only on the workload's. Read from
//! `/proc/PID/task/*/status` (`Cpus_allowed_list`). Needs root, cgroup v1, a private
//! containerd and /dev/kvm.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::container::ContainerDaemon;
use roost_tests::sched::{containerd, skip_reason, Cleanup};
use roost_tests::vmm::{guest, kvm_available};
use roost_tests::wait_until;
use serde_json::json;
use std::time::Duration;

const IMG: &str = "roost.test/busybox:1";
const T: Duration = Duration::from_secs(30);

/// (tid, thread name, Cpus_allowed_list) of every thread of `pid`.
fn threads(pid: u32) -> Vec<(u32, String, String)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let allowed = std::fs::read_to_string(t.path().join("status"))
                .ok()?
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Cpus_allowed_list:")
                        .map(|v| v.trim().to_string())
                })?;
            Some((tid, comm.trim().to_string(), allowed))
        })
        .collect()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&c| parent(c) == Some(pid))
        .collect()
}

fn cpus(prefix: &str, group: &str) -> String {
    std::fs::read_to_string(format!(
        "/sys/fs/cgroup/cpuset/{prefix}/{group}/cpuset.cpus"
    ))
    .unwrap()
    .trim()
    .to_string()
}

#[test]
fn only_vcpus_and_container_processes_leave_the_platform_cores() {
    if let Some(why) = skip_reason(false) {
        eprintln!("SKIPPED: {why}");
        return;
    }
    if !kvm_available() {
        eprintln!("SKIPPED: needs /dev/kvm for the VM monitor's threads");
        return;
    }
    let Some((_, ctrd)) = containerd() else {
        eprintln!("SKIPPED: needs a private containerd (ROOST_TEST_CONTAINERD_SOCKET; make test starts one)");
        return;
    };
    let prefix = format!("roost-test-{}-pthreads", std::process::id());
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        containerd: Some(ctrd),
    };
    let Some(s) = ContainerDaemon::start("pthreads", IMG, &["--cgroup-prefix", &prefix]) else {
        return;
    };
    let platform = cpus(&prefix, "platform");
    let pool = cpus(&prefix, "shared");
    assert_ne!(platform, pool);

    let out = s.apply(
        "box",
        json!({"image": IMG, "command": ["sh", "-c", "sleep 600 & sleep 600"]}),
        json!({"resources": {"cpu": "200m"}}),
    );
    assert!(out.status.success(), "{out:?}");
    s.d.wait_phase("box", "running", T);
    let vm = json!({
        "apiVersion": "roost.dev/v1", "kind": "Workload",
        "metadata": {"name": "vm"},
        "spec": {"driver": "vm", "vm": {"kernel": guest("spin"), "vcpus": 2, "memoryMiB": 32},
                 "resources": {"cpu": "500m"}}
    })
    .to_string();
    let (code, v) = s.d.api("POST", "/v1/workloads", Some(&vm));
    assert_eq!(code, 201, "{v}");
    let v = s.d.wait_phase("vm", "running", T);
    let monitor = v["status"]["handle"]["data"]["proc"]["pid"]
        .as_u64()
        .unwrap() as u32;

    let ns = s.ns.as_ref().unwrap();
    let container: Vec<u32> = s.rt.block_on(ns.client.pids("box-1")).unwrap();
    assert!(container.len() >= 2, "{container:?}");
    let shim = container
        .iter()
        .filter_map(|&p| parent(p))
        .find(|p| !container.contains(p))
        .unwrap();
    let helpers: Vec<u32> = children(shim)
        .into_iter()
        .filter(|c| !container.contains(c))
        .collect();
    assert!(
        helpers
            .iter()
            .any(|&h| std::fs::read_to_string(format!("/proc/{h}/cmdline"))
                .unwrap_or_default()
                .contains("container-log")),
        "the log copier is among the shim's children: {helpers:?}"
    );
    let daemon = s.d.child.as_ref().unwrap().id();
    let mut platform_procs = vec![("daemon", daemon), ("containerd", ctrd), ("shim", shim)];
    platform_procs.extend(helpers.iter().map(|&h| ("shim helper", h)));

    // Every thread where it belongs (the daemon's spawner thread goes home right
    // after a start, so this is waited for, not sampled once).
    let mut counted = (0, 0, 0);
    wait_until(
        "every thread on its cores",
        T,
        Duration::from_millis(100),
        || {
            let mut wrong = Vec::new();
            let mut n = (0, 0, 0);
            for (what, pid) in &platform_procs {
                for (tid, comm, allowed) in threads(*pid) {
                    n.0 += 1;
                    if allowed != platform {
                        wrong.push(format!("{what} {pid} thread {tid} ({comm}) on {allowed}"));
                    }
                }
            }
            for (tid, comm, allowed) in threads(monitor) {
                let want = if comm.starts_with("vcpu") {
                    n.1 += 1;
                    &pool
                } else {
                    n.0 += 1;
                    &platform
                };
                if &allowed != want {
                    wrong.push(format!(
                        "VM monitor thread {tid} ({comm}) on {allowed}, want {want}"
                    ));
                }
            }
            for pid in &container {
                for (tid, comm, allowed) in threads(*pid) {
                    n.2 += 1;
                    if allowed != pool {
                        wrong.push(format!(
                            "container process {pid} thread {tid} ({comm}) on {allowed}"
                        ));
                    }
                }
            }
            counted = n;
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(wrong.join("; "))
            }
        },
    );
    assert_eq!(counted.1, 2, "two vCPU threads seen");
    eprintln!(
        "platform {platform}: {} threads; workload pool {pool}: {} vCPU threads, {} container threads",
        counted.0, counted.1, counted.2
    );
    s.finish(&["box", "vm"]);
}

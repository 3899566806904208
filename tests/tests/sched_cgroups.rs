//! The scheduler's enforcement on this machine's real cgroup v1 hierarchy: what is
//! asked for is what cgroupfs and /proc show, and nothing is left behind.
//!
//! A plain `sleep` process stands in for a container's init and a thread of this test
//! for a VM's vCPU thread: both are placed exactly as the drivers place theirs
//! (join the workload's cgroup, then affinity and policy from the host).

use roost_host_config::CpuSet;
use roost_scheduler::cgroup::{CgroupBackend, WorkloadGroup};
use roost_scheduler::rt::{self, Policy};
use roost_scheduler::{Class, CpuRequest, Request, RtPolicy};
use roost_tests::sched::{cgroup_exists, TestTree};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the stand-in process however the test ends.
struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dedicated_workload_cpuset_reads_back() {
    let Some(mut t) = TestTree::new("ded", "[cpu]\nplatform = \"0\"\n", false) else {
        return;
    };
    let req = Request {
        cpu: CpuRequest::Dedicated { cpus: 1 },
        memory_mib: 64,
    };
    let a = t.sched.admit("db", &req).unwrap();
    let shared_now = t.sched.shared_cpus();
    t.cg.set_shared_cpus(&shared_now, &[]).unwrap();
    let rel =
        t.cg.apply(&WorkloadGroup::new("db", &a, &shared_now))
            .unwrap();
    assert_eq!(rel, format!("{}/dedicated/db", t.prefix));

    let child = Kill(Command::new("sleep").arg("30").spawn().unwrap());
    let pid = child.0.id();
    t.cg.attach(&rel, pid, false).unwrap();

    let st = t.cg.read(&rel).unwrap();
    assert_eq!(st.cpus, a.cpus, "cpuset.cpus");
    assert_eq!(st.mems, a.mems, "cpuset.mems");
    assert_eq!(st.memory_limit, Some(64 << 20));
    // Taken out of load balancing before its CPUs were set (no domain rebuild);
    // Roost's load-balanced parent still spans it.
    let flag = |rel: &str| {
        std::fs::read_to_string(format!(
            "/sys/fs/cgroup/cpuset/{rel}/cpuset.sched_load_balance"
        ))
        .unwrap()
    };
    assert_eq!(flag(&rel).trim(), "0", "{rel}");
    assert_eq!(flag(&t.prefix).trim(), "1", "{}", t.prefix);
    assert!(st.tasks.contains(&pid), "tasks {:?} lack {pid}", st.tasks);
    let proc = rt::read_thread(Path::new("/proc"), pid, pid).unwrap();
    assert_eq!(
        proc.cpus_allowed, a.cpus,
        "the process runs only on its cores"
    );
    // The dedicated core left the shared pool.
    let shared = t.cg.read(&format!("{}/shared", t.prefix)).unwrap();
    assert!(
        shared.cpus.is_disjoint(&a.cpus),
        "shared {} vs {}",
        shared.cpus,
        a.cpus
    );

    drop(child);
    // The task is gone once reaped; removing the cgroup then succeeds.
    t.cg.remove(Class::Dedicated, "db").unwrap();
    t.sched.release("db");
    assert!(!cgroup_exists(&rel), "{rel} left behind");
}

#[test]
fn shared_workload_gets_shares_and_quota() {
    let Some(mut t) = TestTree::new("shr", "[cpu]\nplatform = \"0\"\n", false) else {
        return;
    };
    let a = t
        .sched
        .admit(
            "web",
            &Request {
                cpu: CpuRequest::Shared { millicores: 250 },
                memory_mib: 0,
            },
        )
        .unwrap();
    let rel =
        t.cg.apply(&WorkloadGroup::new("web", &a, &t.sched.shared_cpus()))
            .unwrap();
    let st = t.cg.read(&rel).unwrap();
    assert_eq!(st.cpu_weight, Some(256));
    assert_eq!(st.cpu_quota_us, Some(25_000));
    assert_eq!(st.cpus, t.sched.shared_cpus());
    assert_eq!(st.memory_limit, None);
}

#[test]
fn realtime_thread_policy_priority_affinity_and_budget_teardown() {
    let profile = "[cpu]\nplatform = \"0\"\nisolated = \"1\"\nshare_platform = true\n\
                   [realtime]\nbudget_us = 100000\nworkload_budget_us = 50000\n";
    let Some(mut t) = TestTree::new("rt", profile, true) else {
        return;
    };
    let req = Request {
        cpu: CpuRequest::Realtime {
            cpus: 1,
            policy: RtPolicy::Fifo,
            priority: 80,
            budget_us: None,
        },
        memory_mib: 0,
    };
    let a = t.sched.admit("ctl", &req).unwrap();
    assert_eq!(a.cpus, CpuSet::parse("1").unwrap());
    let rel =
        t.cg.apply(&WorkloadGroup::new("ctl", &a, &t.sched.shared_cpus()))
            .unwrap();
    let root = t.prefix.clone();
    let rd = |rel: &str| t.cg.read(rel).unwrap();
    assert_eq!(rd(&rel).rt_runtime_us, Some(50_000));
    assert_eq!(
        rd(&format!("{root}/rt")).rt_runtime_us,
        Some(50_000),
        "parent budget set top-down"
    );
    assert_eq!(rd(&root).rt_runtime_us, Some(50_000));

    // A stand-in vCPU thread: joins the cgroup, then gets its affinity and policy from
    // the host side, as the VM driver does for vCPU threads. It only sleeps.
    let (tid_tx, tid_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        tid_tx.send(rt::gettid()).unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(30));
    });
    let tid = tid_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let grant = a.rt.unwrap();
    let placed = (|| -> anyhow::Result<()> {
        t.cg.attach(&rel, tid as u32, true)?;
        rt::set_affinity(tid, &a.cpus)?;
        rt::set_policy(tid, Policy::Rt(grant.policy), grant.priority)?;
        Ok(())
    })();
    let seen = rt::read_thread(Path::new("/proc"), std::process::id(), tid as u32);
    let tasks = rd(&rel).tasks;
    done_tx.send(()).unwrap();
    h.join().unwrap();
    placed.unwrap();
    let seen = seen.unwrap();
    assert_eq!(seen.policy_name(), "SCHED_FIFO");
    assert_eq!(seen.rt_priority, 80);
    assert_eq!(seen.cpus_allowed, a.cpus);
    assert!(tasks.contains(&(tid as u32)), "tasks {tasks:?} lack {tid}");

    // Released: the workload's budget goes first, then the parents shrink.
    t.cg.remove(Class::Rt, "ctl").unwrap();
    t.sched.release("ctl");
    assert!(!cgroup_exists(&rel), "{rel} left behind");
    assert_eq!(
        rd(&format!("{root}/rt")).rt_runtime_us,
        Some(0),
        "budget torn down"
    );
    assert_eq!(rd(&root).rt_runtime_us, Some(0));
}

#[test]
fn fifo_outside_a_budgeted_cgroup_is_refused_with_the_reason() {
    // The kernel fact the tree exists for: a cpu cgroup with no rt budget refuses
    // SCHED_FIFO. Our error says so.
    let Some(t) = TestTree::new("nobudget", "[cpu]\nplatform = \"0\"\n", true) else {
        return;
    };
    let rel = format!("{}/platform", t.prefix);
    let (tx, rx) = mpsc::channel();
    let cg = &t.cg;
    std::thread::scope(|s| {
        s.spawn(|| {
            let r = cg
                .attach(&rel, rt::gettid() as u32, true)
                .map_err(anyhow::Error::from)
                .and_then(|()| Ok(rt::set_policy(0, Policy::Rt(RtPolicy::Fifo), 10)?));
            tx.send(r.map_err(|e| format!("{e:#}"))).unwrap();
        });
    });
    let e = rx.recv().unwrap().unwrap_err();
    assert!(
        e.contains("EPERM") && e.contains("cpu.rt_runtime_us"),
        "{e}"
    );
}

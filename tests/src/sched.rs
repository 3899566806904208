//! Helpers for the scheduler's tests on this machine's real cgroups: a private tree
//! (`roost-test-<pid>-<tag>`) that is torn down even when a test fails, and the
//! checks that say why a test is skipped.

use roost_host_config::{HostPlan, Profile, Topology};
use roost_scheduler::cgroup::v1::V1;
use roost_scheduler::cgroup::{CgroupBackend, Tree};
use roost_scheduler::Scheduler;
use std::path::Path;

/// A private cgroup v1 tree and a scheduler over this host; dropping it removes every
/// cgroup it created.
pub struct TestTree {
    /// The backend (prefix `roost-test-<pid>-<tag>`).
    pub cg: V1,
    /// The scheduler.
    pub sched: Scheduler,
    /// The tree's name.
    pub prefix: String,
}

/// Why this machine cannot run real-cgroup tests, if it cannot.
pub fn skip_reason(need_rt: bool) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root to create cgroups".to_string());
    }
    let v1 = match V1::discover(Path::new("/proc"), "roost-probe") {
        Ok(v) => v,
        Err(e) => return Some(format!("needs cgroup v1 cpu, cpuset and memory: {e}")),
    };
    if need_rt && !v1.has_rt_groups() {
        return Some("needs CONFIG_RT_GROUP_SCHED (cpu.rt_runtime_us)".to_string());
    }
    let online = Topology::this_host().map(|t| t.online().len()).unwrap_or(0);
    if online < 2 {
        return Some(format!("needs 2 online CPUs, this host has {online}"));
    }
    None
}

impl TestTree {
    /// Build the tree for `profile` (TOML) on this host; `None` (with the reason
    /// printed) when the machine cannot run it.
    pub fn new(tag: &str, profile: &str, need_rt: bool) -> Option<Self> {
        if let Some(why) = skip_reason(need_rt) {
            eprintln!("SKIPPED: {why}");
            return None;
        }
        let prefix = format!("roost-test-{}-{tag}", std::process::id());
        let cg = V1::discover(Path::new("/proc"), &prefix).expect("cgroup v1 mounts");
        let topo = Topology::this_host().expect("topology");
        let p = Profile::parse(profile, "test profile").expect("test profile parses");
        let plan = HostPlan::resolve(&p, topo, "test profile").expect("test profile valid here");
        let sched = Scheduler::new(plan);
        let t = Self { cg, sched, prefix };
        t.cg.ensure_tree(&Tree::from_plan(t.sched.plan(), &t.sched.shared_cpus()))
            .expect("create the test cgroup tree");
        Some(t)
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        if let Err(e) = self.cg.teardown() {
            eprintln!("cleanup of cgroup tree {} failed: {e}", self.prefix);
        }
    }
}

/// Whether a cgroup directory exists in any of the v1 controllers we use.
pub fn cgroup_exists(rel: &str) -> bool {
    ["cpu", "cpuset", "memory"]
        .iter()
        .any(|c| Path::new("/sys/fs/cgroup").join(c).join(rel).exists())
}

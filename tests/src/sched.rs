//! Helpers for the scheduler's tests on this machine's real cgroups: a private tree
//! (`roost-test-<pid>-<tag>`) that is torn down even when a test fails, and the
//! checks that say why a test is skipped.

use roost_host_config::{HostPlan, Profile, Topology};
use roost_scheduler::cgroup::v1::V1;
use roost_scheduler::cgroup::{CgroupBackend, Tree};
use roost_scheduler::Scheduler;
use std::path::{Path, PathBuf};

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

/// The cgroup path of `pid` in v1 controller `ctrl` (`cpu` matches `cpu,cpuacct`).
pub fn cgroup_of(pid: u32, ctrl: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|c| c == ctrl)
                .then(|| path.to_string())
        })
        .unwrap_or_default()
}

/// A field of `/proc/PID/status`, trimmed (empty when absent).
pub fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// The private containerd `make test` started (ci/containerd.sh writes its pid
/// beside the socket).
pub fn containerd() -> Option<(String, u32)> {
    let sock = std::env::var("ROOST_TEST_CONTAINERD_SOCKET").ok()?;
    let pidfile = Path::new(&sock).parent()?.join("containerd.pid");
    let pid = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    Some((sock, pid))
}

/// Removes the test's cgroup tree, after moving containerd back to the root groups.
pub struct Cleanup {
    /// The tree's prefix.
    pub prefix: String,
    /// containerd's pid, when the test moved it.
    pub containerd: Option<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.containerd {
            for c in ["cpuset", "cpu", "memory"] {
                let p = PathBuf::from("/sys/fs/cgroup").join(c).join("cgroup.procs");
                let _ = std::fs::write(p, pid.to_string());
            }
        }
        if let Ok(v1) = V1::discover(Path::new("/proc"), &self.prefix) {
            if let Err(e) = v1.teardown() {
                eprintln!("cleanup of cgroup tree {} failed: {e}", self.prefix);
            }
        }
    }
}

//! The few cgroup v1 files the container driver touches itself: rt budgets on the
//! ancestors of a container's cgroup (runc creates parents with a zero budget), the
//! OOM-kill counter, the cpuset read-back, and the real-time policy of processes
//! (runc 1.1 ignores OCI `process.scheduler`).
//!
//! The scheduler crate will own Roost's cgroup tree; until it does, these minimal
//! writes keep real-time containers working.

use crate::spec::RtPolicy;
use std::path::{Path, PathBuf};

/// Where cgroup v1 controllers are mounted in production.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// Errors touching cgroup files.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A cgroup file could not be read or written.
    #[error("cgroup file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file did not hold what it should.
    #[error("cgroup file {path} holds {content:?}, not a number")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// sched_setscheduler failed.
    #[error("cannot set {policy:?} priority {priority} on pid {pid}: {source} (is the cgroup's cpu.rt_runtime_us > 0?)")]
    Sched {
        /// The process.
        pid: u32,
        /// Requested policy.
        policy: RtPolicy,
        /// Requested priority.
        priority: u32,
        /// errno.
        #[source]
        source: std::io::Error,
    },
}

/// cgroup v1 hierarchy rooted at `root` (injectable for tests).
#[derive(Debug, Clone)]
pub struct CgroupV1 {
    root: PathBuf,
}

impl Default for CgroupV1 {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl CgroupV1 {
    /// A hierarchy at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory of `cgroup` (`/roost/x`) under `controller`.
    pub fn dir(&self, controller: &str, cgroup: &str) -> PathBuf {
        self.root
            .join(controller)
            .join(cgroup.trim_start_matches('/'))
    }

    fn read_u64(&self, path: &Path) -> Result<u64, CgroupError> {
        let s = std::fs::read_to_string(path).map_err(io(path))?;
        s.trim().parse().map_err(|_| CgroupError::Parse {
            path: path.to_path_buf(),
            content: s.trim().to_string(),
        })
    }

    /// Sum of the rt budgets of `dir`'s child cgroups, leaving out `skip`.
    fn children_budget(&self, dir: &Path, skip: Option<&Path>) -> Result<u64, CgroupError> {
        let mut sum = 0;
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(dir)(e)),
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && Some(p.as_path()) != skip {
                let f = p.join("cpu.rt_runtime_us");
                if f.exists() {
                    sum += self.read_u64(&f)?;
                }
            }
        }
        Ok(sum)
    }

    /// Give every ancestor of `cgroup` (not `cgroup` itself: runc sets that from the
    /// spec) enough rt budget for a child that needs `runtime_us`, top-down.
    pub fn reserve_rt_budget(&self, cgroup: &str, runtime_us: u64) -> Result<(), CgroupError> {
        let target = self.dir("cpu", cgroup);
        let cpu_root = self.root.join("cpu");
        // Ancestors strictly between the controller root and the target, bottom-up.
        let mut chain = Vec::new();
        let mut cur = target.parent().map(Path::to_path_buf);
        while let Some(d) = cur {
            if d == cpu_root || !d.starts_with(&cpu_root) {
                break;
            }
            cur = d.parent().map(Path::to_path_buf);
            chain.push(d);
        }
        // Bottom-up: what each ancestor must hold.
        let mut needs = Vec::with_capacity(chain.len());
        let mut child: (PathBuf, u64) = (target.clone(), runtime_us);
        for d in &chain {
            let others = self.children_budget(d, Some(&child.0))?;
            let need = others + child.1;
            needs.push((d.clone(), need));
            child = (d.clone(), need);
        }
        // Top-down: raise each ancestor that holds too little.
        for (d, need) in needs.into_iter().rev() {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            let f = d.join("cpu.rt_runtime_us");
            if self.read_u64(&f)? < need {
                std::fs::write(&f, need.to_string()).map_err(io(&f))?;
                tracing::debug!(cgroup = %d.display(), rt_runtime_us = need, "rt budget raised");
            }
        }
        Ok(())
    }

    /// After a container's cgroup is gone: shrink its ancestors' budgets back to what
    /// their remaining children need, bottom-up.
    pub fn release_rt_budget(&self, cgroup: &str) -> Result<(), CgroupError> {
        let cpu_root = self.root.join("cpu");
        let mut cur = self.dir("cpu", cgroup).parent().map(Path::to_path_buf);
        while let Some(d) = cur {
            if d == cpu_root || !d.starts_with(&cpu_root) || !d.exists() {
                break;
            }
            let need = self.children_budget(&d, None)?;
            let f = d.join("cpu.rt_runtime_us");
            if self.read_u64(&f)? > need {
                // Best effort: a sibling may have grown meanwhile.
                let _ = std::fs::write(&f, need.to_string());
            }
            cur = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    /// How many times the kernel OOM-killed in `cgroup` (memory.oom_control `oom_kill`).
    pub fn oom_kills(&self, cgroup: &str) -> Result<u64, CgroupError> {
        let f = self.dir("memory", cgroup).join("memory.oom_control");
        let s = std::fs::read_to_string(&f).map_err(io(&f))?;
        Ok(s.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }

    /// `cpuset.cpus` of `cgroup`.
    pub fn cpuset_cpus(&self, cgroup: &str) -> Result<String, CgroupError> {
        let f = self.dir("cpuset", cgroup).join("cpuset.cpus");
        Ok(std::fs::read_to_string(&f)
            .map_err(io(&f))?
            .trim()
            .to_string())
    }
}

/// Put `pid` under `policy` at `priority`.
pub fn set_realtime(pid: u32, policy: RtPolicy, priority: u32) -> Result<(), CgroupError> {
    let param = libc::sched_param {
        sched_priority: priority.min(99) as i32,
    };
    let pol = match policy {
        RtPolicy::Fifo => libc::SCHED_FIFO,
        RtPolicy::Rr => libc::SCHED_RR,
    };
    // SAFETY: `param` is a valid, initialised sched_param that outlives the call; the
    // kernel only reads it. A stale pid yields ESRCH, not undefined behaviour.
    let rc = unsafe { libc::sched_setscheduler(pid as libc::pid_t, pol, &param) };
    if rc != 0 {
        return Err(CgroupError::Sched {
            pid,
            policy,
            priority,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// [`set_realtime`] on every thread of process `pid` (`sched_setscheduler` changes
/// one thread). Threads that end meanwhile are skipped.
pub fn set_realtime_all_threads(
    pid: u32,
    policy: RtPolicy,
    priority: u32,
) -> Result<(), CgroupError> {
    set_realtime(pid, policy, priority)?;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Ok(());
    };
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if tid == pid {
            continue;
        }
        match set_realtime(tid, policy, priority) {
            Ok(()) => {}
            Err(CgroupError::Sched { source, .. })
                if source.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The scheduling policy of `pid` (for checks): `SCHED_*` value.
pub fn policy_of(pid: u32) -> Option<i32> {
    // SAFETY: sched_getscheduler takes a pid by value and touches no memory of ours.
    let p = unsafe { libc::sched_getscheduler(pid as libc::pid_t) };
    (p >= 0).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_go_top_down_and_come_back() {
        let t = tempfile::tempdir().unwrap();
        let cg = CgroupV1::new(t.path());
        let cpu = t.path().join("cpu");
        std::fs::create_dir_all(cpu.join("roost/containers/other")).unwrap();
        std::fs::write(cpu.join("roost/cpu.rt_runtime_us"), "0").unwrap();
        std::fs::write(cpu.join("roost/containers/cpu.rt_runtime_us"), "0").unwrap();
        std::fs::write(
            cpu.join("roost/containers/other/cpu.rt_runtime_us"),
            "10000",
        )
        .unwrap();
        cg.reserve_rt_budget("/roost/containers/web-1", 50_000)
            .unwrap();
        let read = |p: &str| std::fs::read_to_string(cpu.join(p)).unwrap();
        assert_eq!(read("roost/containers/cpu.rt_runtime_us"), "60000");
        assert_eq!(read("roost/cpu.rt_runtime_us"), "60000");
        cg.release_rt_budget("/roost/containers/web-1").unwrap();
        assert_eq!(read("roost/containers/cpu.rt_runtime_us"), "10000");
        assert_eq!(read("roost/cpu.rt_runtime_us"), "10000");
    }

    #[test]
    fn oom_counter_is_read() {
        let t = tempfile::tempdir().unwrap();
        let cg = CgroupV1::new(t.path());
        let d = t.path().join("memory/roost/a");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills("/roost/a").unwrap(), 2);
    }
}

//! Real-time policy and CPU affinity of threads and processes (VM vCPU threads,
//! container processes), set from the host with `sched_setscheduler` and
//! `sched_setaffinity`, and read back from `/proc`.
//!
//! Under `CONFIG_RT_GROUP_SCHED` the thread must already sit in a cpu cgroup with a
//! non-zero `cpu.rt_runtime_us` ([`crate::cgroup`]), or the kernel answers EPERM.

use crate::request::RtPolicy;
use roost_host_config::CpuSet;
use std::path::Path;

/// Setting or reading a thread's scheduling failed.
#[derive(Debug, thiserror::Error)]
pub enum RtError {
    /// sched_setscheduler failed.
    #[error(
        "cannot set {policy} priority {priority} on thread {tid}{}",
        hint(*errno)
    )]
    Policy {
        /// Thread id (0 = the caller).
        tid: i32,
        /// `SCHED_FIFO`, `SCHED_RR` or `SCHED_OTHER`.
        policy: &'static str,
        /// Priority.
        priority: u32,
        /// errno.
        errno: i32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// sched_setaffinity failed.
    #[error("cannot pin thread {tid} to CPUs {cpus}")]
    Affinity {
        /// Thread id.
        tid: i32,
        /// The CPUs.
        cpus: CpuSet,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `/proc` could not be read.
    #[error("cannot read {path}")]
    Proc {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `/proc` held something unexpected.
    #[error("{path}: unexpected format")]
    Format {
        /// The file.
        path: String,
    },
}

fn hint(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => {
            " (EPERM: needs CAP_SYS_NICE, and a cpu cgroup with cpu.rt_runtime_us > 0 \
             when the kernel has RT group scheduling)"
        }
        libc::EINVAL => " (EINVAL: priority out of range for the policy)",
        libc::ESRCH => " (ESRCH: no such thread)",
        _ => "",
    }
}

/// A scheduling policy to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// SCHED_OTHER (priority 0).
    Other,
    /// A real-time policy.
    Rt(RtPolicy),
}

impl Policy {
    fn raw(self) -> libc::c_int {
        match self {
            Self::Other => libc::SCHED_OTHER,
            Self::Rt(RtPolicy::Fifo) => libc::SCHED_FIFO,
            Self::Rt(RtPolicy::Rr) => libc::SCHED_RR,
        }
    }

    fn name(self) -> &'static str {
        policy_name(self.raw())
    }
}

/// `SCHED_FIFO` etc. for a raw policy number.
pub fn policy_name(raw: i32) -> &'static str {
    match raw {
        libc::SCHED_OTHER => "SCHED_OTHER",
        libc::SCHED_FIFO => "SCHED_FIFO",
        libc::SCHED_RR => "SCHED_RR",
        libc::SCHED_BATCH => "SCHED_BATCH",
        libc::SCHED_IDLE => "SCHED_IDLE",
        6 => "SCHED_DEADLINE",
        _ => "unknown",
    }
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Set the policy and priority of thread `tid` (0 = the calling thread).
pub fn set_policy(tid: i32, policy: Policy, priority: u32) -> Result<(), RtError> {
    let prio = if policy == Policy::Other { 0 } else { priority };
    let param = libc::sched_param {
        sched_priority: i32::try_from(prio).unwrap_or(i32::MAX),
    };
    // SAFETY: `param` is a valid sched_param that lives across the call; the kernel
    // only reads it.
    let rc = unsafe { libc::sched_setscheduler(tid, policy.raw(), &param) };
    if rc != 0 {
        let source = std::io::Error::last_os_error();
        return Err(RtError::Policy {
            tid,
            policy: policy.name(),
            priority: prio,
            errno: source.raw_os_error().unwrap_or(0),
            source,
        });
    }
    tracing::debug!(
        tid,
        policy = policy.name(),
        priority = prio,
        "scheduling policy set"
    );
    Ok(())
}

/// Pin thread `tid` (0 = the calling thread) to `cpus`.
pub fn set_affinity(tid: i32, cpus: &CpuSet) -> Result<(), RtError> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let max = (std::mem::size_of::<libc::cpu_set_t>() * 8) as u32;
    for c in cpus.iter() {
        if c >= max {
            return Err(RtError::Affinity {
                tid,
                cpus: cpus.clone(),
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        // SAFETY: `c` is below the set's capacity (checked above).
        unsafe { libc::CPU_SET(c as usize, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; the kernel only reads it.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(RtError::Affinity {
            tid,
            cpus: cpus.clone(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// A thread's scheduling as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSched {
    /// Raw policy number (`SCHED_FIFO` = 1).
    pub policy: i32,
    /// Real-time priority (0 for normal policies).
    pub rt_priority: u32,
    /// `Cpus_allowed_list`.
    pub cpus_allowed: CpuSet,
}

impl ThreadSched {
    /// The policy's name.
    pub fn policy_name(&self) -> &'static str {
        policy_name(self.policy)
    }
}

/// Read thread `tid` of process `pid` from `proc_root` (`/proc`).
pub fn read_thread(proc_root: &Path, pid: u32, tid: u32) -> Result<ThreadSched, RtError> {
    let dir = proc_root.join(format!("{pid}/task/{tid}"));
    let read = |f: &str| -> Result<(String, String), RtError> {
        let p = dir.join(f);
        let shown = p.display().to_string();
        std::fs::read_to_string(&p)
            .map(|t| (t, shown.clone()))
            .map_err(|source| RtError::Proc {
                path: shown,
                source,
            })
    };
    let (stat, stat_path) = read("stat")?;
    // Fields after the command name, which may hold spaces and parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| RtError::Format {
            path: stat_path.clone(),
        })?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is f[0]; rt_priority is field 40, policy field 41.
    let num = |i: usize| -> Result<i64, RtError> {
        f.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| RtError::Format {
                path: stat_path.clone(),
            })
    };
    let rt_priority = num(37)? as u32;
    let policy = num(38)? as i32;
    let (status, status_path) = read("status")?;
    let cpus_allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|v| CpuSet::parse(v).ok())
        .ok_or(RtError::Format { path: status_path })?;
    Ok(ThreadSched {
        policy,
        rt_priority,
        cpus_allowed,
    })
}

/// Threads of process `pid`.
pub fn threads(proc_root: &Path, pid: u32) -> Result<Vec<u32>, RtError> {
    let dir = proc_root.join(format!("{pid}/task"));
    let entries = std::fs::read_dir(&dir).map_err(|source| RtError::Proc {
        path: dir.display().to_string(),
        source,
    })?;
    let mut tids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Pin every thread of process `pid` to `cpus` and give it `policy`/`priority` (a
/// container's processes after start: runc ignores OCI `process.scheduler`).
pub fn apply_to_process(
    proc_root: &Path,
    pid: u32,
    policy: Policy,
    priority: u32,
    cpus: &CpuSet,
) -> Result<usize, RtError> {
    let tids = threads(proc_root, pid)?;
    for tid in &tids {
        let t = i32::try_from(*tid).unwrap_or(i32::MAX);
        set_affinity(t, cpus)?;
        set_policy(t, policy, priority)?;
    }
    Ok(tids.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_thread_from_proc() {
        let pid = std::process::id();
        let tid = gettid() as u32;
        let t = read_thread(Path::new("/proc"), pid, tid).unwrap();
        assert_eq!(t.policy_name(), "SCHED_OTHER");
        assert_eq!(t.rt_priority, 0);
        assert!(!t.cpus_allowed.is_empty());
    }

    #[test]
    fn parses_a_stat_line_with_odd_command_names() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("7/task/9");
        std::fs::create_dir_all(&d).unwrap();
        let mut fields: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        fields[37] = "80".to_string();
        fields[38] = "1".to_string();
        std::fs::write(
            d.join("stat"),
            format!("9 (a) b (c) {}\n", fields.join(" ")),
        )
        .unwrap();
        std::fs::write(d.join("status"), "Name:\tx\nCpus_allowed_list:\t1\n").unwrap();
        let t = read_thread(dir.path(), 7, 9).unwrap();
        assert_eq!((t.policy_name(), t.rt_priority), ("SCHED_FIFO", 80));
        assert_eq!(t.cpus_allowed.to_string(), "1");
        assert_eq!(threads(dir.path(), 7).unwrap(), vec![9]);
    }

    #[test]
    fn refusals_explain_the_errno() {
        // Priority 0 is invalid for SCHED_FIFO whatever our privileges.
        let e = set_policy(0, Policy::Rt(RtPolicy::Fifo), 0).unwrap_err();
        assert!(e.to_string().contains("EINVAL"), "{e}");
    }
}

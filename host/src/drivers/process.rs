//! Watching and signalling host processes the daemon may not be the parent of (after
//! a restart, workloads are re-parented to init). Used by the mock driver; handy for
//! any driver whose instance is a host process.

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// A process identified by pid *and* its start time, so a recycled pid is never
/// mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcId {
    /// Process id (also the process-group id: workloads run in their own group).
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of /proc/PID/stat).
    pub start_time: u64,
}

/// Start time of `pid`, or None if it does not exist (or is a zombie).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); start_time is field 22.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

impl ProcId {
    /// Identify a live process.
    pub fn of(pid: i32) -> Option<Self> {
        start_time(pid).map(|start_time| Self { pid, start_time })
    }

    /// Whether this very process still runs.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// Signal the whole process group (the workload and its children).
    pub fn signal_group(&self, sig: i32) {
        if self.alive() {
            // SAFETY: kill(2) with a negative pid signals a process group; it touches
            // no memory of ours. The group is the workload's own (made at spawn),
            // checked alive by pid and start time just above.
            unsafe {
                libc::kill(-self.pid, sig);
            }
        }
    }

    /// Resolve when the process has ended (pidfd readiness; polling as a fallback).
    pub async fn exited(&self) {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no
        // pointers are passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        // Checked after the pidfd is open: it then refers to this very process (a
        // pid recycled before the open fails the start-time check). A pid that is
        // gone fails the open and ends in the loop below at once.
        if fd >= 0 && self.alive() {
            // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
            let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            // SAFETY: `owned` is a valid open pidfd that the AsyncFd owns until it is
            // dropped; OwnedFd::as_raw_fd always returns that same fd.
            if let Ok(afd) = unsafe { AsyncFd::register(owned) } {
                // A pidfd becomes readable once the process has terminated (also when
                // that happened before this wait).
                if let Ok(mut g) = afd.readable().await {
                    g.clear_ready();
                }
                reap(self.pid);
                return;
            }
        } else if fd >= 0 {
            // SAFETY: closing the fd pidfd_open just gave us.
            unsafe {
                libc::close(fd as i32);
            }
        }
        while self.alive() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        reap(self.pid);
    }
}

/// Reap `pid` if it is our child (no-op otherwise); returns its wait status.
pub fn reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waitpid writes the status into our local; WNOHANG never blocks. If `pid`
    // is not our child it fails with ECHILD and changes nothing.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then_some(status)
}

/// How a reaped child ended, from its wait status (None if neither exited nor
/// signalled). `killed_message` annotates a death by signal.
pub fn exit_of_wait_status(
    status: i32,
    killed_message: Option<&str>,
) -> Option<crate::driver::ExitInfo> {
    use crate::driver::ExitInfo;
    if libc::WIFEXITED(status) {
        return Some(ExitInfo::exited(libc::WEXITSTATUS(status)));
    }
    if libc::WIFSIGNALED(status) {
        return Some(ExitInfo::killed(
            libc::WTERMSIG(status),
            killed_message.map(str::to_string),
        ));
    }
    None
}

/// Puts a process a driver starts into its workload's cgroup
/// ([`crate::driver::Placement::cgroup_path`]) in every controller Roost uses. The
/// daemon itself runs on the platform cores; what it starts belongs where the
/// scheduler placed it. (containerd does the same for containers through runc.)
pub trait CgroupAttach: Send + Sync + std::fmt::Debug {
    /// Move process `pid` (all its threads) into `cgroup_path`.
    fn attach(&self, cgroup_path: &str, pid: u32) -> Result<(), String>;

    /// Start `cmd` so that it ends up in `cgroup_path`. This default starts it and
    /// then moves it; an implementation may instead start it from a thread that is
    /// already there, so it is born in its cgroup and nothing has to move.
    fn spawn_in(&self, cgroup_path: &str, cmd: Command) -> Result<Child, SpawnError> {
        spawn_then_attach(cmd, |pid| self.attach(cgroup_path, pid))
    }

    /// Move `id` onto the platform cores (the platform cgroup): a whole process, or
    /// with `thread` one thread (cpuset and cpu only; memory is per process). For
    /// what serves workloads without being one: containerd's shims, log copiers, a
    /// VM monitor's helper threads. Default: nothing (not enforcing).
    fn to_platform(&self, _id: u32, _thread: bool) -> Result<(), String> {
        Ok(())
    }
}

/// The parent pid of `pid` (`/proc/PID/stat` field 4), when it still exists.
pub fn parent_of(proc_root: &std::path::Path, pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every process whose parent is `pid`.
pub fn children_of(proc_root: &std::path::Path, pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&c| parent_of(proc_root, c) == Some(pid))
        .collect()
}

/// The threads of `pid` whose name (`comm`) does not start with `keep_prefix`.
pub fn threads_except(proc_root: &std::path::Path, pid: u32, keep_prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(proc_root.join(pid.to_string()).join("task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|t| {
            !std::fs::read_to_string(t.path().join("comm"))
                .unwrap_or_default()
                .starts_with(keep_prefix)
        })
        .filter_map(|t| t.file_name().to_str()?.parse().ok())
        .collect()
}

/// Start `cmd` where the caller is, then move the process with `attach`.
pub fn spawn_then_attach(
    mut cmd: Command,
    attach: impl FnOnce(u32) -> Result<(), String>,
) -> Result<Child, SpawnError> {
    let child = cmd.spawn().map_err(SpawnError::Spawn)?;
    match attach(child.id()) {
        Ok(()) => Ok(child),
        Err(e) => Err(SpawnError::Cgroup(Some(child), e)),
    }
}

/// Starting a process in its workload's cgroup failed.
#[derive(Debug)]
pub enum SpawnError {
    /// The process did not start.
    Spawn(std::io::Error),
    /// The cgroup could not be entered; the process, if it started, is returned for
    /// the caller to kill and reap.
    Cgroup(Option<Child>, String),
}

impl SpawnError {
    /// Kill and reap the process, if it started (drivers start their processes as
    /// group leaders, so its group goes too), and say what went wrong.
    pub fn discard(self) -> String {
        let msg = self.to_string();
        if let Self::Cgroup(Some(child), _) = self {
            let pid = child.id() as i32;
            // SAFETY: kill(2) on the process group this daemon just created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            reap(pid);
        }
        msg
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spawn(e) => write!(f, "{e}"),
            Self::Cgroup(_, e) => write!(f, "cannot put it into its cgroup: {e}"),
        }
    }
}

/// Start `cmd` in the placement's cgroup when there is an attacher and a cgroup,
/// else where the daemon is.
pub fn spawn_placed(
    attach: Option<&std::sync::Arc<dyn CgroupAttach>>,
    placement: &crate::driver::Placement,
    mut cmd: Command,
) -> Result<Child, SpawnError> {
    match (attach, placement.cgroup_path.as_deref()) {
        (Some(a), Some(path)) => a.spawn_in(path, cmd).map_err(|e| match e {
            SpawnError::Cgroup(c, m) => SpawnError::Cgroup(c, format!("{path}: {m}")),
            e => e,
        }),
        _ => cmd.spawn().map_err(SpawnError::Spawn),
    }
}

/// A process found by [`marked`]: its pid, what followed the marker in the marked
/// argument (the instance key `name-N`), and all its arguments.
#[derive(Debug, Clone)]
pub struct Marked {
    /// The process.
    pub pid: i32,
    /// The marked argument without `prefix`.
    pub key: String,
    /// Its whole command line.
    pub args: Vec<String>,
}

/// Every process one of whose arguments starts with `prefix` (drivers tag the
/// processes they start with `<tag><host id>:<name>-<instance>`).
pub fn marked(prefix: &str) -> Vec<Marked> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter_map(|a| std::str::from_utf8(a).ok().map(str::to_string))
            .collect();
        if let Some(key) = args
            .iter()
            .find_map(|a| a.strip_prefix(prefix))
            .map(str::to_string)
        {
            out.push(Marked { pid, key, args });
        }
    }
    out
}

/// A short id, stable for a state dir (FNV-1a of its path), that tags the processes
/// one daemon started so another daemon's are never adopted.
pub fn host_id(state_dir: &std::path::Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in state_dir.to_string_lossy().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

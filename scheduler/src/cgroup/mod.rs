//! Enforcement: Roost's own cgroup tree, behind one small trait.
//!
//! ```text
//! roost/                 all CPUs; cpu.rt_runtime_us = what rt/ holds
//! ├── platform/          platform CPUs: the daemon, containerd, shims, helpers
//! ├── shared/            the shared pool minus dedicated CPUs
//! │   └── <w>/           cpu.shares + cfs quota from millicores; memory limit
//! ├── dedicated/         every CPU that may be dedicated
//! │   └── <w>/           its own CPUs and NUMA nodes
//! └── rt/                isolated CPUs; budget = the sum of its workloads'
//!     └── <w>/           its isolated CPUs; cpu.rt_runtime_us = its budget
//! ```
//!
//! Budgets are set top-down and removed bottom-up: with `CONFIG_RT_GROUP_SCHED` a
//! parent must hold at least the sum of its children's budgets, and a new cgroup starts
//! at 0 (SCHED_FIFO inside it fails with EPERM). `roost` and `roost/rt` hold exactly
//! what the real-time workloads hold (the scheduler keeps that under the profile's
//! budget), so an idle Roost takes nothing from the root's real-time bandwidth.
//!
//! **Why not cgroups-rs**: the design card names it, but its v1 builder silently drops
//! `realtime_runtime`, which is the one setting this tree exists for, and it pulls in
//! zbus and nix. The files are few and their order matters (top-down budgets,
//! shrink-children-before-parent cpusets), so [`v1::V1`] writes them directly; the
//! [`v2::V2`] backend does the same for a unified hierarchy.

pub mod v1;
pub mod v2;

use crate::request::{Allocation, Class};
use roost_host_config::{CpuSet, HostPlan};
use std::path::{Path, PathBuf};

/// A cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// Reading or writing a cgroup file (or directory) failed.
    #[error("{op} {path} ({value:?})")]
    Io {
        /// `write`, `read`, `mkdir`, `rmdir`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What was written, if anything.
        value: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A needed controller is not mounted.
    #[error("cgroup controller `{controller}` is not mounted (looked in {mountinfo}); Roost needs cpu, cpuset and memory")]
    NoController {
        /// `cpu`, `cpuset` or `memory`.
        controller: &'static str,
        /// The mountinfo file read.
        mountinfo: PathBuf,
    },
    /// A cgroup cannot be removed while processes live in it.
    #[error("cgroup {path} still holds tasks {tasks}; stop them before releasing the workload")]
    Busy {
        /// The directory.
        path: PathBuf,
        /// Their ids.
        tasks: String,
    },
}

/// What one cgroup holds now, read back from the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupState {
    /// `cpuset.cpus`.
    pub cpus: CpuSet,
    /// `cpuset.mems`.
    pub mems: CpuSet,
    /// `cpu.rt_runtime_us` (v1 only).
    pub rt_runtime_us: Option<i64>,
    /// `cpu.shares` (v1) or `cpu.weight` (v2).
    pub cpu_weight: Option<u64>,
    /// CFS quota per period, µs (`None` = unlimited).
    pub cpu_quota_us: Option<u64>,
    /// Memory limit in bytes (`None` = unlimited).
    pub memory_limit: Option<u64>,
    /// Thread ids in the cpu controller's group.
    pub tasks: Vec<u32>,
}

/// Roost's top-level tree for one host plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// All online CPUs.
    pub all: CpuSet,
    /// All NUMA nodes.
    pub mems: CpuSet,
    /// `roost/platform`.
    pub platform: CpuSet,
    /// `roost/shared` now.
    pub shared: CpuSet,
    /// `roost/dedicated`.
    pub dedicated: CpuSet,
    /// `roost/rt`.
    pub isolated: CpuSet,
    /// `cpu.rt_period_us`.
    pub rt_period_us: u64,
    /// The most `roost` and `roost/rt` may hold (the scheduler enforces it).
    pub rt_budget_us: u64,
}

impl Tree {
    /// The tree for `plan`, with `shared_now` (the shared pool minus dedicated CPUs).
    pub fn from_plan(plan: &HostPlan, shared_now: &CpuSet) -> Self {
        Self {
            all: plan.topology.online(),
            mems: plan.topology.nodes.iter().map(|n| n.id).collect(),
            platform: plan.platform.clone(),
            shared: shared_now.clone(),
            dedicated: plan.shared.clone(),
            isolated: plan.isolated.clone(),
            rt_period_us: plan.rt_period_us,
            rt_budget_us: plan.rt_budget_us,
        }
    }
}

/// One workload's cgroup settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadGroup {
    /// Workload name (the directory).
    pub name: String,
    /// Class (the parent directory).
    pub class: Class,
    /// `cpuset.cpus`.
    pub cpus: CpuSet,
    /// `cpuset.mems` (empty = the tree's).
    pub mems: CpuSet,
    /// Millicores for shares/quota (shared); 0 = best effort.
    pub millicores: u32,
    /// Memory limit in MiB (0 = none).
    pub memory_mib: u64,
    /// `cpu.rt_runtime_us` and `cpu.rt_period_us` (real-time only).
    pub rt_budget: Option<(u64, u64)>,
}

impl WorkloadGroup {
    /// Settings for an allocation; shared workloads get the shared pool now.
    pub fn new(name: &str, a: &Allocation, shared_now: &CpuSet) -> Self {
        Self {
            name: name.to_string(),
            class: a.class,
            cpus: if a.class == Class::Shared {
                shared_now.clone()
            } else {
                a.cpus.clone()
            },
            mems: a.mems.clone(),
            millicores: a.millicores,
            memory_mib: a.memory_mib,
            rt_budget: a.rt.map(|r| (r.budget_us, r.period_us)),
        }
    }
}

/// The enforcement seam: v1 here, v2 elsewhere, a temp dir in unit tests.
pub trait CgroupBackend: Send + Sync + std::fmt::Debug {
    /// Create or update Roost's top-level tree (budgets top-down).
    fn ensure_tree(&self, tree: &Tree) -> Result<(), CgroupError>;
    /// Create or update one workload's cgroup; returns its path relative to each
    /// controller's root (`roost/rt/<w>`).
    fn apply(&self, group: &WorkloadGroup) -> Result<String, CgroupError>;
    /// Resize the shared pool: `roost/shared` and each of `workloads` under it.
    fn set_shared_cpus(&self, cpus: &CpuSet, workloads: &[String]) -> Result<(), CgroupError>;
    /// Move a whole process (`thread = false`) or one thread into `rel`.
    fn attach(&self, rel: &str, id: u32, thread: bool) -> Result<(), CgroupError>;
    /// Move the calling thread alone into `rel` in every controller (memory too), so
    /// a process it starts next is born there. Returns `false` when this backend
    /// cannot (v2 keeps a process's threads in one domain cgroup); the caller then
    /// moves the process after starting it.
    fn enter_self(&self, rel: &str) -> Result<bool, CgroupError> {
        let _ = rel;
        Ok(false)
    }
    /// Remove a workload's cgroup: budget to 0, then the directory.
    fn remove(&self, class: Class, name: &str) -> Result<(), CgroupError>;
    /// Remove Roost's whole tree, bottom-up.
    fn teardown(&self) -> Result<(), CgroupError>;
    /// Read back a cgroup (`rel` relative to the controllers' roots).
    fn read(&self, rel: &str) -> Result<CgroupState, CgroupError>;
}

/// The backend this host has: v1 when the cpu and cpuset controllers are mounted as v1,
/// else v2 at `/sys/fs/cgroup`.
#[derive(Debug)]
pub enum Cgroups {
    /// Legacy/hybrid hierarchy.
    V1(v1::V1),
    /// Unified hierarchy.
    V2(v2::V2),
}

impl Cgroups {
    /// Detect from `proc_root/self/mountinfo`; `prefix` names Roost's tree (`roost`).
    pub fn detect(proc_root: &Path, prefix: &str) -> Result<Self, CgroupError> {
        match v1::V1::discover(proc_root, prefix) {
            Ok(v) => Ok(Self::V1(v)),
            Err(e1) => match v2::V2::discover(proc_root, prefix) {
                Some(v) => Ok(Self::V2(v)),
                None => Err(e1),
            },
        }
    }

    fn inner(&self) -> &dyn CgroupBackend {
        match self {
            Self::V1(v) => v,
            Self::V2(v) => v,
        }
    }
}

impl CgroupBackend for Cgroups {
    fn ensure_tree(&self, tree: &Tree) -> Result<(), CgroupError> {
        self.inner().ensure_tree(tree)
    }
    fn apply(&self, group: &WorkloadGroup) -> Result<String, CgroupError> {
        self.inner().apply(group)
    }
    fn set_shared_cpus(&self, cpus: &CpuSet, workloads: &[String]) -> Result<(), CgroupError> {
        self.inner().set_shared_cpus(cpus, workloads)
    }
    fn attach(&self, rel: &str, id: u32, thread: bool) -> Result<(), CgroupError> {
        self.inner().attach(rel, id, thread)
    }
    fn enter_self(&self, rel: &str) -> Result<bool, CgroupError> {
        self.inner().enter_self(rel)
    }
    fn remove(&self, class: Class, name: &str) -> Result<(), CgroupError> {
        self.inner().remove(class, name)
    }
    fn teardown(&self) -> Result<(), CgroupError> {
        self.inner().teardown()
    }
    fn read(&self, rel: &str) -> Result<CgroupState, CgroupError> {
        self.inner().read(rel)
    }
}

/// CFS shares for millicores (1024 per CPU, the kernel's minimum 2 for best effort).
pub fn shares_for(millicores: u32) -> u64 {
    (u64::from(millicores) * 1024 / 1000).max(2)
}

/// CFS period Roost uses, µs.
pub const CFS_PERIOD_US: u64 = 100_000;

/// Quota per [`CFS_PERIOD_US`] for millicores (`None` = unlimited, for best effort).
pub fn quota_for(millicores: u32) -> Option<u64> {
    (millicores > 0).then(|| (u64::from(millicores) * CFS_PERIOD_US / 1000).max(1000))
}

/// Write one cgroup file, naming it and the value on failure.
pub fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(|source| CgroupError::Io {
        op: "write",
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

pub(crate) fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Io {
        op: "read",
        path: path.to_path_buf(),
        value: String::new(),
        source,
    })
}

pub(crate) fn mkdir(path: &Path) -> Result<(), CgroupError> {
    mkdir_new(path).map(|_| ())
}

/// Like [`mkdir`]; says whether the directory is new (a new cgroup holds the
/// kernel's defaults, so writing them again can be skipped).
pub(crate) fn mkdir_new(path: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::Io {
            op: "mkdir",
            path: path.to_path_buf(),
            value: String::new(),
            source,
        }),
    }
}

/// Remove a cgroup directory and any sub-cgroups a runtime left in it (runc makes one
/// per container under the workload's), deepest first. On cgroupfs the control files
/// vanish with the directory; a task that just exited can keep it busy for a moment,
/// so EBUSY is retried briefly. On a plain directory (tests) files are removed too.
pub(crate) fn rmdir(path: &Path, tasks_file: &str) -> Result<(), CgroupError> {
    if !path.exists() {
        return Ok(());
    }
    let cgroupfs = is_cgroupfs(path);
    if cgroupfs {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir(&e.path(), tasks_file)?;
            }
        }
    }
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 200 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let tasks = std::fs::read_to_string(path.join(tasks_file))
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(",");
                return Err(CgroupError::Busy {
                    path: path.to_path_buf(),
                    tasks,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && !cgroupfs => {
                return std::fs::remove_dir_all(path).map_err(|source| CgroupError::Io {
                    op: "rmdir",
                    path: path.to_path_buf(),
                    value: String::new(),
                    source,
                });
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "rmdir",
                    path: path.to_path_buf(),
                    value: String::new(),
                    source,
                })
            }
        }
    }
}

/// Whether `path` is on a cgroup filesystem (v1 or v2).
pub(crate) fn is_cgroupfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs only writes into the zeroed struct we pass; `c` is a valid
    // NUL-terminated string that outlives the call.
    let (rc, st) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        let rc = libc::statfs(c.as_ptr(), &mut st);
        (rc, st)
    };
    const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    #[allow(clippy::unnecessary_cast)] // f_type is i64 on x86_64, not everywhere
    let ft = st.f_type as i64;
    rc == 0 && matches!(ft, CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC)
}

/// One line of `/proc/self/mountinfo`: (mount point, fstype, super options).
pub(crate) fn mounts(proc_root: &Path) -> Vec<(PathBuf, String, Vec<String>)> {
    let text = std::fs::read_to_string(proc_root.join("self/mountinfo")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?.to_string();
            let _source = r.next()?;
            let opts = r
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::to_string)
                .collect();
            Some((unescape_octal(mount_point), fstype, opts))
        })
        .collect()
}

/// Undo the kernel's octal escapes in a mountinfo path field (`\040` space, `\011`
/// tab, `\012` newline, `\134` backslash, and any other `\NNN` byte).
fn unescape_octal(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| {
            b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) && d[0] <= b'3'
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_quota() {
        assert_eq!(shares_for(1000), 1024);
        assert_eq!(shares_for(500), 512);
        assert_eq!(shares_for(0), 2);
        assert_eq!(quota_for(500), Some(50_000));
        assert_eq!(quota_for(0), None);
        assert_eq!(quota_for(1), Some(1000));
    }

    #[test]
    fn detect_prefers_v1_and_falls_back_to_a_usable_v2() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        let unified = dir.path().join("unified");
        std::fs::create_dir_all(proc.join("self")).unwrap();
        std::fs::create_dir_all(&unified).unwrap();
        std::fs::write(
            unified.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let v2_line = format!(
            "31 25 0:27 / {} rw - cgroup2 cgroup2 rw\n",
            unified.display()
        );
        std::fs::write(
            proc.join("self/mountinfo"),
            format!(
                "1 0 0:1 / /c/cpu rw - cgroup cgroup rw,cpu,cpuacct\n\
                 2 0 0:2 / /c/cpuset rw - cgroup cgroup rw,cpuset\n\
                 3 0 0:3 / /c/memory rw - cgroup cgroup rw,memory\n{v2_line}"
            ),
        )
        .unwrap();
        assert!(matches!(
            Cgroups::detect(&proc, "roost").unwrap(),
            Cgroups::V1(_)
        ));
        std::fs::write(proc.join("self/mountinfo"), &v2_line).unwrap();
        assert!(matches!(
            Cgroups::detect(&proc, "roost").unwrap(),
            Cgroups::V2(_)
        ));
        // A unified mount without the controllers (a hybrid host's) is not usable.
        std::fs::write(unified.join("cgroup.controllers"), "\n").unwrap();
        let e = Cgroups::detect(&proc, "roost").unwrap_err();
        assert!(e.to_string().contains("`cpu` is not mounted"), "{e}");
    }

    #[test]
    fn mountinfo_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("self")).unwrap();
        std::fs::write(
            dir.path().join("self/mountinfo"),
            "30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n\
             31 25 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        let m = mounts(dir.path());
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].0, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(m[0].1, "cgroup");
        assert!(m[0].2.contains(&"cpu".to_string()));
        assert_eq!(m[1].1, "cgroup2");
    }

    #[test]
    fn mountinfo_paths_lose_every_octal_escape() {
        for (field, path) in [
            ("/mnt/a\\040b", "/mnt/a b"),
            ("/mnt/tab\\011x", "/mnt/tab\tx"),
            ("/mnt/nl\\012x", "/mnt/nl\nx"),
            ("/mnt/back\\134slash", "/mnt/back\\slash"),
            ("/mnt/plain", "/mnt/plain"),
            ("/mnt/short\\04", "/mnt/short\\04"),
            ("/mnt/not\\999", "/mnt/not\\999"),
            ("/mnt/end\\", "/mnt/end\\"),
        ] {
            assert_eq!(unescape_octal(field), PathBuf::from(path), "{field}");
        }
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            unescape_octal("/mnt/\\303\\274").as_os_str().as_bytes(),
            "/mnt/ü".as_bytes()
        );
    }
}

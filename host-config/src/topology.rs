//! What the machine has: CPUs, SMT siblings, packages, NUMA nodes, memory, hugepages,
//! the kernel's isolation settings and real-time limits — read from sysfs and procfs
//! under an injectable root so tests run on fake trees of other machines.

use crate::cpuset::{CpuSet, CpuSetError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Discovery failed: a file the kernel always provides is missing or unreadable.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CPU or node list did not parse.
    #[error("{path} holds a malformed list")]
    List {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CpuSetError,
    },
    /// A number did not parse.
    #[error("{path}: `{value}` is not a number")]
    Number {
        /// The file.
        path: PathBuf,
        /// What it held.
        value: String,
    },
    /// The tree describes no online CPU.
    #[error("{path} lists no online CPU; is this a sysfs tree?")]
    NoCpus {
        /// The file.
        path: PathBuf,
    },
}

/// Where sysfs and procfs are mounted: `/sys` and `/proc` in production, a temp dir in
/// tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot {
    /// The sysfs mount.
    pub sys: PathBuf,
    /// The procfs mount.
    pub proc: PathBuf,
}

impl Default for SysRoot {
    fn default() -> Self {
        Self {
            sys: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
        }
    }
}

impl SysRoot {
    /// A tree under `dir`: `dir/sys` and `dir/proc`.
    pub fn under(dir: &Path) -> Self {
        Self {
            sys: dir.join("sys"),
            proc: dir.join("proc"),
        }
    }
}

/// One logical CPU (a hardware thread).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cpu {
    /// The kernel's CPU number.
    pub id: u32,
    /// The physical core, named by its lowest-numbered thread.
    pub core: u32,
    /// The package (socket).
    pub package: u32,
    /// The NUMA node.
    pub node: u32,
    /// Whether the CPU is online; offline CPUs are never placed on.
    pub online: bool,
}

/// One NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumaNode {
    /// Node number.
    pub id: u32,
    /// Its CPUs.
    pub cpus: CpuSet,
    /// Its memory in MiB.
    pub memory_mib: u64,
}

/// The machine as the kernel describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// Every present CPU, by id.
    pub cpus: Vec<Cpu>,
    /// NUMA nodes (one node 0 holding everything on kernels without NUMA).
    pub nodes: Vec<NumaNode>,
    /// `MemTotal`, MiB.
    pub memory_mib: u64,
    /// `isolcpus=` from the kernel command line (flags like `domain,` dropped).
    pub isolcpus: CpuSet,
    /// `nohz_full=` from the kernel command line.
    pub nohz_full: CpuSet,
    /// Configured hugepages: page size in KiB → pages the kernel holds now.
    pub hugepages: BTreeMap<u64, u64>,
    /// `sched_rt_period_us`.
    pub rt_period_us: u64,
    /// `sched_rt_runtime_us` (-1 = unlimited).
    pub rt_runtime_us: i64,
}

impl Topology {
    /// Read the machine under `root`.
    pub fn discover(root: &SysRoot) -> Result<Self, TopologyError> {
        let cpu_dir = root.sys.join("devices/system/cpu");
        let present = read_list(&cpu_dir.join("present"))?;
        let online_path = cpu_dir.join("online");
        let online = read_list(&online_path)?;
        if online.is_empty() {
            return Err(TopologyError::NoCpus { path: online_path });
        }

        // NUMA: absent on kernels built without it, so fall back to one node.
        let node_dir = root.sys.join("devices/system/node");
        let mut nodes = Vec::new();
        let node_online = node_dir.join("online");
        if node_online.exists() {
            for id in read_list(&node_online)?.iter() {
                let d = node_dir.join(format!("node{id}"));
                let cpus = read_list(&d.join("cpulist"))?;
                let memory_mib = node_memory_mib(&d.join("meminfo"))?;
                nodes.push(NumaNode {
                    id,
                    cpus,
                    memory_mib,
                });
            }
        }
        let memory_mib = meminfo_total_mib(&root.proc.join("meminfo"))?;
        if nodes.is_empty() {
            nodes.push(NumaNode {
                id: 0,
                cpus: present.clone(),
                memory_mib,
            });
        }

        let mut cpus = Vec::new();
        for id in present.iter() {
            let topo = cpu_dir.join(format!("cpu{id}/topology"));
            let is_online = online.contains(id);
            // Offline CPUs have no topology directory; they stand alone.
            let (core, package) = if is_online && topo.exists() {
                let siblings = read_list(&topo.join("thread_siblings_list"))?;
                let package = read_num(&topo.join("physical_package_id"))?;
                (siblings.first().unwrap_or(id), package as u32)
            } else {
                (id, 0)
            };
            let node = nodes
                .iter()
                .find(|n| n.cpus.contains(id))
                .map_or(0, |n| n.id);
            cpus.push(Cpu {
                id,
                core,
                package,
                node,
                online: is_online,
            });
        }

        let cmdline_path = root.proc.join("cmdline");
        let cmdline = read(&cmdline_path)?;
        let (isolcpus, nohz_full) = parse_cmdline(&cmdline, &cmdline_path)?;

        let mut hugepages = BTreeMap::new();
        let hp_dir = root.sys.join("kernel/mm/hugepages");
        if let Ok(entries) = std::fs::read_dir(&hp_dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(kib) = name
                    .strip_prefix("hugepages-")
                    .and_then(|s| s.strip_suffix("kB"))
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                let pages = read_num(&e.path().join("nr_hugepages"))?;
                hugepages.insert(kib, pages);
            }
        }

        let rt_dir = root.proc.join("sys/kernel");
        let rt_period_us = read_num(&rt_dir.join("sched_rt_period_us")).unwrap_or(1_000_000);
        let rt_runtime_us = read(&rt_dir.join("sched_rt_runtime_us"))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(950_000);

        let topo = Self {
            cpus,
            nodes,
            memory_mib,
            isolcpus,
            nohz_full,
            hugepages,
            rt_period_us,
            rt_runtime_us,
        };
        tracing::debug!(
            online = %topo.online(),
            cores = topo.core_count(),
            nodes = topo.nodes.len(),
            memory_mib = topo.memory_mib,
            "topology discovered"
        );
        Ok(topo)
    }

    /// This machine (`/sys`, `/proc`).
    pub fn this_host() -> Result<Self, TopologyError> {
        Self::discover(&SysRoot::default())
    }

    /// Online CPUs.
    pub fn online(&self) -> CpuSet {
        self.cpus
            .iter()
            .filter(|c| c.online)
            .map(|c| c.id)
            .collect()
    }

    /// The CPU numbered `id`, if present.
    pub fn cpu(&self, id: u32) -> Option<&Cpu> {
        self.cpus.iter().find(|c| c.id == id)
    }

    /// Online threads of the physical core that holds `id` (including `id`).
    pub fn siblings(&self, id: u32) -> CpuSet {
        let Some(core) = self.cpu(id).map(|c| c.core) else {
            return CpuSet::new();
        };
        self.cpus
            .iter()
            .filter(|c| c.core == core && c.online)
            .map(|c| c.id)
            .collect()
    }

    /// Online physical cores: core id → its threads.
    pub fn cores(&self) -> BTreeMap<u32, CpuSet> {
        let mut m: BTreeMap<u32, CpuSet> = BTreeMap::new();
        for c in self.cpus.iter().filter(|c| c.online) {
            m.entry(c.core).or_default().insert(c.id);
        }
        m
    }

    /// Number of online physical cores.
    pub fn core_count(&self) -> usize {
        self.cores().len()
    }

    /// Most threads any core has (1 = SMT off).
    pub fn threads_per_core(&self) -> usize {
        self.cores().values().map(CpuSet::len).max().unwrap_or(1)
    }

    /// Packages (sockets) present.
    pub fn packages(&self) -> usize {
        let mut p: Vec<u32> = self.cpus.iter().map(|c| c.package).collect();
        p.sort_unstable();
        p.dedup();
        p.len()
    }
}

fn read(path: &Path) -> Result<String, TopologyError> {
    std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_list(path: &Path) -> Result<CpuSet, TopologyError> {
    CpuSet::parse(&read(path)?).map_err(|source| TopologyError::List {
        path: path.to_path_buf(),
        source,
    })
}

fn read_num(path: &Path) -> Result<u64, TopologyError> {
    let s = read(path)?;
    s.trim().parse().map_err(|_| TopologyError::Number {
        path: path.to_path_buf(),
        value: s.trim().to_string(),
    })
}

/// `MemTotal:  24683920 kB` → MiB.
fn meminfo_total_mib(path: &Path) -> Result<u64, TopologyError> {
    let s = read(path)?;
    kib_field(&s, "MemTotal:")
        .map(|kb| kb / 1024)
        .ok_or_else(|| TopologyError::Number {
            path: path.to_path_buf(),
            value: "no MemTotal line".to_string(),
        })
}

/// `Node 0 MemTotal:  5597388 kB` → MiB.
fn node_memory_mib(path: &Path) -> Result<u64, TopologyError> {
    let s = read(path)?;
    s.lines()
        .find_map(|l| {
            let rest = l.split_once("MemTotal:")?.1;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(|kb| kb / 1024)
        .ok_or_else(|| TopologyError::Number {
            path: path.to_path_buf(),
            value: "no MemTotal line".to_string(),
        })
}

fn kib_field(s: &str, key: &str) -> Option<u64> {
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// `isolcpus=[flags,]LIST` and `nohz_full=LIST`. Flags (`nohz`, `domain`,
/// `managed_irq`) are words, so pieces that start with a letter are dropped.
fn parse_cmdline(cmdline: &str, path: &Path) -> Result<(CpuSet, CpuSet), TopologyError> {
    let mut iso = CpuSet::new();
    let mut nohz = CpuSet::new();
    // Everything after a bare `--` goes to init, not the kernel.
    for word in cmdline.split_whitespace().take_while(|w| *w != "--") {
        let list_err = |source| TopologyError::List {
            path: path.to_path_buf(),
            source,
        };
        if let Some(v) = word.strip_prefix("isolcpus=") {
            let cpus: Vec<&str> = v
                .split(',')
                .filter(|p| !p.starts_with(|c: char| c.is_ascii_alphabetic()))
                .collect();
            iso = CpuSet::parse(&cpus.join(",")).map_err(list_err)?;
        } else if let Some(v) = word.strip_prefix("nohz_full=") {
            nohz = CpuSet::parse(v).map_err(list_err)?;
        }
    }
    Ok((iso, nohz))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    fn discover(host: &FakeHost) -> (tempfile::TempDir, Topology) {
        let dir = tempfile::tempdir().unwrap();
        host.write(dir.path()).unwrap();
        let t = Topology::discover(&SysRoot::under(dir.path())).unwrap();
        (dir, t)
    }

    #[test]
    fn two_socket_64_thread_host() {
        let (_d, t) = discover(&FakeHost::two_socket_64());
        assert_eq!(t.online().len(), 64);
        assert_eq!(t.core_count(), 32);
        assert_eq!(t.threads_per_core(), 2);
        assert_eq!(t.packages(), 2);
        assert_eq!(t.nodes.len(), 2);
        // Linux x86 numbering: thread 2 of core n is CPU n + 32.
        assert_eq!(t.siblings(3).to_string(), "3,35");
        assert_eq!(t.siblings(35).to_string(), "3,35");
        assert_eq!(t.cpu(48).unwrap().node, 1);
        assert_eq!(t.cpu(48).unwrap().package, 1);
        assert_eq!(t.nodes[1].cpus.to_string(), "16-31,48-63");
        assert_eq!(t.isolcpus.to_string(), "2-7,34-39");
        assert_eq!(t.nohz_full.to_string(), "2-7,34-39");
        assert_eq!(t.hugepages.get(&2048), Some(&1024));
        assert_eq!(t.hugepages.get(&1_048_576), Some(&4));
        assert_eq!(t.memory_mib, 262_144);
    }

    #[test]
    fn four_core_edge_box_without_smt() {
        let (_d, t) = discover(&FakeHost::edge_4core());
        assert_eq!(t.online().to_string(), "0-3");
        assert_eq!(t.core_count(), 4);
        assert_eq!(t.threads_per_core(), 1);
        assert_eq!(t.siblings(2).to_string(), "2");
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.isolcpus.to_string(), "2-3");
    }

    #[test]
    fn two_core_vm_like_this_machine() {
        let (_d, t) = discover(&FakeHost::this_vm());
        assert_eq!(t.online().to_string(), "0-1");
        assert_eq!(t.core_count(), 2);
        assert!(t.isolcpus.is_empty());
        assert_eq!(t.rt_runtime_us, 950_000);
        assert_eq!(t.rt_period_us, 1_000_000);
    }

    #[test]
    fn offline_cpus_are_known_but_not_online() {
        let mut h = FakeHost::edge_4core();
        h.offline = CpuSet::parse("3").unwrap();
        let (_d, t) = discover(&h);
        assert_eq!(t.online().to_string(), "0-2");
        assert_eq!(t.cpus.len(), 4);
        assert!(!t.cpu(3).unwrap().online);
    }

    #[test]
    fn cmdline_flags_and_init_args() {
        let p = Path::new("cmdline");
        let (i, n) = parse_cmdline(
            "ro isolcpus=domain,managed_irq,1-3 nohz_full=2 -- isolcpus=9",
            p,
        )
        .unwrap();
        assert_eq!(i.to_string(), "1-3");
        assert_eq!(n.to_string(), "2");
        assert!(parse_cmdline("isolcpus=1-x", p).is_err());
    }

    #[test]
    fn missing_tree_says_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = Topology::discover(&SysRoot::under(dir.path())).unwrap_err();
        assert!(e.to_string().contains("devices/system/cpu/present"), "{e}");
    }

    #[test]
    fn this_machine_if_sysfs_is_there() {
        if !Path::new("/sys/devices/system/cpu/online").exists() {
            eprintln!("skipped: needs /sys/devices/system/cpu");
            return;
        }
        let t = Topology::this_host().unwrap();
        let n = std::thread::available_parallelism().unwrap().get();
        assert!(t.online().len() >= n, "online {} < usable {n}", t.online());
        assert!(t.memory_mib > 0);
    }
}

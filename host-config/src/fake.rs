//! Fake sysfs/procfs trees of other machines, so topology discovery, profile
//! validation and placement are tested on hosts this machine is not.
//!
//! CPUs are numbered the way Linux numbers them on x86: first thread of every core in
//! package order, then the second threads (`cpu n` and `cpu n + cores` are siblings).

use crate::cpuset::CpuSet;
use std::io;
use std::path::Path;

/// A machine to fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeHost {
    /// Sockets; each is one NUMA node.
    pub packages: u32,
    /// Physical cores per socket.
    pub cores_per_package: u32,
    /// Threads per core (1 = SMT off).
    pub threads_per_core: u32,
    /// Total memory, MiB (split evenly over nodes).
    pub memory_mib: u64,
    /// The kernel command line.
    pub cmdline: String,
    /// CPUs present but offline.
    pub offline: CpuSet,
    /// Hugepages: page size in KiB → pages held.
    pub hugepages: Vec<(u64, u64)>,
    /// Whether to write `devices/system/node` (kernels without NUMA lack it).
    pub numa_dir: bool,
}

impl FakeHost {
    /// A 2-socket, 32-core, 64-thread server with 256 GiB, cores 2–7 isolated.
    pub fn two_socket_64() -> Self {
        Self {
            packages: 2,
            cores_per_package: 16,
            threads_per_core: 2,
            memory_mib: 262_144,
            cmdline: "BOOT_IMAGE=/vmlinuz ro isolcpus=managed_irq,domain,2-7,34-39 \
                      nohz_full=2-7,34-39 rcu_nocbs=2-7,34-39"
                .to_string(),
            offline: CpuSet::new(),
            hugepages: vec![(2048, 1024), (1_048_576, 4)],
            numa_dir: true,
        }
    }

    /// A 4-core edge box with SMT off and 8 GiB, cores 2–3 isolated.
    pub fn edge_4core() -> Self {
        Self {
            packages: 1,
            cores_per_package: 4,
            threads_per_core: 1,
            memory_mib: 8192,
            cmdline: "ro quiet isolcpus=2-3 nohz_full=2-3".to_string(),
            offline: CpuSet::new(),
            hugepages: vec![(2048, 0)],
            numa_dir: true,
        }
    }

    /// A 2-core VM like Roost's development machine: no isolation on the cmdline.
    pub fn this_vm() -> Self {
        Self {
            packages: 1,
            cores_per_package: 2,
            threads_per_core: 1,
            memory_mib: 24_105,
            cmdline: "console=ttyS0 quiet reboot=k panic=1 -- --init-arg".to_string(),
            offline: CpuSet::new(),
            hugepages: vec![(2048, 0), (1_048_576, 0)],
            numa_dir: false,
        }
    }

    /// A small host for property tests.
    pub fn small(packages: u32, cores_per_package: u32, threads_per_core: u32) -> Self {
        Self {
            packages,
            cores_per_package,
            threads_per_core,
            memory_mib: 4096,
            cmdline: String::new(),
            offline: CpuSet::new(),
            hugepages: Vec::new(),
            numa_dir: true,
        }
    }

    /// Total logical CPUs.
    pub fn cpu_count(&self) -> u32 {
        self.packages * self.cores_per_package * self.threads_per_core
    }

    /// (core, package) of CPU `id`; the core is named by its first thread.
    pub fn locate(&self, id: u32) -> (u32, u32) {
        let cores = self.packages * self.cores_per_package;
        let core = id % cores.max(1);
        (core, core / self.cores_per_package.max(1))
    }

    /// Write `dir/sys/...` and `dir/proc/...`.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let sys = dir.join("sys");
        let proc = dir.join("proc");
        let cpu_dir = sys.join("devices/system/cpu");
        std::fs::create_dir_all(&cpu_dir)?;
        let n = self.cpu_count();
        let all: CpuSet = (0..n).collect();
        let online = all.difference(&self.offline);
        let cores = self.packages * self.cores_per_package;
        put(&cpu_dir.join("present"), &all.to_string())?;
        put(&cpu_dir.join("possible"), &all.to_string())?;
        put(&cpu_dir.join("online"), &online.to_string())?;
        for id in 0..n {
            let d = cpu_dir.join(format!("cpu{id}"));
            std::fs::create_dir_all(&d)?;
            if !online.contains(id) {
                continue;
            }
            let t = d.join("topology");
            std::fs::create_dir_all(&t)?;
            let (core, package) = self.locate(id);
            let siblings: CpuSet = (0..self.threads_per_core)
                .map(|k| core + k * cores)
                .filter(|c| online.contains(*c))
                .collect();
            put(&t.join("thread_siblings_list"), &siblings.to_string())?;
            put(
                &t.join("core_id"),
                &(core % self.cores_per_package).to_string(),
            )?;
            put(&t.join("physical_package_id"), &package.to_string())?;
        }
        if self.numa_dir {
            let node_dir = sys.join("devices/system/node");
            std::fs::create_dir_all(&node_dir)?;
            let nodes: CpuSet = (0..self.packages).collect();
            put(&node_dir.join("online"), &nodes.to_string())?;
            let per_node_kib = self.memory_mib * 1024 / u64::from(self.packages.max(1));
            for p in 0..self.packages {
                let d = node_dir.join(format!("node{p}"));
                std::fs::create_dir_all(&d)?;
                let cpus: CpuSet = (0..n).filter(|id| self.locate(*id).1 == p).collect();
                put(&d.join("cpulist"), &cpus.to_string())?;
                put(
                    &d.join("meminfo"),
                    &format!(
                        "Node {p} MemTotal:       {per_node_kib} kB\nNode {p} MemFree:        {per_node_kib} kB\n"
                    ),
                )?;
            }
        }
        for (kib, pages) in &self.hugepages {
            let d = sys.join(format!("kernel/mm/hugepages/hugepages-{kib}kB"));
            std::fs::create_dir_all(&d)?;
            put(&d.join("nr_hugepages"), &pages.to_string())?;
        }
        std::fs::create_dir_all(proc.join("sys/kernel"))?;
        put(
            &proc.join("meminfo"),
            &format!(
                "MemTotal:       {} kB\nMemFree:        {} kB\n",
                self.memory_mib * 1024,
                self.memory_mib * 1024
            ),
        )?;
        put(&proc.join("cmdline"), &self.cmdline)?;
        put(&proc.join("sys/kernel/sched_rt_period_us"), "1000000")?;
        put(&proc.join("sys/kernel/sched_rt_runtime_us"), "950000")?;
        Ok(())
    }

    /// The topology this host describes, without going through files (for property
    /// tests that build thousands of hosts).
    pub fn topology(&self) -> crate::topology::Topology {
        use crate::topology::{Cpu, NumaNode, Topology};
        let n = self.cpu_count();
        let cores = self.packages * self.cores_per_package;
        let cpus: Vec<Cpu> = (0..n)
            .map(|id| {
                let (core, package) = self.locate(id);
                // A core is named by its lowest online thread, as sysfs would list it.
                let first = (0..self.threads_per_core)
                    .map(|k| core + k * cores)
                    .find(|c| !self.offline.contains(*c))
                    .unwrap_or(id);
                let online = !self.offline.contains(id);
                Cpu {
                    id,
                    core: if online { first } else { id },
                    package: if online { package } else { 0 },
                    node: package,
                    online,
                }
            })
            .collect();
        let nodes = (0..self.packages.max(1))
            .map(|p| NumaNode {
                id: p,
                cpus: cpus.iter().filter(|c| c.node == p).map(|c| c.id).collect(),
                memory_mib: self.memory_mib / u64::from(self.packages.max(1)),
            })
            .collect();
        Topology {
            cpus,
            nodes,
            memory_mib: self.memory_mib,
            isolcpus: CpuSet::new(),
            nohz_full: CpuSet::new(),
            hugepages: self.hugepages.iter().copied().collect(),
            rt_period_us: 1_000_000,
            rt_runtime_us: 950_000,
        }
    }
}

fn put(path: &Path, text: &str) -> io::Result<()> {
    std::fs::write(path, format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{SysRoot, Topology};

    #[test]
    fn in_memory_topology_matches_the_written_tree() {
        for mut h in [
            FakeHost::edge_4core(),
            FakeHost::small(2, 2, 2),
            FakeHost::two_socket_64(),
        ] {
            h.cmdline.clear();
            let dir = tempfile::tempdir().unwrap();
            h.write(dir.path()).unwrap();
            let read = Topology::discover(&SysRoot::under(dir.path())).unwrap();
            let built = h.topology();
            assert_eq!(read.cpus, built.cpus, "{h:?}");
            assert_eq!(read.nodes, built.nodes, "{h:?}");
        }
    }
}

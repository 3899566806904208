//! What a workload asks for, what it is granted, and why it may be refused.

use roost_host_config::CpuSet;
use serde::{Deserialize, Serialize};

/// SCHED_FIFO or SCHED_RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtPolicy {
    /// SCHED_FIFO: runs until it blocks or a higher priority wakes.
    Fifo,
    /// SCHED_RR: FIFO with a time slice among equal priorities.
    Rr,
}

/// How a workload wants CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "class")]
pub enum CpuRequest {
    /// Millicores of the shared pool (CFS shares and quota); 0 = best effort.
    Shared {
        /// Thousandths of a CPU.
        millicores: u32,
    },
    /// Whole CPUs, exclusively, taken out of the shared pool.
    Dedicated {
        /// How many CPUs.
        cpus: u32,
    },
    /// Whole isolated CPUs, exclusively, with a real-time policy and budget.
    Realtime {
        /// How many CPUs.
        cpus: u32,
        /// FIFO or RR.
        policy: RtPolicy,
        /// 1–99.
        priority: u32,
        /// `cpu.rt_runtime_us`; `None` = the host's default per workload.
        budget_us: Option<u64>,
    },
}

/// A placement request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// CPU.
    pub cpu: CpuRequest,
    /// Memory limit in MiB (0 = none, and nothing is reserved).
    pub memory_mib: u64,
}

/// Which part of Roost's cgroup tree a workload lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// `roost/shared/<w>`.
    Shared,
    /// `roost/dedicated/<w>`.
    Dedicated,
    /// `roost/rt/<w>`.
    Rt,
}

impl Class {
    /// The directory under Roost's cgroup root.
    pub fn dir(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Dedicated => "dedicated",
            Self::Rt => "rt",
        }
    }
}

/// Real-time terms granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtGrant {
    /// FIFO or RR.
    pub policy: RtPolicy,
    /// 1–99.
    pub priority: u32,
    /// `cpu.rt_runtime_us`.
    pub budget_us: u64,
    /// `cpu.rt_period_us`.
    pub period_us: u64,
}

/// What the scheduler granted one workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// Shared, dedicated or real-time.
    pub class: Class,
    /// Exclusive CPUs (dedicated, real-time); empty for shared workloads, which follow
    /// the shared pool as dedicated workloads come and go.
    pub cpus: CpuSet,
    /// NUMA nodes of those CPUs (memory is bound to them); empty = no restriction.
    pub mems: CpuSet,
    /// Shared-pool millicores (0 for exclusive classes and best effort).
    pub millicores: u32,
    /// Memory limit, MiB (0 = none).
    pub memory_mib: u64,
    /// Real-time terms.
    pub rt: Option<RtGrant>,
}

impl Allocation {
    /// The memory this allocation holds on each NUMA node: dedicated and real-time
    /// memory is bound to `mems` and split evenly over them (the remainder on the
    /// first); shared memory (and exclusive memory without `mems`) is bound to no node.
    pub fn node_memory(&self) -> Vec<(u32, u64)> {
        match self.class {
            Class::Shared => Vec::new(),
            Class::Dedicated | Class::Rt => split_memory(self.memory_mib, &self.mems),
        }
    }
}

/// `memory_mib` split evenly over `nodes`, the remainder on the first (lowest).
pub fn split_memory(memory_mib: u64, nodes: &CpuSet) -> Vec<(u32, u64)> {
    let n = nodes.len() as u64;
    if n == 0 {
        return Vec::new();
    }
    let (each, rest) = (memory_mib / n, memory_mib % n);
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node, if i == 0 { each + rest } else { each }))
        .collect()
}

/// What one NUMA node has free, for refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFree {
    /// Node number.
    pub node: u32,
    /// Free CPUs of the pool on it (in whole free cores under `cpu.full_physical_cores`).
    pub cpus: u32,
    /// Free node-bound memory, MiB.
    pub memory_mib: u64,
}

/// Why a request cannot be placed: exactly what is short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// Not enough free CPUs in a pool.
    #[error("{}", cores_message(pool, *need, *free, *whole, *pool_size))]
    Cores {
        /// `isolated` or `shared`.
        pool: &'static str,
        /// CPUs asked for.
        need: u32,
        /// CPUs free (in whole free cores when `whole`).
        free: u32,
        /// Whole physical cores are required (`cpu.full_physical_cores`).
        whole: bool,
        /// CPUs in the pool in all.
        pool_size: u32,
    },
    /// Dedicating cores would take CPU that shared workloads already hold.
    #[error(
        "needs {need} dedicated {}, but that would leave the shared pool {left} millicores \
         while shared workloads hold {held}; {} free",
        plural(*need, "core"),
        plural(*free, "core")
    )]
    SharedSqueeze {
        /// CPUs asked for.
        need: u32,
        /// Shared millicores that would remain.
        left: u64,
        /// Shared millicores held.
        held: u64,
        /// CPUs that could be dedicated without squeezing.
        free: u32,
    },
    /// Not enough shared millicores.
    #[error("needs {need} millicores of shared CPU, {free} free")]
    Millicores {
        /// Asked for.
        need: u64,
        /// Free.
        free: u64,
    },
    /// Not enough memory.
    #[error("needs {need} MiB of memory, {free} MiB free")]
    Memory {
        /// Asked for.
        need: u64,
        /// Free.
        free: u64,
    },
    /// No NUMA node (nor any even split over several) holds both the CPUs and the
    /// memory of a dedicated or real-time workload.
    #[error(
        "needs {} and {need_mib} MiB on one NUMA node; {}",
        plural(*need, &format!("{kind} core")),
        nodes_message(nodes)
    )]
    NodeMemory {
        /// `dedicated` or `isolated`.
        kind: &'static str,
        /// CPUs asked for.
        need: u32,
        /// Memory asked for, MiB.
        need_mib: u64,
        /// What each node of the pool has free.
        nodes: Vec<NodeFree>,
    },
    /// Not enough real-time budget.
    #[error("needs a real-time budget of {need} µs per {period} µs, {free} µs free")]
    RtBudget {
        /// Asked for.
        need: u64,
        /// Free.
        free: u64,
        /// Period.
        period: u64,
    },
    /// The host holds as many workloads as its profile allows.
    #[error("the host already holds {max} workloads, its limit (limits.max_workloads)")]
    Limit {
        /// The limit.
        max: u32,
    },
    /// The request itself is malformed.
    #[error("{field}: {message}")]
    Invalid {
        /// Field path.
        field: &'static str,
        /// What is wrong and the fix.
        message: String,
    },
    /// A restored allocation does not fit what is held or what the host has.
    #[error("cannot restore {name}: {message}")]
    Conflict {
        /// Workload.
        name: String,
        /// Why.
        message: String,
    },
}

fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn nodes_message(nodes: &[NodeFree]) -> String {
    let parts: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "node {}: {} and {} MiB free",
                n.node,
                plural(n.cpus, "core"),
                n.memory_mib
            )
        })
        .collect();
    parts.join(", ")
}

fn cores_message(pool: &str, need: u32, free: u32, whole: bool, pool_size: u32) -> String {
    let unit = if need == 1 { "core" } else { "cores" };
    let mut s = format!("needs {need} {pool} {unit}, {free} free");
    if whole {
        s.push_str(" in whole physical cores (cpu.full_physical_cores)");
    }
    if pool_size == 0 {
        s.push_str(&format!(
            "; this host's profile puts no CPU in the {pool} pool (set cpu.{pool})"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_is_short() {
        let e = PlaceError::Cores {
            pool: "isolated",
            need: 2,
            free: 1,
            whole: false,
            pool_size: 2,
        };
        assert_eq!(e.to_string(), "needs 2 isolated cores, 1 free");
        let e = PlaceError::Cores {
            pool: "isolated",
            need: 1,
            free: 0,
            whole: false,
            pool_size: 0,
        };
        assert!(
            e.to_string().starts_with("needs 1 isolated core, 0 free; "),
            "{e}"
        );
        let e = PlaceError::Memory {
            need: 2048,
            free: 1024,
        };
        assert_eq!(e.to_string(), "needs 2048 MiB of memory, 1024 MiB free");
        let e = PlaceError::NodeMemory {
            kind: "dedicated",
            need: 2,
            need_mib: 4096,
            nodes: vec![
                NodeFree {
                    node: 0,
                    cpus: 3,
                    memory_mib: 1024,
                },
                NodeFree {
                    node: 1,
                    cpus: 1,
                    memory_mib: 8192,
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "needs 2 dedicated cores and 4096 MiB on one NUMA node; \
             node 0: 3 cores and 1024 MiB free, node 1: 1 core and 8192 MiB free"
        );
    }

    #[test]
    fn exclusive_memory_is_split_evenly_over_its_nodes() {
        let nodes = CpuSet::parse("1,3-4").unwrap();
        assert_eq!(split_memory(1001, &nodes), [(1, 335), (3, 333), (4, 333)]);
        assert!(split_memory(10, &CpuSet::new()).is_empty());
        let a = Allocation {
            class: Class::Shared,
            cpus: CpuSet::new(),
            mems: CpuSet::new(),
            millicores: 100,
            memory_mib: 64,
            rt: None,
        };
        assert!(a.node_memory().is_empty());
        let a = Allocation {
            class: Class::Dedicated,
            cpus: CpuSet::parse("2").unwrap(),
            mems: CpuSet::parse("1").unwrap(),
            millicores: 0,
            memory_mib: 64,
            rt: None,
        };
        assert_eq!(a.node_memory(), [(1, 64)]);
    }
}

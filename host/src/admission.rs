//! Admission: may this workload run here, and on what? The scheduler crate implements
//! the real thing; [`CapacityCheck`] is the simple stand-in the daemon starts with.

use crate::driver::Placement;
use crate::spec::{CpuPolicy, WorkloadSpec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A refusal: what is short, said exactly ("needs 2 isolated cores, 1 free").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    /// What is short.
    pub reason: String,
}

/// What the host has and what is handed out, for `GET /v1/host`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostCapacity {
    /// Online CPUs.
    pub cpus: u32,
    /// Millicores workloads may share.
    pub shared_millicores: u64,
    /// Millicores handed out.
    pub allocated_millicores: u64,
    /// Memory workloads may use, MiB.
    pub memory_mib: u64,
    /// Memory handed out, MiB.
    pub allocated_memory_mib: u64,
    /// Per-workload placements.
    pub allocations: BTreeMap<String, Placement>,
    /// Topology and partition as the admission backend describes them.
    pub topology: serde_json::Value,
}

/// Host-side setup of an admitted workload (its cgroup), run off the admission lock;
/// the error says what failed and is reported as the refusal.
pub type Setup = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// The interface the scheduler implements. Calls are serialised by the daemon.
pub trait Admission: Send + 'static {
    /// Reserve resources for `name`, or say what is short. Admitting a name that
    /// already holds an allocation returns that allocation unchanged.
    fn admit(&mut self, name: &str, spec: &WorkloadSpec) -> Result<Placement, Refusal>;
    /// Like [`Admission::admit`], but may hand back part of the host-side setup to
    /// run outside the lock (the daemon runs it while the accept commits). If it
    /// fails, the caller releases `name`.
    fn admit_deferred(
        &mut self,
        name: &str,
        spec: &WorkloadSpec,
    ) -> Result<(Placement, Option<Setup>), Refusal> {
        self.admit(name, spec).map(|p| (p, None))
    }
    /// Free what `name` holds (no-op if nothing).
    fn release(&mut self, name: &str);
    /// Whether `name` holds an allocation.
    fn holds(&self, name: &str) -> bool;
    /// After a restart: take back allocations read from the store, as they were.
    fn restore(&mut self, name: &str, placement: &Placement) -> Result<(), Refusal>;
    /// Capacity and allocations now.
    fn capacity(&self) -> HostCapacity;
}

/// The stand-in admission: counts millicores and MiB against the host's totals and
/// pins nothing.
#[derive(Debug)]
pub struct CapacityCheck {
    cpus: u32,
    millicores: u64,
    memory_mib: u64,
    held: BTreeMap<String, Placement>,
}

impl CapacityCheck {
    /// A host with `cpus` CPUs and `memory_mib` MiB for workloads.
    pub fn new(cpus: u32, memory_mib: u64) -> Self {
        Self {
            cpus,
            millicores: u64::from(cpus) * 1000,
            memory_mib,
            held: BTreeMap::new(),
        }
    }

    /// This machine's online CPUs and total memory.
    pub fn for_this_host() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(1024);
        Self::new(cpus, mem)
    }

    fn used(&self) -> (u64, u64) {
        self.held.values().fold((0, 0), |(c, m), p| {
            (
                c + u64::from(p.millicores.unwrap_or(0)),
                m + p.memory_mib.unwrap_or(0),
            )
        })
    }
}

/// Millicores a spec asks for: `cpu` ("500m", "2", "0.5") or `cores`.
pub fn requested_millicores(spec: &WorkloadSpec) -> u64 {
    let r = &spec.resources;
    if r.cpu_policy == CpuPolicy::Dedicated || r.realtime.is_some() {
        return u64::from(r.cores.unwrap_or(1)) * 1000;
    }
    r.cpu.as_deref().and_then(parse_millicores).unwrap_or(0)
}

/// Parse `"500m"`, `"2"` or `"0.25"` to millicores.
pub fn parse_millicores(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<u64>().ok().filter(|v| *v > 0);
    }
    let v: f64 = s.parse().ok()?;
    if !(v.is_finite() && v > 0.0 && v <= 4096.0) {
        return None;
    }
    let m = (v * 1000.0).round() as u64;
    (m > 0).then_some(m)
}

impl Admission for CapacityCheck {
    fn admit(&mut self, name: &str, spec: &WorkloadSpec) -> Result<Placement, Refusal> {
        if let Some(p) = self.held.get(name) {
            return Ok(p.clone());
        }
        let want_mc = requested_millicores(spec);
        let want_mem = spec
            .resources
            .memory_mib
            .or(spec.vm.as_ref().map(|v| v.memory_mib))
            .unwrap_or(0);
        let (used_mc, used_mem) = self.used();
        if used_mc + want_mc > self.millicores {
            return Err(Refusal {
                reason: format!(
                    "needs {want_mc} millicores of CPU, {} free",
                    self.millicores.saturating_sub(used_mc)
                ),
            });
        }
        if used_mem + want_mem > self.memory_mib {
            return Err(Refusal {
                reason: format!(
                    "needs {want_mem} MiB of memory, {} MiB free",
                    self.memory_mib.saturating_sub(used_mem)
                ),
            });
        }
        let p = Placement {
            millicores: u32::try_from(want_mc).ok().filter(|m| *m > 0),
            memory_mib: (want_mem > 0).then_some(want_mem),
            realtime: spec.resources.realtime,
            ..Placement::default()
        };
        self.held.insert(name.to_string(), p.clone());
        Ok(p)
    }

    fn release(&mut self, name: &str) {
        self.held.remove(name);
    }

    fn holds(&self, name: &str) -> bool {
        self.held.contains_key(name)
    }

    fn restore(&mut self, name: &str, placement: &Placement) -> Result<(), Refusal> {
        self.held.insert(name.to_string(), placement.clone());
        Ok(())
    }

    fn capacity(&self) -> HostCapacity {
        let (mc, mem) = self.used();
        HostCapacity {
            cpus: self.cpus,
            shared_millicores: self.millicores,
            allocated_millicores: mc,
            memory_mib: self.memory_mib,
            allocated_memory_mib: mem,
            allocations: self.held.clone(),
            topology: serde_json::json!({"backend": "capacity-check", "cpus": self.cpus}),
        }
    }
}

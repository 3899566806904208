//! Admission and placement: pure bookkeeping over a [`HostPlan`], no I/O.
//!
//! Pools: shared workloads take millicores of the shared pool; dedicated workloads
//! take whole CPUs out of it (the shared pool shrinks, so they never overcommit what
//! shared workloads hold); real-time workloads take isolated CPUs and a slice of
//! Roost's real-time budget. Memory is counted host-wide against what the profile
//! leaves for workloads; dedicated and real-time memory is also bound to the NUMA nodes
//! of its CPUs (split evenly over them) and counted against each node's share.

use crate::pick::{pick, pick_on_nodes, whole_core_cpus};
use crate::request::{
    split_memory, Allocation, Class, CpuRequest, NodeFree, PlaceError, Request, RtGrant,
};
use roost_host_config::{CpuSet, HostPlan};
use serde::Serialize;
use std::collections::BTreeMap;

/// Totals now, for `GET /v1/host` and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// CPUs shared workloads run on now (the shared pool minus dedicated CPUs).
    pub shared_cpus: CpuSet,
    /// Millicores of those.
    pub shared_capacity_millicores: u64,
    /// Millicores held by shared workloads.
    pub shared_held_millicores: u64,
    /// CPUs held by dedicated workloads.
    pub dedicated_cpus: CpuSet,
    /// Isolated CPUs held by real-time workloads.
    pub rt_cpus: CpuSet,
    /// Real-time budget held, µs per period.
    pub rt_budget_held_us: u64,
    /// Memory held, MiB.
    pub memory_held_mib: u64,
    /// Node-bound (dedicated and real-time) memory held on each NUMA node, MiB.
    pub node_memory_held_mib: BTreeMap<u32, u64>,
    /// Shared workloads (including best effort).
    pub shared_workloads: usize,
}

/// The scheduler: a host plan and what is handed out.
#[derive(Debug, Clone)]
pub struct Scheduler {
    plan: HostPlan,
    /// Each node's share of the allocatable memory.
    node_allocatable: BTreeMap<u32, u64>,
    held: BTreeMap<String, Allocation>,
    /// The sums over `held`, kept as it changes (a host holds thousands; summing
    /// them for every admit showed in the daemon's profile). `shared_cpus` and
    /// `shared_capacity_millicores` are filled in by [`Scheduler::usage`].
    totals: Usage,
}

/// Workload names become cgroup directory names.
fn check_name(name: &str) -> Result<(), PlaceError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PlaceError::Invalid {
            field: "metadata.name",
            message: format!(
                "`{name}` cannot name a cgroup; use letters, digits, `-`, `_` and `.` \
                 (not first), at most 253"
            ),
        })
    }
}

impl Scheduler {
    /// Nothing handed out yet.
    pub fn new(plan: HostPlan) -> Self {
        Self {
            node_allocatable: plan.node_memory_allocatable_mib(),
            plan,
            held: BTreeMap::new(),
            totals: Usage::default(),
        }
    }

    /// Add (`add`) or take away an allocation from the running totals. Dedicated
    /// and real-time CPUs are never shared, so a release can take its CPUs out.
    fn account(&mut self, a: &Allocation, add: bool) {
        let t = &mut self.totals;
        let op = |v: &mut u64, by: u64| {
            *v = if add {
                v.saturating_add(by)
            } else {
                v.saturating_sub(by)
            }
        };
        match a.class {
            Class::Shared => {
                op(&mut t.shared_held_millicores, u64::from(a.millicores));
                t.shared_workloads = if add {
                    t.shared_workloads + 1
                } else {
                    t.shared_workloads.saturating_sub(1)
                };
            }
            Class::Dedicated if add => t.dedicated_cpus.extend(a.cpus.iter()),
            Class::Dedicated => t.dedicated_cpus = t.dedicated_cpus.difference(&a.cpus),
            Class::Rt if add => t.rt_cpus.extend(a.cpus.iter()),
            Class::Rt => t.rt_cpus = t.rt_cpus.difference(&a.cpus),
        }
        op(&mut t.rt_budget_held_us, a.rt.map_or(0, |r| r.budget_us));
        op(&mut t.memory_held_mib, a.memory_mib);
        for (node, mib) in a.node_memory() {
            let e = t.node_memory_held_mib.entry(node).or_default();
            op(e, mib);
            if *e == 0 {
                t.node_memory_held_mib.remove(&node);
            }
        }
    }

    /// Each NUMA node's share of the memory workloads may be given, MiB.
    pub fn node_allocatable_mib(&self) -> &BTreeMap<u32, u64> {
        &self.node_allocatable
    }

    /// Node-bound memory still free on each node, MiB.
    fn node_free(&self, u: &Usage) -> BTreeMap<u32, u64> {
        self.node_allocatable
            .iter()
            .map(|(node, have)| {
                let held = u.node_memory_held_mib.get(node).copied().unwrap_or(0);
                (*node, have.saturating_sub(held))
            })
            .collect()
    }

    /// The host plan.
    pub fn plan(&self) -> &HostPlan {
        &self.plan
    }

    /// What `name` holds.
    pub fn get(&self, name: &str) -> Option<&Allocation> {
        self.held.get(name)
    }

    /// Everything handed out.
    pub fn allocations(&self) -> &BTreeMap<String, Allocation> {
        &self.held
    }

    /// Totals now.
    pub fn usage(&self) -> Usage {
        self.with_pool(self.totals.clone())
    }

    /// Fill in what follows from the pool: the shared CPUs left and their millicores.
    fn with_pool(&self, mut u: Usage) -> Usage {
        u.shared_cpus = self.plan.shared_pool().difference(&u.dedicated_cpus);
        u.shared_capacity_millicores = u.shared_cpus.len() as u64 * 1000;
        u
    }

    /// [`Scheduler::usage`] summed afresh over every allocation (tests check that
    /// the running totals agree with it).
    #[cfg(test)]
    pub(crate) fn usage_summed(&self) -> Usage {
        let mut u = Usage::default();
        for a in self.held.values() {
            match a.class {
                Class::Shared => {
                    u.shared_held_millicores += u64::from(a.millicores);
                    u.shared_workloads += 1;
                }
                Class::Dedicated => u.dedicated_cpus.extend(a.cpus.iter()),
                Class::Rt => u.rt_cpus.extend(a.cpus.iter()),
            }
            u.rt_budget_held_us += a.rt.map_or(0, |r| r.budget_us);
            u.memory_held_mib += a.memory_mib;
            for (node, mib) in a.node_memory() {
                *u.node_memory_held_mib.entry(node).or_default() += mib;
            }
        }
        u.node_memory_held_mib.retain(|_, mib| *mib > 0);
        self.with_pool(u)
    }

    /// CPUs shared workloads run on now.
    pub fn shared_cpus(&self) -> CpuSet {
        self.usage().shared_cpus
    }

    /// Reserve resources for `name`. A name that already holds an allocation gets it
    /// back unchanged.
    pub fn admit(&mut self, name: &str, req: &Request) -> Result<Allocation, PlaceError> {
        if let Some(a) = self.held.get(name) {
            return Ok(a.clone());
        }
        check_name(name)?;
        let a = self.place(req)?;
        tracing::info!(
            workload = %name,
            class = ?a.class,
            cpus = %a.cpus,
            millicores = a.millicores,
            memory_mib = a.memory_mib,
            "admitted"
        );
        self.account(&a, true);
        self.held.insert(name.to_string(), a.clone());
        Ok(a)
    }

    /// Free what `name` holds.
    pub fn release(&mut self, name: &str) -> Option<Allocation> {
        let a = self.held.remove(name);
        if let Some(a) = &a {
            self.account(a, false);
            tracing::info!(workload = %name, "released");
        }
        a
    }

    /// After a restart: take back an allocation as it was, if it still fits.
    pub fn restore(&mut self, name: &str, a: &Allocation) -> Result<(), PlaceError> {
        if let Some(have) = self.held.get(name) {
            if have == a {
                return Ok(());
            }
            return Err(PlaceError::Conflict {
                name: name.to_string(),
                message: "it already holds a different allocation".to_string(),
            });
        }
        check_name(name)?;
        let conflict = |message: String| PlaceError::Conflict {
            name: name.to_string(),
            message,
        };
        let u = self.usage();
        if self.held.len() >= self.plan.max_workloads as usize {
            return Err(conflict(format!(
                "the host already holds its limit of {} workloads",
                self.plan.max_workloads
            )));
        }
        let taken = u.dedicated_cpus.union(&u.rt_cpus);
        let clash = a.cpus.intersection(&taken);
        if !clash.is_empty() {
            return Err(conflict(format!("CPU {clash} is held by another workload")));
        }
        match a.class {
            Class::Shared => {
                if !a.cpus.is_empty() {
                    return Err(conflict(
                        "a shared workload holds no CPUs of its own".into(),
                    ));
                }
                let need = u64::from(a.millicores);
                let free = u
                    .shared_capacity_millicores
                    .saturating_sub(u.shared_held_millicores);
                if need > free || u.shared_cpus.is_empty() {
                    return Err(conflict(format!(
                        "needs {need} shared millicores, {free} free"
                    )));
                }
            }
            Class::Dedicated => {
                if a.cpus.is_empty() || !a.cpus.is_subset(&self.plan.shared) {
                    return Err(conflict(format!(
                        "dedicated CPUs {} are not all in the shared pool {}",
                        a.cpus, self.plan.shared
                    )));
                }
                let left = (u.shared_cpus.len() - a.cpus.len()) as u64 * 1000;
                if left < shared_floor(&u) {
                    return Err(conflict(format!(
                        "dedicating CPU {} leaves {left} shared millicores for {} held",
                        a.cpus, u.shared_held_millicores
                    )));
                }
            }
            Class::Rt => {
                if a.cpus.is_empty() || !a.cpus.is_subset(&self.plan.isolated) {
                    return Err(conflict(format!(
                        "real-time CPUs {} are not all in the isolated pool {}",
                        a.cpus, self.plan.isolated
                    )));
                }
                let budget = a.rt.map_or(0, |r| r.budget_us);
                let free = self.plan.rt_budget_us.saturating_sub(u.rt_budget_held_us);
                if budget > free {
                    return Err(conflict(format!(
                        "needs {budget} µs of real-time budget, {free} free"
                    )));
                }
            }
        }
        let free_mem = self
            .plan
            .memory_allocatable_mib
            .saturating_sub(u.memory_held_mib);
        if a.memory_mib > free_mem {
            return Err(conflict(format!(
                "needs {} MiB of memory, {free_mem} MiB free",
                a.memory_mib
            )));
        }
        let node_free = self.node_free(&u);
        for (node, mib) in a.node_memory() {
            let free = node_free.get(&node).copied().unwrap_or(0);
            if mib > free {
                return Err(conflict(format!(
                    "needs {mib} MiB of memory on NUMA node {node}, {free} MiB free"
                )));
            }
        }
        self.account(a, true);
        self.held.insert(name.to_string(), a.clone());
        tracing::info!(workload = %name, class = ?a.class, cpus = %a.cpus, "restored");
        Ok(())
    }

    fn place(&self, req: &Request) -> Result<Allocation, PlaceError> {
        let u = self.usage();
        if self.held.len() >= self.plan.max_workloads as usize {
            return Err(PlaceError::Limit {
                max: self.plan.max_workloads,
            });
        }
        let whole = self.plan.full_physical_cores;
        let topo = &self.plan.topology;
        // Exclusive requests also yield the CPUs they could have had and their pool,
        // for the NUMA memory fit below.
        let (mut a, exclusive) = match req.cpu {
            CpuRequest::Shared { millicores } => {
                if u.shared_cpus.is_empty() {
                    return Err(PlaceError::Cores {
                        pool: "shared",
                        need: 1,
                        free: 0,
                        whole: false,
                        pool_size: self.plan.shared_pool().len() as u32,
                    });
                }
                let need = u64::from(millicores);
                let free = u
                    .shared_capacity_millicores
                    .saturating_sub(u.shared_held_millicores);
                if need > free {
                    return Err(PlaceError::Millicores { need, free });
                }
                let a = Allocation {
                    class: Class::Shared,
                    cpus: CpuSet::new(),
                    mems: CpuSet::new(),
                    millicores,
                    memory_mib: 0,
                    rt: None,
                };
                (a, None)
            }
            CpuRequest::Dedicated { cpus } => {
                check_cpus(cpus, "resources.cores")?;
                let avail = self.plan.shared.difference(&u.dedicated_cpus);
                let usable = if whole {
                    whole_core_cpus(topo, &avail)
                } else {
                    avail.clone()
                };
                let Some(got) = pick(topo, &avail, cpus, whole) else {
                    return Err(PlaceError::Cores {
                        pool: "shared",
                        need: cpus,
                        free: usable.len() as u32,
                        whole,
                        pool_size: self.plan.shared.len() as u32,
                    });
                };
                let left = (u.shared_cpus.len() - got.len()) as u64 * 1000;
                let floor = shared_floor(&u);
                if left < floor {
                    let spare = (u.shared_capacity_millicores - floor) / 1000;
                    return Err(PlaceError::SharedSqueeze {
                        need: cpus,
                        left,
                        held: u.shared_held_millicores,
                        free: spare.min(usable.len() as u64) as u32,
                    });
                }
                let pool = &self.plan.shared;
                (
                    self.exclusive(Class::Dedicated, got, None),
                    Some((avail, "dedicated", pool)),
                )
            }
            CpuRequest::Realtime {
                cpus,
                policy,
                priority,
                budget_us,
            } => {
                check_cpus(cpus, "resources.cores")?;
                if !(1..=99).contains(&priority) {
                    return Err(PlaceError::Invalid {
                        field: "resources.realtime.priority",
                        message: format!("{priority} is out of range; use 1 to 99"),
                    });
                }
                let period = self.plan.rt_period_us;
                let budget = budget_us.unwrap_or(self.plan.rt_workload_budget_us);
                if budget == 0 || budget > period {
                    return Err(PlaceError::Invalid {
                        field: "resources.realtime.budget",
                        message: format!(
                            "{budget} µs must be between 1 and the period, {period} µs"
                        ),
                    });
                }
                let avail = self.plan.isolated.difference(&u.rt_cpus);
                let Some(got) = pick(topo, &avail, cpus, whole) else {
                    let usable = if whole {
                        whole_core_cpus(topo, &avail)
                    } else {
                        avail
                    };
                    return Err(PlaceError::Cores {
                        pool: "isolated",
                        need: cpus,
                        free: usable.len() as u32,
                        whole,
                        pool_size: self.plan.isolated.len() as u32,
                    });
                };
                let free = self.plan.rt_budget_us.saturating_sub(u.rt_budget_held_us);
                if budget > free {
                    return Err(PlaceError::RtBudget {
                        need: budget,
                        free,
                        period,
                    });
                }
                let grant = RtGrant {
                    policy,
                    priority,
                    budget_us: budget,
                    period_us: period,
                };
                let pool = &self.plan.isolated;
                (
                    self.exclusive(Class::Rt, got, Some(grant)),
                    Some((avail, "isolated", pool)),
                )
            }
        };
        let free_mem = self
            .plan
            .memory_allocatable_mib
            .saturating_sub(u.memory_held_mib);
        if req.memory_mib > free_mem {
            return Err(PlaceError::Memory {
                need: req.memory_mib,
                free: free_mem,
            });
        }
        if let Some((avail, kind, pool)) = exclusive {
            if req.memory_mib > 0 {
                let cpus = self.numa_fit(&u, &avail, &a.cpus, req.memory_mib, kind, pool)?;
                a = self.exclusive(a.class, cpus, a.rt);
            }
        }
        a.memory_mib = req.memory_mib;
        Ok(a)
    }

    /// CPUs for an exclusive request of `memory_mib` whose nodes can hold that memory
    /// (split evenly over them): one node with both the cores and the memory free if
    /// any (the tightest CPU fit), else what [`pick`] chose (`picked`) if its nodes
    /// can hold the memory, else the fewest nodes that can.
    fn numa_fit(
        &self,
        u: &Usage,
        avail: &CpuSet,
        picked: &CpuSet,
        memory_mib: u64,
        kind: &'static str,
        pool: &CpuSet,
    ) -> Result<CpuSet, PlaceError> {
        let topo = &self.plan.topology;
        let whole = self.plan.full_physical_cores;
        let n = picked.len() as u32;
        let free = self.node_free(u);
        let holds = |nodes: &CpuSet| {
            split_memory(memory_mib, nodes)
                .iter()
                .all(|(node, mib)| *mib <= free.get(node).copied().unwrap_or(0))
        };
        let roomy: CpuSet = topo
            .nodes
            .iter()
            .filter(|node| free.get(&node.id).copied().unwrap_or(0) >= memory_mib)
            .flat_map(|node| node.cpus.iter())
            .collect();
        let on_roomy = pick(topo, &avail.intersection(&roomy), n, whole);
        if let Some(got) = on_roomy.as_ref().filter(|got| self.mems_of(got).len() == 1) {
            return Ok(got.clone());
        }
        for got in [Some(picked), on_roomy.as_ref()].into_iter().flatten() {
            if holds(&self.mems_of(got)) {
                return Ok(got.clone());
            }
        }
        if let Some(got) = pick_on_nodes(topo, avail, n, whole, holds) {
            return Ok(got);
        }
        let usable = if whole {
            whole_core_cpus(topo, avail)
        } else {
            avail.clone()
        };
        let nodes = topo
            .nodes
            .iter()
            .filter(|node| !node.cpus.is_disjoint(pool))
            .map(|node| NodeFree {
                node: node.id,
                cpus: usable.intersection(&node.cpus).len() as u32,
                memory_mib: free.get(&node.id).copied().unwrap_or(0),
            })
            .collect();
        Err(PlaceError::NodeMemory {
            kind,
            need: n,
            need_mib: memory_mib,
            nodes,
        })
    }

    /// NUMA nodes of `cpus`.
    fn mems_of(&self, cpus: &CpuSet) -> CpuSet {
        cpus.iter()
            .filter_map(|c| self.plan.topology.cpu(c).map(|c| c.node))
            .collect()
    }

    fn exclusive(&self, class: Class, cpus: CpuSet, rt: Option<RtGrant>) -> Allocation {
        let mems = self.mems_of(&cpus);
        Allocation {
            class,
            cpus,
            mems,
            millicores: 0,
            memory_mib: 0,
            rt,
        }
    }
}

/// Millicores the shared pool must keep: what shared workloads hold, and at least one
/// CPU's worth while any shared workload (even best effort) lives there.
fn shared_floor(u: &Usage) -> u64 {
    if u.shared_workloads > 0 {
        u.shared_held_millicores.max(1000)
    } else {
        0
    }
}

fn check_cpus(cpus: u32, field: &'static str) -> Result<(), PlaceError> {
    if cpus == 0 || cpus > roost_host_config::cpuset::MAX_CPU {
        return Err(PlaceError::Invalid {
            field,
            message: format!("{cpus} cores is out of range; ask for 1 or more"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RtPolicy;
    use roost_host_config::fake::FakeHost;
    use roost_host_config::Profile;

    pub(crate) fn plan(h: &FakeHost, toml: &str) -> HostPlan {
        HostPlan::resolve(&Profile::parse(toml, "t").unwrap(), h.topology(), "t").unwrap()
    }

    fn rt(cpus: u32) -> Request {
        Request {
            cpu: CpuRequest::Realtime {
                cpus,
                policy: RtPolicy::Fifo,
                priority: 80,
                budget_us: Some(100_000),
            },
            memory_mib: 0,
        }
    }

    fn ded(cpus: u32) -> Request {
        Request {
            cpu: CpuRequest::Dedicated { cpus },
            memory_mib: 0,
        }
    }

    fn shared(millicores: u32, memory_mib: u64) -> Request {
        Request {
            cpu: CpuRequest::Shared { millicores },
            memory_mib,
        }
    }

    #[test]
    fn refusal_says_needs_2_isolated_cores_1_free() {
        let mut s = Scheduler::new(plan(
            &FakeHost::edge_4core(),
            "[cpu]\nplatform = \"0\"\nisolated = \"2-3\"\n",
        ));
        s.admit("a", &rt(1)).unwrap();
        let e = s.admit("b", &rt(2)).unwrap_err();
        assert_eq!(e.to_string(), "needs 2 isolated cores, 1 free");
        s.release("a");
        let b = s.admit("b", &rt(2)).unwrap();
        assert_eq!(b.cpus.to_string(), "2-3");
        assert_eq!(b.rt.unwrap().budget_us, 100_000);
    }

    #[test]
    fn dedicated_shrinks_the_shared_pool_and_never_squeezes_it() {
        let mut s = Scheduler::new(plan(&FakeHost::edge_4core(), "[cpu]\nplatform = \"0\"\n"));
        assert_eq!(s.usage().shared_capacity_millicores, 3000);
        s.admit("web", &shared(1500, 100)).unwrap();
        let d = s.admit("db", &ded(1)).unwrap();
        assert_eq!(d.cpus.len(), 1);
        assert_eq!(s.usage().shared_capacity_millicores, 2000);
        let e = s.admit("db2", &ded(1)).unwrap_err();
        assert!(
            matches!(e, PlaceError::SharedSqueeze { free: 0, .. }),
            "{e}"
        );
        let e = s.admit("web2", &shared(600, 0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "needs 600 millicores of shared CPU, 500 free"
        );
    }

    #[test]
    fn memory_is_never_overcommitted() {
        let mut s = Scheduler::new(plan(
            &FakeHost::edge_4core(),
            "[memory]\nreserved_mib = 1024\n",
        ));
        s.admit("a", &shared(100, 7000)).unwrap();
        let e = s.admit("b", &shared(100, 200)).unwrap_err();
        assert_eq!(e.to_string(), "needs 200 MiB of memory, 168 MiB free");
    }

    #[test]
    fn rt_budget_is_shared_by_all_rt_workloads() {
        let mut s = Scheduler::new(plan(
            &FakeHost::edge_4core(),
            "[cpu]\nplatform = \"0\"\nisolated = \"2-3\"\n[realtime]\nbudget_us = 500000\n",
        ));
        let mut r = rt(1);
        if let CpuRequest::Realtime { budget_us, .. } = &mut r.cpu {
            *budget_us = Some(400_000);
        }
        s.admit("a", &r).unwrap();
        let e = s.admit("b", &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "needs a real-time budget of 400000 µs per 1000000 µs, 100000 µs free"
        );
    }

    #[test]
    fn rt_without_isolated_cores_says_how_to_fix() {
        let mut s = Scheduler::new(plan(&FakeHost::edge_4core(), ""));
        let e = s.admit("a", &rt(1)).unwrap_err().to_string();
        assert!(e.starts_with("needs 1 isolated core, 0 free;"), "{e}");
        assert!(e.contains("set cpu.isolated"), "{e}");
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let mut s = Scheduler::new(plan(&FakeHost::edge_4core(), "[cpu]\nisolated = \"3\"\n"));
        let mut r = rt(1);
        if let CpuRequest::Realtime { priority, .. } = &mut r.cpu {
            *priority = 0;
        }
        let e = s.admit("a", &r).unwrap_err().to_string();
        assert!(e.starts_with("resources.realtime.priority: 0"), "{e}");
        let e = s.admit("a", &ded(0)).unwrap_err().to_string();
        assert!(e.starts_with("resources.cores"), "{e}");
        let e = s.admit("../x", &shared(1, 0)).unwrap_err().to_string();
        assert!(e.starts_with("metadata.name"), "{e}");
    }

    #[test]
    fn admit_is_idempotent_and_restore_checks_conflicts() {
        let mut s = Scheduler::new(plan(
            &FakeHost::edge_4core(),
            "[cpu]\nplatform = \"0\"\nisolated = \"3\"\n",
        ));
        let a = s.admit("a", &rt(1)).unwrap();
        assert_eq!(s.admit("a", &ded(2)).unwrap(), a);
        let mut fresh = Scheduler::new(s.plan().clone());
        fresh.restore("a", &a).unwrap();
        fresh.restore("a", &a).unwrap();
        let e = fresh.restore("b", &a).unwrap_err().to_string();
        assert!(e.contains("CPU 3 is held by another workload"), "{e}");
        assert_eq!(
            fresh.admit("c", &rt(1)).unwrap_err().to_string(),
            "needs 1 isolated core, 0 free"
        );
    }

    fn ded_mem(cpus: u32, memory_mib: u64) -> Request {
        Request {
            cpu: CpuRequest::Dedicated { cpus },
            memory_mib,
        }
    }

    /// Two nodes of 4 CPUs (0-3, 4-7), CPU 0 platform, 2000 MiB for workloads on each.
    fn two_nodes() -> Scheduler {
        Scheduler::new(plan(
            &FakeHost::small(2, 4, 1),
            "[cpu]\nplatform = \"0\"\n[memory]\nreserved_mib = 96\n",
        ))
    }

    #[test]
    fn dedicated_lands_on_the_node_whose_memory_is_free() {
        let mut s = two_nodes();
        let alloc: Vec<(u32, u64)> = s.node_allocatable_mib().clone().into_iter().collect();
        assert_eq!(alloc, [(0, 2000), (1, 2000)]);
        // Node 0 is the tighter CPU fit, so the first one fills its memory.
        let a = s.admit("a", &ded_mem(1, 2000)).unwrap();
        assert_eq!(a.mems.to_string(), "0");
        // Node 0 still has the tighter fit in cores, but no memory left.
        let b = s.admit("b", &ded_mem(1, 1500)).unwrap();
        assert_eq!(b.mems.to_string(), "1", "{}", b.cpus);
        assert!(
            b.cpus.is_subset(&CpuSet::parse("4-7").unwrap()),
            "{}",
            b.cpus
        );
        let held: Vec<(u32, u64)> = s.usage().node_memory_held_mib.into_iter().collect();
        assert_eq!(held, [(0, 2000), (1, 1500)]);
        // Shared memory is bound to no node: only the host total counts.
        s.admit("c", &shared(100, 300)).unwrap();
        assert_eq!(s.usage().node_memory_held_mib.get(&1), Some(&1500));
        let e = s.admit("d", &shared(100, 201)).unwrap_err();
        assert_eq!(e.to_string(), "needs 201 MiB of memory, 200 MiB free");
    }

    #[test]
    fn refusal_names_what_each_node_has_free() {
        let mut s = two_nodes();
        s.admit("a", &ded_mem(1, 2000)).unwrap();
        s.admit("b", &ded_mem(1, 1500)).unwrap();
        // 500 MiB free host-wide, all on node 1, which has only 3 cores free; split over
        // both nodes, 200 MiB would have to be on node 0.
        let e = s.admit("c", &ded_mem(4, 400)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "needs 4 dedicated cores and 400 MiB on one NUMA node; \
             node 0: 2 cores and 0 MiB free, node 1: 3 cores and 500 MiB free"
        );
        // Without memory, the same CPUs span both nodes.
        assert_eq!(s.admit("c", &ded(4)).unwrap().mems.to_string(), "0-1");
        s.release("c");
        // Once node 0 has room, the memory is split evenly over the two nodes.
        s.release("a");
        let c = s.admit("c", &ded_mem(4, 401)).unwrap();
        assert_eq!(c.mems.to_string(), "0-1");
        assert_eq!(c.node_memory(), [(0, 201), (1, 200)]);
    }

    #[test]
    fn restore_rebooks_node_memory() {
        let mut s = two_nodes();
        let b = Allocation {
            class: Class::Dedicated,
            cpus: CpuSet::parse("5").unwrap(),
            mems: CpuSet::parse("1").unwrap(),
            millicores: 0,
            memory_mib: 1500,
            rt: None,
        };
        s.restore("b", &b).unwrap();
        assert_eq!(s.usage().node_memory_held_mib.get(&1), Some(&1500));
        // Node 1 has the most free cores but only 500 MiB left.
        let a = s.admit("a", &ded_mem(1, 1000)).unwrap();
        assert_eq!(a.mems.to_string(), "0");
        let mut c = b.clone();
        c.cpus = CpuSet::parse("6").unwrap();
        c.memory_mib = 600;
        let e = s.restore("c", &c).unwrap_err().to_string();
        assert_eq!(
            e,
            "cannot restore c: needs 600 MiB of memory on NUMA node 1, 500 MiB free"
        );
        c.memory_mib = 500;
        s.restore("c", &c).unwrap();
        assert_eq!(s.usage().node_memory_held_mib.get(&1), Some(&2000));
    }

    #[test]
    fn full_physical_cores_on_smt() {
        let mut s = Scheduler::new(plan(
            &FakeHost::two_socket_64(),
            "[cpu]\nplatform = \"0,32\"\nisolated = \"2-3,34-35\"\nfull_physical_cores = true\n",
        ));
        let a = s.admit("a", &rt(2)).unwrap();
        assert!(
            a.cpus.to_string() == "2,34" || a.cpus.to_string() == "3,35",
            "{}",
            a.cpus
        );
        let e = s.admit("b", &rt(1)).unwrap_err().to_string();
        assert!(e.contains("in whole physical cores"), "{e}");
        let d = s.admit("d", &ded(4)).unwrap();
        assert_eq!(d.mems.len(), 1, "NUMA-aligned: {}", d.cpus);
    }
}

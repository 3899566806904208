//! Property tests: random admit/release sequences on random small topologies (up to
//! three NUMA nodes of uneven memory) never double-book a CPU or overcommit memory (on
//! the host or on any node), shared CPU or the real-time budget, and admit exactly when
//! a brute-force search finds a valid placement.

use crate::request::{Allocation, Class, CpuRequest, PlaceError, Request, RtPolicy};
use crate::Scheduler;
use proptest::prelude::*;
use roost_host_config::fake::FakeHost;
use roost_host_config::profile::{CpuSection, MemorySection, RealtimeSection};
use roost_host_config::{CpuSet, HostPlan, Profile, Topology};
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
struct Host {
    fake: FakeHost,
    /// Memory of each NUMA node, MiB.
    node_mib: Vec<u64>,
    /// Pool of each CPU: 0 platform, 1 shared, 2 isolated.
    pools: Vec<u8>,
    share_platform: bool,
    full: bool,
    reserved_mib: u64,
    max_workloads: u32,
}

fn host() -> impl Strategy<Value = Host> {
    (1u32..=3)
        .prop_flat_map(|p| {
            // At most 12 CPUs, so the brute force stays quick.
            let cores = if p == 3 { 1u32..=2 } else { 1u32..=3 };
            (
                Just(p),
                cores,
                1u32..=2,
                proptest::collection::vec(768u64..2560, p as usize),
                128u64..768,
                2u32..8,
                any::<bool>(),
                any::<bool>(),
            )
        })
        .prop_flat_map(|(p, c, t, node_mib, reserved, max, share, full)| {
            let n = (p * c * t) as usize;
            let pool = prop_oneof![1 => Just(0u8), 2 => Just(1u8), 2 => Just(2u8)];
            // Mostly one pool per physical core (CPU i is a thread of core i % cores),
            // sometimes one per CPU.
            let by_core = prop_oneof![3 => Just(true), 1 => Just(false)];
            (proptest::collection::vec(pool, n), by_core).prop_map(move |(mut pools, by_core)| {
                let cores = (p * c) as usize;
                if by_core {
                    for i in cores..n {
                        pools[i] = pools[i % cores];
                    }
                }
                pools[0] = 0; // a platform core is mandatory
                Host {
                    fake: FakeHost::small(p, c, t),
                    node_mib: node_mib.clone(),
                    pools,
                    share_platform: share,
                    full,
                    reserved_mib: reserved,
                    max_workloads: max,
                }
            })
        })
}

impl Host {
    fn topology(&self) -> Topology {
        let mut t = self.fake.topology();
        for (node, mib) in t.nodes.iter_mut().zip(&self.node_mib) {
            node.memory_mib = *mib;
        }
        t.memory_mib = self.node_mib.iter().sum();
        t
    }
}

fn plan_of(h: &Host) -> HostPlan {
    let set = |k: u8| -> CpuSet {
        h.pools
            .iter()
            .enumerate()
            .filter(|(_, p)| **p == k)
            .map(|(i, _)| i as u32)
            .collect()
    };
    let profile = Profile {
        cpu: CpuSection {
            platform: Some(set(0)),
            shared: Some(set(1)),
            isolated: Some(set(2)),
            share_platform: h.share_platform,
            full_physical_cores: h.full,
        },
        memory: MemorySection {
            reserved_mib: Some(h.reserved_mib),
        },
        realtime: RealtimeSection {
            period_us: None,
            budget_us: Some(900_000),
            workload_budget_us: Some(300_000),
        },
        limits: roost_host_config::profile::LimitsSection {
            max_workloads: Some(h.max_workloads),
        },
        ..Profile::default()
    };
    HostPlan::resolve(&profile, h.topology(), "prop").expect("valid generated profile")
}

#[derive(Debug, Clone)]
enum Op {
    Admit(usize, Request),
    Release(usize),
}

fn request() -> impl Strategy<Value = Request> {
    let cpu = prop_oneof![
        (0u32..3000).prop_map(|millicores| CpuRequest::Shared { millicores }),
        prop_oneof![3 => 1u32..3, 1 => 3u32..5].prop_map(|cpus| CpuRequest::Dedicated { cpus }),
        (
            prop_oneof![3 => 1u32..3, 1 => Just(3u32)],
            prop_oneof![Just(None), Just(Some(200_000u64)), Just(Some(500_000))]
        )
            .prop_map(|(cpus, budget_us)| CpuRequest::Realtime {
                cpus,
                policy: RtPolicy::Fifo,
                priority: 50,
                budget_us,
            }),
    ];
    (cpu, prop_oneof![1 => Just(0u64), 1 => 1u64..1500])
        .prop_map(|(cpu, memory_mib)| Request { cpu, memory_mib })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            3 => (0usize..6, request()).prop_map(|(n, r)| Op::Admit(n, r)),
            1 => (0usize..6).prop_map(Op::Release),
        ],
        1..40,
    )
}

/// Each node's allocatable memory, worked out again: in proportion to node memory,
/// rounded down, the remainder on the lowest node.
fn node_allocatable(plan: &HostPlan) -> BTreeMap<u32, u64> {
    let nodes = &plan.topology.nodes;
    let sum: u64 = nodes.iter().map(|n| n.memory_mib).sum();
    let mut m: BTreeMap<u32, u64> = nodes
        .iter()
        .map(|n| (n.id, plan.memory_allocatable_mib * n.memory_mib / sum))
        .collect();
    let rest = plan.memory_allocatable_mib - m.values().sum::<u64>();
    *m.values_mut().next().expect("a node") += rest;
    m
}

/// `mib` split evenly over `nodes`, the remainder on the lowest, worked out again.
fn shares(mib: u64, nodes: &CpuSet) -> Vec<(u32, u64)> {
    let k = nodes.len() as u64;
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n, mib / k + if i == 0 { mib % k } else { 0 }))
        .collect()
}

/// Node-bound memory held on each node.
fn node_held<'a>(held: impl IntoIterator<Item = &'a Allocation>) -> BTreeMap<u32, u64> {
    let mut m = BTreeMap::new();
    for a in held {
        if a.class != Class::Shared && !a.mems.is_empty() {
            for (n, mib) in shares(a.memory_mib, &a.mems) {
                *m.entry(n).or_insert(0) += mib;
            }
        }
    }
    // Nodes holding nothing are not listed.
    m.retain(|_, mib| *mib > 0);
    m
}

/// Does any subset of `avail` of size `n` (made of whole cores when `whole`) have
/// nodes that can hold `mib` split evenly, with `node_free` MiB free on each? Returns
/// (any, any within one NUMA node).
fn brute_subsets(
    plan: &HostPlan,
    avail: &CpuSet,
    n: u32,
    whole: bool,
    mib: u64,
    node_free: &BTreeMap<u32, u64>,
) -> (bool, bool) {
    let cpus = avail.to_vec();
    let topo = &plan.topology;
    let (mut any, mut one_node) = (false, false);
    for mask in 0u32..(1 << cpus.len()) {
        if mask.count_ones() != n {
            continue;
        }
        let s: CpuSet = cpus
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect();
        if whole && !s.iter().all(|c| topo.siblings(c).is_subset(&s)) {
            continue;
        }
        let nodes: CpuSet = s
            .iter()
            .map(|c| topo.cpu(c).map_or(0, |c| c.node))
            .collect();
        let fits = shares(mib, &nodes)
            .iter()
            .all(|(n, m)| *m <= node_free.get(n).copied().unwrap_or(0));
        if !fits {
            continue;
        }
        any = true;
        if nodes.len() == 1 {
            one_node = true;
        }
    }
    (any, one_node)
}

/// The oracle: is there a valid placement for `req` given `held`? (and is there one on
/// a single node?)
fn oracle(plan: &HostPlan, held: &[&Allocation], req: &Request) -> (bool, bool) {
    if held.len() >= plan.max_workloads as usize {
        return (false, false);
    }
    let mem: u64 = held.iter().map(|a| a.memory_mib).sum();
    if mem + req.memory_mib > plan.memory_allocatable_mib {
        return (false, false);
    }
    let on_node = node_held(held.iter().copied());
    let node_free: BTreeMap<u32, u64> = node_allocatable(plan)
        .into_iter()
        .map(|(n, have)| (n, have - on_node.get(&n).copied().unwrap_or(0)))
        .collect();
    let ded: CpuSet = held
        .iter()
        .filter(|a| a.class == Class::Dedicated)
        .flat_map(|a| a.cpus.iter())
        .collect();
    let rt: CpuSet = held
        .iter()
        .filter(|a| a.class == Class::Rt)
        .flat_map(|a| a.cpus.iter())
        .collect();
    let shared_cpus = plan.shared_pool().difference(&ded);
    let shared_n = held.iter().filter(|a| a.class == Class::Shared).count();
    let shared_mc: u64 = held.iter().map(|a| u64::from(a.millicores)).sum();
    let budget: u64 = held.iter().filter_map(|a| a.rt).map(|r| r.budget_us).sum();
    match req.cpu {
        CpuRequest::Shared { millicores } => {
            let ok = !shared_cpus.is_empty()
                && shared_mc + u64::from(millicores) <= shared_cpus.len() as u64 * 1000;
            (ok, ok)
        }
        CpuRequest::Dedicated { cpus } => {
            let floor = if shared_n > 0 { shared_mc.max(1000) } else { 0 };
            let left = (shared_cpus.len() as u64).saturating_sub(u64::from(cpus)) * 1000;
            if (shared_cpus.len() as u64) < u64::from(cpus) || left < floor {
                return (false, false);
            }
            brute_subsets(
                plan,
                &plan.shared.difference(&ded),
                cpus,
                plan.full_physical_cores,
                req.memory_mib,
                &node_free,
            )
        }
        CpuRequest::Realtime {
            cpus, budget_us, ..
        } => {
            let b = budget_us.unwrap_or(plan.rt_workload_budget_us);
            if budget + b > plan.rt_budget_us {
                return (false, false);
            }
            brute_subsets(
                plan,
                &plan.isolated.difference(&rt),
                cpus,
                plan.full_physical_cores,
                req.memory_mib,
                &node_free,
            )
        }
    }
}

fn check_invariants(s: &Scheduler) {
    // The running totals agree with a sum over every allocation.
    assert_eq!(s.usage(), s.usage_summed());
    let plan = s.plan();
    let mut seen = CpuSet::new();
    let mut mem = 0;
    let mut budget = 0;
    for (name, a) in s.allocations() {
        for c in a.cpus.iter() {
            assert!(seen.insert(c), "CPU {c} double-booked ({name})");
        }
        match a.class {
            Class::Shared => assert!(a.cpus.is_empty()),
            Class::Dedicated => assert!(a.cpus.is_subset(&plan.shared), "{name}: {}", a.cpus),
            Class::Rt => assert!(a.cpus.is_subset(&plan.isolated), "{name}: {}", a.cpus),
        }
        mem += a.memory_mib;
        budget += a.rt.map_or(0, |r| r.budget_us);
        if plan.full_physical_cores {
            for c in a.cpus.iter() {
                assert!(
                    plan.topology.siblings(c).is_subset(&a.cpus),
                    "{name}: split core"
                );
            }
        }
    }
    let u = s.usage();
    assert!(mem <= plan.memory_allocatable_mib, "memory overcommitted");
    let alloc = node_allocatable(plan);
    assert_eq!(&alloc, s.node_allocatable_mib());
    assert_eq!(alloc.values().sum::<u64>(), plan.memory_allocatable_mib);
    let on_node = node_held(s.allocations().values());
    assert_eq!(on_node, u.node_memory_held_mib);
    for (n, mib) in &on_node {
        let have = alloc.get(n).copied().unwrap_or(0);
        assert!(*mib <= have, "node {n} overcommitted: {mib} of {have} MiB");
    }
    assert!(budget <= plan.rt_budget_us, "rt budget overcommitted");
    assert!(
        u.shared_held_millicores <= u.shared_capacity_millicores,
        "shared overcommitted"
    );
    assert!(u.shared_cpus.is_disjoint(&u.dedicated_cpus));
    assert!(s.allocations().len() <= plan.max_workloads as usize);
}

fn run_sequence(h: &Host, ops: &[Op], tally: &mut [u64; 3]) -> Result<(), TestCaseError> {
    let plan = plan_of(h);
    let mut s = Scheduler::new(plan.clone());
    for op in ops {
        match op {
            Op::Admit(i, req) => {
                let name = format!("w{i}");
                if let Some(have) = s.get(&name).cloned() {
                    prop_assert_eq!(s.admit(&name, req).unwrap(), have);
                    continue;
                }
                let held: Vec<&Allocation> = s.allocations().values().collect();
                let (possible, one_node) = oracle(&plan, &held, req);
                let got = s.admit(&name, req);
                prop_assert_eq!(got.is_ok(), possible, "req {:?} -> {:?}", req, got);
                tally[usize::from(got.is_ok())] += 1;
                if matches!(got, Err(PlaceError::NodeMemory { .. })) {
                    tally[2] += 1;
                }
                if let Ok(a) = got {
                    if a.class != Class::Shared {
                        let nodes: CpuSet = a
                            .cpus
                            .iter()
                            .filter_map(|c| plan.topology.cpu(c).map(|c| c.node))
                            .collect();
                        prop_assert_eq!(&a.mems, &nodes);
                        if one_node {
                            prop_assert_eq!(a.mems.len(), 1, "not NUMA-aligned: {}", a.cpus);
                        }
                    }
                    prop_assert_eq!(a.memory_mib, req.memory_mib);
                }
            }
            Op::Release(i) => {
                s.release(&format!("w{i}"));
            }
        }
        check_invariants(&s);
    }
    // Everything held can be restored into a fresh scheduler, in any order.
    let mut fresh = Scheduler::new(plan);
    for (name, a) in s.allocations().iter().rev() {
        prop_assert!(fresh.restore(name, a).is_ok(), "restore {}", name);
    }
    check_invariants(&fresh);
    Ok(())
}

#[test]
fn admit_release_sequences_match_brute_force() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    });
    let tally = std::cell::RefCell::new([0u64; 3]);
    let result = runner.run(&(host(), ops()), |(h, ops)| {
        run_sequence(&h, &ops, &mut tally.borrow_mut())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must exercise both outcomes, or the comparison proves little.
    let [refused, admitted, node] = tally.into_inner();
    eprintln!("admitted {admitted}, refused {refused} ({node} for NUMA node memory)");
    assert!(
        admitted > 2000 && refused > 2000 && node > 30,
        "admitted {admitted}, refused {refused} ({node} for NUMA node memory)"
    );
}

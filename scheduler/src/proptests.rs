//! Property tests: random admit/release sequences on random small topologies never
//! double-book a CPU or overcommit memory, shared CPU or the real-time budget, and
//! admit exactly when a brute-force search finds a valid placement.

use crate::request::{Allocation, Class, CpuRequest, Request, RtPolicy};
use crate::Scheduler;
use proptest::prelude::*;
use roost_host_config::fake::FakeHost;
use roost_host_config::profile::{CpuSection, MemorySection, RealtimeSection};
use roost_host_config::{CpuSet, HostPlan, Profile};

#[derive(Debug, Clone)]
struct Host {
    fake: FakeHost,
    /// Pool of each CPU: 0 platform, 1 shared, 2 isolated.
    pools: Vec<u8>,
    share_platform: bool,
    full: bool,
    reserved_mib: u64,
    max_workloads: u32,
}

fn host() -> impl Strategy<Value = Host> {
    (
        1u32..=2,
        1u32..=3,
        1u32..=2,
        256u64..2048,
        2u32..8,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_flat_map(|(p, c, t, reserved, max, share, full)| {
            let n = (p * c * t) as usize;
            proptest::collection::vec(0u8..3, n).prop_map(move |mut pools| {
                pools[0] = 0; // a platform core is mandatory
                Host {
                    fake: FakeHost::small(p, c, t),
                    pools,
                    share_platform: share,
                    full,
                    reserved_mib: reserved,
                    max_workloads: max,
                }
            })
        })
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
    HostPlan::resolve(&profile, h.fake.topology(), "prop").expect("valid generated profile")
}

#[derive(Debug, Clone)]
enum Op {
    Admit(usize, Request),
    Release(usize),
}

fn request() -> impl Strategy<Value = Request> {
    let cpu = prop_oneof![
        (0u32..3000).prop_map(|millicores| CpuRequest::Shared { millicores }),
        (1u32..5).prop_map(|cpus| CpuRequest::Dedicated { cpus }),
        (
            1u32..4,
            prop_oneof![Just(None), Just(Some(200_000u64)), Just(Some(500_000))]
        )
            .prop_map(|(cpus, budget_us)| CpuRequest::Realtime {
                cpus,
                policy: RtPolicy::Fifo,
                priority: 50,
                budget_us,
            }),
    ];
    (cpu, prop_oneof![2 => Just(0u64), 1 => 1u64..2000])
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

/// Does any subset of `avail` of size `n` (made of whole cores when `whole`) satisfy
/// `extra`? Returns (any, any within one NUMA node).
fn brute_subsets(plan: &HostPlan, avail: &CpuSet, n: u32, whole: bool) -> (bool, bool) {
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
        any = true;
        let nodes: CpuSet = s
            .iter()
            .map(|c| topo.cpu(c).map_or(0, |c| c.node))
            .collect();
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
            )
        }
    }
}

fn check_invariants(s: &Scheduler) {
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
    assert!(budget <= plan.rt_budget_us, "rt budget overcommitted");
    assert!(
        u.shared_held_millicores <= u.shared_capacity_millicores,
        "shared overcommitted"
    );
    assert!(u.shared_cpus.is_disjoint(&u.dedicated_cpus));
    assert!(s.allocations().len() <= plan.max_workloads as usize);
}

fn run_sequence(h: &Host, ops: &[Op], tally: &mut [u64; 2]) -> Result<(), TestCaseError> {
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
                if let Ok(a) = got {
                    if a.class != Class::Shared && one_node {
                        prop_assert_eq!(a.mems.len(), 1, "not NUMA-aligned: {}", a.cpus);
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
        cases: 1000,
        ..ProptestConfig::default()
    });
    let tally = std::cell::RefCell::new([0u64; 2]);
    let result = runner.run(&(host(), ops()), |(h, ops)| {
        run_sequence(&h, &ops, &mut tally.borrow_mut())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must exercise both outcomes, or the comparison proves little.
    let [refused, admitted] = tally.into_inner();
    eprintln!("admitted {admitted}, refused {refused}");
    assert!(
        admitted > 2000 && refused > 2000,
        "admitted {admitted}, refused {refused}"
    );
}

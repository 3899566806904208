//! The effective host: a profile checked against the topology. Errors are collected,
//! not stopped at, so one `roost host config check` shows everything to fix.

use crate::cpuset::CpuSet;
use crate::profile::{page_size_name, parse_page_size, Profile, ProfileError};
use crate::topology::Topology;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// Something that makes the profile unusable, with the field to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Profile field, e.g. `cpu.isolated`.
    pub field: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Something that works but costs latency or capacity, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Profile field (or `kernel cmdline`).
    pub field: String,
    /// What is unwise.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.field, self.message, self.fix)
    }
}

/// The effective host configuration the scheduler places on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPlan {
    /// Where it came from: a file name or `built-in default`.
    pub origin: String,
    /// The machine.
    pub topology: Topology,
    /// Platform CPUs (Roost's daemon, containerd, shims, helper threads).
    pub platform: CpuSet,
    /// Shared application CPUs, excluding platform CPUs.
    pub shared: CpuSet,
    /// Isolated CPUs (real-time only).
    pub isolated: CpuSet,
    /// Shared workloads may also use the platform CPUs.
    pub share_platform: bool,
    /// Dedicated and real-time workloads get whole physical cores.
    pub full_physical_cores: bool,
    /// `MemTotal`, MiB.
    pub memory_total_mib: u64,
    /// Kept back for the host, MiB.
    pub memory_reserved_mib: u64,
    /// Held in hugepages, MiB.
    pub memory_hugepages_mib: u64,
    /// What workloads may be given, MiB.
    pub memory_allocatable_mib: u64,
    /// Hugepages asked for: page size in KiB → pages.
    pub hugepages: BTreeMap<u64, u64>,
    /// `cpu.rt_period_us` of Roost's cgroups.
    pub rt_period_us: u64,
    /// `cpu.rt_runtime_us` of Roost's whole tree.
    pub rt_budget_us: u64,
    /// Default budget of one real-time workload.
    pub rt_workload_budget_us: u64,
    /// Most workloads at once.
    pub max_workloads: u32,
    /// What works but should be fixed.
    pub warnings: Vec<Warning>,
}

fn problem(field: &str, message: String) -> Problem {
    Problem {
        field: field.to_string(),
        message,
    }
}

fn warn(field: &str, message: String, fix: String) -> Warning {
    Warning {
        field: field.to_string(),
        message,
        fix,
    }
}

impl HostPlan {
    /// The default without a profile: the first physical core is platform, the rest
    /// is shared, nothing is isolated.
    pub fn default_for(topology: Topology) -> Result<Self, ProfileError> {
        Self::resolve(&Profile::default(), topology, "built-in default")
    }

    /// Check `profile` against `topology`; `origin` names the profile in messages.
    pub fn resolve(
        profile: &Profile,
        topology: Topology,
        origin: &str,
    ) -> Result<Self, ProfileError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let online = topology.online();
        let present: CpuSet = topology.cpus.iter().map(|c| c.id).collect();
        let c = &profile.cpu;

        // Each pool names only CPUs that exist and are online.
        let mut check_pool = |field: &str, set: &Option<CpuSet>| -> CpuSet {
            let Some(set) = set else {
                return CpuSet::new();
            };
            let missing = set.difference(&present);
            if !missing.is_empty() {
                problems.push(problem(
                    field,
                    format!(
                        "CPU {missing} does not exist on this host (it has {present}); \
                         list only CPUs from {online}"
                    ),
                ));
            }
            let offline = set.intersection(&present).difference(&online);
            if !offline.is_empty() {
                problems.push(problem(
                    field,
                    format!(
                        "CPU {offline} is offline; bring it online \
                         (echo 1 > /sys/devices/system/cpu/cpuN/online) or remove it"
                    ),
                ));
            }
            set.intersection(&online)
        };
        let given_platform = check_pool("cpu.platform", &c.platform);
        let given_shared = check_pool("cpu.shared", &c.shared);
        let isolated = check_pool("cpu.isolated", &c.isolated);

        for (a, sa, b, sb) in [
            ("cpu.platform", &given_platform, "cpu.shared", &given_shared),
            ("cpu.platform", &given_platform, "cpu.isolated", &isolated),
            ("cpu.shared", &given_shared, "cpu.isolated", &isolated),
        ] {
            let both = sa.intersection(sb);
            if !both.is_empty() {
                let hint = if a == "cpu.platform" && b == "cpu.shared" {
                    " (to let shared workloads use platform cores, set cpu.share_platform = true)"
                } else {
                    ""
                };
                problems.push(problem(
                    b,
                    format!(
                        "CPU {both} is in both {a} and {b}; a CPU belongs to one pool, \
                         remove it from one{hint}"
                    ),
                ));
            }
        }

        // Fill what is not given: platform defaults to the first physical core (or
        // what the other pools leave), shared to whatever remains.
        let platform = match &c.platform {
            Some(_) => given_platform.clone(),
            None if c.shared.is_some() => online.difference(&given_shared).difference(&isolated),
            None => match online.difference(&isolated).first() {
                Some(first) => topology.siblings(first),
                None => CpuSet::new(),
            },
        };
        let shared = match &c.shared {
            Some(_) => given_shared,
            None => online.difference(&platform).difference(&isolated),
        };
        if platform.is_empty() {
            problems.push(problem(
                "cpu.platform",
                format!(
                    "no platform core left: the daemon, containerd and shims need at least \
                     one; put a CPU from {online} in cpu.platform"
                ),
            ));
        }
        let unused = online
            .difference(&platform)
            .difference(&shared)
            .difference(&isolated);
        if !unused.is_empty() {
            warnings.push(warn(
                "cpu",
                format!("CPU {unused} is in no pool and stays unused"),
                "add it to cpu.shared or cpu.isolated".to_string(),
            ));
        }
        let share_platform = c.share_platform;
        if shared.is_empty() && !share_platform {
            warnings.push(warn(
                "cpu.shared",
                "no shared CPU: shared and dedicated workloads cannot be admitted".to_string(),
                "move CPUs to cpu.shared, or set cpu.share_platform = true on a small host"
                    .to_string(),
            ));
        }
        if share_platform && !platform.is_empty() {
            warnings.push(warn(
                "cpu.share_platform",
                format!("shared workloads also run on platform CPU {platform}, beside the daemon"),
                "give shared workloads their own cores when the host has enough".to_string(),
            ));
        }

        // The kernel's isolation must cover the isolated pool, or housekeeping work and
        // timer ticks land on it.
        let not_isolcpus = isolated.difference(&topology.isolcpus);
        let not_nohz = isolated.difference(&topology.nohz_full);
        if !not_isolcpus.is_empty() || !not_nohz.is_empty() {
            let missing = not_isolcpus.union(&not_nohz);
            let what = match (not_isolcpus.is_empty(), not_nohz.is_empty()) {
                (false, false) => "isolcpus= nor nohz_full=",
                (false, true) => "isolcpus=",
                _ => "nohz_full=",
            };
            warnings.push(warn(
                "cpu.isolated",
                format!(
                    "isolated CPU {missing} is not in the kernel's {what}: the kernel still \
                     balances tasks and ticks onto it"
                ),
                format!(
                    "add `isolcpus={isolated} nohz_full={isolated} rcu_nocbs={isolated}` to \
                     the kernel command line and reboot"
                ),
            ));
        }
        let stray = topology
            .isolcpus
            .intersection(&online)
            .difference(&isolated);
        if !stray.is_empty() {
            warnings.push(warn(
                "cpu.isolated",
                format!(
                    "CPU {stray} is in the kernel's isolcpus= but not in cpu.isolated: the \
                     kernel does not balance load onto it, so work placed there piles up"
                ),
                format!("add CPU {stray} to cpu.isolated, or drop it from isolcpus="),
            ));
        }
        // SMT: a busy sibling shares the core's pipeline and caches with a real-time
        // thread.
        let mut split = CpuSet::new();
        for cpu in isolated.iter() {
            split.extend(topology.siblings(cpu).difference(&isolated).iter());
        }
        if !split.is_empty() {
            warnings.push(warn(
                "cpu.isolated",
                format!(
                    "SMT sibling {split} of an isolated CPU is in another pool: its load adds \
                     latency to real-time work"
                ),
                format!("isolate whole cores: add CPU {split} to cpu.isolated"),
            ));
        }
        if c.full_physical_cores {
            let partial: CpuSet = shared
                .iter()
                .filter(|cpu| !topology.siblings(*cpu).is_subset(&shared))
                .collect();
            if !partial.is_empty() {
                warnings.push(warn(
                    "cpu.full_physical_cores",
                    format!("CPU {partial} of cpu.shared has a sibling outside the pool and can never be dedicated"),
                    "put whole physical cores in cpu.shared".to_string(),
                ));
            }
        }

        // Memory.
        let total = topology.memory_mib;
        let reserved = profile
            .memory
            .reserved_mib
            .unwrap_or_else(|| (total / 8).min(1024));
        let mut hugepages = BTreeMap::new();
        let mut huge_mib: u64 = 0;
        for (name, pages) in &profile.hugepages {
            let field = format!("hugepages.\"{name}\"");
            let sizes: Vec<String> = topology
                .hugepages
                .keys()
                .map(|k| page_size_name(*k))
                .collect();
            let Some(kib) = parse_page_size(name) else {
                problems.push(problem(
                    &field,
                    format!("`{name}` is not a page size; write it like \"2M\" or \"1G\""),
                ));
                continue;
            };
            let Some(held) = topology.hugepages.get(&kib) else {
                problems.push(problem(
                    &field,
                    format!(
                        "this kernel has no {} hugepages (it has: {})",
                        page_size_name(kib),
                        if sizes.is_empty() {
                            "none".to_string()
                        } else {
                            sizes.join(", ")
                        }
                    ),
                ));
                continue;
            };
            if held < pages {
                warnings.push(warn(
                    &field,
                    format!(
                        "the kernel holds {held} of the {pages} {} pages asked for",
                        page_size_name(kib)
                    ),
                    format!(
                        "echo {pages} > /sys/kernel/mm/hugepages/hugepages-{kib}kB/nr_hugepages, \
                         or boot with hugepagesz={} hugepages={pages}",
                        page_size_name(kib)
                    ),
                ));
            }
            huge_mib = huge_mib.saturating_add(pages.saturating_mul(kib) / 1024);
            hugepages.insert(kib, *pages);
        }
        let kept = reserved.saturating_add(huge_mib);
        if kept >= total {
            problems.push(problem(
                "memory.reserved_mib",
                format!(
                    "{reserved} MiB reserved plus {huge_mib} MiB of hugepages leaves nothing of \
                     the host's {total} MiB for workloads; lower them"
                ),
            ));
        }

        // Real-time budgets: Roost's tree may hold at most the kernel's own share.
        let period = profile.realtime.period_us.unwrap_or(topology.rt_period_us);
        if !(1000..=1_000_000).contains(&period) {
            problems.push(problem(
                "realtime.period_us",
                format!("{period} is out of range; use 1000 to 1000000 µs"),
            ));
        }
        let period = period.clamp(1000, 1_000_000);
        let kernel_budget = if topology.rt_runtime_us < 0 {
            period
        } else {
            // Scale the kernel's runtime to our period; u128 cannot overflow here.
            let k = (topology.rt_runtime_us as u128 * u128::from(period))
                / u128::from(topology.rt_period_us.max(1));
            u64::try_from(k).unwrap_or(period).min(period)
        };
        let budget = profile
            .realtime
            .budget_us
            .unwrap_or_else(|| (period / 10 * 9).min(kernel_budget));
        if budget > kernel_budget {
            problems.push(problem(
                "realtime.budget_us",
                format!(
                    "{budget} µs per {period} µs is more than the kernel allows real-time \
                     tasks ({kernel_budget} µs, from sched_rt_runtime_us); lower it"
                ),
            ));
        }
        if !isolated.is_empty() && kernel_budget == 0 {
            problems.push(problem(
                "realtime.budget_us",
                "the kernel gives real-time tasks no runtime (sched_rt_runtime_us = 0); \
                 raise /proc/sys/kernel/sched_rt_runtime_us"
                    .to_string(),
            ));
        }
        let iso_units = if c.full_physical_cores {
            isolated
                .iter()
                .filter_map(|cpu| topology.siblings(cpu).first())
                .collect::<CpuSet>()
                .len()
                .max(1)
        } else {
            isolated.len().max(1)
        } as u64;
        let workload_budget = profile
            .realtime
            .workload_budget_us
            .unwrap_or(budget / iso_units);
        if workload_budget == 0 || workload_budget > budget {
            problems.push(problem(
                "realtime.workload_budget_us",
                format!(
                    "{workload_budget} µs must be between 1 and realtime.budget_us ({budget} µs)"
                ),
            ));
        }
        let max_workloads = profile.limits.max_workloads.unwrap_or(1024);
        if max_workloads == 0 {
            problems.push(problem(
                "limits.max_workloads",
                "0 admits nothing; use at least 1".to_string(),
            ));
        }

        if !problems.is_empty() {
            return Err(ProfileError::Invalid {
                origin: origin.to_string(),
                problems,
            });
        }
        for w in &warnings {
            tracing::warn!(field = %w.field, fix = %w.fix, "host profile: {}", w.message);
        }
        Ok(Self {
            origin: origin.to_string(),
            memory_total_mib: total,
            memory_reserved_mib: reserved,
            memory_hugepages_mib: huge_mib,
            memory_allocatable_mib: total - kept,
            topology,
            platform,
            shared,
            isolated,
            share_platform,
            full_physical_cores: c.full_physical_cores,
            hugepages,
            rt_period_us: period,
            rt_budget_us: budget,
            rt_workload_budget_us: workload_budget,
            max_workloads,
            warnings,
        })
    }

    /// CPUs shared workloads may run on: the shared pool, plus the platform CPUs when
    /// `share_platform` is set.
    pub fn shared_pool(&self) -> CpuSet {
        if self.share_platform {
            self.shared.union(&self.platform)
        } else {
            self.shared.clone()
        }
    }

    /// Each NUMA node's share of `memory_allocatable_mib`, in proportion to its
    /// memory (rounded down; the remainder goes to the lowest node, so the shares sum
    /// to the total). Nodes that all report no memory share it evenly.
    pub fn node_memory_allocatable_mib(&self) -> BTreeMap<u32, u64> {
        let nodes = &self.topology.nodes;
        let total = u128::from(self.memory_allocatable_mib);
        let weight = |n: &crate::NumaNode| -> u128 {
            if nodes.iter().all(|n| n.memory_mib == 0) {
                1
            } else {
                u128::from(n.memory_mib)
            }
        };
        let sum: u128 = nodes.iter().map(weight).sum();
        let mut out: BTreeMap<u32, u64> = nodes
            .iter()
            .map(|n| {
                // share <= total, so it fits in u64.
                let share = (total * weight(n)).checked_div(sum).unwrap_or(0);
                (n.id, u64::try_from(share).unwrap_or(u64::MAX))
            })
            .collect();
        let given: u64 = out.values().sum();
        if let Some(lowest) = out.values_mut().next() {
            *lowest += self.memory_allocatable_mib.saturating_sub(given);
        }
        out
    }

    /// A human summary: the partition, memory, budgets and warnings.
    pub fn describe(&self) -> String {
        let t = &self.topology;
        let mut s = String::new();
        let line = |s: &mut String, text: String| {
            s.push_str(&text);
            s.push('\n');
        };
        line(&mut s, format!("profile:   {}", self.origin));
        line(
            &mut s,
            format!(
                "topology:  {} CPUs online ({}), {} cores, {} thread(s)/core, {} package(s), {} NUMA node(s)",
                t.online().len(),
                t.online(),
                t.core_count(),
                t.threads_per_core(),
                t.packages(),
                t.nodes.len()
            ),
        );
        line(
            &mut s,
            format!(
                "kernel:    isolcpus={} nohz_full={} sched_rt_runtime_us={}/{}",
                or_none(&t.isolcpus),
                or_none(&t.nohz_full),
                t.rt_runtime_us,
                t.rt_period_us
            ),
        );
        line(&mut s, format!("platform:  {}", or_none(&self.platform)));
        line(
            &mut s,
            format!(
                "shared:    {}{}",
                or_none(&self.shared_pool()),
                if self.share_platform {
                    " (includes platform CPUs)"
                } else {
                    ""
                }
            ),
        );
        line(&mut s, format!("isolated:  {}", or_none(&self.isolated)));
        line(
            &mut s,
            format!(
                "memory:    {} MiB total, {} reserved, {} in hugepages, {} for workloads",
                self.memory_total_mib,
                self.memory_reserved_mib,
                self.memory_hugepages_mib,
                self.memory_allocatable_mib
            ),
        );
        for (kib, pages) in &self.hugepages {
            line(
                &mut s,
                format!("hugepages: {pages} x {}", page_size_name(*kib)),
            );
        }
        line(
            &mut s,
            format!(
                "realtime:  {} µs per {} µs for Roost, {} µs per workload by default",
                self.rt_budget_us, self.rt_period_us, self.rt_workload_budget_us
            ),
        );
        line(
            &mut s,
            format!("limits:    {} workloads", self.max_workloads),
        );
        if self.full_physical_cores {
            line(
                &mut s,
                "smt:       whole physical cores for dedicated/real-time".to_string(),
            );
        }
        for w in &self.warnings {
            line(&mut s, format!("warning:   {w}"));
        }
        s
    }
}

fn or_none(s: &CpuSet) -> String {
    if s.is_empty() {
        "(none)".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    fn topo(h: &FakeHost) -> Topology {
        let mut t = h.topology();
        // FakeHost::topology does not parse the cmdline; do it as discovery would.
        let dir = tempfile::tempdir().unwrap();
        h.write(dir.path()).unwrap();
        let d = Topology::discover(&crate::SysRoot::under(dir.path())).unwrap();
        t.isolcpus = d.isolcpus;
        t.nohz_full = d.nohz_full;
        t
    }

    fn resolve(h: &FakeHost, toml: &str) -> Result<HostPlan, ProfileError> {
        HostPlan::resolve(&Profile::parse(toml, "test").unwrap(), topo(h), "test")
    }

    fn problems(e: ProfileError) -> Vec<Problem> {
        match e {
            ProfileError::Invalid { problems, .. } => problems,
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn default_is_core_0_platform_rest_shared() {
        let p = HostPlan::default_for(topo(&FakeHost::edge_4core())).unwrap();
        assert_eq!(p.platform.to_string(), "0");
        assert_eq!(p.shared.to_string(), "1-3");
        assert!(p.isolated.is_empty());
        // SMT: the platform core is the whole first physical core.
        let p = HostPlan::default_for(topo(&FakeHost::two_socket_64())).unwrap();
        assert_eq!(p.platform.to_string(), "0,32");
        assert_eq!(p.shared.len(), 62);
        let p = HostPlan::default_for(topo(&FakeHost::this_vm())).unwrap();
        assert_eq!(p.platform.to_string(), "0");
        assert_eq!(p.shared.to_string(), "1");
    }

    #[test]
    fn a_core_in_two_pools_is_an_error() {
        let e = resolve(
            &FakeHost::edge_4core(),
            "[cpu]\nplatform = \"0\"\nshared = \"1-2\"\nisolated = \"2-3\"\n",
        )
        .unwrap_err();
        let p = problems(e);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].field, "cpu.isolated");
        assert!(
            p[0].message
                .contains("CPU 2 is in both cpu.shared and cpu.isolated"),
            "{}",
            p[0]
        );
    }

    #[test]
    fn platform_and_shared_overlap_suggests_share_platform() {
        let e = resolve(
            &FakeHost::this_vm(),
            "[cpu]\nplatform = \"0\"\nshared = \"0\"\n",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("share_platform = true"), "{s}");
    }

    #[test]
    fn no_platform_core_is_an_error() {
        let e = resolve(
            &FakeHost::this_vm(),
            "[cpu]\nshared = \"0\"\nisolated = \"1\"\n",
        )
        .unwrap_err();
        let p = problems(e);
        assert!(
            p.iter()
                .any(|p| p.field == "cpu.platform" && p.message.contains("no platform core")),
            "{p:?}"
        );
        let e = resolve(&FakeHost::this_vm(), "[cpu]\nplatform = \"\"\n").unwrap_err();
        assert!(e.to_string().contains("no platform core"), "{e}");
    }

    #[test]
    fn isolated_core_missing_from_isolcpus_is_a_warning_with_the_fix() {
        let p = resolve(
            &FakeHost::this_vm(),
            "[cpu]\nplatform = \"0\"\nisolated = \"1\"\nshare_platform = true\n",
        )
        .unwrap();
        assert_eq!(p.isolated.to_string(), "1");
        assert!(p.shared.is_empty());
        assert_eq!(p.shared_pool().to_string(), "0");
        let w = p
            .warnings
            .iter()
            .find(|w| w.field == "cpu.isolated")
            .expect("an isolcpus warning");
        assert!(w.message.contains("isolcpus= nor nohz_full="), "{w}");
        assert!(w.fix.contains("isolcpus=1 nohz_full=1"), "{w}");
    }

    #[test]
    fn matching_isolcpus_gives_no_isolation_warning() {
        let p = resolve(
            &FakeHost::edge_4core(),
            "[cpu]\nplatform = \"0\"\nisolated = \"2-3\"\n",
        )
        .unwrap();
        assert_eq!(p.shared.to_string(), "1");
        assert!(
            p.warnings.iter().all(|w| w.field != "cpu.isolated"),
            "{:?}",
            p.warnings
        );
        assert_eq!(p.rt_workload_budget_us, 450_000);
    }

    #[test]
    fn smt_sibling_outside_isolated_pool_warns() {
        let p = resolve(
            &FakeHost::two_socket_64(),
            "[cpu]\nplatform = \"0,32\"\nisolated = \"2-7,34-38\"\n",
        )
        .unwrap();
        let w: Vec<_> = p.warnings.iter().map(ToString::to_string).collect();
        assert!(w.iter().any(|w| w.contains("SMT sibling 39")), "{w:?}");
        assert!(
            w.iter()
                .any(|w| w.contains("CPU 39 is in the kernel's isolcpus=")),
            "{w:?}"
        );
    }

    #[test]
    fn unknown_and_offline_cpus_are_errors() {
        let mut h = FakeHost::edge_4core();
        h.offline = CpuSet::parse("3").unwrap();
        let e = resolve(&h, "[cpu]\nplatform = \"0\"\nshared = \"1-3,9\"\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("CPU 9 does not exist"), "{s}");
        assert!(s.contains("CPU 3 is offline"), "{s}");
    }

    #[test]
    fn memory_and_hugepages() {
        let p = resolve(
            &FakeHost::two_socket_64(),
            "[memory]\nreserved_mib = 4096\n[hugepages]\n\"1G\" = 8\n",
        )
        .unwrap();
        assert_eq!(p.memory_hugepages_mib, 8192);
        assert_eq!(p.memory_allocatable_mib, 262_144 - 4096 - 8192);
        assert!(p
            .warnings
            .iter()
            .any(|w| w.message.contains("holds 4 of the 8 1G pages")));
        let e = resolve(&FakeHost::edge_4core(), "[hugepages]\n\"1G\" = 1\n").unwrap_err();
        assert!(
            e.to_string().contains("no 1G hugepages (it has: 2M)"),
            "{e}"
        );
        let e = resolve(&FakeHost::edge_4core(), "[memory]\nreserved_mib = 8192\n").unwrap_err();
        assert!(e.to_string().contains("leaves nothing"), "{e}");
    }

    #[test]
    fn node_memory_is_split_in_proportion_with_the_remainder_on_the_lowest_node() {
        let mut t = topo(&FakeHost::small(3, 1, 1));
        for (n, mib) in t.nodes.iter_mut().zip([1000, 2000, 1000]) {
            n.memory_mib = mib;
        }
        t.memory_mib = 4000;
        let p = HostPlan::resolve(
            &Profile::parse("[memory]\nreserved_mib = 999\n", "test").unwrap(),
            t,
            "test",
        )
        .unwrap();
        assert_eq!(p.memory_allocatable_mib, 3001);
        // 750.25, 1500.5, 750.25 -> 750, 1500, 750 and the 1 left over on node 0.
        let got: Vec<(u32, u64)> = p.node_memory_allocatable_mib().into_iter().collect();
        assert_eq!(got, [(0, 751), (1, 1500), (2, 750)]);
        // One node holds it all.
        let p = HostPlan::default_for(topo(&FakeHost::edge_4core())).unwrap();
        let got: Vec<(u32, u64)> = p.node_memory_allocatable_mib().into_iter().collect();
        assert_eq!(got, [(0, p.memory_allocatable_mib)]);
    }

    #[test]
    fn rt_budget_cannot_exceed_the_kernels() {
        let e = resolve(&FakeHost::edge_4core(), "[realtime]\nbudget_us = 960000\n").unwrap_err();
        assert!(e.to_string().contains("realtime.budget_us"), "{e}");
        let p = resolve(&FakeHost::edge_4core(), "").unwrap();
        assert_eq!(p.rt_budget_us, 900_000);
        assert_eq!(p.rt_period_us, 1_000_000);
    }

    #[test]
    fn describe_shows_the_partition_and_warnings() {
        let p = resolve(
            &FakeHost::this_vm(),
            "[cpu]\nplatform = \"0\"\nisolated = \"1\"\nshare_platform = true\n",
        )
        .unwrap();
        let d = p.describe();
        assert!(d.contains("platform:  0\n"), "{d}");
        assert!(d.contains("isolated:  1\n"), "{d}");
        assert!(d.contains("shared:    0 (includes platform CPUs)"), "{d}");
        assert!(d.contains("warning:   cpu.isolated"), "{d}");
    }
}

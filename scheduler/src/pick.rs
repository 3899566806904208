//! Choosing which free CPUs a dedicated or real-time workload gets: NUMA-aligned when
//! one node can hold it, SMT-aware (whole physical cores first, so two workloads share
//! a core only when nothing else fits), and exact whole cores when the host profile asks
//! for `full_physical_cores`.

use roost_host_config::{CpuSet, Topology};
use std::collections::BTreeMap;

/// Free CPUs grouped by physical core: core → (free threads, all online threads).
fn cores_of(topo: &Topology, free: &CpuSet) -> BTreeMap<u32, (CpuSet, usize)> {
    let mut m: BTreeMap<u32, (CpuSet, usize)> = BTreeMap::new();
    for cpu in free.iter() {
        let Some(c) = topo.cpu(cpu) else { continue };
        m.entry(c.core)
            .or_insert_with(|| (CpuSet::new(), topo.siblings(cpu).len()))
            .0
            .insert(cpu);
    }
    m
}

/// CPUs of `free` that form whole physical cores (every online thread free).
pub fn whole_core_cpus(topo: &Topology, free: &CpuSet) -> CpuSet {
    let mut out = CpuSet::new();
    for (set, size) in cores_of(topo, free).values() {
        if set.len() == *size {
            out.extend(set.iter());
        }
    }
    out
}

/// Pick `n` CPUs out of `free`, or `None` when they are not there.
pub fn pick(topo: &Topology, free: &CpuSet, n: u32, whole: bool) -> Option<CpuSet> {
    let n = n as usize;
    if n == 0 {
        return None;
    }
    let usable = if whole {
        whole_core_cpus(topo, free)
    } else {
        free.clone()
    };
    if usable.len() < n {
        return None;
    }
    // One node if any can hold it: the one with the least room that suffices, so big
    // nodes stay whole for big requests.
    let mut nodes: Vec<(usize, u32, CpuSet)> = topo
        .nodes
        .iter()
        .map(|node| {
            let f = usable.intersection(&node.cpus);
            (f.len(), node.id, f)
        })
        .collect();
    nodes.sort_by_key(|(len, id, _)| (*len, *id));
    for (len, _, f) in &nodes {
        if *len >= n {
            let got = if whole {
                exact_cores(topo, f, n)
            } else {
                Some(smt_fill(topo, f, n))
            };
            if got.is_some() {
                return got;
            }
        }
    }
    // Spanning: fewest nodes, biggest first.
    let mut span = CpuSet::new();
    for (_, _, f) in nodes.iter().rev() {
        span = span.union(f);
        if span.len() >= n {
            let got = if whole {
                exact_cores(topo, &span, n)
            } else {
                Some(smt_fill(topo, &span, n))
            };
            if got.is_some() {
                return got;
            }
        }
    }
    None
}

/// Most NUMA nodes [`pick_on_nodes`] searches subsets of.
pub const MAX_SEARCH_NODES: usize = 8;

/// `n` CPUs out of `free` (whole free cores when `whole`) whose set of NUMA nodes
/// satisfies `ok`, on the fewest nodes; `None` when there are none, or when the CPUs of
/// `free` lie on more than [`MAX_SEARCH_NODES`] nodes. The exhaustive fallback behind
/// [`pick`] for when which nodes are used matters (their memory): a subset sum over
/// (CPUs taken, nodes touched), without `pick`'s SMT preferences.
pub fn pick_on_nodes(
    topo: &Topology,
    free: &CpuSet,
    n: u32,
    whole: bool,
    ok: impl Fn(&CpuSet) -> bool,
) -> Option<CpuSet> {
    let n = n as usize;
    let items: Vec<CpuSet> = if whole {
        cores_of(topo, free)
            .into_values()
            .filter(|(s, size)| s.len() == *size)
            .map(|(s, _)| s)
            .collect()
    } else {
        free.iter().map(|c| std::iter::once(c).collect()).collect()
    };
    let node_of = |cpu: u32| topo.cpu(cpu).map_or(0, |c| c.node);
    let ids: Vec<u32> = items
        .iter()
        .filter_map(|s| s.first().map(node_of))
        .collect::<CpuSet>()
        .to_vec();
    if n == 0 || ids.len() > MAX_SEARCH_NODES {
        return None;
    }
    let bit = |s: &CpuSet| -> usize {
        let node = s.first().map_or(0, node_of);
        1 << ids.iter().position(|i| *i == node).unwrap_or(0)
    };
    let masks = 1usize << ids.len();
    // from[sum * masks + mask] = (item, previous mask) that first reached the state.
    let mut reached = vec![false; (n + 1) * masks];
    let mut from: Vec<Option<(usize, usize)>> = vec![None; (n + 1) * masks];
    reached[0] = true;
    for (i, item) in items.iter().enumerate() {
        let (k, b) = (item.len(), bit(item));
        for sum in (k..=n).rev() {
            for mask in 0..masks {
                let to = sum * masks + (mask | b);
                if reached[(sum - k) * masks + mask] && !reached[to] {
                    reached[to] = true;
                    from[to] = Some((i, mask));
                }
            }
        }
    }
    let nodes_of = |mask: usize| -> CpuSet {
        ids.iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, id)| *id)
            .collect()
    };
    let mut mask = (1..masks)
        .filter(|m| reached[n * masks + m] && ok(&nodes_of(*m)))
        .min_by_key(|m| (m.count_ones(), *m))?;
    let mut out = CpuSet::new();
    let mut sum = n;
    while sum > 0 {
        let (i, prev) = from[sum * masks + mask]?;
        out.extend(items[i].iter());
        sum -= items[i].len();
        mask = prev;
    }
    Some(out)
}

/// `n` CPUs from `free` (at least `n` of them): whole free cores first, then threads
/// of cores already partly taken, then split free cores.
fn smt_fill(topo: &Topology, free: &CpuSet, n: usize) -> CpuSet {
    let cores = cores_of(topo, free);
    let mut whole: Vec<(&u32, &CpuSet)> = cores
        .iter()
        .filter(|(_, (s, size))| s.len() == *size)
        .map(|(k, (s, _))| (k, s))
        .collect();
    whole.sort_by_key(|(k, s)| (std::cmp::Reverse(s.len()), **k));
    let mut out = CpuSet::new();
    let mut split = Vec::new();
    for (_, s) in &whole {
        if out.len() + s.len() <= n {
            out.extend(s.iter());
        } else {
            split.extend(s.iter());
        }
    }
    let partial = cores
        .values()
        .filter(|(s, size)| s.len() != *size)
        .flat_map(|(s, _)| s.iter());
    for cpu in partial.chain(split) {
        if out.len() == n {
            break;
        }
        out.insert(cpu);
    }
    out
}

/// Whole cores out of `free` whose threads add up to exactly `n` (a subset sum: cores
/// of one host can differ in online threads).
fn exact_cores(topo: &Topology, free: &CpuSet, n: usize) -> Option<CpuSet> {
    let cores: Vec<CpuSet> = cores_of(topo, free)
        .into_values()
        .filter(|(s, size)| s.len() == *size)
        .map(|(s, _)| s)
        .collect();
    // reach[sum] = index of the core that first reached `sum`.
    let mut reach: Vec<Option<usize>> = vec![None; n + 1];
    let mut reached = vec![false; n + 1];
    reached[0] = true;
    for (i, c) in cores.iter().enumerate() {
        let k = c.len();
        for sum in (k..=n).rev() {
            if !reached[sum] && reached[sum - k] {
                reached[sum] = true;
                reach[sum] = Some(i);
            }
        }
    }
    if !reached[n] {
        return None;
    }
    let mut out = CpuSet::new();
    let mut sum = n;
    while sum > 0 {
        let i = reach[sum]?;
        out.extend(cores[i].iter());
        sum -= cores[i].len();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_host_config::fake::FakeHost;

    #[test]
    fn takes_whole_cores_on_one_node() {
        let t = FakeHost::two_socket_64().topology();
        let free = t.online();
        let got = pick(&t, &free, 4, false).unwrap();
        // Two whole cores (siblings n, n+32) on one node.
        assert_eq!(got.len(), 4);
        let nodes: CpuSet = got.iter().map(|c| t.cpu(c).unwrap().node).collect();
        assert_eq!(nodes.len(), 1, "{got}");
        for c in got.iter() {
            assert!(t.siblings(c).is_subset(&got), "{got}");
        }
    }

    #[test]
    fn odd_request_uses_a_partly_taken_core_first() {
        let t = FakeHost::small(1, 3, 2).topology();
        // Core 0 = {0,3}, core 1 = {1,4}, core 2 = {2,5}; 3 is taken.
        let free = CpuSet::parse("0-2,4-5").unwrap();
        let got = pick(&t, &free, 1, false).unwrap();
        assert_eq!(got.to_string(), "0");
        let got = pick(&t, &free, 3, false).unwrap();
        assert_eq!(got.to_string(), "0-1,4");
    }

    #[test]
    fn prefers_the_node_with_least_room_that_fits() {
        let t = FakeHost::small(2, 4, 1).topology();
        // Node 0 = 0-3, node 1 = 4-7; node 1 has two free.
        let free = CpuSet::parse("0-3,6-7").unwrap();
        assert_eq!(pick(&t, &free, 2, false).unwrap().to_string(), "6-7");
        assert_eq!(pick(&t, &free, 3, false).unwrap().to_string(), "0-2");
        // Spans nodes only when no node can hold it.
        assert_eq!(pick(&t, &free, 5, false).unwrap().len(), 5);
        assert!(pick(&t, &free, 7, false).is_none());
    }

    #[test]
    fn pick_on_nodes_spans_exactly_the_nodes_allowed() {
        let t = FakeHost::small(2, 2, 2).topology();
        // Node 0 = cores {0,4},{1,5}; node 1 = cores {2,6},{3,7}.
        let free = t.online();
        let one = |nodes: &CpuSet| nodes.to_string() == "1";
        assert_eq!(pick_on_nodes(&t, &free, 3, false, one).unwrap().len(), 3);
        let both = |nodes: &CpuSet| nodes.len() == 2;
        let got = pick_on_nodes(&t, &free, 2, false, both).unwrap();
        let nodes: CpuSet = got.iter().map(|c| t.cpu(c).unwrap().node).collect();
        assert_eq!((got.len(), nodes.len()), (2, 2), "{got}");
        let got = pick_on_nodes(&t, &free, 4, true, both).unwrap();
        let nodes: CpuSet = got.iter().map(|c| t.cpu(c).unwrap().node).collect();
        assert_eq!(nodes.len(), 2, "{got}");
        assert!(pick_on_nodes(&t, &free, 5, false, one).is_none());
        assert!(pick_on_nodes(&t, &free, 3, true, |_: &CpuSet| true).is_none());
    }

    #[test]
    fn whole_cores_are_exact_or_nothing() {
        let t = FakeHost::small(1, 3, 2).topology();
        let free = CpuSet::parse("0-2,4-5").unwrap();
        // Whole free cores: {1,4} and {2,5}.
        assert_eq!(whole_core_cpus(&t, &free).to_string(), "1-2,4-5");
        assert_eq!(pick(&t, &free, 2, true).unwrap().len(), 2);
        assert!(pick(&t, &free, 3, true).is_none());
        assert_eq!(pick(&t, &free, 4, true).unwrap().to_string(), "1-2,4-5");
    }
}

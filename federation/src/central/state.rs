//! Central's in-memory state: the stored model (loaded at start, changed only through
//! committed [`Change`]s) and what the hosts report (memory only).

use crate::link::{desired_digest, proto, spec_digest, workload_name};
use crate::model::{Alarm, Deployment, Event, Group, Host, JoinToken, Release, Subcloud, Target};
use crate::store::{Change, Snapshot};
use crate::strategy::{Step, Strategy};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// How many events stay in memory for streams that resume from a recent cursor.
pub(crate) const RECENT_EVENTS: usize = 10_000;

/// A host's sync status.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SyncState {
    /// Everything central wants runs with the spec central wants.
    InSync,
    /// Offline, or no report since central started.
    Unknown,
    /// Something is missing, extra or different.
    OutOfSync,
}

impl SyncState {
    /// `in-sync`, `unknown`, `out-of-sync`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InSync => "in-sync",
            Self::Unknown => "unknown",
            Self::OutOfSync => "out-of-sync",
        }
    }
}

/// A deployment with its workloads' names, digests and JSON text precomputed.
#[derive(Debug, Clone)]
pub(crate) struct Deployed {
    pub d: Deployment,
    /// (name, digest, json) in name order.
    pub items: Vec<(String, String, String)>,
}

impl Deployed {
    pub fn new(d: Deployment) -> Self {
        let mut items: Vec<(String, String, String)> = d
            .workloads
            .iter()
            .map(|w| {
                (
                    workload_name(w).unwrap_or_default().to_string(),
                    spec_digest(w),
                    w.to_string(),
                )
            })
            .collect();
        items.sort();
        Self { d, items }
    }
}

/// A connected host's session.
#[derive(Debug)]
pub(crate) struct Session {
    pub id: u64,
    pub tx: tokio::sync::mpsc::Sender<proto::CentralMessage>,
}

/// What central knows of a host at run time (memory only).
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub session: Option<Session>,
    pub online: bool,
    pub last_seen_ms: u64,
    pub connected_ms: u64,
    pub roost_version: String,
    pub addr: Option<std::net::SocketAddr>,
    pub report: Option<proto::Report>,
    pub apply_errors: Vec<proto::ApplyError>,
    /// The desired-state digest `apply_errors` came from.
    pub applied_digest: String,
    pub last_push_ms: u64,
    pub sync: Option<SyncState>,
    /// The link protocol its session speaks (from its Hello; 0 = not said).
    pub protocol: u32,
    /// Its latency probe runs, oldest first (at most `hostinfo::LATENCY_RING`); kept
    /// across reconnects.
    pub latency: VecDeque<proto::LatencySample>,
    /// Log requests waiting for its answer, by id (dropped with the session, which
    /// ends each wait).
    pub pending_logs: HashMap<u64, tokio::sync::oneshot::Sender<proto::LogReply>>,
}

/// A strategy and its steps (in order), with an index by subcloud.
#[derive(Debug, Clone)]
pub(crate) struct StrategyRt {
    pub s: Strategy,
    pub steps: Vec<Step>,
    pub index: HashMap<String, usize>,
}

impl StrategyRt {
    fn put_step(&mut self, step: Step) {
        if let Some(i) = self.index.get(&step.subcloud) {
            if let Some(slot) = self.steps.get_mut(*i) {
                *slot = step;
                return;
            }
        }
        let at = self.steps.partition_point(|s| s.order < step.order);
        self.steps.insert(at, step);
        self.reindex();
    }
    fn reindex(&mut self) {
        self.index = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.subcloud.clone(), i))
            .collect();
    }
}

/// Everything central holds in memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub groups: BTreeMap<String, Group>,
    pub subclouds: BTreeMap<String, Subcloud>,
    pub hosts: BTreeMap<String, Host>,
    /// Host names by subcloud (kept with `hosts`: every per-subcloud question would
    /// otherwise walk the whole fleet).
    pub by_subcloud: HashMap<String, BTreeSet<String>>,
    pub tokens: HashMap<String, JoinToken>,
    pub deployments: BTreeMap<(String, String), Deployed>,
    pub alarms: HashMap<String, Alarm>,
    /// Active alarms by (host, code, entity) → id.
    pub active: HashMap<(String, String, String), String>,
    pub strategies: BTreeMap<String, StrategyRt>,
    pub meta: HashMap<String, String>,
    pub releases: BTreeMap<String, Release>,
    pub last_seq: u64,
    pub recent: VecDeque<Event>,
    pub live: HashMap<String, Live>,
    pub next_session: u64,
    pub next_log_request: u64,
}

impl State {
    pub fn from_snapshot(s: Snapshot) -> Self {
        let mut st = State {
            last_seq: s.last_event_seq,
            ..Default::default()
        };
        for g in s.groups {
            st.groups.insert(g.name.clone(), g);
        }
        for sc in s.subclouds {
            st.subclouds.insert(sc.name.clone(), sc);
        }
        for h in s.hosts {
            st.put_host(h);
        }
        for t in s.tokens {
            st.tokens.insert(t.id.clone(), t);
        }
        for d in s.deployments {
            st.deployments
                .insert((d.set.clone(), d.target.to_string()), Deployed::new(d));
        }
        for a in s.alarms {
            st.put_alarm(a);
        }
        for x in s.strategies {
            st.strategies.insert(
                x.name.clone(),
                StrategyRt {
                    s: x,
                    steps: Vec::new(),
                    index: HashMap::new(),
                },
            );
        }
        for step in s.steps {
            if let Some(rt) = st.strategies.get_mut(&step.strategy) {
                rt.steps.push(step);
            }
        }
        for rt in st.strategies.values_mut() {
            rt.steps.sort_by_key(|s| s.order);
            rt.reindex();
        }
        st.meta = s.meta.into_iter().collect();
        for r in s.releases {
            st.releases.insert(r.version.clone(), r);
        }
        st
    }

    pub(crate) fn put_host(&mut self, h: Host) {
        if let Some(old) = self.hosts.get(&h.name) {
            if old.subcloud != h.subcloud {
                if let Some(set) = self.by_subcloud.get_mut(&old.subcloud) {
                    set.remove(&h.name);
                }
            }
        }
        self.by_subcloud
            .entry(h.subcloud.clone())
            .or_default()
            .insert(h.name.clone());
        self.hosts.insert(h.name.clone(), h);
    }

    /// The hosts of a subcloud, revoked ones included, in name order.
    pub fn subcloud_hosts<'a>(&'a self, subcloud: &str) -> impl Iterator<Item = &'a Host> + 'a {
        self.by_subcloud
            .get(subcloud)
            .into_iter()
            .flatten()
            .filter_map(|n| self.hosts.get(n))
    }

    fn put_alarm(&mut self, a: Alarm) {
        let key = (a.host.clone(), a.code.clone(), a.entity.clone());
        if a.cleared_ms.is_none() {
            self.active.insert(key, a.id.clone());
        } else if self.active.get(&key) == Some(&a.id) {
            self.active.remove(&key);
        }
        self.alarms.insert(a.id.clone(), a);
    }

    /// Apply one committed change.
    pub fn apply(&mut self, c: Change) {
        match c {
            Change::PutGroup(g) => drop(self.groups.insert(g.name.clone(), g)),
            Change::DeleteGroup(n) => drop(self.groups.remove(&n)),
            Change::PutSubcloud(s) => drop(self.subclouds.insert(s.name.clone(), s)),
            Change::DeleteSubcloud(n) => drop(self.subclouds.remove(&n)),
            Change::PutHost(h) => self.put_host(h),
            Change::DeleteHost(n) => {
                if let Some(h) = self.hosts.remove(&n) {
                    if let Some(set) = self.by_subcloud.get_mut(&h.subcloud) {
                        set.remove(&n);
                    }
                }
                self.live.remove(&n);
            }
            Change::PutToken(t) => drop(self.tokens.insert(t.id.clone(), t)),
            Change::PutDeployment(d) => {
                let key = (d.set.clone(), d.target.to_string());
                self.deployments.insert(key, Deployed::new(d));
            }
            Change::DeleteDeployment { set, target } => {
                drop(self.deployments.remove(&(set, target)))
            }
            Change::PutAlarm(a) => self.put_alarm(a),
            Change::AppendEvent(e) => self.remember_event(e),
            Change::PutMeta { key, value } => drop(self.meta.insert(key, value)),
            Change::PutStrategy(x) => match self.strategies.get_mut(&x.name) {
                Some(rt) => rt.s = x,
                None => drop(self.strategies.insert(
                    x.name.clone(),
                    StrategyRt {
                        s: x,
                        steps: Vec::new(),
                        index: HashMap::new(),
                    },
                )),
            },
            Change::DeleteStrategy(n) => drop(self.strategies.remove(&n)),
            Change::DeleteStrategySteps(n) => {
                if let Some(rt) = self.strategies.get_mut(&n) {
                    rt.steps.clear();
                    rt.index.clear();
                }
            }
            Change::PutStep(step) => {
                if let Some(rt) = self.strategies.get_mut(&step.strategy) {
                    rt.put_step(step);
                }
            }
            Change::PutRelease(r) => drop(self.releases.insert(r.version.clone(), r)),
            Change::DeleteRelease(v) => drop(self.releases.remove(&v)),
        }
    }

    pub fn remember_event(&mut self, e: Event) {
        self.last_seq = self.last_seq.max(e.seq);
        self.recent.push_back(e);
        while self.recent.len() > RECENT_EVENTS {
            self.recent.pop_front();
        }
    }

    /// Events after `cursor` from memory, if memory reaches back that far.
    pub fn recent_after(&self, cursor: u64, limit: usize) -> Option<Vec<Event>> {
        let first = self
            .recent
            .front()
            .map(|e| e.seq)
            .unwrap_or(self.last_seq + 1);
        if cursor + 1 < first && cursor < self.last_seq {
            return None;
        }
        Some(
            self.recent
                .iter()
                .filter(|e| e.seq > cursor)
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    /// The group of a subcloud.
    pub fn group_of(&self, subcloud: &str) -> Option<&str> {
        self.subclouds.get(subcloud).map(|s| s.group.as_str())
    }

    /// Does `target` cover host `h`?
    pub fn covers(&self, target: &Target, h: &Host) -> bool {
        match target {
            Target::Host(n) => *n == h.name,
            Target::Subcloud(s) => *s == h.subcloud,
            Target::Group(g) => self.group_of(&h.subcloud) == Some(g.as_str()),
        }
    }

    /// Could one host be covered by both targets?
    pub fn overlap(&self, a: &Target, b: &Target) -> bool {
        use Target::*;
        let host_sc = |h: &str| self.hosts.get(h).map(|x| x.subcloud.as_str());
        let sc_group = |s: &str| self.group_of(s);
        match (a, b) {
            (Group(x), Group(y)) | (Subcloud(x), Subcloud(y)) | (Host(x), Host(y)) => x == y,
            (Group(g), Subcloud(s)) | (Subcloud(s), Group(g)) => sc_group(s) == Some(g),
            (Group(g), Host(h)) | (Host(h), Group(g)) => {
                host_sc(h).and_then(sc_group) == Some(g.as_str())
            }
            (Subcloud(s), Host(h)) | (Host(h), Subcloud(s)) => host_sc(h) == Some(s.as_str()),
        }
    }

    /// Is `narrow` a narrower target inside `broad` (a subcloud of a group, a host of
    /// a subcloud or group)?
    pub fn within(&self, narrow: &Target, broad: &Target) -> bool {
        let host_sc = |h: &str| self.hosts.get(h).map(|x| x.subcloud.as_str());
        match (narrow, broad) {
            (Target::Subcloud(s), Target::Group(g)) => self.group_of(s) == Some(g.as_str()),
            (Target::Host(h), Target::Group(g)) => {
                host_sc(h).and_then(|s| self.group_of(s)) == Some(g.as_str())
            }
            (Target::Host(h), Target::Subcloud(s)) => host_sc(h) == Some(s.as_str()),
            _ => false,
        }
    }

    /// Hosts a target covers (revoked ones excluded).
    pub fn hosts_of(&self, target: &Target) -> Vec<String> {
        self.hosts
            .values()
            .filter(|h| !h.revoked && self.covers(target, h))
            .map(|h| h.name.clone())
            .collect()
    }

    /// The deployments that make up a host's desired state: of each set, the most
    /// specific deployment covering the host (host over subcloud over group), so a
    /// subcloud-level deployment of a set (a rollout's step, or an operator's
    /// override) replaces its group-level one there.
    pub fn deployments_for<'a>(&'a self, h: &'a Host) -> Vec<&'a Deployed> {
        let mut by_set: BTreeMap<&str, &Deployed> = BTreeMap::new();
        for d in self
            .deployments
            .values()
            .filter(|d| self.covers(&d.d.target, h))
        {
            let rank = |t: &Target| match t {
                Target::Group(_) => 0,
                Target::Subcloud(_) => 1,
                Target::Host(_) => 2,
            };
            match by_set.get(d.d.set.as_str()) {
                Some(o) if rank(&o.d.target) >= rank(&d.d.target) => {}
                _ => drop(by_set.insert(d.d.set.as_str(), d)),
            }
        }
        by_set.into_values().collect()
    }

    /// A host's desired state: (name → (digest, json)) and its digest.
    pub fn desired_for(&self, host: &str) -> (BTreeMap<&str, (&str, &str)>, String) {
        let mut m = BTreeMap::new();
        if let Some(h) = self.hosts.get(host) {
            for d in self.deployments_for(h) {
                for (n, dg, js) in &d.items {
                    m.insert(n.as_str(), (dg.as_str(), js.as_str()));
                }
            }
        }
        let digest = desired_digest(m.iter().map(|(n, (d, _))| (*n, *d)));
        (m, digest)
    }

    /// The release a host's subcloud wants it to run, if any (and if central has it).
    pub fn release_for(&self, host: &str) -> Option<&Release> {
        let h = self.hosts.get(host)?;
        let v = self.subclouds.get(&h.subcloud)?.release.as_ref()?;
        self.releases.get(v)
    }

    /// The Desired message for a host.
    pub fn desired_message(&self, host: &str, force: bool) -> proto::Desired {
        let (m, digest) = self.desired_for(host);
        let release = self.release_for(host);
        proto::Desired {
            digest,
            workloads_json: m.values().map(|(_, js)| js.to_string()).collect(),
            force,
            release_version: release.map(|r| r.version.clone()).unwrap_or_default(),
            release_sha256: release.map(|r| r.sha256.clone()).unwrap_or_default(),
            release_size: release.map_or(0, |r| r.size),
        }
    }

    /// A host's sync status and the differences (missing, extra, differ).
    pub fn sync_of(&self, host: &str) -> (SyncState, Vec<String>, Vec<String>, Vec<String>) {
        let live = self.live.get(host);
        let Some(report) = live.filter(|l| l.online).and_then(|l| l.report.as_ref()) else {
            return (SyncState::Unknown, vec![], vec![], vec![]);
        };
        let (want, _) = self.desired_for(host);
        let have: HashMap<&str, &str> = report
            .workloads
            .iter()
            .map(|w| (w.name.as_str(), w.spec_digest.as_str()))
            .collect();
        let mut missing = Vec::new();
        let mut differ = Vec::new();
        for (n, (d, _)) in &want {
            match have.get(n) {
                None => missing.push(n.to_string()),
                Some(h) if h != d => differ.push(n.to_string()),
                Some(_) => {}
            }
        }
        let mut extra: Vec<String> = have
            .keys()
            .filter(|n| !want.contains_key(*n))
            .map(|n| n.to_string())
            .collect();
        extra.sort();
        let state = if missing.is_empty() && extra.is_empty() && differ.is_empty() {
            SyncState::InSync
        } else {
            SyncState::OutOfSync
        };
        (state, missing, extra, differ)
    }

    pub fn managed(&self, host: &str) -> bool {
        self.hosts
            .get(host)
            .and_then(|h| self.subclouds.get(&h.subcloud))
            .is_some_and(|s| s.managed)
    }
}

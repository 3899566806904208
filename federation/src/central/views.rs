//! What central answers: the API's response bodies, built from the state.

use super::state::{State, SyncState};
use crate::model::{Alarm, Severity, Target};
use serde::{Deserialize, Serialize};

/// Active alarms by severity.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct AlarmCounts {
    /// Critical.
    pub critical: u32,
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Warning.
    pub warning: u32,
}

impl AlarmCounts {
    fn add(&mut self, s: Severity) {
        match s {
            Severity::Critical => self.critical += 1,
            Severity::Major => self.major += 1,
            Severity::Minor => self.minor += 1,
            Severity::Warning => self.warning += 1,
        }
    }
}

/// A host's sync status with the differences named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SyncView {
    /// `in-sync`, `out-of-sync` or `unknown`.
    pub state: SyncState,
    /// Desired here, not running there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Central's workloads running there that are not desired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<String>,
    /// Running with another spec than desired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differ: Vec<String>,
}

/// One of central's workloads on a host, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadView {
    /// Name.
    pub name: String,
    /// Owning set.
    pub set: String,
    /// Phase.
    pub phase: String,
    /// Restarts.
    pub restarts: u32,
    /// Running instance (0 = none).
    pub instance: u64,
    /// Spec digest.
    pub spec_digest: String,
    /// The CPUs it is placed on (kernel list syntax; absent = not pinned or not said).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpus: String,
    /// `shared`, `dedicated` or `realtime` (absent = best effort or not said).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub placement: String,
}

/// A host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostView {
    /// Name.
    pub name: String,
    /// Subcloud.
    pub subcloud: String,
    /// Group.
    pub group: String,
    /// `online`, `offline` or `revoked`.
    pub availability: String,
    /// Sync status.
    pub sync: SyncView,
    /// Enrolled (Unix ms).
    pub enrolled_ms: u64,
    /// Last heartbeat seen since central started (Unix ms; 0 = none).
    pub last_seen_ms: u64,
    /// Certificate expiry (Unix ms).
    pub cert_not_after_ms: u64,
    /// Heartbeat interval (ms).
    pub heartbeat_ms: u64,
    /// The host's Roost version, as it said.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub roost_version: String,
    /// Where it connects from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Active alarms.
    pub alarms: AlarmCounts,
    /// Central's workloads there (in `show`; empty in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadView>,
    /// Workloads made locally on the host (central leaves them alone).
    pub local_workloads: u32,
    /// Problems of the last apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apply_errors: Vec<String>,
    /// Its CPU partition and who holds each CPU (in `show`; absent in lists, or when
    /// the host has not reported one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<super::CpuView>,
    /// Its latency probe runs, oldest first (in `show`; at most 360).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<super::LatencyPoint>,
}

/// A subcloud.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubcloudView {
    /// Name.
    pub name: String,
    /// Group.
    pub group: String,
    /// `managed` or `unmanaged`.
    pub management: String,
    /// `online` (every host), `degraded` (some), `offline` (none), `empty` (no hosts).
    pub availability: String,
    /// The worst of its hosts' (`unknown` with no hosts).
    pub sync: SyncState,
    /// Hosts.
    pub hosts: u32,
    /// Hosts online.
    pub hosts_online: u32,
    /// Active alarms of its hosts.
    pub alarms: AlarmCounts,
    /// The last heartbeat of any of its hosts since central started (Unix ms; 0 = none).
    #[serde(default)]
    pub last_seen_ms: u64,
    /// Labels.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The Roost release its hosts should run (`None`: each keeps what it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Its hosts (in `show`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_list: Vec<HostView>,
}

/// The fleet in numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// Groups.
    pub groups: u32,
    /// Subclouds.
    pub subclouds: u32,
    /// Subclouds managed.
    pub subclouds_managed: u32,
    /// Subclouds by sync status.
    pub subclouds_in_sync: u32,
    /// Subclouds out of sync.
    pub subclouds_out_of_sync: u32,
    /// Subclouds of unknown sync status.
    pub subclouds_unknown: u32,
    /// Subclouds whose hosts are all online.
    #[serde(default)]
    pub subclouds_online: u32,
    /// Subclouds with some hosts online, some not.
    #[serde(default)]
    pub subclouds_degraded: u32,
    /// Subclouds with hosts, none online.
    #[serde(default)]
    pub subclouds_offline: u32,
    /// Subclouds without hosts.
    #[serde(default)]
    pub subclouds_empty: u32,
    /// Hosts enrolled (not revoked).
    pub hosts: u32,
    /// Hosts online.
    pub hosts_online: u32,
    /// Hosts offline.
    pub hosts_offline: u32,
    /// Deployments (set × target).
    pub deployments: u32,
    /// Active alarms.
    pub alarms: AlarmCounts,
    /// `sqlite` or `postgres`.
    pub store: String,
    /// The newest event's seq.
    pub last_event: u64,
}

/// The answer to a deploy or undeploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployResult {
    /// Set.
    pub set: String,
    /// Target.
    pub target: String,
    /// Generation now (0 after undeploy).
    pub generation: u64,
    /// `created`, `updated`, `unchanged` or `removed`.
    pub result: String,
    /// The hosts it concerns.
    pub hosts: Vec<String>,
    /// Deployments of the same set at narrower targets within this one that it
    /// replaced (a deploy to a group is what the whole group runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaced: Vec<String>,
}

/// A join token just made (shown once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    /// The token: give it to `roost host --join URL --join-token TOKEN`.
    pub token: String,
    /// Its public id.
    pub id: String,
    /// Subcloud.
    pub subcloud: String,
    /// Expiry (Unix ms).
    pub expires_ms: u64,
}

/// Which alarms to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AlarmFilter {
    /// Only this subcloud's.
    #[serde(default)]
    pub subcloud: Option<String>,
    /// Only this host's.
    #[serde(default)]
    pub host: Option<String>,
    /// Only this severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Only active ones.
    #[serde(default)]
    pub active: bool,
    /// Only cleared ones.
    #[serde(default)]
    pub cleared: bool,
}

impl State {
    pub(crate) fn alarm_counts(&self, pred: impl Fn(&Alarm) -> bool) -> AlarmCounts {
        let mut c = AlarmCounts::default();
        for id in self.active.values() {
            if let Some(a) = self.alarms.get(id) {
                if pred(a) {
                    c.add(a.severity);
                }
            }
        }
        c
    }

    pub(crate) fn host_view(&self, name: &str, full: bool) -> Option<HostView> {
        let h = self.hosts.get(name)?;
        let live = self.live.get(name);
        let (state, missing, extra, differ) = self.sync_of(name);
        let online = live.is_some_and(|l| l.online);
        let availability = if h.revoked {
            "revoked"
        } else if online {
            "online"
        } else {
            "offline"
        };
        let workloads = if full {
            live.and_then(|l| l.report.as_ref())
                .map(|r| {
                    r.workloads
                        .iter()
                        .map(|w| WorkloadView {
                            name: w.name.clone(),
                            set: w.set.clone(),
                            phase: w.phase.clone(),
                            restarts: w.restarts,
                            instance: w.instance,
                            spec_digest: w.spec_digest.clone(),
                            cpus: w.cpus.clone(),
                            placement: w.placement.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Some(HostView {
            name: h.name.clone(),
            subcloud: h.subcloud.clone(),
            group: self.group_of(&h.subcloud).unwrap_or_default().to_string(),
            availability: availability.into(),
            sync: SyncView {
                state,
                missing,
                extra,
                differ,
            },
            enrolled_ms: h.enrolled_ms,
            last_seen_ms: live.map(|l| l.last_seen_ms).unwrap_or(0),
            cert_not_after_ms: h.cert_not_after_ms,
            heartbeat_ms: h.heartbeat_ms,
            roost_version: live.map(|l| l.roost_version.clone()).unwrap_or_default(),
            address: live.and_then(|l| l.addr).map(|a| a.to_string()),
            alarms: self.alarm_counts(|a| a.host == h.name),
            workloads,
            local_workloads: live
                .and_then(|l| l.report.as_ref())
                .map(|r| r.local_workloads)
                .unwrap_or(0),
            apply_errors: live
                .map(|l| {
                    l.apply_errors
                        .iter()
                        .map(|e| format!("{}: {}", e.workload, e.error))
                        .collect()
                })
                .unwrap_or_default(),
            cpu: if full {
                live.and_then(|l| l.report.as_ref())
                    .and_then(super::hostinfo::cpu_view)
            } else {
                None
            },
            latency: if full {
                live.map(super::hostinfo::latency_view).unwrap_or_default()
            } else {
                Vec::new()
            },
        })
    }

    pub(crate) fn subcloud_view(&self, name: &str, full: bool) -> Option<SubcloudView> {
        let s = self.subclouds.get(name)?;
        let hosts: Vec<HostView> = self
            .subcloud_hosts(name)
            .filter(|h| !h.revoked)
            .filter_map(|h| self.host_view(&h.name, false))
            .collect();
        let online = hosts.iter().filter(|h| h.availability == "online").count() as u32;
        let n = hosts.len() as u32;
        let availability = if n == 0 {
            "empty"
        } else if online == n {
            "online"
        } else if online == 0 {
            "offline"
        } else {
            "degraded"
        };
        let sync = hosts
            .iter()
            .map(|h| h.sync.state)
            .max()
            .unwrap_or(SyncState::Unknown);
        Some(SubcloudView {
            name: s.name.clone(),
            group: s.group.clone(),
            management: if s.managed { "managed" } else { "unmanaged" }.into(),
            availability: availability.into(),
            sync,
            hosts: n,
            hosts_online: online,
            alarms: self.alarm_counts(|a| a.subcloud == name),
            last_seen_ms: hosts.iter().map(|h| h.last_seen_ms).max().unwrap_or(0),
            labels: s.labels.clone(),
            release: s.release.clone(),
            host_list: if full { hosts } else { Vec::new() },
        })
    }

    pub(crate) fn fleet_status(&self, store: &str) -> FleetStatus {
        // One pass over the fleet, not one per subcloud (10,000 subclouds).
        let subs = self.subcloud_rows();
        let availability = |a: &str| subs.iter().filter(|s| s.availability == a).count() as u32;
        let hosts: Vec<&str> = self
            .hosts
            .values()
            .filter(|h| !h.revoked)
            .map(|h| h.name.as_str())
            .collect();
        let online = hosts
            .iter()
            .filter(|h| self.live.get(**h).is_some_and(|l| l.online))
            .count() as u32;
        FleetStatus {
            groups: self.groups.len() as u32,
            subclouds: subs.len() as u32,
            subclouds_managed: subs.iter().filter(|s| s.management == "managed").count() as u32,
            subclouds_in_sync: subs.iter().filter(|s| s.sync == SyncState::InSync).count() as u32,
            subclouds_out_of_sync: subs
                .iter()
                .filter(|s| s.sync == SyncState::OutOfSync)
                .count() as u32,
            subclouds_unknown: subs.iter().filter(|s| s.sync == SyncState::Unknown).count() as u32,
            subclouds_online: availability("online"),
            subclouds_degraded: availability("degraded"),
            subclouds_offline: availability("offline"),
            subclouds_empty: availability("empty"),
            hosts: hosts.len() as u32,
            hosts_online: online,
            hosts_offline: hosts.len() as u32 - online,
            deployments: self.deployments.len() as u32,
            alarms: self.alarm_counts(|_| true),
            store: store.into(),
            last_event: self.last_seq,
        }
    }

    pub(crate) fn alarms_matching(&self, f: &AlarmFilter) -> Vec<Alarm> {
        let mut v: Vec<Alarm> = self
            .alarms
            .values()
            .filter(|a| f.subcloud.as_ref().is_none_or(|s| a.subcloud == *s))
            .filter(|a| f.host.as_ref().is_none_or(|h| a.host == *h))
            .filter(|a| f.severity.is_none_or(|s| a.severity == s))
            .filter(|a| !f.active || a.cleared_ms.is_none())
            .filter(|a| !f.cleared || a.cleared_ms.is_some())
            .cloned()
            .collect();
        v.sort_by(|a, b| b.raised_ms.cmp(&a.raised_ms).then(a.id.cmp(&b.id)));
        v
    }

    pub(crate) fn target_exists(&self, t: &Target) -> Result<(), String> {
        let ok = match t {
            Target::Group(n) => self.groups.contains_key(n),
            Target::Subcloud(n) => self.subclouds.contains_key(n),
            Target::Host(n) => self.hosts.get(n).is_some_and(|h| !h.revoked),
        };
        if ok {
            Ok(())
        } else {
            let hint = match t {
                Target::Group(_) => "`roost central group ls` lists the groups",
                Target::Subcloud(_) => "`roost central subcloud ls` lists the subclouds",
                Target::Host(_) => "`roost central host ls` lists the enrolled hosts",
            };
            Err(format!(
                "{} `{}` does not exist; {hint}",
                t.kind(),
                t.name()
            ))
        }
    }
}

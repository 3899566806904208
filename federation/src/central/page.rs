//! The subcloud table: every subcloud's row computed in one pass over hosts and active
//! alarms (not one pass per subcloud), then filtered, sorted and cut to a page. The
//! operator API's `GET /v1/subclouds?…` and the console's table are its front ends; at
//! 10,000 subclouds a page costs one walk of the fleet and one sort.

use super::state::{State, SyncState};
use super::views::{AlarmCounts, SubcloudView};
use super::{Central, CentralError};
use crate::model::Severity;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::str::FromStr;

/// The most rows one page may hold.
pub const MAX_PAGE: usize = 1_000;

/// What the subcloud table can be sorted by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SubcloudSort {
    /// Name (the default).
    #[default]
    Name,
    /// Group, then name.
    Group,
    /// Availability: online, degraded, offline, empty.
    Availability,
    /// Managed before unmanaged.
    Management,
    /// Sync: in-sync, unknown, out-of-sync.
    Sync,
    /// Hosts.
    Hosts,
    /// Active critical alarms.
    Critical,
    /// Active major alarms.
    Major,
    /// Active minor alarms.
    Minor,
    /// The last heartbeat of any of its hosts.
    LastSeen,
}

impl SubcloudSort {
    /// Every key, as the query spells it.
    pub const NAMES: &'static [&'static str] = &[
        "name",
        "group",
        "availability",
        "management",
        "sync",
        "hosts",
        "critical",
        "major",
        "minor",
        "lastSeen",
    ];
}

impl FromStr for SubcloudSort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "name" => Self::Name,
            "group" => Self::Group,
            "availability" => Self::Availability,
            "management" => Self::Management,
            "sync" => Self::Sync,
            "hosts" => Self::Hosts,
            "critical" => Self::Critical,
            "major" => Self::Major,
            "minor" => Self::Minor,
            "lastSeen" => Self::LastSeen,
            _ => {
                return Err(format!(
                    "`{s}` is not a sort key: use one of {}",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }
}

/// A query of the subcloud table. Every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubcloudQuery {
    /// A part of the name or the group (case-insensitive).
    pub text: Option<String>,
    /// Exactly this group.
    pub group: Option<String>,
    /// `online`, `degraded`, `offline` or `empty`.
    pub availability: Option<String>,
    /// This sync status.
    pub sync: Option<SyncState>,
    /// `managed` or `unmanaged`.
    pub management: Option<String>,
    /// The sort key (ties go by name).
    pub sort: SubcloudSort,
    /// Largest first.
    pub descending: bool,
    /// Rows skipped.
    pub offset: usize,
    /// Rows at most (`None` = all; at most [`MAX_PAGE`] when given).
    pub limit: Option<usize>,
}

/// One page of the subcloud table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubcloudPage {
    /// Rows matching the filters (all pages).
    pub matched: usize,
    /// This page's rows.
    pub items: Vec<SubcloudView>,
}

const AVAILABILITIES: &[&str] = &["online", "degraded", "offline", "empty"];

impl SubcloudQuery {
    /// Check the values a caller gave (field names as the API's query names them).
    pub fn check(&self) -> Result<(), CentralError> {
        if let Some(a) = &self.availability {
            if !AVAILABILITIES.contains(&a.as_str()) {
                return Err(CentralError::field(
                    "availability",
                    format!("`{a}` is not one of {}", AVAILABILITIES.join(", ")),
                ));
            }
        }
        if let Some(m) = &self.management {
            if m != "managed" && m != "unmanaged" {
                return Err(CentralError::field(
                    "management",
                    format!("`{m}` is not one of managed, unmanaged"),
                ));
            }
        }
        if let Some(l) = self.limit {
            if l == 0 || l > MAX_PAGE {
                return Err(CentralError::field(
                    "limit",
                    format!("{l} is out of range: give 1 to {MAX_PAGE}"),
                ));
            }
        }
        Ok(())
    }

    fn keeps(&self, v: &SubcloudView, needle: Option<&str>) -> bool {
        needle
            .is_none_or(|n| v.name.to_lowercase().contains(n) || v.group.to_lowercase().contains(n))
            && self.group.as_ref().is_none_or(|g| v.group == *g)
            && self
                .availability
                .as_ref()
                .is_none_or(|a| v.availability == *a)
            && self.sync.is_none_or(|s| v.sync == s)
            && self.management.as_ref().is_none_or(|m| v.management == *m)
    }
}

fn availability_rank(a: &str) -> usize {
    AVAILABILITIES
        .iter()
        .position(|x| *x == a)
        .unwrap_or(AVAILABILITIES.len())
}

fn compare(sort: SubcloudSort, a: &SubcloudView, b: &SubcloudView) -> Ordering {
    let primary = match sort {
        SubcloudSort::Name => Ordering::Equal,
        SubcloudSort::Group => a.group.cmp(&b.group),
        SubcloudSort::Availability => {
            availability_rank(&a.availability).cmp(&availability_rank(&b.availability))
        }
        SubcloudSort::Management => a.management.cmp(&b.management),
        SubcloudSort::Sync => a.sync.cmp(&b.sync),
        SubcloudSort::Hosts => a.hosts.cmp(&b.hosts),
        SubcloudSort::Critical => a.alarms.critical.cmp(&b.alarms.critical),
        SubcloudSort::Major => a.alarms.major.cmp(&b.alarms.major),
        SubcloudSort::Minor => a.alarms.minor.cmp(&b.alarms.minor),
        SubcloudSort::LastSeen => a.last_seen_ms.cmp(&b.last_seen_ms),
    };
    primary.then_with(|| a.name.cmp(&b.name))
}

fn count(c: &mut AlarmCounts, s: Severity) {
    match s {
        Severity::Critical => c.critical += 1,
        Severity::Major => c.major += 1,
        Severity::Minor => c.minor += 1,
        Severity::Warning => c.warning += 1,
    }
}

#[derive(Default)]
struct Tally {
    hosts: u32,
    online: u32,
    sync: Option<SyncState>,
    last_seen_ms: u64,
    alarms: AlarmCounts,
}

impl State {
    /// Every subcloud's row (no host lists), in name order: the same values as
    /// `subcloud_view(name, false)` gives one by one, in one pass over the hosts and
    /// one over the active alarms.
    pub(crate) fn subcloud_rows(&self) -> Vec<SubcloudView> {
        let mut tally: HashMap<&str, Tally> = HashMap::with_capacity(self.subclouds.len());
        for h in self.hosts.values().filter(|h| !h.revoked) {
            let t = tally.entry(h.subcloud.as_str()).or_default();
            let live = self.live.get(&h.name);
            t.hosts += 1;
            if live.is_some_and(|l| l.online) {
                t.online += 1;
            }
            t.last_seen_ms = t
                .last_seen_ms
                .max(live.map(|l| l.last_seen_ms).unwrap_or(0));
            let (s, ..) = self.sync_of(&h.name);
            t.sync = Some(t.sync.map_or(s, |x| x.max(s)));
        }
        for id in self.active.values() {
            if let Some(a) = self.alarms.get(id) {
                count(
                    &mut tally.entry(a.subcloud.as_str()).or_default().alarms,
                    a.severity,
                );
            }
        }
        self.subclouds
            .values()
            .map(|s| {
                let t = tally.remove(s.name.as_str()).unwrap_or_default();
                let availability = if t.hosts == 0 {
                    "empty"
                } else if t.online == t.hosts {
                    "online"
                } else if t.online == 0 {
                    "offline"
                } else {
                    "degraded"
                };
                SubcloudView {
                    name: s.name.clone(),
                    group: s.group.clone(),
                    management: if s.managed { "managed" } else { "unmanaged" }.into(),
                    availability: availability.into(),
                    sync: t.sync.unwrap_or(SyncState::Unknown),
                    hosts: t.hosts,
                    hosts_online: t.online,
                    alarms: t.alarms,
                    last_seen_ms: t.last_seen_ms,
                    labels: s.labels.clone(),
                    release: s.release.clone(),
                    host_list: Vec::new(),
                }
            })
            .collect()
    }

    pub(crate) fn subcloud_page(&self, q: &SubcloudQuery) -> SubcloudPage {
        let needle = q.text.as_ref().map(|t| t.to_lowercase());
        let mut rows: Vec<SubcloudView> = self
            .subcloud_rows()
            .into_iter()
            .filter(|v| q.keeps(v, needle.as_deref()))
            .collect();
        let matched = rows.len();
        if q.sort != SubcloudSort::Name || q.descending {
            rows.sort_unstable_by(|a, b| {
                let o = compare(q.sort, a, b);
                if q.descending {
                    o.reverse()
                } else {
                    o
                }
            });
        }
        let items = rows
            .into_iter()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .collect();
        SubcloudPage { matched, items }
    }
}

impl Central {
    /// One page of the subcloud table (filtered, sorted); refuses bad values naming
    /// the field.
    pub fn subcloud_page(&self, q: &SubcloudQuery) -> Result<SubcloudPage, CentralError> {
        q.check()?;
        Ok(self.lock().subcloud_page(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::central::state::Live;
    use crate::model::{Alarm, Host, Subcloud};

    fn state(n: usize) -> State {
        let mut st = State::default();
        for i in 0..n {
            let name = format!("s{i:05}");
            st.subclouds.insert(
                name.clone(),
                Subcloud {
                    name: name.clone(),
                    group: if i % 2 == 0 { "even" } else { "odd" }.into(),
                    managed: i % 3 != 0,
                    labels: Default::default(),
                    release: None,
                    created_ms: 1,
                },
            );
            if i % 4 == 0 {
                for j in 0..2 {
                    let h = format!("h{i}-{j}");
                    st.put_host(Host {
                        name: h.clone(),
                        subcloud: name.clone(),
                        cert_serial: String::new(),
                        prev_cert_serial: None,
                        cert_not_after_ms: 0,
                        enrolled_ms: 0,
                        revoked: false,
                        heartbeat_ms: 500,
                    });
                    if j == 0 && i % 8 == 0 {
                        st.live.insert(
                            h.clone(),
                            Live {
                                online: true,
                                last_seen_ms: 1000 + i as u64,
                                ..Default::default()
                            },
                        );
                    }
                }
                let a = Alarm {
                    id: format!("a{i}"),
                    code: "host.offline".into(),
                    severity: if i % 8 == 0 {
                        Severity::Critical
                    } else {
                        Severity::Minor
                    },
                    entity: format!("host/h{i}-1"),
                    host: format!("h{i}-1"),
                    subcloud: name.clone(),
                    reason: String::new(),
                    raised_ms: 1,
                    cleared_ms: None,
                };
                st.active.insert(
                    (a.host.clone(), a.code.clone(), a.entity.clone()),
                    a.id.clone(),
                );
                st.alarms.insert(a.id.clone(), a);
            }
        }
        st
    }

    #[test]
    fn rows_equal_the_one_by_one_views() {
        let st = state(40);
        let one_by_one: Vec<SubcloudView> = st
            .subclouds
            .keys()
            .filter_map(|n| st.subcloud_view(n, false))
            .collect();
        assert_eq!(st.subcloud_rows(), one_by_one);
        let avail: Vec<&str> = one_by_one.iter().map(|v| v.availability.as_str()).collect();
        for a in ["empty", "degraded", "offline"] {
            assert!(avail.contains(&a), "{a} in {avail:?}");
        }
    }

    #[test]
    fn filters_sorts_and_pages() {
        let st = state(100);
        let q = SubcloudQuery {
            availability: Some("degraded".into()),
            sort: SubcloudSort::Critical,
            descending: true,
            limit: Some(5),
            ..Default::default()
        };
        let p = st.subcloud_page(&q);
        // i % 8 == 0 of 0..100: 13 degraded subclouds, each with one critical alarm.
        assert_eq!(p.matched, 13);
        assert_eq!(p.items.len(), 5);
        assert!(p.items.iter().all(|v| v.availability == "degraded"));
        // Ties (all 1 critical) fall back to the name, reversed with the order.
        assert_eq!(p.items[0].name, "s00096");

        let q = SubcloudQuery {
            text: Some("S0009".into()),
            group: Some("odd".into()),
            offset: 2,
            ..Default::default()
        };
        let p = st.subcloud_page(&q);
        assert_eq!(p.matched, 5, "s00091..s00099 odd");
        let names: Vec<&str> = p.items.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["s00095", "s00097", "s00099"]);

        let q = SubcloudQuery {
            sort: SubcloudSort::LastSeen,
            descending: true,
            limit: Some(1),
            ..Default::default()
        };
        assert_eq!(st.subcloud_page(&q).items[0].name, "s00096");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (q, field) in [
            (
                SubcloudQuery {
                    availability: Some("up".into()),
                    ..Default::default()
                },
                "availability",
            ),
            (
                SubcloudQuery {
                    limit: Some(MAX_PAGE + 1),
                    ..Default::default()
                },
                "limit",
            ),
            (
                SubcloudQuery {
                    management: Some("x".into()),
                    ..Default::default()
                },
                "management",
            ),
        ] {
            match q.check() {
                Err(CentralError::Invalid { details, .. }) => assert_eq!(details[0].field, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!("lastSeen".parse::<SubcloudSort>().is_ok());
        assert!("nope".parse::<SubcloudSort>().is_err());
    }
}

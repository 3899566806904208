//! The operator's verbs: groups, subclouds, hosts, join tokens, deployments, alarms.

use super::views::{AlarmFilter, DeployResult, FleetStatus, HostView, SubcloudView, TokenCreated};
use super::{Central, CentralError, FieldProblem};
use crate::link::{workload_name, OWNER_CENTRAL, OWNER_LABEL, SET_LABEL};
use crate::model::{
    check_name, now_ms, Alarm, Deployment, Group, JoinToken, Subcloud, Target, WorkloadSet,
    DEFAULT_GROUP,
};
use crate::pki::JoinTokenSecret;
use crate::store::Change;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The most workloads one set may hold.
pub const MAX_SET_WORKLOADS: usize = 1_000;
/// Join token lifetime bounds.
pub const TOKEN_TTL_MIN: Duration = Duration::from_secs(1);
/// Join token lifetime bounds.
pub const TOKEN_TTL_MAX: Duration = Duration::from_secs(30 * 24 * 3600);

/// Two sets naming one workload for one host: the refusal, naming both. The same set
/// at another target is no conflict (the more specific target overrides).
pub(crate) fn set_conflict(
    st: &super::state::State,
    name: &str,
    target: &Target,
    names: &BTreeSet<&str>,
) -> Option<String> {
    for d in st.deployments.values() {
        if d.d.set == name || !st.overlap(&d.d.target, target) {
            continue;
        }
        let shared: Vec<&str> = d
            .items
            .iter()
            .map(|(n, _, _)| n.as_str())
            .filter(|n| names.contains(n))
            .collect();
        if !shared.is_empty() {
            return Some(format!(
                "set `{name}` at {target} and set `{}` at {} both name workload{} {} for the \
                 same hosts; rename one or undeploy `{}` first",
                d.d.set,
                d.d.target,
                if shared.len() > 1 { "s" } else { "" },
                shared.join(", "),
                d.d.set
            ));
        }
    }
    None
}

fn name_field(field: &str, name: &str) -> Result<(), CentralError> {
    check_name(name).map_err(|e| CentralError::field(field, e))
}

impl Central {
    pub(crate) async fn ensure_default_group(&self) -> Result<(), CentralError> {
        self.write(|b| {
            if !b.st.groups.contains_key(DEFAULT_GROUP) {
                b.push(Change::PutGroup(Group {
                    name: DEFAULT_GROUP.into(),
                    description: "subclouds added without --group".into(),
                    created_ms: now_ms(),
                }));
            }
            Ok(())
        })
        .await
    }

    /// Add a group.
    pub async fn add_group(&self, name: &str, description: &str) -> Result<Group, CentralError> {
        name_field("name", name)?;
        self.write(|b| {
            if b.st.groups.contains_key(name) {
                return Err(CentralError::Conflict(format!(
                    "group `{name}` already exists"
                )));
            }
            let g = Group {
                name: name.into(),
                description: description.into(),
                created_ms: now_ms(),
            };
            b.push(Change::PutGroup(g.clone()));
            b.event("group-added", format!("group/{name}"), "");
            Ok(g)
        })
        .await
    }

    /// Every group.
    pub fn groups(&self) -> Vec<Group> {
        self.lock().groups.values().cloned().collect()
    }

    /// Remove an empty group with nothing deployed to it.
    pub async fn rm_group(&self, name: &str) -> Result<(), CentralError> {
        self.write(|b| {
            if !b.st.groups.contains_key(name) {
                return Err(CentralError::NotFound(format!(
                    "group `{name}` does not exist; `roost central group ls` lists the groups"
                )));
            }
            if name == DEFAULT_GROUP {
                return Err(CentralError::Conflict(format!(
                    "group `{DEFAULT_GROUP}` is where subclouds go without --group; it stays"
                )));
            }
            let subs: Vec<&str> = b
                .st
                .subclouds
                .values()
                .filter(|s| s.group == name)
                .map(|s| s.name.as_str())
                .collect();
            if !subs.is_empty() {
                return Err(CentralError::Conflict(format!(
                    "group `{name}` still holds subclouds {}; remove them first",
                    subs.join(", ")
                )));
            }
            let t = Target::Group(name.into());
            if let Some(d) = b.st.deployments.values().find(|d| d.d.target == t) {
                return Err(CentralError::Conflict(format!(
                    "set `{}` is deployed to group/{name}; `roost central undeploy {} --target group/{name}` first",
                    d.d.set, d.d.set
                )));
            }
            b.push(Change::DeleteGroup(name.into()));
            b.event("group-removed", format!("group/{name}"), "");
            Ok(())
        })
        .await
    }

    /// Add a subcloud (managed from the start).
    pub async fn add_subcloud(
        &self,
        name: &str,
        group: Option<&str>,
    ) -> Result<SubcloudView, CentralError> {
        name_field("name", name)?;
        let group = group.unwrap_or(DEFAULT_GROUP);
        name_field("group", group)?;
        self.write(|b| {
            if b.st.subclouds.contains_key(name) {
                return Err(CentralError::Conflict(format!(
                    "subcloud `{name}` already exists"
                )));
            }
            if !b.st.groups.contains_key(group) {
                return Err(CentralError::field(
                    "group",
                    format!(
                        "group `{group}` does not exist; `roost central group add {group}` first"
                    ),
                ));
            }
            b.push(Change::PutSubcloud(Subcloud {
                name: name.into(),
                group: group.into(),
                managed: true,
                labels: BTreeMap::new(),
                release: None,
                created_ms: now_ms(),
            }));
            b.event(
                "subcloud-added",
                format!("subcloud/{name}"),
                format!("in group {group}"),
            );
            Ok(())
        })
        .await?;
        self.subcloud(name)
    }

    /// Every subcloud.
    pub fn subclouds(&self) -> Vec<SubcloudView> {
        let st = self.lock();
        st.subclouds
            .keys()
            .filter_map(|n| st.subcloud_view(n, false))
            .collect()
    }

    /// One subcloud with its hosts.
    pub fn subcloud(&self, name: &str) -> Result<SubcloudView, CentralError> {
        self.lock().subcloud_view(name, true).ok_or_else(|| {
            CentralError::NotFound(format!(
                "subcloud `{name}` does not exist; `roost central subcloud ls` lists them"
            ))
        })
    }

    /// Manage or unmanage a subcloud. Managing pushes its desired state at once.
    pub async fn set_managed(
        &self,
        name: &str,
        managed: bool,
    ) -> Result<SubcloudView, CentralError> {
        let changed = self
            .write(|b| {
                let Some(s) = b.st.subclouds.get(name) else {
                    return Err(CentralError::NotFound(format!(
                        "subcloud `{name}` does not exist; `roost central subcloud ls` lists them"
                    )));
                };
                if s.managed == managed {
                    return Ok(false);
                }
                let mut s = s.clone();
                s.managed = managed;
                b.push(Change::PutSubcloud(s));
                b.event(
                    if managed {
                        "subcloud-managed"
                    } else {
                        "subcloud-unmanaged"
                    },
                    format!("subcloud/{name}"),
                    "",
                );
                Ok(true)
            })
            .await?;
        if changed && managed {
            self.push_subcloud(name, false);
        }
        self.subcloud(name)
    }

    /// Push a managed subcloud's desired state to its online hosts now (drift repair).
    pub async fn sync_subcloud(&self, name: &str) -> Result<Vec<String>, CentralError> {
        {
            let st = self.lock();
            let Some(s) = st.subclouds.get(name) else {
                return Err(CentralError::NotFound(format!(
                    "subcloud `{name}` does not exist; `roost central subcloud ls` lists them"
                )));
            };
            if !s.managed {
                return Err(CentralError::Conflict(format!(
                    "subcloud `{name}` is unmanaged: nothing is pushed to it; `roost central subcloud manage {name}` first"
                )));
            }
        }
        Ok(self.push_subcloud(name, true))
    }

    /// Remove a subcloud that has no hosts and nothing deployed to it.
    pub async fn rm_subcloud(&self, name: &str) -> Result<(), CentralError> {
        self.write(|b| {
            if !b.st.subclouds.contains_key(name) {
                return Err(CentralError::NotFound(format!(
                    "subcloud `{name}` does not exist; `roost central subcloud ls` lists them"
                )));
            }
            let hosts: Vec<&str> = b
                .st
                .hosts
                .values()
                .filter(|h| h.subcloud == name && !h.revoked)
                .map(|h| h.name.as_str())
                .collect();
            if !hosts.is_empty() {
                return Err(CentralError::Conflict(format!(
                    "subcloud `{name}` still has hosts {}; `roost central host revoke NAME` them first",
                    hosts.join(", ")
                )));
            }
            let t = Target::Subcloud(name.into());
            if let Some(d) = b.st.deployments.values().find(|d| d.d.target == t) {
                return Err(CentralError::Conflict(format!(
                    "set `{}` is deployed to subcloud/{name}; `roost central undeploy {} --target subcloud/{name}` first",
                    d.d.set, d.d.set
                )));
            }
            // Revoked hosts of the subcloud go with it.
            let gone: Vec<String> = b
                .st
                .hosts
                .values()
                .filter(|h| h.subcloud == name)
                .map(|h| h.name.clone())
                .collect();
            for h in gone {
                b.push(Change::DeleteHost(h));
            }
            b.push(Change::DeleteSubcloud(name.into()));
            b.event("subcloud-removed", format!("subcloud/{name}"), "");
            Ok(())
        })
        .await
    }

    /// Every host.
    pub fn hosts(&self) -> Vec<HostView> {
        let st = self.lock();
        st.hosts
            .keys()
            .filter_map(|n| st.host_view(n, false))
            .collect()
    }

    /// One host with its workloads.
    pub fn host(&self, name: &str) -> Result<HostView, CentralError> {
        self.lock().host_view(name, true).ok_or_else(|| {
            CentralError::NotFound(format!(
                "host `{name}` is not enrolled; `roost central host ls` lists the hosts"
            ))
        })
    }

    /// Revoke a host: its link is cut now and its certificate refused from then on.
    pub async fn revoke_host(&self, name: &str) -> Result<HostView, CentralError> {
        self.write(|b| {
            let Some(h) = b.st.hosts.get(name) else {
                return Err(CentralError::NotFound(format!(
                    "host `{name}` is not enrolled; `roost central host ls` lists the hosts"
                )));
            };
            if h.revoked {
                return Ok(());
            }
            let mut h = h.clone();
            h.revoked = true;
            b.push(Change::PutHost(h));
            b.event(
                "host-revoked",
                format!("host/{name}"),
                "certificate refused from now on",
            );
            Ok(())
        })
        .await?;
        // Cut the link: dropping the session's sender ends the stream.
        if let Some(l) = self.lock().live.get_mut(name) {
            l.session = None;
            l.online = false;
        }
        self.host(name)
    }

    /// Make a one-time join token for a subcloud.
    pub async fn create_token(
        &self,
        subcloud: &str,
        ttl: Duration,
    ) -> Result<TokenCreated, CentralError> {
        if ttl < TOKEN_TTL_MIN || ttl > TOKEN_TTL_MAX {
            return Err(CentralError::field(
                "ttl",
                format!(
                    "{} s is out of range: give 1s to 30d (e.g. 1h)",
                    ttl.as_secs()
                ),
            ));
        }
        let secret = JoinTokenSecret::generate(&self.pki.ca_sha256());
        let created = now_ms();
        let expires_ms = created + ttl.as_millis() as u64;
        self.write(|b| {
            if !b.st.subclouds.contains_key(subcloud) {
                return Err(CentralError::field(
                    "subcloud",
                    format!("subcloud `{subcloud}` does not exist; `roost central subcloud add {subcloud}` first"),
                ));
            }
            b.push(Change::PutToken(JoinToken {
                id: secret.id.clone(),
                secret_sha256: secret.secret_sha256(),
                subcloud: subcloud.into(),
                created_ms: created,
                expires_ms,
                used: None,
            }));
            b.event("token-created", format!("subcloud/{subcloud}"), format!("token {}", secret.id));
            Ok(())
        })
        .await?;
        Ok(TokenCreated {
            token: secret.encode(),
            id: secret.id.clone(),
            subcloud: subcloud.into(),
            expires_ms,
        })
    }

    /// Deploy (or update) a set at a target and push it to the hosts concerned.
    pub async fn deploy(
        &self,
        set: WorkloadSet,
        target: Target,
    ) -> Result<DeployResult, CentralError> {
        let name = set.metadata.name.clone();
        let workloads = self.check_set(&set)?;
        let tkey = target.to_string();
        let (result, hosts, replaced) = self
            .write(|b| {
                b.st.target_exists(&target)
                    .map_err(|e| CentralError::field("target", e))?;
                let names: BTreeSet<&str> = workloads.iter().filter_map(workload_name).collect();
                if let Some(e) = set_conflict(b.st, &name, &target, &names) {
                    return Err(CentralError::Conflict(e));
                }
                let old = b.st.deployments.get(&(name.clone(), tkey.clone()));
                let (generation, result) = match old {
                    Some(o) if o.d.workloads == workloads => (o.d.generation, "unchanged"),
                    Some(o) => (o.d.generation + 1, "updated"),
                    None => (1, "created"),
                };
                let hosts = b.st.hosts_of(&target);
                // The same set at narrower targets inside this one (a rollout's
                // subcloud steps, an override) is replaced: what is deployed to a
                // group is what the whole group runs.
                let replaced: Vec<Target> =
                    b.st.deployments
                        .values()
                        .filter(|d| d.d.set == name && b.st.within(&d.d.target, &target))
                        .map(|d| d.d.target.clone())
                        .collect();
                for t in &replaced {
                    b.push(Change::DeleteDeployment {
                        set: name.clone(),
                        target: t.to_string(),
                    });
                }
                if result != "unchanged" {
                    b.push(Change::PutDeployment(Deployment {
                        set: name.clone(),
                        target: target.clone(),
                        generation,
                        workloads: workloads.clone(),
                        updated_ms: now_ms(),
                    }));
                }
                if result != "unchanged" || !replaced.is_empty() {
                    let also = if replaced.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; replaced its deployment at {}",
                            replaced
                                .iter()
                                .map(Target::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    b.event(
                        "deployed",
                        format!("set/{name}@{target}"),
                        format!(
                            "generation {generation}, {} workloads, {} hosts{also}",
                            workloads.len(),
                            hosts.len()
                        ),
                    );
                }
                Ok(((generation, result), hosts, replaced))
            })
            .await?;
        if result.1 != "unchanged" || !replaced.is_empty() {
            for h in &hosts {
                self.push_host(h, false);
            }
        }
        Ok(DeployResult {
            set: name,
            target: tkey,
            generation: result.0,
            result: result.1.into(),
            hosts,
            replaced: replaced.iter().map(Target::to_string).collect(),
        })
    }

    /// Remove a set from a target; the hosts remove its workloads.
    pub async fn undeploy(&self, set: &str, target: Target) -> Result<DeployResult, CentralError> {
        let tkey = target.to_string();
        let hosts = self
            .write(|b| {
                if !b
                    .st
                    .deployments
                    .contains_key(&(set.to_string(), tkey.clone()))
                {
                    let at: Vec<String> =
                        b.st.deployments
                            .values()
                            .filter(|d| d.d.set == set)
                            .map(|d| d.d.target.to_string())
                            .collect();
                    return Err(CentralError::NotFound(if at.is_empty() {
                        format!("set `{set}` is not deployed anywhere")
                    } else {
                        format!(
                            "set `{set}` is not deployed to {target}; it is deployed to {}",
                            at.join(", ")
                        )
                    }));
                }
                let hosts = b.st.hosts_of(&target);
                b.push(Change::DeleteDeployment {
                    set: set.into(),
                    target: tkey.clone(),
                });
                b.event(
                    "undeployed",
                    format!("set/{set}@{target}"),
                    format!("{} hosts", hosts.len()),
                );
                Ok(hosts)
            })
            .await?;
        for h in &hosts {
            self.push_host(h, false);
        }
        Ok(DeployResult {
            set: set.into(),
            target: tkey,
            generation: 0,
            result: "removed".into(),
            hosts,
            replaced: Vec::new(),
        })
    }

    /// Every deployment (workload specs included).
    pub fn deployments(&self) -> Vec<Deployment> {
        self.lock()
            .deployments
            .values()
            .map(|d| d.d.clone())
            .collect()
    }

    /// The fleet in numbers.
    pub fn status(&self) -> FleetStatus {
        self.lock().fleet_status(self.store.backend())
    }

    /// Alarms, newest first.
    pub fn alarms(&self, f: &AlarmFilter) -> Vec<Alarm> {
        self.lock().alarms_matching(f)
    }

    /// Check a set and return its workloads normalised, labelled and in name order.
    pub(crate) fn check_set(
        &self,
        set: &WorkloadSet,
    ) -> Result<Vec<serde_json::Value>, CentralError> {
        let mut problems = Vec::new();
        let mut p = |field: String, message: String| problems.push(FieldProblem { field, message });
        if set.api_version != "roost.dev/v1" {
            p(
                "apiVersion".into(),
                format!("`{}` is not supported: use `roost.dev/v1`", set.api_version),
            );
        }
        if set.kind != "WorkloadSet" {
            p(
                "kind".into(),
                format!("`{}`: this call takes `kind: WorkloadSet`", set.kind),
            );
        }
        if let Err(e) = check_name(&set.metadata.name) {
            p("metadata.name".into(), e);
        }
        if set.spec.workloads.is_empty() {
            p(
                "spec.workloads".into(),
                "empty: a set needs at least one workload (to remove a set, undeploy it)".into(),
            );
        }
        if set.spec.workloads.len() > MAX_SET_WORKLOADS {
            p(
                "spec.workloads".into(),
                format!(
                    "{} workloads: at most {MAX_SET_WORKLOADS} per set",
                    set.spec.workloads.len()
                ),
            );
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, w) in set.spec.workloads.iter().enumerate() {
            let mut w = w.clone();
            if let Some(meta) = w.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                let labels = meta
                    .entry("labels")
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let Some(l) = labels.as_object_mut() {
                    l.insert(OWNER_LABEL.into(), OWNER_CENTRAL.into());
                    l.insert(SET_LABEL.into(), set.metadata.name.clone().into());
                }
            }
            match self.check.normalize(&w) {
                Ok(n) => {
                    let name = workload_name(&n).unwrap_or_default().to_string();
                    if !seen.insert(name.clone()) {
                        p(
                            format!("spec.workloads[{i}].metadata.name"),
                            format!(
                                "`{name}` appears twice in the set; workload names must be unique"
                            ),
                        );
                    }
                    out.push(n);
                }
                Err(errs) => {
                    for e in errs {
                        p(format!("spec.workloads[{i}].{}", e.field), e.message);
                    }
                }
            }
        }
        if !problems.is_empty() {
            let n = problems.len();
            return Err(CentralError::Invalid {
                message: format!(
                    "invalid workload set `{}`: {n} problem{}",
                    set.metadata.name,
                    if n > 1 { "s" } else { "" }
                ),
                details: problems,
            });
        }
        out.sort_by(|a, b| workload_name(a).cmp(&workload_name(b)));
        Ok(out)
    }
}

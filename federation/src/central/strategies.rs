//! The operator's strategy verbs: create, list, show, apply, approve, abort, remove;
//! and subcloud labels (which selectors match). The engine that moves the steps is
//! [`super::rollout`].

use super::ops::set_conflict;
use super::state::{State, StrategyRt};
use super::views::SubcloudView;
use super::{Central, CentralError, FieldProblem};
use crate::link::workload_name;
use crate::model::{now_ms, Target};
use crate::store::Change;
use crate::strategy::{
    check_label_key, check_label_value, parse_selector, selector_matches, Progress, Step,
    StepState, Strategy, StrategyChange, StrategyRequest, StrategyState, StrategyTarget,
    StrategyView, MAX_STEPS,
};
use std::collections::{BTreeMap, BTreeSet};

fn view(rt: &StrategyRt, with_steps: bool) -> StrategyView {
    StrategyView {
        strategy: rt.s.clone(),
        progress: Progress::of(&rt.steps),
        steps: if with_steps {
            rt.steps.clone()
        } else {
            Vec::new()
        },
    }
}

fn not_found(name: &str) -> CentralError {
    CentralError::NotFound(format!(
        "strategy `{name}` does not exist; `roost central strategy ls` lists the strategies"
    ))
}

/// The subclouds a target names, in step order, or the problem.
fn resolve(st: &State, t: &StrategyTarget) -> Result<Vec<String>, CentralError> {
    let list: Vec<String> = match t {
        StrategyTarget::Group(g) => {
            if !st.groups.contains_key(g) {
                return Err(CentralError::field(
                    "group",
                    format!(
                        "group `{g}` does not exist; `roost central group ls` lists the groups"
                    ),
                ));
            }
            st.subclouds
                .values()
                .filter(|s| s.group == *g)
                .map(|s| s.name.clone())
                .collect()
        }
        StrategyTarget::Subclouds(names) => {
            let details: Vec<FieldProblem> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| !st.subclouds.contains_key(*n))
                .map(|(i, n)| FieldProblem {
                    field: format!("subclouds[{i}]"),
                    message: format!(
                        "subcloud `{n}` does not exist; `roost central subcloud ls` lists them"
                    ),
                })
                .collect();
            if !details.is_empty() {
                return Err(CentralError::fields(details));
            }
            names.clone()
        }
        StrategyTarget::Selector(sel) => {
            let terms = parse_selector(sel).map_err(|e| CentralError::field("selector", e))?;
            st.subclouds
                .values()
                .filter(|s| selector_matches(&terms, &s.labels))
                .map(|s| s.name.clone())
                .collect()
        }
    };
    if list.is_empty() {
        let field = match t {
            StrategyTarget::Group(_) => "group",
            StrategyTarget::Subclouds(_) => "subclouds",
            StrategyTarget::Selector(_) => "selector",
        };
        return Err(CentralError::field(
            field,
            format!("{t} covers no subcloud: there is nothing to roll out"),
        ));
    }
    if list.len() > MAX_STEPS {
        return Err(CentralError::field(
            "group",
            format!("{t} covers {} subclouds: at most {MAX_STEPS}", list.len()),
        ));
    }
    Ok(list)
}

/// A running strategy sharing subclouds with `list`: the refusal, naming it and them.
fn overlap(st: &State, name: &str, list: &[String]) -> Option<String> {
    for rt in st.strategies.values() {
        if rt.s.state.is_final() || rt.s.name == name {
            continue;
        }
        let shared: Vec<&str> = list
            .iter()
            .filter(|s| rt.index.contains_key(*s))
            .map(String::as_str)
            .collect();
        if !shared.is_empty() {
            let shown: Vec<&str> = shared.iter().take(10).copied().collect();
            let more = if shared.len() > shown.len() {
                format!(" and {} more", shared.len() - shown.len())
            } else {
                String::new()
            };
            return Some(format!(
                "strategy `{}` ({}) already covers subcloud{} {}{more}; wait for it to end, \
                 abort it, or leave those subclouds out",
                rt.s.name,
                rt.s.state.as_str(),
                if shared.len() > 1 { "s" } else { "" },
                shown.join(", ")
            ));
        }
    }
    None
}

impl Central {
    /// Create a strategy (state `initial`): resolve its target to subclouds, refuse
    /// one overlapping a strategy that has not ended.
    pub async fn create_strategy(
        &self,
        req: StrategyRequest,
    ) -> Result<StrategyView, CentralError> {
        let options = req.options().map_err(|p| {
            let details: Vec<FieldProblem> = p
                .into_iter()
                .map(|(field, message)| FieldProblem { field, message })
                .collect();
            CentralError::fields(details)
        })?;
        let Some(target) = req.target() else {
            return Err(CentralError::field("group", "missing target"));
        };
        let workloads = match &req.set {
            Some(set) => Some(self.check_set(set)?),
            None => None,
        };
        let name = req.name.clone();
        let rt = self
            .write(|b| {
                if b.st.strategies.contains_key(&name) {
                    return Err(CentralError::Conflict(format!(
                        "strategy `{name}` already exists; `roost central strategy rm {name}` \
                         removes it once it has ended"
                    )));
                }
                let list = resolve(b.st, &target)?;
                if let Some(e) = overlap(b.st, &name, &list) {
                    return Err(CentralError::Conflict(e));
                }
                let change = match (&req.set, workloads, &req.release) {
                    (Some(set), Some(workloads), _) => {
                        let set_name = set.metadata.name.clone();
                        let names: BTreeSet<&str> =
                            workloads.iter().filter_map(workload_name).collect();
                        for sc in &list {
                            let t = Target::Subcloud(sc.clone());
                            if let Some(e) = set_conflict(b.st, &set_name, &t, &names) {
                                return Err(CentralError::Conflict(e));
                            }
                        }
                        let generation =
                            b.st.deployments
                                .values()
                                .filter(|d| d.d.set == set_name)
                                .map(|d| d.d.generation)
                                .max()
                                .unwrap_or(0)
                                + 1;
                        StrategyChange::Set {
                            set: set_name,
                            workloads,
                            generation,
                        }
                    }
                    (_, _, Some(version)) => {
                        b.st.release_exists(version)
                            .map_err(|e| CentralError::field("release", e))?;
                        StrategyChange::Release {
                            version: version.clone(),
                        }
                    }
                    _ => {
                        return Err(CentralError::field(
                            "set",
                            "missing: give `set` or `release`",
                        ))
                    }
                };
                let s = Strategy {
                    name: name.clone(),
                    change,
                    target: target.clone(),
                    options,
                    state: StrategyState::Initial,
                    approved: false,
                    created_ms: now_ms(),
                    started_ms: None,
                    finished_ms: None,
                    details: format!("{} subclouds; apply to start", list.len()),
                };
                b.push(Change::PutStrategy(s.clone()));
                let mut steps = Vec::with_capacity(list.len());
                for (i, sc) in list.iter().enumerate() {
                    let step = Step {
                        strategy: name.clone(),
                        subcloud: sc.clone(),
                        order: i as u32,
                        state: StepState::Pending,
                        started_ms: None,
                        finished_ms: None,
                        waiting_since_ms: None,
                        details: String::new(),
                        previous: None,
                    };
                    b.push(Change::PutStep(step.clone()));
                    steps.push(step);
                }
                b.event(
                    "strategy-created",
                    format!("strategy/{name}"),
                    format!(
                        "{} over {} ({} subclouds)",
                        s.change.describe(),
                        target,
                        list.len()
                    ),
                );
                let index = steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.subcloud.clone(), i))
                    .collect();
                Ok(StrategyRt { s, steps, index })
            })
            .await?;
        Ok(view(&rt, true))
    }

    /// Every strategy, without its steps.
    pub fn strategies(&self) -> Vec<StrategyView> {
        self.lock()
            .strategies
            .values()
            .map(|rt| view(rt, false))
            .collect()
    }

    /// One strategy with its steps.
    pub fn strategy(&self, name: &str) -> Result<StrategyView, CentralError> {
        self.lock()
            .strategies
            .get(name)
            .map(|rt| view(rt, true))
            .ok_or_else(|| not_found(name))
    }

    /// Change a strategy's state (and maybe its pending steps) in one write.
    async fn transition(
        &self,
        name: &str,
        f: impl FnOnce(&StrategyRt) -> Result<(Strategy, Vec<Step>), CentralError>,
    ) -> Result<StrategyView, CentralError> {
        self.write(|b| {
            let rt = b.st.strategies.get(name).ok_or_else(|| not_found(name))?;
            let (s, steps) = f(rt)?;
            b.event(
                "strategy-state",
                format!("strategy/{name}"),
                format!("{}: {}", s.state.as_str(), s.details),
            );
            for st in steps {
                b.event(
                    "strategy-step",
                    format!("strategy/{name}"),
                    format!("{}: {} ({})", st.subcloud, st.state.as_str(), st.details),
                );
                b.push(Change::PutStep(st));
            }
            b.push(Change::PutStrategy(s));
            Ok(())
        })
        .await?;
        self.rollout_wake.notify_one();
        self.strategy(name)
    }

    /// Start (or resume) a strategy.
    pub async fn apply_strategy(&self, name: &str) -> Result<StrategyView, CentralError> {
        self.transition(name, |rt| {
            let mut s = rt.s.clone();
            match s.state {
                StrategyState::Initial => {
                    s.state = StrategyState::Applying;
                    s.started_ms = Some(now_ms());
                    s.details = "applying".into();
                    Ok((s, Vec::new()))
                }
                StrategyState::Paused => Err(CentralError::Conflict(format!(
                    "strategy `{name}` is paused after its canary: `roost central strategy \
                     approve {name}` continues it"
                ))),
                other => Err(CentralError::Conflict(format!(
                    "strategy `{name}` is {}: only an initial strategy can be applied",
                    other.as_str()
                ))),
            }
        })
        .await
    }

    /// Approve a strategy's canary (resumes a paused strategy; approves ahead on one
    /// still applying its canary).
    pub async fn approve_strategy(&self, name: &str) -> Result<StrategyView, CentralError> {
        self.transition(name, |rt| {
            let mut s = rt.s.clone();
            if s.options.canary == 0 {
                return Err(CentralError::Conflict(format!(
                    "strategy `{name}` has no canary: there is nothing to approve"
                )));
            }
            match s.state {
                StrategyState::Paused | StrategyState::Applying if !s.approved => {
                    s.approved = true;
                    s.state = StrategyState::Applying;
                    s.details = "canary approved; applying".into();
                    Ok((s, Vec::new()))
                }
                StrategyState::Initial => Err(CentralError::Conflict(format!(
                    "strategy `{name}` is initial: apply it first"
                ))),
                other => Err(CentralError::Conflict(format!(
                    "strategy `{name}` is {}{}: there is nothing to approve",
                    other.as_str(),
                    if s.approved {
                        " and already approved"
                    } else {
                        ""
                    }
                ))),
            }
        })
        .await
    }

    /// Abort: no new steps; the ones in flight finish.
    pub async fn abort_strategy(&self, name: &str) -> Result<StrategyView, CentralError> {
        self.transition(name, |rt| {
            let mut s = rt.s.clone();
            let now = now_ms();
            match s.state {
                StrategyState::Applying => {
                    s.state = StrategyState::Aborting;
                    s.details = "aborting: no new steps; the steps in flight finish".into();
                    Ok((s, Vec::new()))
                }
                StrategyState::Initial | StrategyState::Paused => {
                    s.state = StrategyState::Aborted;
                    s.finished_ms = Some(now);
                    s.details = "aborted".into();
                    Ok((
                        s,
                        skip_pending(rt, now, "not started: the strategy was aborted"),
                    ))
                }
                other => Err(CentralError::Conflict(format!(
                    "strategy `{name}` is {}: there is nothing to abort",
                    other.as_str()
                ))),
            }
        })
        .await
    }

    /// Remove a strategy that is not running.
    pub async fn rm_strategy(&self, name: &str) -> Result<(), CentralError> {
        self.write(|b| {
            let rt = b.st.strategies.get(name).ok_or_else(|| not_found(name))?;
            if !(rt.s.state.is_final() || rt.s.state == StrategyState::Initial) {
                return Err(CentralError::Conflict(format!(
                    "strategy `{name}` is {}: abort it first (`roost central strategy abort \
                     {name}`)",
                    rt.s.state.as_str()
                )));
            }
            b.push(Change::DeleteStrategySteps(name.into()));
            b.push(Change::DeleteStrategy(name.into()));
            b.event("strategy-removed", format!("strategy/{name}"), "");
            Ok(())
        })
        .await
    }

    /// Set and remove labels of a subcloud.
    pub async fn label_subcloud(
        &self,
        name: &str,
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<SubcloudView, CentralError> {
        let mut details = Vec::new();
        for (k, v) in &set {
            if let Err(e) = check_label_key(k) {
                details.push(FieldProblem {
                    field: format!("set.{k}"),
                    message: e,
                });
            }
            if let Err(e) = check_label_value(v) {
                details.push(FieldProblem {
                    field: format!("set.{k}"),
                    message: e,
                });
            }
        }
        for k in &remove {
            if let Err(e) = check_label_key(k) {
                details.push(FieldProblem {
                    field: "remove".into(),
                    message: e,
                });
            }
        }
        if !details.is_empty() {
            return Err(CentralError::fields(details));
        }
        self.write(|b| {
            let Some(sc) = b.st.subclouds.get(name) else {
                return Err(CentralError::NotFound(format!(
                    "subcloud `{name}` does not exist; `roost central subcloud ls` lists them"
                )));
            };
            let mut sc = sc.clone();
            for k in &remove {
                sc.labels.remove(k);
            }
            sc.labels.extend(set);
            let shown: Vec<String> = sc.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            b.event(
                "subcloud-labelled",
                format!("subcloud/{name}"),
                shown.join(","),
            );
            b.push(Change::PutSubcloud(sc));
            Ok(())
        })
        .await?;
        self.subcloud(name)
    }
}

/// Every pending step of `rt`, skipped with `why`.
pub(crate) fn skip_pending(rt: &StrategyRt, now: u64, why: &str) -> Vec<Step> {
    rt.steps
        .iter()
        .filter(|s| s.state == StepState::Pending)
        .map(|s| Step {
            state: StepState::Skipped,
            finished_ms: Some(now),
            details: why.into(),
            ..s.clone()
        })
        .collect()
}

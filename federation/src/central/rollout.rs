//! The strategy engine: one loop, woken by host reports, alarms and operator verbs
//! (and a short tick for deadlines), that moves every running strategy's steps.
//!
//! Each pass is one [`Central::write`]: a step's change (the subcloud-level
//! deployment, or the subcloud's release) is committed in the same transaction as the
//! step's move to `applying`, so a central that dies at any point either applied a
//! step and knows it, or did neither; after a restart it resumes watching the steps in
//! flight and never applies one twice.
//!
//! A step is healthy when every host of its subcloud is online and runs the change
//! (every workload of the set with the spec central wants, running; or the release),
//! no workload of it has failed, and no alarm of severity major or worse was raised
//! in the subcloud since the step started. It completes once it has stayed healthy for
//! `minHealthy`; it fails on a failed workload, a new alarm, an apply error or its
//! deadline, and is then rolled back if the strategy says so.

use super::state::{State, StrategyRt};
use super::strategies::skip_pending;
use super::{Batch, Central};
use crate::model::{now_ms, Alarm, Deployment, Severity, Target};
use crate::store::Change;
use crate::strategy::{
    fmt_ms, OfflinePolicy, Previous, Step, StepState, StrategyChange, StrategyState,
};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// The engine's tick (deadlines and `minHealthy` are judged at least this often).
pub const TICK: Duration = Duration::from_millis(200);

/// What a step in flight looks like now.
enum Verdict {
    /// Not there yet (why).
    Wait(String),
    /// Healthy now.
    Healthy,
    /// Failed (why).
    Fail(String),
}

impl State {
    /// Is there a release `v` to roll?
    pub(crate) fn release_exists(&self, v: &str) -> Result<(), String> {
        if self.releases.contains_key(v) {
            return Ok(());
        }
        Err(format!(
            "release `{v}` is not known to central: add it with `roost central release add \
             FILE --version {v}`"
        ))
    }

    /// Non-revoked hosts of a subcloud.
    fn hosts_in(&self, subcloud: &str) -> Vec<&str> {
        self.subcloud_hosts(subcloud)
            .filter(|h| !h.revoked)
            .map(|h| h.name.as_str())
            .collect()
    }

    fn online(&self, host: &str) -> bool {
        self.live.get(host).is_some_and(|l| l.online)
    }
}

/// Judge a step in flight.
fn judge(st: &State, change: &StrategyChange, step: &Step, alarms: &[&Alarm]) -> Verdict {
    let started = step.started_ms.unwrap_or(0);
    if let Some(a) = alarms
        .iter()
        .find(|a| a.subcloud == step.subcloud && a.raised_ms >= started)
    {
        return Verdict::Fail(format!(
            "alarm {} ({}) on {}: {}",
            a.code,
            a.severity.as_str(),
            a.entity,
            a.reason
        ));
    }
    let hosts = st.hosts_in(&step.subcloud);
    let mut waiting = Vec::new();
    for h in &hosts {
        let Some(live) = st.live.get(*h).filter(|l| l.online) else {
            waiting.push(format!("host {h} offline"));
            continue;
        };
        match change {
            StrategyChange::Set { set, .. } => {
                let key = (
                    set.clone(),
                    Target::Subcloud(step.subcloud.clone()).to_string(),
                );
                let Some(dep) = st.deployments.get(&key) else {
                    return Verdict::Fail(format!(
                        "the deployment of set `{set}` to subcloud/{} was removed",
                        step.subcloud
                    ));
                };
                // Only errors of applying what central wants now: an older apply's
                // errors say nothing of this step.
                let current =
                    !live.apply_errors.is_empty() && live.applied_digest == st.desired_for(h).1;
                if let Some(e) = live
                    .apply_errors
                    .iter()
                    .filter(|_| current)
                    .find(|e| dep.items.iter().any(|(n, _, _)| *n == e.workload))
                {
                    return Verdict::Fail(format!(
                        "host {h} could not apply workload {}: {}",
                        e.workload, e.error
                    ));
                }
                let Some(report) = &live.report else {
                    waiting.push(format!("no report from host {h}"));
                    continue;
                };
                for (n, digest, _) in &dep.items {
                    match report.workloads.iter().find(|w| w.name == *n) {
                        None => waiting.push(format!("{n} not on host {h} yet")),
                        Some(w) if w.spec_digest != *digest => {
                            waiting.push(format!("{n} on host {h} not updated yet"))
                        }
                        Some(w) if w.phase == "failed" || w.phase == "backoff" => {
                            return Verdict::Fail(format!(
                                "workload {n} on host {h} is {} after {} restarts",
                                w.phase, w.restarts
                            ))
                        }
                        Some(w) if w.phase == "running" || w.phase == "exited" => {}
                        Some(w) => waiting.push(format!("{n} on host {h} is {}", w.phase)),
                    }
                }
            }
            StrategyChange::Release { version } => {
                if live.roost_version != *version {
                    waiting.push(format!(
                        "host {h} runs {} (not {version} yet)",
                        if live.roost_version.is_empty() {
                            "an unknown version"
                        } else {
                            &live.roost_version
                        }
                    ));
                    continue;
                }
                if let Some(report) = &live.report {
                    if let Some(w) = report
                        .workloads
                        .iter()
                        .find(|w| w.phase == "failed" || w.phase == "backoff")
                    {
                        return Verdict::Fail(format!(
                            "workload {} on host {h} is {} after the upgrade",
                            w.name, w.phase
                        ));
                    }
                }
            }
        }
    }
    if waiting.is_empty() {
        Verdict::Healthy
    } else {
        let n = waiting.len();
        let mut w: Vec<String> = waiting.into_iter().take(3).collect();
        if n > 3 {
            w.push(format!("{} more", n - 3));
        }
        Verdict::Wait(w.join("; "))
    }
}

/// What one pass decided beyond its changes: subclouds to push to.
#[derive(Default)]
struct Pass {
    push: BTreeSet<String>,
}

impl Central {
    /// Run the engine until `stop` fires.
    pub(crate) async fn rollout_loop(
        self: std::sync::Arc<Self>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = self.rollout_wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = crate::link::stopped(&mut stop) => return,
            }
            self.rollout_pass().await;
        }
    }

    /// One pass over every running strategy (the engine's loop runs these on its
    /// own; tests call it to step the engine without timing).
    pub async fn rollout_pass(&self) {
        let busy = {
            let st = self.lock();
            st.strategies.values().any(|rt| {
                matches!(
                    rt.s.state,
                    StrategyState::Applying | StrategyState::Aborting
                )
            })
        };
        if !busy {
            return;
        }
        let res = self
            .write(|b| {
                let now = now_ms();
                let mut pass = Pass::default();
                let names: Vec<String> =
                    b.st.strategies
                        .values()
                        .filter(|rt| {
                            matches!(
                                rt.s.state,
                                StrategyState::Applying | StrategyState::Aborting
                            )
                        })
                        .map(|rt| rt.s.name.clone())
                        .collect();
                let mut healthy = match self.healthy.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                for name in names {
                    self.advance(b, &name, now, &mut pass, &mut healthy);
                }
                Ok(pass)
            })
            .await;
        match res {
            Ok(pass) => {
                for sc in pass.push {
                    self.push_subcloud(&sc, false);
                }
            }
            Err(e) => tracing::warn!(error = %e, "strategy pass could not commit; retrying"),
        }
    }

    /// Move one strategy's steps.
    fn advance(
        &self,
        b: &mut Batch<'_>,
        name: &str,
        now: u64,
        pass: &mut Pass,
        healthy: &mut HashMap<(String, String), u64>,
    ) {
        let st: &State = b.st;
        let Some(rt) = st.strategies.get(name) else {
            return;
        };
        let opts = &rt.s.options;
        let total = rt.steps.len();
        let budget = opts.max_failures.budget(total);
        let mut failures = rt.steps.iter().filter(|s| s.state.is_failure()).count();
        let mut inflight = 0usize;
        let mut changed: Vec<Step> = Vec::new();

        // Alarms that can fail a step: major or worse, raised since the oldest step in
        // flight started (one pass over the alarms, not one per step).
        let oldest = rt
            .steps
            .iter()
            .filter(|s| s.state == StepState::Applying)
            .filter_map(|s| s.started_ms)
            .min();
        let alarms: Vec<&Alarm> = match oldest {
            Some(t) => st
                .alarms
                .values()
                .filter(|a| a.severity <= Severity::Major && a.raised_ms >= t)
                // An offline host is a wait (until the step's deadline), not the
                // change's fault: after a central restart every host is briefly
                // offline.
                .filter(|a| a.code != super::hosts::HOST_OFFLINE)
                .filter(|a| rt.index.contains_key(&a.subcloud))
                .collect(),
            None => Vec::new(),
        };

        // 1. Judge the steps in flight.
        for step in rt.steps.iter().filter(|s| s.state == StepState::Applying) {
            let key = (name.to_string(), step.subcloud.clone());
            let started = step.started_ms.unwrap_or(now);
            let verdict = match judge(st, &rt.s.change, step, &alarms) {
                Verdict::Healthy => {
                    let since = *healthy.entry(key.clone()).or_insert(now);
                    if now.saturating_sub(since) >= opts.min_healthy_ms {
                        healthy.remove(&key);
                        let mut s = step.clone();
                        s.state = StepState::Complete;
                        s.finished_ms = Some(now);
                        s.details = format!("healthy in {}", fmt_ms(now.saturating_sub(started)));
                        changed.push(s);
                        continue;
                    }
                    None
                }
                Verdict::Wait(why) => {
                    healthy.remove(&key);
                    (now.saturating_sub(started) >= opts.step_timeout_ms).then(|| {
                        format!("not healthy within {}: {why}", fmt_ms(opts.step_timeout_ms))
                    })
                }
                Verdict::Fail(why) => {
                    healthy.remove(&key);
                    Some(why)
                }
            };
            match verdict {
                None => inflight += 1,
                Some(why) => {
                    failures += 1;
                    changed.push(self.fail_step(b, rt, step, now, &why, pass));
                }
            }
        }

        // 2. Start steps while the window has room.
        let stopping = rt.s.state == StrategyState::Aborting || failures > budget;
        let canary_limit = if opts.canary > 0 && !rt.s.approved {
            opts.canary as usize
        } else {
            usize::MAX
        };
        let mut waiting_offline = 0usize;
        if !stopping {
            for step in rt.steps.iter().filter(|s| s.state == StepState::Pending) {
                if inflight >= opts.max_parallel as usize || failures > budget {
                    break;
                }
                if step.order as usize >= canary_limit {
                    break;
                }
                let Some(sc) = st.subclouds.get(&step.subcloud) else {
                    failures += 1;
                    changed.push(end_step(
                        step,
                        StepState::Failed,
                        now,
                        "the subcloud was removed",
                    ));
                    continue;
                };
                if !sc.managed {
                    changed.push(end_step(
                        step,
                        StepState::Skipped,
                        now,
                        "unmanaged: central does not change it (`roost central subcloud manage`)",
                    ));
                    continue;
                }
                let hosts = st.hosts_in(&step.subcloud);
                let offline: Vec<&str> = hosts.iter().copied().filter(|h| !st.online(h)).collect();
                if !offline.is_empty() {
                    // Just after central's start, hosts are still reconnecting: give
                    // them two heartbeats before calling them offline.
                    let grace = offline.iter().any(|h| {
                        let hb = st.hosts.get(*h).map_or(5_000, |x| x.heartbeat_ms.max(100));
                        now < self.started_ms + 2 * hb + 1_000
                    });
                    if grace {
                        waiting_offline += 1;
                        continue;
                    }
                    let list = offline.join(", ");
                    match opts.offline {
                        OfflinePolicy::Skip => {
                            changed.push(end_step(
                                step,
                                StepState::Skipped,
                                now,
                                &format!("offline: {list}"),
                            ));
                        }
                        OfflinePolicy::Fail => {
                            failures += 1;
                            changed.push(end_step(
                                step,
                                StepState::Failed,
                                now,
                                &format!("offline: {list}"),
                            ));
                        }
                        OfflinePolicy::Wait(limit) => match step.waiting_since_ms {
                            None => {
                                let mut s = step.clone();
                                s.waiting_since_ms = Some(now);
                                s.details = format!(
                                    "waiting up to {} for {list} to come online",
                                    fmt_ms(limit)
                                );
                                changed.push(s);
                                waiting_offline += 1;
                            }
                            Some(t) if now.saturating_sub(t) >= limit => {
                                failures += 1;
                                changed.push(end_step(
                                    step,
                                    StepState::Failed,
                                    now,
                                    &format!("offline for longer than {}: {list}", fmt_ms(limit)),
                                ));
                            }
                            Some(_) => waiting_offline += 1,
                        },
                    }
                    continue;
                }
                changed.push(self.start_step(b, rt, step, now, pass));
                inflight += 1;
            }
        }

        // 3. The strategy's own state.
        let after: HashMap<&str, StepState> = changed
            .iter()
            .map(|c| (c.subcloud.as_str(), c.state))
            .collect();
        let state_of = |x: &Step| after.get(x.subcloud.as_str()).copied().unwrap_or(x.state);
        let pending_after = rt
            .steps
            .iter()
            .filter(|x| state_of(x) == StepState::Pending)
            .count();
        let mut s = rt.s.clone();
        let mut extra: Vec<Step> = Vec::new();
        if inflight == 0 {
            if s.state == StrategyState::Aborting {
                s.state = StrategyState::Aborted;
                s.details = "aborted".into();
                extra = skip_pending(rt, now, "not started: the strategy was aborted");
                extra.retain(|x| !after.contains_key(x.subcloud.as_str()));
            } else if failures > budget {
                s.state = StrategyState::Failed;
                s.details = format!(
                    "{failures} subcloud{} failed (allowed: {}); the rest were not started",
                    if failures == 1 { "" } else { "s" },
                    opts.max_failures
                );
            } else if pending_after == 0 {
                s.state = StrategyState::Complete;
                s.details = if failures > 0 {
                    format!(
                        "complete with {failures} failed (allowed: {})",
                        opts.max_failures
                    )
                } else {
                    "complete".into()
                };
                let all_done = rt.steps.iter().all(|x| state_of(x) == StepState::Complete);
                if all_done {
                    if let Some(note) = consolidate(b, rt) {
                        s.details = format!("complete; {note}");
                        // Subclouds that joined the group since the strategy was
                        // made now get the new version too.
                        if let crate::strategy::StrategyTarget::Group(g) = &rt.s.target {
                            pass.push.extend(
                                st.subclouds
                                    .values()
                                    .filter(|x| x.group == *g)
                                    .map(|x| x.name.clone()),
                            );
                        }
                    }
                }
            } else if canary_limit < usize::MAX
                && waiting_offline == 0
                && rt
                    .steps
                    .iter()
                    .take(canary_limit)
                    .all(|x| state_of(x).is_final())
            {
                s.state = StrategyState::Paused;
                s.details = format!(
                    "canary of {} subcloud{} done: `roost central strategy approve {name}` \
                     continues",
                    opts.canary,
                    if opts.canary == 1 { "" } else { "s" }
                );
            }
        }
        for step in changed.into_iter().chain(extra) {
            b.event(
                "strategy-step",
                format!("strategy/{name}"),
                format!(
                    "{}: {} ({})",
                    step.subcloud,
                    step.state.as_str(),
                    step.details
                ),
            );
            b.push(Change::PutStep(step));
        }
        if s.state != rt.s.state {
            if s.state.is_final() {
                s.finished_ms = Some(now);
            }
            b.event(
                "strategy-state",
                format!("strategy/{name}"),
                format!("{}: {}", s.state.as_str(), s.details),
            );
            b.push(Change::PutStrategy(s));
        }
    }

    /// Commit a step's change and move it to `applying`.
    fn start_step(
        &self,
        b: &mut Batch<'_>,
        rt: &StrategyRt,
        step: &Step,
        now: u64,
        pass: &mut Pass,
    ) -> Step {
        let mut s = step.clone();
        s.state = StepState::Applying;
        s.started_ms = Some(now);
        s.waiting_since_ms = None;
        match &rt.s.change {
            StrategyChange::Set {
                set,
                workloads,
                generation,
            } => {
                let target = Target::Subcloud(step.subcloud.clone());
                let prev =
                    b.st.deployments
                        .get(&(set.clone(), target.to_string()))
                        .map(|d| d.d.clone());
                s.details = format!("deploying set {set} generation {generation}");
                s.previous = Some(Previous::Deployment(prev));
                b.push(Change::PutDeployment(Deployment {
                    set: set.clone(),
                    target,
                    generation: *generation,
                    workloads: workloads.clone(),
                    updated_ms: now,
                }));
            }
            StrategyChange::Release { version } => {
                let prev =
                    b.st.subclouds
                        .get(&step.subcloud)
                        .and_then(|x| x.release.clone());
                s.details = format!("upgrading to release {version}");
                s.previous = Some(Previous::Release(prev));
                if let Some(sc) = b.st.subclouds.get(&step.subcloud) {
                    let mut sc = sc.clone();
                    sc.release = Some(version.clone());
                    b.push(Change::PutSubcloud(sc));
                }
            }
        }
        pass.push.insert(step.subcloud.clone());
        s
    }

    /// A step in flight failed: roll it back if the strategy says so.
    fn fail_step(
        &self,
        b: &mut Batch<'_>,
        rt: &StrategyRt,
        step: &Step,
        now: u64,
        why: &str,
        pass: &mut Pass,
    ) -> Step {
        if !rt.s.options.rollback {
            return end_step(step, StepState::Failed, now, why);
        }
        let back = match (&rt.s.change, &step.previous) {
            (StrategyChange::Set { set, .. }, Some(Previous::Deployment(prev))) => {
                let target = Target::Subcloud(step.subcloud.clone()).to_string();
                match prev {
                    Some(d) => {
                        b.push(Change::PutDeployment(d.clone()));
                        format!("rolled back to generation {}", d.generation)
                    }
                    None => {
                        b.push(Change::DeleteDeployment {
                            set: set.clone(),
                            target,
                        });
                        "rolled back to the set as deployed before (group level or none)".into()
                    }
                }
            }
            (StrategyChange::Release { .. }, Some(Previous::Release(prev))) => {
                if let Some(sc) = b.st.subclouds.get(&step.subcloud) {
                    let mut sc = sc.clone();
                    sc.release = prev.clone();
                    b.push(Change::PutSubcloud(sc));
                }
                match prev {
                    Some(v) => format!("rolled back to release {v}"),
                    None => "rolled back: no release requested".into(),
                }
            }
            _ => return end_step(step, StepState::Failed, now, why),
        };
        pass.push.insert(step.subcloud.clone());
        end_step(step, StepState::RolledBack, now, &format!("{why}; {back}"))
    }
}

/// A set strategy over a group whose every subcloud completed: the group's own
/// deployment of the set becomes the new version and the subcloud-level steps fold
/// into it (hosts see the same desired state, so nothing restarts), so a later
/// deploy to the group is not shadowed by the rollout's steps.
fn consolidate(b: &mut Batch<'_>, rt: &StrategyRt) -> Option<String> {
    let (
        StrategyChange::Set {
            set,
            workloads,
            generation,
        },
        crate::strategy::StrategyTarget::Group(g),
    ) = (&rt.s.change, &rt.s.target)
    else {
        return None;
    };
    let group = Target::Group(g.clone());
    let old = b.st.deployments.get(&(set.clone(), group.to_string()))?;
    let generation = (*generation).max(old.d.generation + 1);
    b.push(Change::PutDeployment(Deployment {
        set: set.clone(),
        target: group.clone(),
        generation,
        workloads: workloads.clone(),
        updated_ms: now_ms(),
    }));
    for step in &rt.steps {
        let t = Target::Subcloud(step.subcloud.clone()).to_string();
        if b.st.deployments.contains_key(&(set.clone(), t.clone())) {
            b.push(Change::DeleteDeployment {
                set: set.clone(),
                target: t,
            });
        }
    }
    Some(format!(
        "set {set} at {group} is now generation {generation} (the subcloud steps folded into it)"
    ))
}

fn end_step(step: &Step, state: StepState, now: u64, why: &str) -> Step {
    let mut s = step.clone();
    s.state = state;
    s.finished_ms = Some(now);
    s.waiting_since_ms = None;
    s.details = why.into();
    s
}

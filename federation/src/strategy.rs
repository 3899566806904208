//! Orchestration strategies: one change rolled across a set of subclouds, one step per
//! subcloud, under a rolling window, a failure budget, an offline policy, a health
//! gate and an optional canary. These are the stored and served types and their
//! checks; the engine that moves steps lives in `central::rollout`.

use crate::model::{check_name, Deployment, WorkloadSet};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The most subclouds (steps) one strategy may hold.
pub const MAX_STEPS: usize = 100_000;
/// Bounds of `maxParallel`.
pub const MAX_PARALLEL: u32 = 10_000;
/// Default `maxParallel` for a parallel strategy.
pub const DEFAULT_PARALLEL: u32 = 20;
/// Default step deadline.
pub const DEFAULT_STEP_TIMEOUT_S: u64 = 600;

/// A strategy's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyState {
    /// Created, not applied yet.
    Initial,
    /// Steps are being started and watched.
    Applying,
    /// Waiting for `approve` (after the canary).
    Paused,
    /// Every step ended within the failure budget.
    Complete,
    /// The failure budget was exceeded.
    Failed,
    /// `abort`: no new steps; the ones in flight finish.
    Aborting,
    /// Aborted.
    Aborted,
}

impl StrategyState {
    /// The name as served.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Applying => "applying",
            Self::Paused => "paused",
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Aborting => "aborting",
            Self::Aborted => "aborted",
        }
    }
    /// Complete, failed or aborted: nothing more happens.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Complete | Self::Failed | Self::Aborted)
    }
}

/// A step's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Not started (maybe waiting for its hosts to come online).
    Pending,
    /// The change is committed; waiting for the health gate.
    Applying,
    /// Passed the health gate.
    Complete,
    /// Failed (and not rolled back).
    Failed,
    /// Not applied (offline under `skip`, or the strategy was aborted).
    Skipped,
    /// Failed and put back to what it had before.
    RolledBack,
}

impl StepState {
    /// The name as served.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Applying => "applying",
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::RolledBack => "rolled-back",
        }
    }
    /// Counts against the failure budget.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::RolledBack)
    }
    /// Nothing more happens to it.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Applying)
    }
}

/// What happens to a subcloud with an offline host when its step would start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflinePolicy {
    /// The step is skipped and reported.
    Skip,
    /// The step fails (counts against the failure budget).
    Fail,
    /// The step waits (without holding a place in the window) up to this many ms,
    /// then fails.
    Wait(u64),
}

impl fmt::Display for OfflinePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Skip => f.write_str("skip"),
            Self::Fail => f.write_str("fail"),
            Self::Wait(ms) => write!(f, "wait:{}", fmt_ms(*ms)),
        }
    }
}

impl FromStr for OfflinePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(Self::Skip),
            "fail" => Ok(Self::Fail),
            _ => match s.strip_prefix("wait:").or_else(|| s.strip_prefix("wait ")) {
                Some(d) => parse_duration_ms(d)
                    .map(Self::Wait)
                    .map_err(|e| format!("offline policy `{s}`: {e}")),
                None => Err(format!(
                    "offline policy `{s}` is not one of `skip`, `fail`, `wait:DURATION` \
                     (e.g. `wait:5m`)"
                )),
            },
        }
    }
}

/// How many failed subclouds a strategy tolerates before it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxFailures {
    /// At most this many.
    Count(u32),
    /// At most this share of the steps (rounded down).
    Percent(u32),
}

impl MaxFailures {
    /// The budget for `total` steps.
    pub fn budget(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => total.saturating_mul(p as usize) / 100,
        }
    }
}

impl fmt::Display for MaxFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for MaxFailures {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "max failures `{s}` must be a count (`3`) or a percentage from 0% to 100% (`10%`)"
            )
        };
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if p <= 100 => Ok(Self::Percent(p)),
                _ => Err(bad()),
            },
            None => s.trim().parse::<u32>().map(Self::Count).map_err(|_| bad()),
        }
    }
}

macro_rules! string_serde {
    ($t:ty, $name:literal, $pattern:literal, $desc:literal) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
        impl schemars::JsonSchema for $t {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $desc
                })
            }
        }
    };
}

string_serde!(
    OfflinePolicy,
    "OfflinePolicy",
    "^(skip|fail|wait:[0-9]+(ms|s|m|h)?)$",
    "`skip`, `fail` or `wait:DURATION`"
);
string_serde!(
    MaxFailures,
    "MaxFailures",
    "^[0-9]+%?$",
    "a count (`3`) or a percentage of the steps (`10%`)"
);

/// Serial (one subcloud at a time) or parallel (a rolling window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ApplyType {
    /// One at a time.
    Serial,
    /// Up to `maxParallel` at a time; the next starts as soon as one finishes.
    Parallel,
}

/// Which subclouds a strategy covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StrategyTarget {
    /// Every subcloud of the group (at creation), in name order.
    Group(String),
    /// These subclouds, in this order.
    Subclouds(Vec<String>),
    /// Every subcloud whose labels match (at creation), in name order:
    /// `k=v,k2!=v2,k3` (equals, not equals, has).
    Selector(String),
}

impl fmt::Display for StrategyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Group(g) => write!(f, "group/{g}"),
            Self::Subclouds(s) => write!(f, "subclouds {}", s.join(",")),
            Self::Selector(s) => write!(f, "selector {s}"),
        }
    }
}

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorTerm {
    /// `k=v`.
    Eq(String, String),
    /// `k!=v`.
    Ne(String, String),
    /// `k` (has the label).
    Has(String),
}

/// Parse `k=v,k2!=v2,k3`.
pub fn parse_selector(s: &str) -> Result<Vec<SelectorTerm>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "selector `{s}` has an empty term: write `key=value` terms separated by commas"
            ));
        }
        let term = if let Some((k, v)) = part.split_once("!=") {
            SelectorTerm::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = part.split_once('=') {
            SelectorTerm::Eq(k.trim().into(), v.trim().into())
        } else {
            SelectorTerm::Has(part.into())
        };
        let key = match &term {
            SelectorTerm::Eq(k, _) | SelectorTerm::Ne(k, _) | SelectorTerm::Has(k) => k,
        };
        check_label_key(key).map_err(|e| format!("selector `{s}`: {e}"))?;
        out.push(term);
    }
    Ok(out)
}

/// Do `labels` match every term?
pub fn selector_matches(
    terms: &[SelectorTerm],
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    terms.iter().all(|t| match t {
        SelectorTerm::Eq(k, v) => labels.get(k) == Some(v),
        SelectorTerm::Ne(k, v) => labels.get(k) != Some(v),
        SelectorTerm::Has(k) => labels.contains_key(k),
    })
}

/// A label key: 1–63 of `a-z A-Z 0-9 - _ . /`, starting with a letter or digit.
pub fn check_label_key(k: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && k.len() <= 63
        && k.as_bytes()[0].is_ascii_alphanumeric()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "label key `{k}` is not valid: use 1-63 characters of letters, digits, `-`, `_`, \
             `.`, `/`, starting with a letter or digit"
        ))
    }
}

/// A label value: up to 63 of `a-z A-Z 0-9 - _ .`.
pub fn check_label_value(v: &str) -> Result<(), String> {
    if v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(())
    } else {
        Err(format!(
            "label value `{v}` is not valid: use up to 63 characters of letters, digits, `-`, \
             `_`, `.`"
        ))
    }
}

/// What a strategy rolls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StrategyChange {
    /// A new generation of a workload set, deployed to each subcloud in turn (a
    /// subcloud-level deployment of a set overrides its group-level one).
    Set {
        /// The set's name.
        set: String,
        /// The normalised workload specs.
        workloads: Vec<serde_json::Value>,
        /// The generation every step writes.
        generation: u64,
    },
    /// A Roost software version (a release added with `roost central release add`).
    Release {
        /// The version.
        version: String,
    },
}

impl StrategyChange {
    /// `set` or `release`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Set { .. } => "set",
            Self::Release { .. } => "release",
        }
    }
    /// `set web generation 3` / `release 0.2.0`.
    pub fn describe(&self) -> String {
        match self {
            Self::Set {
                set, generation, ..
            } => format!("set {set} generation {generation}"),
            Self::Release { version } => format!("release {version}"),
        }
    }
}

/// A strategy's options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StrategyOptions {
    /// Serial or parallel.
    pub apply_type: ApplyType,
    /// The rolling window (1 for serial).
    pub max_parallel: u32,
    /// The failure budget (0 = stop on the first failure).
    pub max_failures: MaxFailures,
    /// Offline subclouds.
    pub offline: OfflinePolicy,
    /// How long a subcloud's workloads must run healthy before its step completes.
    pub min_healthy_ms: u64,
    /// The first N subclouds run, then the strategy pauses for `approve`.
    pub canary: u32,
    /// Put a failed subcloud back to what it had before.
    pub rollback: bool,
    /// A step not healthy by then fails.
    pub step_timeout_ms: u64,
}

/// A strategy, as stored (its steps are stored apart, one row each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Strategy {
    /// DNS-label style name.
    pub name: String,
    /// What it rolls.
    pub change: StrategyChange,
    /// The target as given.
    pub target: StrategyTarget,
    /// Options.
    pub options: StrategyOptions,
    /// State.
    pub state: StrategyState,
    /// The canary was approved.
    #[serde(default)]
    pub approved: bool,
    /// Unix ms.
    pub created_ms: u64,
    /// Unix ms of the first `apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Unix ms of reaching a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Why it is in its state.
    #[serde(default)]
    pub details: String,
}

/// What a subcloud had before its step, for rollback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Previous {
    /// The subcloud-level deployment of the set (None: there was none).
    Deployment(Option<Deployment>),
    /// The subcloud's release (None: none was set).
    Release(Option<String>),
}

/// One subcloud's step, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The strategy.
    pub strategy: String,
    /// The subcloud.
    pub subcloud: String,
    /// Position (0-based) in the strategy's order.
    pub order: u32,
    /// State.
    pub state: StepState,
    /// Unix ms the change was committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Unix ms of reaching a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Unix ms it started waiting for an offline host (offline policy `wait`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since_ms: Option<u64>,
    /// What happened.
    #[serde(default)]
    pub details: String,
    /// What to roll back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
}

/// A strategy as an operator asks for it (the API's create body; the CLI builds it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StrategyRequest {
    /// DNS-label style name.
    pub name: String,
    /// Roll this workload set (exactly one of `set` and `release`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<WorkloadSet>,
    /// Roll this Roost release (exactly one of `set` and `release`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Every subcloud of this group (exactly one of `group`, `subclouds`, `selector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// These subclouds, in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subclouds: Option<Vec<String>>,
    /// Subclouds whose labels match `k=v,k2!=v2,k3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `serial` or `parallel` (default parallel). Text, checked with the other
    /// fields, so one bad value does not hide the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<ApplyType>")]
    pub apply_type: Option<String>,
    /// The rolling window of a parallel strategy, 1–10,000 (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// Stop after the first failed subcloud (the default unless `maxFailures` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_on_failure: Option<bool>,
    /// Tolerate this many failed subclouds (`3` or `10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<MaxFailures>")]
    pub max_failures: Option<String>,
    /// `skip` (default), `fail` or `wait:DURATION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<OfflinePolicy>")]
    pub offline: Option<String>,
    /// Seconds a subcloud's workloads must run healthy (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_seconds: Option<f64>,
    /// Pause for approval after the first N subclouds (default 0: no canary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<u32>,
    /// Roll a failed subcloud back (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<bool>,
    /// A step not healthy within this many seconds fails (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout_seconds: Option<f64>,
}

/// A problem with one field: (field, message).
pub type Problem = (String, String);

impl StrategyRequest {
    /// Check the options and build them; every problem at once.
    pub fn options(&self) -> Result<StrategyOptions, Vec<Problem>> {
        let mut p: Vec<Problem> = Vec::new();
        if let Err(e) = check_name(&self.name) {
            p.push(("name".into(), e));
        }
        match (&self.set, &self.release) {
            (Some(_), Some(_)) => p.push((
                "set".into(),
                "give `set` or `release`, not both: a strategy rolls one change".into(),
            )),
            (None, None) => p.push((
                "set".into(),
                "missing: give the workload set to roll (`set`) or a release version \
                 (`release`)"
                    .into(),
            )),
            _ => {}
        }
        let targets = [
            self.group.is_some(),
            self.subclouds.is_some(),
            self.selector.is_some(),
        ];
        match targets.iter().filter(|t| **t).count() {
            1 => {}
            0 => p.push((
                "group".into(),
                "missing: give the target as `group`, `subclouds` or `selector`".into(),
            )),
            _ => p.push((
                "group".into(),
                "give one of `group`, `subclouds`, `selector`, not several".into(),
            )),
        }
        if let Some(s) = &self.selector {
            if let Err(e) = parse_selector(s) {
                p.push(("selector".into(), e));
            }
        }
        if let Some(list) = &self.subclouds {
            if list.is_empty() {
                p.push((
                    "subclouds".into(),
                    "empty: name at least one subcloud".into(),
                ));
            }
            if list.len() > MAX_STEPS {
                p.push((
                    "subclouds".into(),
                    format!("{} subclouds: at most {MAX_STEPS}", list.len()),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for (i, s) in list.iter().enumerate() {
                if let Err(e) = check_name(s) {
                    p.push((format!("subclouds[{i}]"), e));
                } else if !seen.insert(s) {
                    p.push((format!("subclouds[{i}]"), format!("`{s}` is named twice")));
                }
            }
        }
        let apply_type = match self.apply_type.as_deref() {
            None | Some("parallel") => ApplyType::Parallel,
            Some("serial") => ApplyType::Serial,
            Some(other) => {
                p.push((
                    "applyType".into(),
                    format!("`{other}` is not one of `serial`, `parallel`"),
                ));
                ApplyType::Parallel
            }
        };
        let parsed_failures = match self.max_failures.as_deref().map(str::parse::<MaxFailures>) {
            None => None,
            Some(Ok(m)) => Some(m),
            Some(Err(e)) => {
                p.push(("maxFailures".into(), e));
                None
            }
        };
        let offline = match self.offline.as_deref().map(str::parse::<OfflinePolicy>) {
            None => OfflinePolicy::Skip,
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                p.push(("offline".into(), e));
                OfflinePolicy::Skip
            }
        };
        let max_parallel = match (apply_type, self.max_parallel) {
            (ApplyType::Serial, None | Some(1)) => 1,
            (ApplyType::Serial, Some(n)) => {
                p.push((
                    "maxParallel".into(),
                    format!("{n} with applyType serial: a serial strategy runs one subcloud at a time; use applyType parallel"),
                ));
                1
            }
            (ApplyType::Parallel, None) => DEFAULT_PARALLEL,
            (ApplyType::Parallel, Some(n)) if (1..=MAX_PARALLEL).contains(&n) => n,
            (ApplyType::Parallel, Some(n)) => {
                p.push((
                    "maxParallel".into(),
                    format!("{n} is out of range: use 1 to {MAX_PARALLEL}"),
                ));
                1
            }
        };
        let max_failures = match (self.stop_on_failure, parsed_failures) {
            (Some(true), Some(m)) if m != MaxFailures::Count(0) => {
                p.push((
                    "stopOnFailure".into(),
                    format!("stopOnFailure with maxFailures {m}: give one of them"),
                ));
                m
            }
            (_, Some(m)) => m,
            (Some(false), None) => {
                p.push((
                    "stopOnFailure".into(),
                    "false without maxFailures: say how many failures to tolerate with \
                     maxFailures (`3` or `10%`)"
                        .into(),
                ));
                MaxFailures::Count(0)
            }
            _ => MaxFailures::Count(0),
        };
        let secs =
            |field: &str, v: Option<f64>, default: u64, max: f64, p: &mut Vec<Problem>| match v {
                None => default,
                Some(s) if s.is_finite() && (0.0..=max).contains(&s) => (s * 1000.0) as u64,
                Some(s) => {
                    p.push((
                        field.into(),
                        format!("{s} is out of range: use 0 to {max} seconds"),
                    ));
                    default
                }
            };
        let min_healthy_ms = secs(
            "minHealthySeconds",
            self.min_healthy_seconds,
            0,
            86_400.0,
            &mut p,
        );
        let step_timeout_ms = secs(
            "stepTimeoutSeconds",
            self.step_timeout_seconds,
            DEFAULT_STEP_TIMEOUT_S * 1000,
            7.0 * 86_400.0,
            &mut p,
        );
        if step_timeout_ms == 0 {
            p.push((
                "stepTimeoutSeconds".into(),
                "0: a step needs time to apply; give at least 1 second".into(),
            ));
        }
        if step_timeout_ms > 0 && min_healthy_ms >= step_timeout_ms {
            p.push((
                "minHealthySeconds".into(),
                "is not shorter than stepTimeoutSeconds: no step could ever pass its health \
                 gate"
                    .into(),
            ));
        }
        if p.is_empty() {
            Ok(StrategyOptions {
                apply_type,
                max_parallel,
                max_failures,
                offline,
                min_healthy_ms,
                canary: self.canary.unwrap_or(0),
                rollback: self.rollback.unwrap_or(true),
                step_timeout_ms,
            })
        } else {
            Err(p)
        }
    }

    /// The target as given (call after [`Self::options`] succeeded).
    pub fn target(&self) -> Option<StrategyTarget> {
        if let Some(g) = &self.group {
            Some(StrategyTarget::Group(g.clone()))
        } else if let Some(s) = &self.subclouds {
            Some(StrategyTarget::Subclouds(s.clone()))
        } else {
            self.selector.clone().map(StrategyTarget::Selector)
        }
    }
}

/// A strategy with its steps and counts, as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StrategyView {
    /// The strategy.
    #[serde(flatten)]
    pub strategy: Strategy,
    /// Step counts.
    pub progress: Progress,
    /// Every step, in order (absent in lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

/// Step counts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Steps in all.
    pub total: usize,
    /// Pending.
    pub pending: usize,
    /// In flight.
    pub applying: usize,
    /// Complete.
    pub complete: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Rolled back.
    pub rolled_back: usize,
}

impl Progress {
    /// Count `steps`.
    pub fn of<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Self {
        let mut p = Self::default();
        for s in steps {
            p.total += 1;
            match s.state {
                StepState::Pending => p.pending += 1,
                StepState::Applying => p.applying += 1,
                StepState::Complete => p.complete += 1,
                StepState::Failed => p.failed += 1,
                StepState::Skipped => p.skipped += 1,
                StepState::RolledBack => p.rolled_back += 1,
            }
        }
        p
    }
}

/// `90s`, `5m`, `1500ms`, `2h`, or plain seconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000.0)
    } else {
        (s, 1000.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * mult <= 7.0 * 86_400_000.0 => {
            Ok((v * mult) as u64)
        }
        _ => Err(format!(
            "`{s}` is not a duration: write e.g. `30s`, `5m`, `1500ms` (at most 7 days)"
        )),
    }
}

/// `1500ms` → `1.5s`, `300000` → `5m`.
pub fn fmt_ms(ms: u64) -> String {
    if ms.is_multiple_of(3_600_000) && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}ms", ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_round_trip() {
        for s in ["skip", "fail", "wait:30s", "wait:5m", "wait:1500ms"] {
            let p: OfflinePolicy = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert_eq!(
            "wait:90".parse::<OfflinePolicy>().unwrap(),
            OfflinePolicy::Wait(90_000)
        );
        let e = "later".parse::<OfflinePolicy>().unwrap_err();
        assert!(e.contains("`later`") && e.contains("wait:DURATION"), "{e}");
        assert!("wait:soon".parse::<OfflinePolicy>().is_err());
        assert_eq!("3".parse::<MaxFailures>().unwrap(), MaxFailures::Count(3));
        assert_eq!(
            "10%".parse::<MaxFailures>().unwrap(),
            MaxFailures::Percent(10)
        );
        assert!("101%".parse::<MaxFailures>().is_err());
        assert!("-1".parse::<MaxFailures>().is_err());
        assert_eq!(MaxFailures::Percent(10).budget(25), 2);
        assert_eq!(MaxFailures::Count(3).budget(1), 3);
    }

    #[test]
    fn selectors_parse_and_match() {
        let t = parse_selector("tier=edge, region!=eu,gpu").unwrap();
        let mut l = std::collections::BTreeMap::new();
        l.insert("tier".to_string(), "edge".to_string());
        l.insert("gpu".to_string(), "yes".to_string());
        assert!(selector_matches(&t, &l));
        l.insert("region".into(), "eu".into());
        assert!(!selector_matches(&t, &l));
        assert!(parse_selector("a=b,,c").unwrap_err().contains("empty term"));
        assert!(parse_selector("=b").unwrap_err().contains("label key"));
    }

    fn req() -> StrategyRequest {
        serde_json::from_value(serde_json::json!({
            "name": "r1", "release": "0.2.0", "group": "g1"
        }))
        .unwrap()
    }

    #[test]
    fn options_default_and_every_problem_is_named() {
        let o = req().options().unwrap();
        assert_eq!(o.apply_type, ApplyType::Parallel);
        assert_eq!(o.max_parallel, DEFAULT_PARALLEL);
        assert_eq!(o.max_failures, MaxFailures::Count(0));
        assert_eq!(o.offline, OfflinePolicy::Skip);
        assert!(o.rollback);
        let mut r = req();
        r.name = "Bad_Name".into();
        r.selector = Some("x=y".into());
        r.apply_type = Some("serial".into());
        r.offline = Some("later".into());
        r.max_parallel = Some(5);
        r.min_healthy_seconds = Some(-1.0);
        let fields: Vec<String> = r.options().unwrap_err().into_iter().map(|p| p.0).collect();
        for f in [
            "name",
            "group",
            "maxParallel",
            "minHealthySeconds",
            "offline",
        ] {
            assert!(fields.iter().any(|x| x == f), "{f} not in {fields:?}");
        }
        let mut r = req();
        r.apply_type = Some("parallel".into());
        r.max_parallel = Some(10_001);
        assert_eq!(r.options().unwrap_err()[0].0, "maxParallel");
        r.max_parallel = Some(10_000);
        assert_eq!(r.options().unwrap().max_parallel, 10_000);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("1500ms").unwrap(), 1500);
        assert_eq!(parse_duration_ms("2m").unwrap(), 120_000);
        assert_eq!(parse_duration_ms("0.5s").unwrap(), 500);
        assert!(parse_duration_ms("8d").is_err());
        assert_eq!(fmt_ms(120_000), "2m");
        assert_eq!(fmt_ms(1500), "1500ms");
    }
}

//! A simulated host's runtime, in memory: what central asks for "runs" after a set
//! apply time, and fails at a set rate. The fleet simulator (`roost sim`) and the
//! rollout benchmark run many of these behind the real link client (real enrollment,
//! mutual TLS, heartbeats, sync and alarms) — the protocol is never reimplemented.

use crate::link::runtime::ApplyIssue;
use crate::link::{
    spec_digest, workload_name, HostRuntime, RuntimeAlarm, RuntimeReport, WorkloadState, SET_LABEL,
};
use crate::model::now_ms;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// How a simulated host behaves.
#[derive(Debug, Clone, Copy)]
pub struct SimSettings {
    /// How long an apply that changes something takes.
    pub apply: Duration,
    /// The share of changing applies whose changed workloads end `failed` (0–1).
    pub fail_rate: f64,
}

#[derive(Debug, Default)]
struct Held {
    /// name → (spec, digest, phase, instance).
    running: BTreeMap<String, (Value, String, &'static str, u64)>,
    applies: u64,
    next_instance: u64,
}

/// One simulated host's runtime.
#[derive(Debug)]
pub struct SimRuntime {
    host: String,
    settings: SimSettings,
    seed: u64,
    held: Mutex<Held>,
    changes: tokio::sync::watch::Sender<u64>,
}

/// splitmix64: a fixed, seedable sequence (the simulator needs no cryptography).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SimRuntime {
    /// A simulated host `host`; `seed` makes its failures repeatable.
    pub fn new(host: &str, settings: SimSettings, seed: u64) -> Self {
        let (changes, _) = tokio::sync::watch::channel(0);
        Self {
            host: host.into(),
            settings,
            seed,
            held: Mutex::new(Held::default()),
            changes,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        match self.held.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// How many applies changed something.
    pub fn applies(&self) -> u64 {
        self.held().applies
    }
}

#[async_trait::async_trait]
impl HostRuntime for SimRuntime {
    async fn apply(&self, workloads: Vec<Value>) -> Vec<ApplyIssue> {
        let want: BTreeMap<String, (Value, String)> = workloads
            .into_iter()
            .filter_map(|w| {
                let n = workload_name(&w)?.to_string();
                let d = spec_digest(&w);
                Some((n, (w, d)))
            })
            .collect();
        let same = {
            let h = self.held();
            h.running.len() == want.len()
                && want
                    .iter()
                    .all(|(n, (_, d))| h.running.get(n).is_some_and(|r| r.1 == *d))
        };
        if same {
            return Vec::new();
        }
        if !self.settings.apply.is_zero() {
            tokio::time::sleep(self.settings.apply).await;
        }
        {
            let mut h = self.held();
            h.applies += 1;
            let roll = mix(self.seed ^ mix(h.applies)) as f64 / u64::MAX as f64;
            let fails = roll < self.settings.fail_rate;
            let mut next = BTreeMap::new();
            for (n, (w, d)) in want {
                let kept = h.running.get(&n).filter(|r| r.1 == d).cloned();
                let entry = match kept {
                    Some(r) => r,
                    None => {
                        h.next_instance += 1;
                        let phase = if fails { "failed" } else { "running" };
                        (w, d, phase, h.next_instance)
                    }
                };
                next.insert(n, entry);
            }
            h.running = next;
        }
        self.changes.send_modify(|n| *n += 1);
        Vec::new()
    }

    async fn report(&self) -> RuntimeReport {
        let h = self.held();
        RuntimeReport {
            workloads: h
                .running
                .iter()
                .map(|(n, (w, d, phase, inst))| WorkloadState {
                    name: n.clone(),
                    set: w
                        .pointer("/metadata/labels")
                        .and_then(|l| l.get(SET_LABEL))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    phase: (*phase).into(),
                    restarts: 0,
                    spec_digest: d.clone(),
                    instance: *inst,
                    cpus: String::new(),
                    placement: String::new(),
                })
                .collect(),
            local_workloads: 0,
            cpu: None,
        }
    }

    async fn alarms(&self) -> Vec<RuntimeAlarm> {
        let h = self.held();
        h.running
            .iter()
            .filter(|(_, r)| r.2 == "failed")
            .map(|(n, _)| RuntimeAlarm {
                code: "workload.failed".into(),
                severity: "major".into(),
                entity: format!("host/{}/workload/{n}", self.host),
                reason: "the simulated apply failed".into(),
                raised_ms: now_ms(),
            })
            .collect()
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str, v: u32) -> Value {
        serde_json::json!({"kind": "Workload", "metadata": {"name": name,
            "labels": {SET_LABEL: "s"}}, "spec": {"v": v}})
    }

    #[tokio::test]
    async fn applies_take_their_time_and_fail_at_their_rate() {
        let ok = SimRuntime::new(
            "h",
            SimSettings {
                apply: Duration::from_millis(50),
                fail_rate: 0.0,
            },
            1,
        );
        let t = std::time::Instant::now();
        ok.apply(vec![w("a", 1), w("b", 1)]).await;
        assert!(t.elapsed() >= Duration::from_millis(50));
        let r = ok.report().await;
        assert_eq!(r.workloads.len(), 2);
        assert!(r
            .workloads
            .iter()
            .all(|x| x.phase == "running" && x.set == "s"));
        // The same again changes nothing and takes no time.
        let t = std::time::Instant::now();
        ok.apply(vec![w("a", 1), w("b", 1)]).await;
        assert!(t.elapsed() < Duration::from_millis(50));
        assert_eq!(ok.applies(), 1);
        // Only the changed workload gets a new instance.
        let before = ok.report().await.workloads;
        ok.apply(vec![w("a", 2), w("b", 1)]).await;
        let after = ok.report().await.workloads;
        assert_ne!(before[0].instance, after[0].instance);
        assert_eq!(before[1].instance, after[1].instance);

        let bad = SimRuntime::new(
            "h2",
            SimSettings {
                apply: Duration::ZERO,
                fail_rate: 1.0,
            },
            2,
        );
        bad.apply(vec![w("a", 1)]).await;
        assert_eq!(bad.report().await.workloads[0].phase, "failed");
        assert_eq!(bad.alarms().await[0].code, "workload.failed");
    }
}

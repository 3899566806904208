//! The fleet sync audit: central asks every linked host for a fresh report at once and
//! judges each against its desired state, as StarlingX's subcloud audit does, but
//! pushed over the links already open rather than polled host by host. Hosts report on
//! every change anyway; the audit is the periodic proof (and the operator's
//! `roost central audit`).

use super::state::SyncState;
use super::Central;
use crate::link::proto::{self, central_message::Body as Out};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The longest an audit waits for the hosts' answers.
pub const MAX_AUDIT_WAIT: Duration = Duration::from_secs(600);

/// The audit in flight: which hosts have not answered yet.
#[derive(Debug, Default)]
pub(crate) struct AuditRun {
    pub id: u64,
    pub pending: HashSet<String>,
    /// Asked, but their session ended before they answered.
    pub gone: HashSet<String>,
}

/// What an audit found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditResult {
    /// The audit's id (hosts answer with it).
    pub id: u64,
    /// Enrolled hosts (not revoked).
    pub hosts: u32,
    /// Hosts asked (those linked when the audit began).
    pub asked: u32,
    /// Hosts that answered within the wait.
    pub answered: u32,
    /// Hosts in sync with their desired state.
    pub in_sync: u32,
    /// Hosts out of sync.
    pub out_of_sync: u32,
    /// Hosts whose state is unknown (offline, or no answer).
    pub unknown: u32,
    /// Up to 20 hosts asked that did not answer.
    pub silent: Vec<String>,
    /// Up to 20 hosts found out of sync.
    pub drifted: Vec<String>,
    /// Wall time from the first question to the last verdict (seconds).
    pub seconds: f64,
}

impl Central {
    /// Audit the whole fleet: ask every linked host for a fresh report, wait for the
    /// answers (at most `wait`), then judge every host's sync. One audit at a time;
    /// a second caller waits for the first to end and runs its own.
    pub async fn audit(&self, wait: Duration) -> AuditResult {
        let _one = self.audit_lock.lock().await;
        let t0 = Instant::now();
        let id = self.counters.audits.fetch_add(1, Ordering::Relaxed) + 1;
        let asked: Vec<String> = {
            let st = self.lock();
            st.live
                .iter()
                .filter(|(_, l)| l.online && l.session.is_some())
                .map(|(n, _)| n.clone())
                .collect()
        };
        *self.audit_run_lock() = Some(AuditRun {
            id,
            pending: asked.iter().cloned().collect(),
            gone: HashSet::new(),
        });
        let msg = Out::Audit(proto::Audit { id });
        for h in &asked {
            if !self.send(h, msg.clone()) {
                // Its session is gone: it cannot answer.
                self.audit_forget(h);
            }
        }
        let deadline = tokio::time::Instant::now() + wait.min(MAX_AUDIT_WAIT);
        loop {
            let done = self.audit_done.notified();
            if self
                .audit_run_lock()
                .as_ref()
                .is_none_or(|r| r.pending.is_empty())
            {
                break;
            }
            if tokio::time::timeout_at(deadline, done).await.is_err() {
                break;
            }
        }
        let (mut pending, gone) = self
            .audit_run_lock()
            .take()
            .map(|r| (r.pending, r.gone))
            .unwrap_or_default();
        pending.extend(gone);
        let mut r = AuditResult {
            id,
            hosts: 0,
            asked: asked.len() as u32,
            answered: (asked.len() - pending.len()) as u32,
            in_sync: 0,
            out_of_sync: 0,
            unknown: 0,
            silent: pending.iter().take(20).cloned().collect(),
            drifted: Vec::new(),
            seconds: 0.0,
        };
        r.silent.sort();
        {
            let st = self.lock();
            for h in st.hosts.values().filter(|h| !h.revoked) {
                r.hosts += 1;
                match st.sync_of(&h.name).0 {
                    _ if pending.contains(&h.name) => r.unknown += 1,
                    SyncState::InSync => r.in_sync += 1,
                    SyncState::OutOfSync => {
                        r.out_of_sync += 1;
                        if r.drifted.len() < 20 {
                            r.drifted.push(h.name.clone());
                        }
                    }
                    SyncState::Unknown => r.unknown += 1,
                }
            }
        }
        r.seconds = t0.elapsed().as_secs_f64();
        self.counters
            .audit_last_ms
            .store(t0.elapsed().as_millis() as u64, Ordering::Relaxed);
        tracing::info!(
            id,
            hosts = r.hosts,
            answered = r.answered,
            in_sync = r.in_sync,
            out_of_sync = r.out_of_sync,
            seconds = r.seconds,
            "fleet sync audit done"
        );
        r
    }

    /// A report answering audit `id` from `host`.
    pub(crate) fn audit_answered(&self, host: &str, id: u64) {
        let mut g = self.audit_run_lock();
        if let Some(r) = g.as_mut().filter(|r| r.id == id) {
            if r.pending.remove(host) && r.pending.is_empty() {
                self.audit_done.notify_waiters();
            }
        }
    }

    /// `host`'s session ended: it cannot answer the audit in flight.
    pub(crate) fn audit_forget(&self, host: &str) {
        let mut g = self.audit_run_lock();
        if let Some(r) = g.as_mut() {
            if r.pending.remove(host) {
                r.gone.insert(host.to_string());
                if r.pending.is_empty() {
                    self.audit_done.notify_waiters();
                }
            }
        }
    }

    fn audit_run_lock(&self) -> std::sync::MutexGuard<'_, Option<AuditRun>> {
        self.audit_run
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

//! Central's core: the fleet's desired state, what every host reports, sync status,
//! alarms and the event log. Front ends (the operator API, the link service) parse and
//! call these methods; nothing here knows HTTP.
//!
//! Every change goes through [`Central::write`]: built from the in-memory state,
//! committed to the store (durable), then applied in memory and pushed to the hosts
//! it concerns. Heartbeats and reports stay in memory: a restarted central learns them
//! again from the hosts within one heartbeat.

mod audit;
mod hostinfo;
mod hosts;
mod ops;
mod page;
mod releases;
mod rollout;
mod state;
mod strategies;
mod views;

pub use audit::{AuditResult, MAX_AUDIT_WAIT};
pub use hostinfo::{
    CoreView, CpuView, LatencyPoint, LogRead, LogView, DEFAULT_TAIL_LINES, LATENCY_RING,
    LOG_TIMEOUT,
};
pub use page::{SubcloudPage, SubcloudQuery, SubcloudSort, MAX_PAGE};
pub use releases::{ReleaseAdded, MAX_RELEASE_BYTES};
pub use state::SyncState;
pub use views::{
    AlarmCounts, AlarmFilter, DeployResult, FleetStatus, HostView, SubcloudView, SyncView,
    TokenCreated, WorkloadView,
};

use crate::model::{now_ms, Event};
use crate::pki::CentralPki;
use crate::store::{Change, Store, StoreError};
use state::State;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Central's settings.
#[derive(Debug, Clone)]
pub struct CentralConfig {
    /// How often out-of-sync hosts are put back (`--reconcile`).
    pub reconcile: Duration,
    /// Lifetime of the certificates central signs for hosts.
    pub host_cert_ttl: Duration,
    /// Heartbeat assumed for a host that has not said (it says in its Hello).
    pub default_heartbeat: Duration,
    /// Where release binaries are kept (`<data-dir>/releases`); `None` = no releases.
    pub releases_dir: Option<std::path::PathBuf>,
}

impl Default for CentralConfig {
    fn default() -> Self {
        Self {
            reconcile: Duration::from_secs(10),
            host_cert_ttl: Duration::from_secs(30 * 24 * 3600),
            default_heartbeat: Duration::from_secs(5),
            releases_dir: None,
        }
    }
}

/// One problem with one field of a request.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct FieldProblem {
    /// Path of the field, e.g. `spec.workloads[1].spec.resources.cores`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Checks and normalises a Workload spec the way the host will read it (the `roost`
/// binary passes the host's own validator, so central refuses what a host would).
pub trait SpecCheck: Send + Sync {
    /// The spec as the host serialises it after parsing, or every problem with it.
    fn normalize(
        &self,
        workload: &serde_json::Value,
    ) -> Result<serde_json::Value, Vec<FieldProblem>>;
}

/// A [`SpecCheck`] that only requires `metadata.name` (for tests and simulators).
#[derive(Debug, Clone, Copy, Default)]
pub struct NameOnlyCheck;

impl SpecCheck for NameOnlyCheck {
    fn normalize(&self, w: &serde_json::Value) -> Result<serde_json::Value, Vec<FieldProblem>> {
        match crate::link::workload_name(w) {
            Some(n) if crate::model::check_name(n).is_ok() => Ok(w.clone()),
            Some(n) => Err(vec![FieldProblem {
                field: "metadata.name".into(),
                message: crate::model::check_name(n).err().unwrap_or_default(),
            }]),
            None => Err(vec![FieldProblem {
                field: "metadata.name".into(),
                message: "required: every workload needs a name".into(),
            }]),
        }
    }
}

/// Why a request was refused; front ends map each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum CentralError {
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with what exists (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is wrong (422), with every field problem.
    #[error("{message}")]
    Invalid {
        /// One line.
        message: String,
        /// Per field.
        details: Vec<FieldProblem>,
    },
    /// Not allowed: a bad join token, a revoked host (403).
    #[error("{0}")]
    Refused(String),
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed (500).
    #[error("{0}")]
    Pki(String),
    /// A request body is too large (413).
    #[error("{0}")]
    TooLarge(String),
    /// A file of central's could not be written or read (500).
    #[error("{0}")]
    Io(String),
    /// A host central must ask is offline or cannot answer (503).
    #[error("{0}")]
    Unavailable(String),
    /// A host did not answer in time (504).
    #[error("{0}")]
    Timeout(String),
}

impl CentralError {
    /// An invalid request with every field problem (the message lists them all).
    pub fn fields(details: Vec<FieldProblem>) -> Self {
        Self::Invalid {
            message: details
                .iter()
                .map(|d| format!("{}: {}", d.field, d.message))
                .collect::<Vec<_>>()
                .join("; "),
            details,
        }
    }

    /// An invalid request with one field problem.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Invalid {
            message: format!("{field}: {message}"),
            details: vec![FieldProblem {
                field: field.into(),
                message,
            }],
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Desired states pushed to hosts.
    pub pushes: AtomicU64,
    /// Heartbeats received.
    pub heartbeats: AtomicU64,
    /// Link sessions opened.
    pub sessions: AtomicU64,
    /// Link connections refused (no or bad certificate, revoked).
    pub refused: AtomicU64,
    /// Store commits.
    pub commits: AtomicU64,
    /// Fleet sync audits run.
    pub audits: AtomicU64,
    /// The last audit's wall time (ms).
    pub audit_last_ms: AtomicU64,
    /// Heartbeat lag: from the host's send time to central's status update (ms).
    pub heartbeat_lag: Histogram,
}

/// A histogram of milliseconds with fixed buckets (Prometheus style: each count is of
/// the values `<=` its bound; the last bucket is +Inf).
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; HISTOGRAM_BOUNDS.len() + 1],
    sum: AtomicU64,
}

/// The histogram's upper bounds (ms).
pub const HISTOGRAM_BOUNDS: [u64; 14] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000,
];

impl Histogram {
    /// Count one value.
    pub fn observe(&self, ms: u64) {
        let i = HISTOGRAM_BOUNDS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(HISTOGRAM_BOUNDS.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(ms, Ordering::Relaxed);
    }

    /// (upper bound or `None` for +Inf, cumulative count) per bucket, and the sum.
    pub fn snapshot(&self) -> (Vec<(Option<u64>, u64)>, u64) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            acc += c.load(Ordering::Relaxed);
            out.push((HISTOGRAM_BOUNDS.get(i).copied(), acc));
        }
        (out, self.sum.load(Ordering::Relaxed))
    }
}

/// The central controller. Share it as `Arc<Central>`.
pub struct Central {
    cfg: CentralConfig,
    store: Arc<dyn Store>,
    pki: Arc<CentralPki>,
    check: Arc<dyn SpecCheck>,
    state: Mutex<State>,
    writer: tokio::sync::Mutex<()>,
    events: tokio::sync::broadcast::Sender<Event>,
    started_ms: u64,
    /// Wakes the strategy engine (a report, alarms, a host online, an operator verb).
    rollout_wake: tokio::sync::Notify,
    /// Steps in flight: since when each has been healthy (memory only: a restarted
    /// central judges `minHealthy` afresh).
    healthy: Mutex<std::collections::HashMap<(String, String), u64>>,
    /// One fleet audit at a time.
    audit_lock: tokio::sync::Mutex<()>,
    /// The audit in flight.
    audit_run: Mutex<Option<audit::AuditRun>>,
    /// Fires when the audit in flight has every answer.
    audit_done: tokio::sync::Notify,
    /// Every replica's URL (empty for a lone central), told to hosts in Welcome.
    replicas: Mutex<Vec<String>>,
    /// Sync changes waiting for the next write (group commit): (subject, message).
    pending_sync: Mutex<Vec<(String, String)>>,
    /// Counters.
    pub counters: Counters,
}

impl std::fmt::Debug for Central {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Central")
            .field("cfg", &self.cfg)
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl Central {
    /// Load the store and build the controller (no task started: see [`Central::spawn_loops`]).
    pub async fn open(
        cfg: CentralConfig,
        store: Arc<dyn Store>,
        pki: Arc<CentralPki>,
        check: Arc<dyn SpecCheck>,
    ) -> Result<Arc<Self>, CentralError> {
        let snap = store.load().await?;
        let mut st = State::from_snapshot(snap);
        // The last events, for streams that resume from a recent cursor.
        let from = st.last_seq.saturating_sub(state::RECENT_EVENTS as u64);
        for e in store.events_after(from, state::RECENT_EVENTS).await? {
            st.remember_event(e);
        }
        let (events, _) = tokio::sync::broadcast::channel(4096);
        let c = Arc::new(Self {
            cfg,
            store,
            pki,
            check,
            state: Mutex::new(st),
            writer: tokio::sync::Mutex::new(()),
            events,
            started_ms: now_ms(),
            rollout_wake: tokio::sync::Notify::new(),
            healthy: Mutex::new(std::collections::HashMap::new()),
            audit_lock: tokio::sync::Mutex::new(()),
            audit_run: Mutex::new(None),
            audit_done: tokio::sync::Notify::new(),
            replicas: Mutex::new(Vec::new()),
            pending_sync: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        c.ensure_default_group().await?;
        Ok(c)
    }

    /// Start the offline watchdog, the reconcile loop and the strategy engine; they
    /// stop when `stop` fires.
    pub fn spawn_loops(self: &Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let c = Arc::clone(self);
        let mut s1 = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => c.watchdog().await,
                    _ = crate::link::stopped(&mut s1) => return,
                }
            }
        });
        tokio::spawn(Arc::clone(self).rollout_loop(stop.clone()));
        let c = Arc::clone(self);
        let mut s2 = stop;
        tokio::spawn(async move {
            let period = c.cfg.reconcile.max(Duration::from_millis(100));
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = tick.tick() => c.reconcile_all(),
                    _ = crate::link::stopped(&mut s2) => return,
                }
            }
        });
    }

    /// Every replica's URL, as hosts are told (empty for a lone central).
    pub fn replicas(&self) -> Vec<String> {
        self.replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Set the replicas' URLs (the leader, from the database).
    pub fn set_replicas(&self, urls: Vec<String>) {
        *self
            .replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = urls;
    }

    /// The store's backend name.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// Central's CA (PEM) and its SHA-256.
    pub fn ca(&self) -> (&str, String) {
        (self.pki.ca_pem(), self.pki.ca_sha256())
    }

    /// Settings.
    pub fn config(&self) -> &CentralConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The one write path: `build` sees the state and returns the changes and a
    /// result; the changes are committed (durable) and then applied in memory, and
    /// their events broadcast. Writes are serialised.
    async fn write<R>(
        &self,
        build: impl FnOnce(&mut Batch<'_>) -> Result<R, CentralError>,
    ) -> Result<R, CentralError> {
        let _w = self.writer.lock().await;
        let (changes, r) = {
            let st = self.lock();
            let mut b = Batch {
                st: &st,
                changes: Vec::new(),
                next_seq: st.last_seq,
            };
            let r = build(&mut b)?;
            (b.changes, r)
        };
        if changes.is_empty() {
            return Ok(r);
        }
        self.store.commit(changes.clone()).await?;
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        let mut new_events = Vec::new();
        {
            let mut st = self.lock();
            for c in changes {
                if let Change::AppendEvent(e) = &c {
                    new_events.push(e.clone());
                }
                st.apply(c);
            }
        }
        for e in new_events {
            let _ = self.events.send(e);
        }
        Ok(r)
    }

    /// Events after `cursor` (oldest first, at most `limit`).
    pub async fn events_after(
        &self,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<Event>, CentralError> {
        if let Some(v) = self.lock().recent_after(cursor, limit) {
            return Ok(v);
        }
        Ok(self.store.events_after(cursor, limit).await?)
    }

    /// New events as they are committed.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The newest event's seq.
    pub fn last_event_seq(&self) -> u64 {
        self.lock().last_seq
    }
}

/// The changes one write will commit, built against the current state.
pub(crate) struct Batch<'a> {
    st: &'a State,
    changes: Vec<Change>,
    next_seq: u64,
}

impl Batch<'_> {
    fn push(&mut self, c: Change) {
        self.changes.push(c);
    }

    fn event(&mut self, kind: &str, subject: impl Into<String>, message: impl Into<String>) -> u64 {
        self.next_seq += 1;
        self.changes.push(Change::AppendEvent(Event {
            seq: self.next_seq,
            time_ms: now_ms(),
            kind: kind.into(),
            subject: subject.into(),
            message: message.into(),
        }));
        self.next_seq
    }
}

//! The daemon's crash-safe embedded store (redb): workload records and the event log.
//!
//! Accepting a workload is durable before the API answers 201: the record goes into
//! the accept journal (one append, one `fdatasync`; see [`crate::journal`]) and into
//! redb without a sync. Status updates and events commit without a sync and are made
//! durable by the next durable commit (removals, shutdown, and a checkpoint every
//! [`CHECKPOINT_ENTRIES`] accepts or when the writer is idle) — after a crash,
//! recovery rebuilds status from the drivers anyway.

use crate::journal::Journal;
use crate::model::{Event, WorkloadRecord};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const WORKLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("workloads");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Highest journal sequence that a durable redb commit contains.
const JOURNAL_APPLIED: &str = "journal_applied";

/// Accepts journaled before a durable redb commit checkpoints them.
pub const CHECKPOINT_ENTRIES: usize = 2048;
/// A writer idle this long checkpoints whatever the journal holds.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);

/// Events kept in the log; older ones are pruned.
pub const EVENT_RETENTION: u64 = 100_000;

/// Store errors carry the file and the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened.
    #[error(
        "cannot open the store {path}: {reason} (is another `roost host` using this state dir?)"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A read or write failed.
    #[error("store {op} failed: {reason}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// A record did not decode (written by an incompatible version?).
    #[error("store record `{key}` is unreadable: {reason}")]
    Decode {
        /// Key of the record.
        key: String,
        /// Why.
        reason: String,
    },
}

fn io<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Io {
        op,
        reason: e.to_string(),
    }
}

/// A handle on the store; cheap to clone. All calls block (use `spawn_blocking` for
/// durable writes on async paths).
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    journal: Arc<Mutex<Journal>>,
}

fn lock(j: &Mutex<Journal>) -> MutexGuard<'_, Journal> {
    j.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or create) the store at `path` (and its accept journal beside it, with
    /// the extension `journal`), replaying accepts that never reached a durable
    /// commit. Holds an exclusive lock on the file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let jpath = path.with_extension("journal");
        let (mut journal, entries) = Journal::open(&jpath).map_err(|e| StoreError::Open {
            path: jpath.clone(),
            reason: e.to_string(),
        })?;
        // Make sure every table exists so reads never fail on a fresh file, and
        // replay the journal, in one durable commit.
        let mut tx = db.begin_write().map_err(io("begin"))?;
        tx.set_durability(Durability::Immediate)
            .map_err(io("set durability"))?;
        let mut replayed = 0usize;
        let top;
        {
            let mut w = tx.open_table(WORKLOADS).map_err(io("open workloads"))?;
            tx.open_table(EVENTS).map_err(io("open events"))?;
            let mut meta = tx.open_table(META).map_err(io("open meta"))?;
            let applied = meta
                .get(JOURNAL_APPLIED)
                .map_err(io("get"))?
                .map_or(0, |v| v.value());
            for e in entries.iter().filter(|e| e.seq > applied) {
                let rec: WorkloadRecord =
                    serde_json::from_slice(&e.payload).map_err(|err| StoreError::Decode {
                        key: format!("journal entry {} in {}", e.seq, jpath.display()),
                        reason: err.to_string(),
                    })?;
                // A record present in the store is newer than its accept entry.
                if w.get(rec.name()).map_err(io("get"))?.is_none() {
                    w.insert(rec.name(), e.payload.as_slice())
                        .map_err(io("insert"))?;
                    replayed += 1;
                }
            }
            top = entries.last().map_or(applied, |e| e.seq.max(applied));
            meta.insert(JOURNAL_APPLIED, top).map_err(io("insert"))?;
        }
        tx.commit().map_err(io("commit"))?;
        journal.truncate().map_err(io("truncate journal"))?;
        journal.bump_past(top);
        if replayed > 0 {
            tracing::info!(replayed, "accepted workloads restored from the journal");
        }
        Ok(Self {
            db: Arc::new(db),
            journal: Arc::new(Mutex::new(journal)),
        })
    }

    /// One record.
    pub fn get(&self, name: &str) -> Result<Option<WorkloadRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(io("begin read"))?;
        let t = tx.open_table(WORKLOADS).map_err(io("open workloads"))?;
        match t.get(name).map_err(io("get"))? {
            Some(v) => {
                serde_json::from_slice(v.value())
                    .map(Some)
                    .map_err(|e| StoreError::Decode {
                        key: name.to_string(),
                        reason: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    /// Every record, by name.
    pub fn list(&self) -> Result<Vec<WorkloadRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(io("begin read"))?;
        let t = tx.open_table(WORKLOADS).map_err(io("open workloads"))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(io("iterate"))? {
            let (k, v) = item.map_err(io("iterate"))?;
            let rec = serde_json::from_slice(v.value()).map_err(|e| StoreError::Decode {
                key: k.value().to_string(),
                reason: e.to_string(),
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Append events (their `seq` must already be set, increasing).
    pub fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().map_err(io("begin"))?;
        tx.set_durability(Durability::None)
            .map_err(io("set durability"))?;
        {
            let mut t = tx.open_table(EVENTS).map_err(io("open events"))?;
            for e in events {
                let bytes = serde_json::to_vec(e).map_err(io("encode"))?;
                t.insert(e.seq, bytes.as_slice()).map_err(io("insert"))?;
            }
            if let Some(last) = events.last() {
                if last.seq > EVENT_RETENTION && last.seq % 1000 == 0 {
                    let cut = last.seq - EVENT_RETENTION;
                    t.retain_in(..cut, |_, _| false).map_err(io("prune"))?;
                }
            }
        }
        tx.commit().map_err(io("commit"))
    }

    /// Highest event seq stored (0 if none).
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(io("begin read"))?;
        let t = tx.open_table(EVENTS).map_err(io("open events"))?;
        let last = t.last().map_err(io("last"))?.map(|(k, _)| k.value());
        Ok(last.unwrap_or(0))
    }

    /// Up to `limit` events with seq > `after`.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let tx = self.db.begin_read().map_err(io("begin read"))?;
        let t = tx.open_table(EVENTS).map_err(io("open events"))?;
        let mut out = Vec::new();
        for item in t
            .range(after.saturating_add(1)..)
            .map_err(io("range"))?
            .take(limit)
        {
            let (k, v) = item.map_err(io("iterate"))?;
            out.push(
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Decode {
                    key: format!("event {}", k.value()),
                    reason: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}

/// One write for the [`Writer`].
#[derive(Debug)]
pub enum WriteOp {
    /// Insert or replace; `durable` asks for an fsync before the reply.
    Put(Box<WorkloadRecord>, bool),
    /// Insert if the name is free (durable); replies whether it was inserted.
    InsertNew(Box<WorkloadRecord>),
    /// Remove (durable).
    Remove(String),
    /// Append events (not durable by themselves).
    Events(Vec<Event>),
    /// Make everything written so far durable (shutdown).
    Flush,
}

impl WriteOp {
    /// Whether this op needs a durable redb commit. (An accept is made durable by
    /// the journal instead.)
    fn durable(&self) -> bool {
        match self {
            Self::Put(_, d) => *d,
            Self::Remove(_) | Self::Flush => true,
            Self::InsertNew(_) | Self::Events(_) => false,
        }
    }
}

type Reply = tokio::sync::oneshot::Sender<Result<bool, String>>;

/// Group commit: one thread owns writing, takes every queued write, applies them in
/// one transaction (fsync'd if any asks for it) and answers each. 100 concurrent
/// creates cost a handful of fsyncs, not 100.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: std::sync::mpsc::Sender<(WriteOp, Option<Reply>)>,
}

impl Writer {
    /// Start the writer thread over `store`.
    pub fn spawn(store: Store) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<(WriteOp, Option<Reply>)>();
        let spawned = std::thread::Builder::new()
            .name("roost-store".into())
            .spawn(move || loop {
                let first = match rx.recv_timeout(IDLE_CHECKPOINT) {
                    Ok(op) => op,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if !lock(&store.journal).is_empty() {
                            let _ = store.apply(std::iter::once(&WriteOp::Flush));
                        }
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                let results = store.apply(batch.iter().map(|(op, _)| op));
                for ((_, reply), res) in batch.into_iter().zip(results) {
                    if let Some(r) = reply {
                        let _ = r.send(res);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the store writer thread");
        }
        Self { tx }
    }

    /// Queue a write and wait until it is committed.
    pub async fn write(&self, op: WriteOp) -> Result<bool, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send((op, Some(tx))).map_err(|_| StoreError::Io {
            op: "write",
            reason: "the store writer has stopped".into(),
        })?;
        rx.await
            .map_err(|_| StoreError::Io {
                op: "write",
                reason: "the store writer dropped the request".into(),
            })?
            .map_err(|reason| StoreError::Io {
                op: "write",
                reason,
            })
    }

    /// Queue a write without waiting.
    pub fn send(&self, op: WriteOp) {
        let _ = self.tx.send((op, None));
    }
}

impl Store {
    /// Apply a batch in one transaction; one result per op.
    fn apply<'a>(
        &self,
        ops: impl Iterator<Item = &'a WriteOp> + Clone,
    ) -> Vec<Result<bool, String>> {
        let n = ops.clone().count();
        let mut journal = lock(&self.journal);
        // A durable redb commit also checkpoints the journal; accepts alone only
        // need the journal's sync.
        let checkpoint = ops.clone().any(WriteOp::durable) || journal.len() >= CHECKPOINT_ENTRIES;
        let run = || -> Result<Vec<Result<bool, String>>, StoreError> {
            let mut tx = self.db.begin_write().map_err(io("begin"))?;
            tx.set_durability(if checkpoint {
                Durability::Immediate
            } else {
                Durability::None
            })
            .map_err(io("set durability"))?;
            let mut results = Vec::with_capacity(n);
            let mut accepted: Vec<Vec<u8>> = Vec::new();
            {
                let mut w = tx.open_table(WORKLOADS).map_err(io("open workloads"))?;
                let mut ev = tx.open_table(EVENTS).map_err(io("open events"))?;
                for op in ops {
                    let r = match op {
                        WriteOp::Put(rec, _) => serde_json::to_vec(rec)
                            .map_err(|e| e.to_string())
                            .and_then(|b| {
                                w.insert(rec.name(), b.as_slice())
                                    .map(|_| true)
                                    .map_err(|e| e.to_string())
                            }),
                        WriteOp::InsertNew(rec) => match w.get(rec.name()).map(|v| v.is_some()) {
                            Ok(true) => Ok(false),
                            Ok(false) => serde_json::to_vec(rec)
                                .map_err(|e| e.to_string())
                                .and_then(|b| {
                                    w.insert(rec.name(), b.as_slice())
                                        .map_err(|e| e.to_string())?;
                                    accepted.push(b);
                                    Ok(true)
                                }),
                            Err(e) => Err(e.to_string()),
                        },
                        WriteOp::Flush => Ok(true),
                        WriteOp::Remove(name) => w
                            .remove(name.as_str())
                            .map(|_| true)
                            .map_err(|e| e.to_string()),
                        WriteOp::Events(events) => {
                            let mut res = Ok(true);
                            for e in events {
                                let r = serde_json::to_vec(e).map_err(|e| e.to_string()).and_then(
                                    |b| {
                                        ev.insert(e.seq, b.as_slice())
                                            .map(|_| ())
                                            .map_err(|e| e.to_string())
                                    },
                                );
                                if let Err(e) = r {
                                    res = Err(e);
                                }
                                if e.seq > EVENT_RETENTION && e.seq % 1000 == 0 {
                                    let cut = e.seq - EVENT_RETENTION;
                                    if let Err(e) = ev.retain_in(..cut, |_, _| false) {
                                        res = Err(e.to_string());
                                    }
                                }
                            }
                            res
                        }
                    };
                    results.push(r);
                }
            }
            if checkpoint {
                let mut meta = tx.open_table(META).map_err(io("open meta"))?;
                meta.insert(JOURNAL_APPLIED, journal.next_seq() - 1)
                    .map_err(io("insert"))?;
                drop(meta);
                tx.commit().map_err(io("commit"))?;
                if let Err(e) = journal.truncate() {
                    tracing::warn!(error = %e, "accept journal not truncated; replay skips it");
                }
            } else {
                if !accepted.is_empty() {
                    // Durable before redb sees the transaction: an error here leaves
                    // nothing behind.
                    if let Err(e) = journal.append(&accepted) {
                        let _ = tx.abort();
                        return Err(io("journal")(e));
                    }
                }
                tx.commit().map_err(io("commit"))?;
            }
            Ok(results)
        };
        match run() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "store batch failed");
                (0..n).map(|_| Err(e.to_string())).collect()
            }
        }
    }
}

//! The daemon's crash-safe embedded store (redb): workload records and the event log.
//!
//! Accepting a workload commits durably (fsync) before the API answers 201; status
//! updates and events commit without fsync and are made durable by the next durable
//! commit — after a crash, recovery rebuilds status from the drivers anyway.

use crate::model::{Event, WorkloadRecord};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const WORKLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("workloads");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");

/// Events kept in the log; older ones are pruned.
pub const EVENT_RETENTION: u64 = 100_000;

/// Store errors carry the file and the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened.
    #[error("cannot open the store {path}: {reason} (is another `roost host` using this state dir?)")]
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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Open (or create) the store at `path`. Holds an exclusive lock on the file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let s = Self { db: Arc::new(db) };
        // Make sure both tables exist so reads never fail on a fresh file.
        let mut tx = s.db.begin_write().map_err(io("begin"))?;
        tx.set_durability(Durability::Immediate)
            .map_err(io("set durability"))?;
        tx.open_table(WORKLOADS).map_err(io("open workloads"))?;
        tx.open_table(EVENTS).map_err(io("open events"))?;
        tx.commit().map_err(io("commit"))?;
        Ok(s)
    }

    /// Insert or replace a record. `durable` = fsync before returning.
    pub fn put(&self, rec: &WorkloadRecord, durable: bool) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(rec).map_err(io("encode"))?;
        let mut tx = self.db.begin_write().map_err(io("begin"))?;
        tx.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(io("set durability"))?;
        {
            let mut t = tx.open_table(WORKLOADS).map_err(io("open workloads"))?;
            t.insert(rec.name(), bytes.as_slice())
                .map_err(io("insert"))?;
        }
        tx.commit().map_err(io("commit"))
    }

    /// Insert only if no record has this name; returns false if one exists.
    pub fn insert_new(&self, rec: &WorkloadRecord) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec(rec).map_err(io("encode"))?;
        let mut tx = self.db.begin_write().map_err(io("begin"))?;
        tx.set_durability(Durability::Immediate)
            .map_err(io("set durability"))?;
        {
            let mut t = tx.open_table(WORKLOADS).map_err(io("open workloads"))?;
            if t.get(rec.name()).map_err(io("get"))?.is_some() {
                return Ok(false);
            }
            t.insert(rec.name(), bytes.as_slice())
                .map_err(io("insert"))?;
        }
        tx.commit().map_err(io("commit"))?;
        Ok(true)
    }

    /// Remove a record (durably).
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().map_err(io("begin"))?;
        tx.set_durability(Durability::Immediate)
            .map_err(io("set durability"))?;
        {
            let mut t = tx.open_table(WORKLOADS).map_err(io("open workloads"))?;
            t.remove(name).map_err(io("remove"))?;
        }
        tx.commit().map_err(io("commit"))
    }

    /// One record.
    pub fn get(&self, name: &str) -> Result<Option<WorkloadRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(io("begin read"))?;
        let t = tx.open_table(WORKLOADS).map_err(io("open workloads"))?;
        match t.get(name).map_err(io("get"))? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| StoreError::Decode {
                    key: name.to_string(),
                    reason: e.to_string(),
                }),
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

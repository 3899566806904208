//! The embedded SQLite backend: one file (mode 0600) under the data dir, in WAL mode
//! with `synchronous=FULL`, so a commit that returned is on disk.
//!
//! rusqlite is blocking: the one connection sits behind a std `Mutex` and every call
//! runs on tokio's blocking pool, never on a runtime thread. Statements are prepared
//! once and kept in the connection's cache (`prepare_cached`): `commit` is on the hot
//! path of every host's heartbeat.

use super::schema::{self, RawSnapshot, Table, Value};
use super::{Change, Snapshot, Store, StoreError};
use crate::model::Event;
use rusqlite::{Connection, OpenFlags, ToSql, TransactionBehavior};
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

const BACKEND: &str = "sqlite";

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Enough for every statement this file prepares (12 writes, 8 loads, events).
const STATEMENT_CACHE: usize = 32;

/// Central's store in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (or create) the store at `path`: creates the parent directory (0700) if
    /// missing and the file with mode 0600 (an existing file is tightened to 0600),
    /// sets WAL mode, `synchronous=FULL` and a 5 s busy timeout, and applies pending
    /// migrations. A file written by a newer Roost is refused.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let owned = path.to_path_buf();
        let conn = tokio::task::spawn_blocking(move || open_blocking(&owned))
            .await
            .map_err(|e| StoreError::Open {
                backend: BACKEND,
                location: path.display().to_string(),
                reason: format!("the opening task did not finish: {e}"),
            })??;
        Ok(Self {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` with the connection on the blocking pool.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction open: the
            // `Transaction` rolls back as it unwinds, so the connection is still sound.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Query {
            backend: BACKEND,
            op,
            reason: format!("the blocking task did not finish: {e}"),
        })?
    }
}

/// Map a rusqlite error of `op`.
fn query_err(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Query {
        backend: BACKEND,
        op,
        reason: e.to_string(),
    }
}

fn open_blocking(path: &Path) -> Result<Connection, StoreError> {
    let location = path.display().to_string();
    let fail = |reason: String| StoreError::Open {
        backend: BACKEND,
        location: location.clone(),
        reason,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| {
                    fail(format!(
                        "cannot create its directory {}: {e}; check the permissions of the \
                         data dir",
                        parent.display()
                    ))
                })?;
        }
    }
    // Create the file ourselves so it is born 0600 (SQLite would make it 0644 less the
    // umask); SQLite gives its -wal and -shm files the main file's mode.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| fail(format!("cannot open the file: {e}; check its permissions")))?;
    let mode = file
        .metadata()
        .map_err(|e| fail(format!("cannot stat the file: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(|e| fail(format!("cannot make the file mode 0600: {e}")))?;
        tracing::warn!(path = %location, mode = format!("{:o}", mode & 0o777),
            "the store file was readable by others; made it 0600");
    }
    drop(file);

    // No SQLITE_OPEN_URI: the path is a path, never a `file:` URI with options.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)
        .map_err(|e| fail(format!("SQLite cannot open it: {e}")))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| fail(format!("cannot set the busy timeout: {e}")))?;
    let journal: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| {
            fail(format!(
                "cannot switch to WAL mode: {e}; is it a SQLite database (Roost's central.db)?"
            ))
        })?;
    if !journal.eq_ignore_ascii_case("wal") {
        // Some filesystems (network ones) cannot do WAL; synchronous=FULL still makes
        // every commit durable, only slower.
        tracing::warn!(path = %location, journal_mode = %journal,
            "SQLite refused WAL mode on this filesystem; commits stay durable but slower");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| fail(format!("cannot set synchronous=FULL: {e}")))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    migrate(&mut conn, &location)?;
    Ok(conn)
}

/// Apply every pending migration, each in its own `BEGIN IMMEDIATE` transaction (the
/// write lock is taken before the version is read, so two processes opening one file
/// at once do not both apply a migration).
fn migrate(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    let fail = |what: &str, e: rusqlite::Error| StoreError::Open {
        backend: BACKEND,
        location: location.to_string(),
        reason: format!("{what}: {e}"),
    };
    for &(version, sql) in schema::MIGRATIONS {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail("cannot begin a migration", e))?;
        tx.execute_batch(schema::BOOTSTRAP)
            .map_err(|e| fail("cannot create schema_migrations", e))?;
        let current: i64 = tx
            .query_row(schema::CURRENT_VERSION, [], |r| r.get(0))
            .map_err(|e| fail("cannot read the schema version", e))?;
        schema::check_known(BACKEND, location, current)?;
        if current >= i64::from(version) {
            continue; // dropping `tx` rolls the no-op bootstrap back
        }
        tx.execute_batch(sql)
            .map_err(|e| fail(&format!("migration to schema v{version} failed"), e))?;
        let v = i32::try_from(version).unwrap_or(i32::MAX);
        let applied = i64::try_from(crate::model::now_ms()).unwrap_or(i64::MAX);
        tx.execute(schema::RECORD_MIGRATION, (v, applied))
            .map_err(|e| fail(&format!("cannot record schema v{version}"), e))?;
        tx.commit()
            .map_err(|e| fail(&format!("cannot commit schema v{version}"), e))?;
        tracing::info!(path = %location, version, "applied store migration");
    }
    Ok(())
}

/// A value as rusqlite binds it.
fn param(v: &Value) -> &dyn ToSql {
    match v {
        Value::I64(x) => x,
        Value::Text(s) => s,
        Value::Bool(b) => b,
    }
}

/// Read every table but events, and `MAX(seq)`, in one read transaction (one
/// consistent snapshot even with another process writing).
fn load_blocking(conn: &mut Connection) -> Result<Snapshot, StoreError> {
    let tx = conn.transaction().map_err(query_err("load: begin"))?;
    let mut raw = RawSnapshot::default();
    for table in Table::ALL {
        let mut st = tx
            .prepare_cached(table.load_sql())
            .map_err(query_err("load: prepare"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(query_err("load"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(query_err("load"))?;
        raw.tables.push((table, rows));
    }
    raw.last_event_seq = tx
        .prepare_cached(schema::LAST_EVENT_SEQ)
        .and_then(|mut st| st.query_row([], |r| r.get(0)))
        .map_err(query_err("load: last event seq"))?;
    drop(tx); // read only: nothing to commit
    schema::decode_snapshot(BACKEND, raw)
}

fn commit_blocking(conn: &mut Connection, changes: &[Change]) -> Result<(), StoreError> {
    // Bind everything first: a change that cannot be encoded fails before BEGIN.
    let bound = changes
        .iter()
        .map(|c| schema::bind(BACKEND, c))
        .collect::<Result<Vec<_>, _>>()?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(query_err("commit: begin"))?;
    for (i, (stmt, values)) in bound.iter().enumerate() {
        let applied = tx
            .prepare_cached(stmt.sql())
            .and_then(|mut st| st.execute(rusqlite::params_from_iter(values.iter().map(param))));
        if let Err(e) = applied {
            // Dropping `tx` rolls the whole commit back.
            return Err(StoreError::Query {
                backend: BACKEND,
                op: "commit",
                reason: format!(
                    "change {} of {} ({}): {e}; nothing of this commit was written",
                    i + 1,
                    bound.len(),
                    changes.get(i).map(schema::describe).unwrap_or_default()
                ),
            });
        }
    }
    tx.commit().map_err(query_err("commit"))
}

fn events_blocking(
    conn: &mut Connection,
    cursor: i64,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let mut st = conn
        .prepare_cached(schema::EVENTS_AFTER)
        .map_err(query_err("read events: prepare"))?;
    let rows = st
        .query_map((cursor, limit), |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(query_err("read events"))?;
    rows.map(|row| {
        let (seq, body) = row.map_err(query_err("read events"))?;
        schema::decode_event(BACKEND, seq, &body)
    })
    .collect()
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.run("load", load_blocking).await
    }

    async fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        self.run("commit", move |conn| commit_blocking(conn, &changes))
            .await
    }

    async fn events_after(&self, cursor: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        // No stored seq exceeds i64::MAX (commit refuses them).
        let Ok(cursor) = i64::try_from(cursor) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run("read events", move |conn| {
            events_blocking(conn, cursor, limit)
        })
        .await
    }
}

//! The PostgreSQL backend: the same schema and SQL as SQLite, over one tokio-postgres
//! connection.
//!
//! **No TLS**: the connection is made with `NoTls`, so the database must be reached
//! over a Unix socket (`postgresql://USER@%2Fsocket%2Fdir/DB`) or loopback TCP; a
//! remote host is used as asked but warned about, since its traffic (and password
//! exchange) would be in the clear.
//!
//! **No reconnect yet**: when the connection is lost every call fails with
//! [`StoreError::Query`] saying so, until central is restarted.

use super::schema::{self, RawSnapshot, Stmt, Table, Value};
use super::{Change, Snapshot, Store, StoreError};
use crate::model::Event;
use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio_postgres::config::Host;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Statement};

const BACKEND: &str = "postgres";

/// Used when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many statements of one commit are in flight at once.
const PIPELINE: usize = 256;

/// The advisory lock that serialises migrations of one database (`Roost` in ASCII).
const MIGRATION_LOCK: i64 = 0x0052_6f6f_7374;

/// The advisory lock the leading central replica holds on its store connection
/// (`RoostL` in ASCII). Commits run on that same connection, so a replica that lost the
/// lock (its connection died) cannot commit either.
const LEADER_LOCK: i64 = 0x526f_6f73_744c;

/// Central's store in a PostgreSQL database.
pub struct PostgresStore {
    /// The URL without its password.
    location: String,
    conn: tokio::sync::Mutex<Conn>,
    /// Why the connection task ended, once it has.
    lost: Arc<Mutex<Option<String>>>,
}

/// The connection and its prepared statements.
struct Conn {
    client: Client,
    /// Indexed by `Stmt as usize`.
    writes: Vec<Statement>,
    events_after: Statement,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connect to `url` (a `postgres://` / `postgresql://` URL, or tokio-postgres's
    /// `host=… user=… dbname=…` form), spawn the connection task, apply pending
    /// migrations and prepare the write statements. A database written by a newer
    /// Roost is refused. Errors name the database without its password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut config: Config = url.parse().map_err(|e| StoreError::Open {
            backend: BACKEND,
            location: redact(url),
            reason: format!(
                "not a valid PostgreSQL URL ({}); use postgres://USER@HOST:PORT/DB or, for a \
                 Unix socket, postgresql://USER@%2Fsocket%2Fdir/DB",
                pg_reason(&e)
            ),
        })?;
        let location = describe_config(&config);
        let fail = |reason: String| StoreError::Open {
            backend: BACKEND,
            location: location.clone(),
            reason,
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        warn_if_remote(&config, &location);
        let (mut client, connection) = config.connect(NoTls).await.map_err(|e| {
            fail(format!(
                "cannot connect ({}); check that PostgreSQL runs there and that the user and \
                 the database exist",
                pg_reason(&e)
            ))
        })?;
        let lost = Arc::new(Mutex::new(None));
        let lost_by_task = Arc::clone(&lost);
        let task_location = location.clone();
        tokio::spawn(async move {
            let why = match connection.await {
                // Every Client handle was dropped: the store is gone, nothing is lost.
                Ok(()) => {
                    tracing::debug!(location = %task_location, "closed the PostgreSQL store");
                    "the connection was closed".to_string()
                }
                Err(e) => {
                    let why = pg_reason(&e);
                    tracing::error!(location = %task_location, reason = %why,
                        "lost the connection to the PostgreSQL store");
                    why
                }
            };
            *lost_by_task.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        });

        ensure_durable_commits(&client, &location).await?;
        migrate(&mut client, &location).await?;
        let mut writes = Vec::with_capacity(Stmt::ALL.len());
        for stmt in Stmt::ALL {
            let prepared = client.prepare(stmt.sql()).await.map_err(|e| {
                fail(format!(
                    "cannot prepare `{}`: {}",
                    stmt.sql(),
                    pg_reason(&e)
                ))
            })?;
            writes.push(prepared);
        }
        let events_after = client
            .prepare(schema::EVENTS_AFTER)
            .await
            .map_err(|e| fail(format!("cannot prepare the event query: {}", pg_reason(&e))))?;
        Ok(Self {
            location,
            conn: tokio::sync::Mutex::new(Conn {
                client,
                writes,
                events_after,
            }),
            lost,
        })
    }

    /// Whether the connection is gone (the store is then useless: make a new one).
    pub fn is_lost(&self) -> bool {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Try to take the leader lock on this connection (session-level: held until the
    /// connection ends). `Ok(true)`: this store's connection now holds it.
    pub async fn try_lead(&self) -> Result<bool, StoreError> {
        let c = self.conn.lock().await;
        c.client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
            .await
            .and_then(|r| r.try_get::<_, bool>(0))
            .map_err(|e| self.err("take the leader lock", &e))
    }

    /// A value of the replicas' shared table.
    pub async fn kv_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let c = self.conn.lock().await;
        let rows = c
            .client
            .query("SELECT value FROM replica_kv WHERE key = $1", &[&key])
            .await
            .map_err(|e| self.err("read replica_kv", &e))?;
        Ok(rows.first().and_then(|r| r.try_get::<_, String>(0).ok()))
    }

    /// Every (key, value, updated_ms) whose key starts with `prefix`.
    pub async fn kv_list(&self, prefix: &str) -> Result<Vec<(String, String, i64)>, StoreError> {
        let c = self.conn.lock().await;
        let like = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
        let rows = c
            .client
            .query(
                "SELECT key, value, updated_ms FROM replica_kv WHERE key LIKE $1 ORDER BY key",
                &[&like],
            )
            .await
            .map_err(|e| self.err("list replica_kv", &e))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?, r.try_get(2).ok()?)))
            .collect())
    }

    /// Set a value (`only_if_absent`: keep an existing one). Returns whether it wrote.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &str,
        only_if_absent: bool,
    ) -> Result<bool, StoreError> {
        let c = self.conn.lock().await;
        let now = i64::try_from(crate::model::now_ms()).unwrap_or(i64::MAX);
        let sql = if only_if_absent {
            "INSERT INTO replica_kv (key, value, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING"
        } else {
            "INSERT INTO replica_kv (key, value, updated_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms"
        };
        c.client
            .execute(sql, &[&key, &value, &now])
            .await
            .map(|n| n > 0)
            .map_err(|e| self.err("write replica_kv", &e))
    }

    /// The reason of a failed call, saying so plainly when the connection is gone.
    fn reason(&self, e: &tokio_postgres::Error) -> String {
        if !is_lost(e) {
            return pg_reason(e);
        }
        let why = self
            .lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| pg_reason(e));
        format!(
            "the connection to {} is lost ({why}); restart central to reconnect (a \
             replica started with --key-file reconnects by itself)",
            self.location
        )
    }

    fn err(&self, op: &'static str, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Query {
            backend: BACKEND,
            op,
            reason: self.reason(e),
        }
    }
}

/// Whether `e` means the connection is gone (closed, I/O failure, or the server
/// ending the session: SQLSTATE classes 08 and 57P).
fn is_lost(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(code) = e.code() {
        let code = code.code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    e.source()
        .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

/// tokio-postgres's `Display` omits the cause (`db error`); this adds it, on one line.
fn pg_reason(e: &tokio_postgres::Error) -> String {
    let text = match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    };
    text.replace('\n', "; ")
}

/// `postgresql://USER@HOST:PORT/DB` from a parsed config: never the password.
fn describe_config(config: &Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(h) if h.contains(':') => format!("[{h}]"),
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.to_string_lossy().replace('%', "%25").replace('/', "%2F"),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) if *port != 5432 => format!("{name}:{port}"),
                _ => name,
            }
        })
        .collect();
    format!(
        "postgresql://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// The raw string with any password replaced by `***`, for a string that did not
/// parse. Mirrors tokio-postgres's parser: the credentials run to the first `@`.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return "(a key-value connection string, not shown: it may hold a password)".into();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let rest = match rest.split_once('@') {
        Some((creds, after)) => match creds.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{after}"),
            None => rest.to_string(),
        },
        None => rest.to_string(),
    };
    let (head, query) = match rest.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (rest.as_str(), None),
    };
    let mut out = format!("{scheme}{head}");
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn warn_if_remote(config: &Config, location: &str) {
    let remote = config.get_hosts().iter().any(|h| match h {
        Host::Tcp(name) => {
            !matches!(name.as_str(), "localhost" | "::1") && !name.starts_with("127.")
        }
        Host::Unix(_) => false,
    });
    if remote {
        tracing::warn!(location = %location,
            "the PostgreSQL store is reached over TCP without TLS; use a Unix socket or \
             loopback address");
    }
}

/// `commit` promises durability: refuse to run on a session with
/// `synchronous_commit = off` by turning it back on (stronger settings are kept).
async fn ensure_durable_commits(client: &Client, location: &str) -> Result<(), StoreError> {
    let fail = |e: tokio_postgres::Error| StoreError::Open {
        backend: BACKEND,
        location: location.to_string(),
        reason: format!("cannot check synchronous_commit: {}", pg_reason(&e)),
    };
    let row = client
        .query_one("SHOW synchronous_commit", &[])
        .await
        .map_err(fail)?;
    let setting: String = row.try_get(0).map_err(fail)?;
    if setting == "off" {
        tracing::warn!(location = %location,
            "the server has synchronous_commit = off; turning it on for the store's session");
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(fail)?;
    }
    Ok(())
}

/// Apply every pending migration, each in its own transaction holding an advisory lock,
/// so two centrals starting on one database do not both apply one.
async fn migrate(client: &mut Client, location: &str) -> Result<(), StoreError> {
    let fail = |what: &str, e: tokio_postgres::Error| StoreError::Open {
        backend: BACKEND,
        location: location.to_string(),
        reason: format!("{what}: {}", pg_reason(&e)),
    };
    for &(version, sql) in schema::MIGRATIONS {
        let tx = client
            .transaction()
            .await
            .map_err(|e| fail("cannot begin a migration", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| fail("cannot take the migration lock", e))?;
        tx.batch_execute(schema::BOOTSTRAP)
            .await
            .map_err(|e| fail("cannot create schema_migrations", e))?;
        let current: i64 = tx
            .query_one(schema::CURRENT_VERSION, &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| fail("cannot read the schema version", e))?;
        schema::check_known(BACKEND, location, current)?;
        if current >= i64::from(version) {
            continue; // dropping `tx` rolls the no-op bootstrap back
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| fail(&format!("migration to schema v{version} failed"), e))?;
        let v = i32::try_from(version).unwrap_or(i32::MAX);
        let applied = i64::try_from(crate::model::now_ms()).unwrap_or(i64::MAX);
        tx.execute(schema::RECORD_MIGRATION, &[&v, &applied])
            .await
            .map_err(|e| fail(&format!("cannot record schema v{version}"), e))?;
        tx.commit()
            .await
            .map_err(|e| fail(&format!("cannot commit schema v{version}"), e))?;
        tracing::info!(location = %location, version, "applied store migration");
    }
    Ok(())
}

/// A value as tokio-postgres binds it.
fn param(v: &Value) -> &(dyn ToSql + Sync) {
    match v {
        Value::I64(x) => x,
        Value::Text(s) => s,
        Value::Bool(b) => b,
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        let mut raw = RawSnapshot::default();
        {
            let mut conn = self.conn.lock().await;
            // One consistent snapshot across the tables.
            let tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(|e| self.err("load: begin", &e))?;
            for table in Table::ALL {
                let rows = tx
                    .query(table.load_sql(), &[])
                    .await
                    .map_err(|e| self.err("load", &e))?;
                let rows = rows
                    .iter()
                    .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?)))
                    .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                    .map_err(|e| self.err("load", &e))?;
                raw.tables.push((table, rows));
            }
            raw.last_event_seq = tx
                .query_one(schema::LAST_EVENT_SEQ, &[])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| self.err("load: last event seq", &e))?;
            tx.commit().await.map_err(|e| self.err("load: end", &e))?;
        }
        // Decoding 10,000 bodies is CPU work: off the runtime threads.
        tokio::task::spawn_blocking(move || schema::decode_snapshot(BACKEND, raw))
            .await
            .map_err(|e| StoreError::Query {
                backend: BACKEND,
                op: "load",
                reason: format!("the decoding task did not finish: {e}"),
            })?
    }

    async fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        // Bind everything first: a change that cannot be encoded fails before BEGIN.
        let bound = changes
            .iter()
            .map(|c| schema::bind(BACKEND, c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.conn.lock().await;
        let Conn { client, writes, .. } = &mut *conn;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.err("commit: begin", &e))?;
        // Statements are pipelined (sent without waiting for each reply), a chunk at a
        // time: a 10,000-row commit costs a few round trips, not 10,000. Replies come
        // in order, and after a failure PostgreSQL refuses the rest of the
        // transaction, so the first error in order is the real one.
        for (chunk_no, chunk) in bound.chunks(PIPELINE).enumerate() {
            let mut statements = Vec::with_capacity(chunk.len());
            for (stmt, values) in chunk {
                let Some(prepared) = writes.get(*stmt as usize) else {
                    return Err(StoreError::Query {
                        backend: BACKEND,
                        op: "commit",
                        reason: format!("no prepared statement for {stmt:?} (a bug)"),
                    });
                };
                let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(param).collect();
                statements.push((prepared, params));
            }
            let results = futures_util::future::join_all(
                statements
                    .iter()
                    .map(|(prepared, params)| tx.execute(*prepared, params)),
            )
            .await;
            let failed = results
                .iter()
                .enumerate()
                .find_map(|(j, r)| r.as_ref().err().map(|e| (j, e)));
            if let Some((j, e)) = failed {
                let i = chunk_no * PIPELINE + j;
                let reason = format!(
                    "change {} of {} ({}): {}; nothing of this commit was written",
                    i + 1,
                    bound.len(),
                    changes.get(i).map(schema::describe).unwrap_or_default(),
                    self.reason(e)
                );
                // Best effort: dropping the transaction would send ROLLBACK too.
                if let Err(e) = tx.rollback().await {
                    tracing::debug!(reason = %pg_reason(&e), "rollback after a failed commit");
                }
                return Err(StoreError::Query {
                    backend: BACKEND,
                    op: "commit",
                    reason,
                });
            }
        }
        tx.commit().await.map_err(|e| {
            let mut reason = self.reason(&e);
            if is_lost(&e) {
                reason.push_str("; whether this commit was applied is unknown");
            }
            StoreError::Query {
                backend: BACKEND,
                op: "commit",
                reason,
            }
        })
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
        let rows = {
            let conn = self.conn.lock().await;
            conn.client
                .query(&conn.events_after, &[&cursor, &limit])
                .await
                .map_err(|e| self.err("read events", &e))?
        };
        rows.iter()
            .map(|row| {
                let seq: i64 = row.try_get(0).map_err(|e| self.err("read events", &e))?;
                let body: String = row.try_get(1).map_err(|e| self.err("read events", &e))?;
                schema::decode_event(BACKEND, seq, &body)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords() {
        for url in [
            "postgres://roost:hunter2@db.example:5432/roost",
            "postgresql://roost:hunter2@%2Frun%2Fpg/roost?sslmode=disable",
            "postgres://roost@localhost/roost?password=hunter2&connect_timeout=x",
            "host=/run/pg user=roost password=hunter2",
        ] {
            let shown = redact(url);
            assert!(!shown.contains("hunter2"), "{url} -> {shown}");
        }
        assert_eq!(
            redact("postgres://roost:hunter2@localhost/roost"),
            "postgres://roost:***@localhost/roost"
        );
    }

    #[test]
    fn described_config_has_no_password() {
        let config: Config = "postgresql://roost:hunter2@%2Frun%2Fpg:5433/central"
            .parse()
            .unwrap();
        assert_eq!(
            describe_config(&config),
            "postgresql://roost@%2Frun%2Fpg:5433/central"
        );
        let config: Config = "host=/run/pg user=roost password=hunter2 dbname=central"
            .parse()
            .unwrap();
        assert_eq!(
            describe_config(&config),
            "postgresql://roost@%2Frun%2Fpg/central"
        );
    }
}

//! The one schema both backends share: versioned migrations, every statement's SQL
//! text, how a [`Change`] binds to a statement, and how stored rows decode into a
//! [`Snapshot`]. Backends only run these strings and move values in and out.
//!
//! The SQL is the common ground of SQLite and PostgreSQL: `TEXT`, `BIGINT`,
//! `BOOLEAN`, `INSERT … ON CONFLICT (…) DO UPDATE SET … = excluded.…` and `$N`
//! placeholders. SQLite numbers `$N` parameters by first appearance, not by `N`, so
//! every statement here uses each placeholder once and in increasing order.
//!
//! Bodies are the model types as `serde_json` text; the other columns exist only to
//! key, look up and order rows.

use super::{Change, Snapshot, StoreError};
use crate::model::{Alarm, Deployment, Event, Group, Host, JoinToken, Release, Subcloud};
use crate::strategy::{Step, Strategy};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The `schema_migrations` table's DDL, as a literal so that migration 1 and the
/// bootstrap share one text.
macro_rules! schema_migrations_ddl {
    () => {
        "CREATE TABLE IF NOT EXISTS schema_migrations (\n\
         \x20   version INTEGER PRIMARY KEY,\n\
         \x20   applied_ms BIGINT NOT NULL\n\
         );\n"
    };
}

/// Run first in every migration transaction, so the current version can be read even
/// from an empty database. Migration 1 creates the same table (`IF NOT EXISTS`).
pub(crate) const BOOTSTRAP: &str = schema_migrations_ddl!();

/// Every migration, oldest first: (version, SQL). A migration is applied in its own
/// transaction together with its `schema_migrations` row. Never edit a released
/// entry; add a new version instead.
pub(crate) const MIGRATIONS: &[(u32, &str)] = &[
    (
    1,
    concat!(
        schema_migrations_ddl!(),
        "CREATE TABLE groups (name TEXT PRIMARY KEY, body TEXT NOT NULL);\n",
        "CREATE TABLE subclouds (name TEXT PRIMARY KEY, grp TEXT NOT NULL, body TEXT NOT NULL);\n",
        "CREATE TABLE hosts (name TEXT PRIMARY KEY, subcloud TEXT NOT NULL, body TEXT NOT NULL);\n",
        "CREATE TABLE join_tokens (id TEXT PRIMARY KEY, body TEXT NOT NULL);\n",
        "CREATE TABLE deployments (\n",
        "    set_name TEXT NOT NULL,\n",
        "    target TEXT NOT NULL,\n",
        "    body TEXT NOT NULL,\n",
        "    PRIMARY KEY (set_name, target)\n",
        ");\n",
        "CREATE TABLE alarms (\n",
        "    id TEXT PRIMARY KEY,\n",
        "    host TEXT NOT NULL,\n",
        "    active BOOLEAN NOT NULL,\n",
        "    body TEXT NOT NULL\n",
        ");\n",
        "CREATE TABLE events (seq BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, body TEXT NOT NULL);\n",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n",
    ),
    ),
    (
        2,
        concat!(
            "CREATE TABLE strategies (name TEXT PRIMARY KEY, body TEXT NOT NULL);\n",
            "CREATE TABLE strategy_steps (\n",
            "    strategy TEXT NOT NULL,\n",
            "    subcloud TEXT NOT NULL,\n",
            "    body TEXT NOT NULL,\n",
            "    PRIMARY KEY (strategy, subcloud)\n",
            ");\n",
        ),
    ),
    // Roost binaries central serves (software self-upgrade); the files are
    // `<data-dir>/releases/<sha256>`.
    (
        3,
        "CREATE TABLE releases (version TEXT PRIMARY KEY, sha256 TEXT NOT NULL, body TEXT NOT NULL);\n",
    ),
    // Central replicas on one PostgreSQL: the shared secrets (sealed), the leader's
    // record and every replica's address. Unused by a lone central on SQLite.
    (
        4,
        "CREATE TABLE replica_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_ms BIGINT NOT NULL);\n",
    ),
];

/// The newest schema version this binary knows.
pub(crate) fn newest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// The highest applied version (0 = none). `CAST` so both backends return a BIGINT.
pub(crate) const CURRENT_VERSION: &str =
    "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations";

/// Record an applied migration: `$1` version (an INTEGER: bind an i32, since
/// PostgreSQL's int4 refuses an i64), `$2` Unix ms.
pub(crate) const RECORD_MIGRATION: &str =
    "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)";

/// Up to `$2` events with `seq > $1`, in order.
pub(crate) const EVENTS_AFTER: &str =
    "SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2";

/// The highest stored event seq (0 = none).
pub(crate) const LAST_EVENT_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) FROM events";

/// Refuse a database whose schema is newer than this binary's; `Ok(())` otherwise.
pub(crate) fn check_known(
    backend: &'static str,
    location: &str,
    current: i64,
) -> Result<(), StoreError> {
    let newest = newest_version();
    if current > i64::from(newest) {
        return Err(StoreError::Open {
            backend,
            location: location.to_string(),
            reason: format!(
                "written by a newer Roost (schema v{current}, this binary knows up to \
                 v{newest}); upgrade roost"
            ),
        });
    }
    Ok(())
}

/// A bound value. Backends turn each into their own parameter type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A `BIGINT` column.
    I64(i64),
    /// A `TEXT` column.
    Text(String),
    /// A `BOOLEAN` column.
    Bool(bool),
}

/// Every write statement; one per [`Change`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stmt {
    PutGroup,
    DeleteGroup,
    PutSubcloud,
    DeleteSubcloud,
    PutHost,
    DeleteHost,
    PutToken,
    PutDeployment,
    DeleteDeployment,
    PutAlarm,
    AppendEvent,
    PutMeta,
    PutStrategy,
    DeleteStrategy,
    DeleteStrategySteps,
    PutStep,
    PutRelease,
    DeleteRelease,
}

impl Stmt {
    /// Every statement, in declaration order (`ALL[s as usize] == s`).
    pub(crate) const ALL: [Stmt; 18] = [
        Self::PutGroup,
        Self::DeleteGroup,
        Self::PutSubcloud,
        Self::DeleteSubcloud,
        Self::PutHost,
        Self::DeleteHost,
        Self::PutToken,
        Self::PutDeployment,
        Self::DeleteDeployment,
        Self::PutAlarm,
        Self::AppendEvent,
        Self::PutMeta,
        Self::PutStrategy,
        Self::DeleteStrategy,
        Self::DeleteStrategySteps,
        Self::PutStep,
        Self::PutRelease,
        Self::DeleteRelease,
    ];

    /// The statement's SQL.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::PutGroup => {
                "INSERT INTO groups (name, body) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET body = excluded.body"
            }
            Self::DeleteGroup => "DELETE FROM groups WHERE name = $1",
            Self::PutSubcloud => {
                "INSERT INTO subclouds (name, grp, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET grp = excluded.grp, body = excluded.body"
            }
            Self::DeleteSubcloud => "DELETE FROM subclouds WHERE name = $1",
            Self::PutHost => {
                "INSERT INTO hosts (name, subcloud, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET subcloud = excluded.subcloud, \
                 body = excluded.body"
            }
            Self::DeleteHost => "DELETE FROM hosts WHERE name = $1",
            Self::PutToken => {
                "INSERT INTO join_tokens (id, body) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body"
            }
            Self::PutDeployment => {
                "INSERT INTO deployments (set_name, target, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (set_name, target) DO UPDATE SET body = excluded.body"
            }
            Self::DeleteDeployment => "DELETE FROM deployments WHERE set_name = $1 AND target = $2",
            Self::PutAlarm => {
                "INSERT INTO alarms (id, host, active, body) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET host = excluded.host, \
                 active = excluded.active, body = excluded.body"
            }
            // A plain INSERT: a seq already stored fails the whole commit.
            Self::AppendEvent => "INSERT INTO events (seq, time_ms, body) VALUES ($1, $2, $3)",
            Self::PutMeta => {
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            }
            Self::PutStrategy => {
                "INSERT INTO strategies (name, body) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET body = excluded.body"
            }
            Self::DeleteStrategy => "DELETE FROM strategies WHERE name = $1",
            Self::DeleteStrategySteps => "DELETE FROM strategy_steps WHERE strategy = $1",
            Self::PutStep => {
                "INSERT INTO strategy_steps (strategy, subcloud, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (strategy, subcloud) DO UPDATE SET body = excluded.body"
            }
            Self::PutRelease => {
                "INSERT INTO releases (version, sha256, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (version) DO UPDATE SET sha256 = excluded.sha256, \
                 body = excluded.body"
            }
            Self::DeleteRelease => "DELETE FROM releases WHERE version = $1",
        }
    }
}

/// A short description of a change for error messages (`put host h1`).
pub(crate) fn describe(change: &Change) -> String {
    match change {
        Change::PutGroup(g) => format!("put group {}", g.name),
        Change::DeleteGroup(n) => format!("delete group {n}"),
        Change::PutSubcloud(s) => format!("put subcloud {}", s.name),
        Change::DeleteSubcloud(n) => format!("delete subcloud {n}"),
        Change::PutHost(h) => format!("put host {}", h.name),
        Change::DeleteHost(n) => format!("delete host {n}"),
        Change::PutToken(t) => format!("put join token {}", t.id),
        Change::PutDeployment(d) => format!("put deployment {}@{}", d.set, d.target),
        Change::DeleteDeployment { set, target } => format!("delete deployment {set}@{target}"),
        Change::PutAlarm(a) => format!("put alarm {}", a.id),
        Change::AppendEvent(e) => format!("append event seq {}", e.seq),
        Change::PutMeta { key, .. } => format!("put meta {key}"),
        Change::PutStrategy(st) => format!("put strategy {}", st.name),
        Change::DeleteStrategy(n) => format!("delete strategy {n}"),
        Change::DeleteStrategySteps(n) => format!("delete the steps of strategy {n}"),
        Change::PutStep(st) => format!("put step {}/{}", st.strategy, st.subcloud),
        Change::PutRelease(r) => format!("put release {}", r.version),
        Change::DeleteRelease(v) => format!("delete release {v}"),
    }
}

/// The statement and values that apply `change`.
pub(crate) fn bind(
    backend: &'static str,
    change: &Change,
) -> Result<(Stmt, Vec<Value>), StoreError> {
    let text = |s: &str| Value::Text(s.to_string());
    Ok(match change {
        Change::PutGroup(g) => (
            Stmt::PutGroup,
            vec![text(&g.name), encode(backend, "group", g)?],
        ),
        Change::DeleteGroup(n) => (Stmt::DeleteGroup, vec![text(n)]),
        Change::PutSubcloud(s) => (
            Stmt::PutSubcloud,
            vec![
                text(&s.name),
                text(&s.group),
                encode(backend, "subcloud", s)?,
            ],
        ),
        Change::DeleteSubcloud(n) => (Stmt::DeleteSubcloud, vec![text(n)]),
        Change::PutHost(h) => (
            Stmt::PutHost,
            vec![
                text(&h.name),
                text(&h.subcloud),
                encode(backend, "host", h)?,
            ],
        ),
        Change::DeleteHost(n) => (Stmt::DeleteHost, vec![text(n)]),
        Change::PutToken(t) => (
            Stmt::PutToken,
            vec![text(&t.id), encode(backend, "join token", t)?],
        ),
        Change::PutDeployment(d) => (
            Stmt::PutDeployment,
            vec![
                text(&d.set),
                Value::Text(d.target.to_string()),
                encode(backend, "deployment", d)?,
            ],
        ),
        Change::DeleteDeployment { set, target } => {
            (Stmt::DeleteDeployment, vec![text(set), text(target)])
        }
        Change::PutAlarm(a) => (
            Stmt::PutAlarm,
            vec![
                text(&a.id),
                text(&a.host),
                Value::Bool(a.cleared_ms.is_none()),
                encode(backend, "alarm", a)?,
            ],
        ),
        Change::AppendEvent(e) => (
            Stmt::AppendEvent,
            vec![
                Value::I64(to_i64(backend, "event seq", e.seq)?),
                Value::I64(to_i64(backend, "event time_ms", e.time_ms)?),
                encode(backend, "event", e)?,
            ],
        ),
        Change::PutMeta { key, value } => (Stmt::PutMeta, vec![text(key), text(value)]),
        Change::PutStrategy(st) => (
            Stmt::PutStrategy,
            vec![text(&st.name), encode(backend, "strategy", st)?],
        ),
        Change::DeleteStrategy(n) => (Stmt::DeleteStrategy, vec![text(n)]),
        Change::DeleteStrategySteps(n) => (Stmt::DeleteStrategySteps, vec![text(n)]),
        Change::PutStep(st) => (
            Stmt::PutStep,
            vec![
                text(&st.strategy),
                text(&st.subcloud),
                encode(backend, "strategy step", st)?,
            ],
        ),
        Change::PutRelease(r) => (
            Stmt::PutRelease,
            vec![
                text(&r.version),
                text(&r.sha256),
                encode(backend, "release", r)?,
            ],
        ),
        Change::DeleteRelease(v) => (Stmt::DeleteRelease, vec![text(v)]),
    })
}

fn encode<T: Serialize>(
    backend: &'static str,
    what: &'static str,
    value: &T,
) -> Result<Value, StoreError> {
    serde_json::to_string(value)
        .map(Value::Text)
        .map_err(|e| StoreError::Query {
            backend,
            op: "encode a row",
            reason: format!("the {what} does not serialise to JSON: {e}"),
        })
}

/// A u64 as a BIGINT, refusing values above `i64::MAX`.
pub(crate) fn to_i64(backend: &'static str, what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Query {
        backend,
        op: "encode a row",
        reason: format!(
            "{what} {v} is above the largest storable value {}",
            i64::MAX
        ),
    })
}

/// A stored BIGINT as u64, refusing negatives.
pub(crate) fn from_i64(
    backend: &'static str,
    table: &'static str,
    key: &str,
    v: i64,
) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        backend,
        table,
        key: key.to_string(),
        reason: format!("negative value {v} where a count or time is stored"),
    })
}

/// A table [`Snapshot`] is loaded from, with the query that reads its (key, body)
/// rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Groups,
    Subclouds,
    Hosts,
    Tokens,
    Deployments,
    Alarms,
    Meta,
    Strategies,
    Steps,
    Releases,
}

impl Table {
    /// Every table a snapshot reads (events are read apart).
    pub(crate) const ALL: [Table; 10] = [
        Self::Groups,
        Self::Subclouds,
        Self::Hosts,
        Self::Tokens,
        Self::Deployments,
        Self::Alarms,
        Self::Meta,
        Self::Strategies,
        Self::Steps,
        Self::Releases,
    ];

    /// The table's SQL name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Groups => "groups",
            Self::Subclouds => "subclouds",
            Self::Hosts => "hosts",
            Self::Tokens => "join_tokens",
            Self::Deployments => "deployments",
            Self::Alarms => "alarms",
            Self::Meta => "meta",
            Self::Strategies => "strategies",
            Self::Steps => "strategy_steps",
            Self::Releases => "releases",
        }
    }

    /// Reads every row as (key TEXT, body TEXT). Unordered: [`decode_snapshot`]
    /// sorts by key, bytewise, so both backends agree whatever their collation.
    pub(crate) fn load_sql(self) -> &'static str {
        match self {
            Self::Groups => "SELECT name, body FROM groups",
            Self::Subclouds => "SELECT name, body FROM subclouds",
            Self::Hosts => "SELECT name, body FROM hosts",
            Self::Tokens => "SELECT id, body FROM join_tokens",
            Self::Deployments => "SELECT set_name || '@' || target, body FROM deployments",
            Self::Alarms => "SELECT id, body FROM alarms",
            Self::Meta => "SELECT key, value FROM meta",
            Self::Strategies => "SELECT name, body FROM strategies",
            // `/` sorts before every name character, so steps group by strategy.
            Self::Steps => "SELECT strategy || '/' || subcloud, body FROM strategy_steps",
            Self::Releases => "SELECT version, body FROM releases",
        }
    }
}

/// Rows as read: per table, (key, body) pairs; and `MAX(seq)` of events.
#[derive(Debug, Default)]
pub(crate) struct RawSnapshot {
    /// (table, its rows).
    pub(crate) tables: Vec<(Table, Vec<(String, String)>)>,
    /// `LAST_EVENT_SEQ`'s result.
    pub(crate) last_event_seq: i64,
}

/// Decode every body, sorted by key.
pub(crate) fn decode_snapshot(
    backend: &'static str,
    raw: RawSnapshot,
) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot {
        last_event_seq: from_i64(backend, "events", "MAX(seq)", raw.last_event_seq)?,
        ..Snapshot::default()
    };
    for (table, mut rows) in raw.tables {
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        match table {
            Table::Groups => snap.groups = decode_rows::<Group>(backend, table, rows)?,
            Table::Subclouds => snap.subclouds = decode_rows::<Subcloud>(backend, table, rows)?,
            Table::Hosts => snap.hosts = decode_rows::<Host>(backend, table, rows)?,
            Table::Tokens => snap.tokens = decode_rows::<JoinToken>(backend, table, rows)?,
            Table::Deployments => {
                snap.deployments = decode_rows::<Deployment>(backend, table, rows)?
            }
            Table::Alarms => snap.alarms = decode_rows::<Alarm>(backend, table, rows)?,
            Table::Meta => snap.meta = rows,
            Table::Strategies => snap.strategies = decode_rows::<Strategy>(backend, table, rows)?,
            Table::Steps => snap.steps = decode_rows::<Step>(backend, table, rows)?,
            Table::Releases => snap.releases = decode_rows::<Release>(backend, table, rows)?,
        }
    }
    Ok(snap)
}

fn decode_rows<T: DeserializeOwned>(
    backend: &'static str,
    table: Table,
    rows: Vec<(String, String)>,
) -> Result<Vec<T>, StoreError> {
    rows.into_iter()
        .map(|(key, body)| decode(backend, table.name(), &key, &body))
        .collect()
}

/// Decode one body.
pub(crate) fn decode<T: DeserializeOwned>(
    backend: &'static str,
    table: &'static str,
    key: &str,
    body: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        backend,
        table,
        key: key.to_string(),
        reason: format!("{e} (written by a newer Roost, or edited by hand?)"),
    })
}

/// Decode one `EVENTS_AFTER` row.
pub(crate) fn decode_event(
    backend: &'static str,
    seq: i64,
    body: &str,
) -> Result<Event, StoreError> {
    decode(backend, "events", &seq.to_string(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite numbers `$N` by first appearance: each must appear once, in order.
    #[test]
    fn placeholders_appear_once_in_increasing_order() {
        let mut all: Vec<&str> = Stmt::ALL.iter().map(|s| s.sql()).collect();
        all.extend([RECORD_MIGRATION, EVENTS_AFTER]);
        for sql in all {
            let found: Vec<u32> = sql
                .split('$')
                .skip(1)
                .map(|rest| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().unwrap()
                })
                .collect();
            let want: Vec<u32> = (1..=found.len() as u32).collect();
            assert_eq!(found, want, "{sql}");
        }
    }

    #[test]
    fn all_lists_are_in_declaration_order() {
        for (i, s) in Stmt::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }

    #[test]
    fn migrations_grow_from_one() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
        }
        assert!(MIGRATIONS[0].1.starts_with(BOOTSTRAP));
    }

    #[test]
    fn newer_schema_is_refused_with_what_to_do() {
        let newest = newest_version();
        let e = check_known("sqlite", "/x.db", 99).unwrap_err().to_string();
        let want =
            format!("written by a newer Roost (schema v99, this binary knows up to v{newest})");
        assert!(e.contains(&want), "{e}");
        assert!(e.ends_with("upgrade roost"), "{e}");
        assert!(check_known("sqlite", "/x.db", i64::from(newest)).is_ok());
    }
}

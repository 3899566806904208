//! Central's durable state behind one small trait, with two backends: embedded SQLite
//! (default, a file under the data dir) and PostgreSQL (`--db postgres://…`). One
//! schema with versioned migrations, the same SQL text for both where it can be, and
//! the same tests run on both.
//!
//! Every write is a [`Change`] list committed in one transaction; `commit` returns
//! only once the transaction is durable, so what central acknowledged survives a
//! crash.

use crate::model::{Alarm, Deployment, Event, Group, Host, JoinToken, Release, Subcloud};
use crate::strategy::{Step, Strategy};

mod postgres;
mod schema;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Insert or replace a group.
    PutGroup(Group),
    /// Remove a group.
    DeleteGroup(String),
    /// Insert or replace a subcloud.
    PutSubcloud(Subcloud),
    /// Remove a subcloud.
    DeleteSubcloud(String),
    /// Insert or replace a host.
    PutHost(Host),
    /// Remove a host.
    DeleteHost(String),
    /// Insert or replace a join token (by id).
    PutToken(JoinToken),
    /// Insert or replace a deployment (by set and target).
    PutDeployment(Deployment),
    /// Remove a deployment.
    DeleteDeployment {
        /// Set name.
        set: String,
        /// Target, as `kind/name`.
        target: String,
    },
    /// Insert or replace an alarm (by id).
    PutAlarm(Alarm),
    /// Append to the event log (its `seq` is given by the caller and must grow).
    AppendEvent(Event),
    /// Insert or replace a strategy (by name; its steps apart).
    PutStrategy(Strategy),
    /// Remove a strategy (its steps: [`Change::DeleteStrategySteps`]).
    DeleteStrategy(String),
    /// Remove every step of a strategy.
    DeleteStrategySteps(String),
    /// Insert or replace a step (by strategy and subcloud).
    PutStep(Step),
    /// Set a meta value (counters).
    PutMeta {
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// Insert or replace a release (by version).
    PutRelease(Release),
    /// Remove a release (by version).
    DeleteRelease(String),
}

/// Everything but the event log, as loaded at start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Groups.
    pub groups: Vec<Group>,
    /// Subclouds.
    pub subclouds: Vec<Subcloud>,
    /// Hosts.
    pub hosts: Vec<Host>,
    /// Join tokens.
    pub tokens: Vec<JoinToken>,
    /// Deployments.
    pub deployments: Vec<Deployment>,
    /// Alarms (active and cleared).
    pub alarms: Vec<Alarm>,
    /// Strategies.
    pub strategies: Vec<Strategy>,
    /// Their steps (every strategy's, sorted by strategy then subcloud).
    pub steps: Vec<Step>,
    /// Meta values.
    pub meta: Vec<(String, String)>,
    /// Releases (Roost binaries central serves), by version.
    pub releases: Vec<Release>,
    /// The highest event seq stored (0 = none).
    pub last_event_seq: u64,
}

/// A store failure: which backend, doing what.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening or migrating failed.
    #[error("cannot open the {backend} store at {location}: {reason}")]
    Open {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// File or URL (without password).
        location: String,
        /// Why, and what to check.
        reason: String,
    },
    /// A statement failed.
    #[error("{backend} store: {op} failed: {reason}")]
    Query {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What was being done.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// A stored body does not decode (written by a newer version?).
    #[error("{backend} store: row {key} of {table} does not decode: {reason}")]
    Corrupt {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// Table.
        table: &'static str,
        /// Primary key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// Central's store. Small on purpose: load once, commit change lists, read events.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Everything but the event log.
    async fn load(&self) -> Result<Snapshot, StoreError>;
    /// Apply `changes` in one transaction; durable when this returns `Ok`.
    async fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError>;
    /// Up to `limit` events with `seq > cursor`, in order.
    async fn events_after(&self, cursor: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
}

/// Open the store a `--db` value names: `None` = SQLite at `<data_dir>/central.db`,
/// `sqlite:PATH`, or `postgres://…` / `postgresql://…`.
pub async fn open(
    db: Option<&str>,
    data_dir: &std::path::Path,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match db {
        None => Ok(std::sync::Arc::new(
            SqliteStore::open(&data_dir.join("central.db")).await?,
        )),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(std::sync::Arc::new(PostgresStore::connect(url).await?))
        }
        Some(url) if url.starts_with("sqlite:") => Ok(std::sync::Arc::new(
            SqliteStore::open(std::path::Path::new(url.trim_start_matches("sqlite:"))).await?,
        )),
        Some(other) => Err(StoreError::Open {
            backend: "sqlite",
            location: other.to_string(),
            reason: "--db must be `postgres://USER@HOST:PORT/DB`, `postgresql://…` or \
                     `sqlite:PATH` (without --db: SQLite under --data-dir)"
                .into(),
        }),
    }
}

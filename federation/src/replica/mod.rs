//! Central replicas on one PostgreSQL, as Vault's and Nomad's standbys do it: every
//! replica accepts operator API calls and host links; the **leader** (the one whose
//! store connection holds a PostgreSQL advisory lock) runs central itself, and the
//! others forward each request to it over mutual TLS ([`proxy`]). No consensus layer
//! of our own: the database decides who leads, and since the leader commits on the
//! very connection that holds the lock, a replica that lost the lock cannot commit.
//!
//! - The CA (certificate and key) and the operator token are shared through the
//!   database, sealed with a key file every replica is given ([`seal`]).
//! - Every replica registers its address; the leader tells hosts every replica's
//!   address (in `Welcome`), so a host whose replica dies dials another.
//! - A leader that loses the database stops leading at once: its caller re-executes
//!   the process (every link drops and goes to the new leader; nothing is lost, since
//!   everything acknowledged is in the database).

pub mod proxy;
pub mod seal;

use crate::model::now_ms;
use crate::store::{PostgresStore, StoreError};
use seal::{SealError, SealKey};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const SECRETS: &str = "secrets";
const LEADER: &str = "leader";
const REPLICA_PREFIX: &str = "replica/";
/// How often a replica registers itself and a follower re-reads the leader.
pub const TICK: Duration = Duration::from_millis(500);
/// A replica not seen for this long is left out of the list hosts get.
const REPLICA_STALE_MS: i64 = 15_000;

/// Why replication could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key file or a sealed value.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A file in the data dir.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What the database holds sealed: the data dir's CA and operator token.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
struct Secrets {
    ca_pem: String,
    ca_key_pem: String,
    operator_token: String,
}

/// The leader as the database records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderRecord {
    /// Its URL (`https://ADDR:PORT`).
    pub url: String,
    /// Grows by one each time a replica takes the lead.
    pub term: u64,
    /// When it took the lead (Unix ms).
    pub since_ms: u64,
}

const FILES: [&str; 3] = ["ca.pem", "ca.key", "operator.token"];

fn read_secrets(dir: &Path) -> Option<Secrets> {
    let r = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    Some(Secrets {
        ca_pem: r(FILES[0])?,
        ca_key_pem: r(FILES[1])?,
        operator_token: r(FILES[2])?,
    })
}

fn write_secrets(dir: &Path, s: &Secrets) -> Result<(), ReplicaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    for (f, body) in FILES
        .iter()
        .zip([&s.ca_pem, &s.ca_key_pem, &s.operator_token])
    {
        let path = dir.join(f);
        let tmp = dir.join(format!(".{f}.tmp"));
        let fail = |e: std::io::Error| ReplicaError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(fail)?;
        file.write_all(body.as_bytes()).map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
    }
    // The server certificate came from another CA: made again at load.
    for f in ["server.pem", "server.key"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    Ok(())
}

/// Make `data_dir`'s CA and operator token the ones every replica shares. Call it
/// before loading the PKI. `make_local` creates them in the data dir when the
/// database has none yet (the first replica): they are then sealed into the database,
/// unless another replica won that race, whose secrets are adopted instead.
/// Returns whether the data dir's files were replaced.
pub async fn share_secrets(
    store: &PostgresStore,
    key: &SealKey,
    data_dir: &Path,
    make_local: impl FnOnce() -> Result<(), String>,
) -> Result<bool, ReplicaError> {
    let adopt = |sealed: &str| -> Result<bool, ReplicaError> {
        let plain = key.open(SECRETS, sealed)?;
        let theirs: Secrets = serde_json::from_slice(&plain)
            .map_err(|e| SealError::Open(format!("the database's secrets do not decode: {e}")))?;
        if read_secrets(data_dir).as_ref() == Some(&theirs) {
            return Ok(false);
        }
        write_secrets(data_dir, &theirs)?;
        tracing::info!(dir = %data_dir.display(), "adopted the replicas' shared CA and operator token");
        Ok(true)
    };
    if let Some(sealed) = store.kv_get(SECRETS).await? {
        return adopt(&sealed);
    }
    make_local().map_err(|reason| ReplicaError::File {
        path: data_dir.display().to_string(),
        reason,
    })?;
    let mine = read_secrets(data_dir).ok_or_else(|| ReplicaError::File {
        path: data_dir.display().to_string(),
        reason: "the CA or operator token is missing after creating them".into(),
    })?;
    let plain = serde_json::to_vec(&mine).map_err(|e| SealError::Open(e.to_string()))?;
    if store
        .kv_put(SECRETS, &key.seal(SECRETS, &plain)?, true)
        .await?
    {
        tracing::info!("sealed this replica's CA and operator token into the database");
        return Ok(false);
    }
    // Another replica sealed its own first.
    match store.kv_get(SECRETS).await? {
        Some(sealed) => adopt(&sealed),
        None => Ok(false),
    }
}

/// Register this replica's URL (seen now).
pub async fn register(store: &PostgresStore, url: &str) -> Result<(), StoreError> {
    let v = serde_json::json!({"url": url, "seenMs": now_ms()}).to_string();
    store
        .kv_put(&format!("{REPLICA_PREFIX}{url}"), &v, false)
        .await
        .map(|_| ())
}

/// Every replica seen lately (URLs, sorted).
pub async fn replicas(store: &PostgresStore) -> Result<Vec<String>, StoreError> {
    let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    Ok(store
        .kv_list(REPLICA_PREFIX)
        .await?
        .into_iter()
        .filter(|(_, _, at)| now.saturating_sub(*at) <= REPLICA_STALE_MS)
        .filter_map(|(k, _, _)| k.strip_prefix(REPLICA_PREFIX).map(str::to_string))
        .collect())
}

/// The leader the database records (it may be gone: followers also try the lock).
pub async fn leader(store: &PostgresStore) -> Result<Option<LeaderRecord>, StoreError> {
    Ok(store
        .kv_get(LEADER)
        .await?
        .and_then(|v| serde_json::from_str(&v).ok()))
}

/// Try to lead: take the lock and, if won, record this replica as leader with the
/// next term.
pub async fn try_lead(
    store: &PostgresStore,
    url: &str,
) -> Result<Option<LeaderRecord>, StoreError> {
    if !store.try_lead().await? {
        return Ok(None);
    }
    let term = leader(store).await?.map_or(0, |l| l.term) + 1;
    let rec = LeaderRecord {
        url: url.to_string(),
        term,
        since_ms: now_ms(),
    };
    let v = serde_json::to_string(&rec).unwrap_or_default();
    store.kv_put(LEADER, &v, false).await?;
    Ok(Some(rec))
}

/// What this replica is now.
#[derive(Clone, Default)]
pub enum Role {
    /// No database yet, or no leader known: requests are answered 503.
    #[default]
    Waiting,
    /// Leading: serve locally.
    Leader(Arc<crate::central::Central>),
    /// Following: forward to the leader.
    Follower(LeaderRecord),
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Waiting => f.write_str("Waiting"),
            Self::Leader(_) => f.write_str("Leader"),
            Self::Follower(l) => write!(f, "Follower({})", l.url),
        }
    }
}

/// How a replica runs: its URL, the database, and how to open central once it leads.
pub struct Replica {
    /// This replica's URL as hosts and the other replicas reach it.
    pub url: String,
    /// The database.
    pub db_url: String,
    /// Settings for central when this replica leads.
    pub cfg: crate::central::CentralConfig,
    /// The shared CA.
    pub pki: Arc<crate::pki::CentralPki>,
    /// The spec check central uses.
    pub check: Arc<dyn crate::central::SpecCheck>,
}

impl Replica {
    /// Run until this replica, leading, loses the database (then returns, and the
    /// caller must stop serving at once: it re-executes), or `stop`. `store` is the
    /// connection made at start. `role` follows what it is.
    pub async fn run(
        self,
        store: Arc<PostgresStore>,
        role: tokio::sync::watch::Sender<Role>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ReplicaError> {
        let mut store = Some(store);
        let mut warned = false;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let s = match store.take() {
                Some(s) if !s.is_lost() => s,
                _ => match PostgresStore::connect(&self.db_url).await {
                    Ok(s) => {
                        tracing::info!("replica: connected to the database");
                        warned = false;
                        Arc::new(s)
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "replica: no database; forwarding to the last known leader and retrying");
                            warned = true;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(TICK * 2) => {}
                            _ = crate::link::stopped(&mut stop) => return Ok(()),
                        }
                        continue;
                    }
                },
            };
            let attempt = async {
                register(&s, &self.url).await?;
                try_lead(&s, &self.url).await
            };
            match attempt.await {
                Ok(Some(rec)) => return self.lead(s, rec, role, stop).await,
                Ok(None) => {
                    if let Ok(Some(l)) = leader(&s).await {
                        let changed = match &*role.borrow() {
                            Role::Follower(cur) => cur != &l,
                            _ => true,
                        };
                        if changed && l.url != self.url {
                            tracing::info!(leader = %l.url, term = l.term, "replica: following");
                            let _ = role.send(Role::Follower(l));
                        }
                    }
                    store = Some(s);
                }
                Err(e) => tracing::warn!(error = %e, "replica: database call failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = crate::link::stopped(&mut stop) => return Ok(()),
            }
        }
    }

    async fn lead(
        self,
        s: Arc<PostgresStore>,
        rec: LeaderRecord,
        role: tokio::sync::watch::Sender<Role>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ReplicaError> {
        tracing::info!(term = rec.term, url = %rec.url, since_ms = rec.since_ms, "replica: leading");
        let central = crate::central::Central::open(
            self.cfg.clone(),
            Arc::clone(&s) as Arc<dyn crate::store::Store>,
            Arc::clone(&self.pki),
            Arc::clone(&self.check),
        )
        .await
        .map_err(|e| ReplicaError::File {
            path: self.db_url.clone(),
            reason: format!("cannot open central's state: {e}"),
        })?;
        if let Ok(r) = replicas(&s).await {
            central.set_replicas(r);
        }
        let (loops_tx, loops_rx) = tokio::sync::watch::channel(false);
        central.spawn_loops(loops_rx);
        let _ = role.send(Role::Leader(Arc::clone(&central)));
        let mut tick = 0u32;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK / 5) => {}
                _ = crate::link::stopped(&mut stop) => {
                    let _ = loops_tx.send(true);
                    return Ok(());
                }
            }
            if s.is_lost() {
                let _ = loops_tx.send(true);
                let _ = role.send(Role::Waiting);
                tracing::error!(
                    term = rec.term,
                    at_ms = now_ms(),
                    "replica: lost the database while leading; stopped leading"
                );
                return Ok(());
            }
            tick += 1;
            if tick.is_multiple_of(10) {
                let _ = register(&s, &self.url).await;
                if let Ok(r) = replicas(&s).await {
                    central.set_replicas(r);
                }
            }
        }
    }
}

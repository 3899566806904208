//! The store's contract, run the same on both backends: SQLite in a temp dir, and
//! PostgreSQL in a fresh database (`t_…`, dropped after) on the server that
//! `ROOST_TEST_PG_URL` names. Each case is one `async fn(&Db)`; `both!` makes a
//! `sqlite_*` and a `postgres_*` test of it.
// A test file: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use roost_federation::model::{
    Alarm, Deployment, Event, Group, Host, JoinToken, Release, Severity, Subcloud, Target, TokenUse,
};
use roost_federation::store::{
    self, Change, PostgresStore, Snapshot, SqliteStore, Store, StoreError,
};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

const PG_URL_ENV: &str = "ROOST_TEST_PG_URL";
const PG_SKIP: &str =
    "skipped: needs ROOST_TEST_PG_URL (make test starts a private PostgreSQL with ci/postgres.sh)";

/// Where one case's store lives.
enum Db {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        /// Connected to the database `ROOST_TEST_PG_URL` names, which creates and
        /// drops this case's own.
        admin: tokio_postgres::Client,
        name: String,
        url: String,
    },
}

impl Db {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("central.db");
        Db::Sqlite { _dir: dir, path }
    }

    /// A fresh database, or `None` (after saying so) without a server.
    async fn postgres() -> Option<Self> {
        let Ok(base) = std::env::var(PG_URL_ENV) else {
            eprintln!("{PG_SKIP}");
            return None;
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "t_{}_{}_{}",
            std::process::id(),
            nanos,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let admin = pg_client(&base).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_dbname(&base, &name);
        Some(Db::Postgres { admin, name, url })
    }

    /// Open the store the way central does (`store::open`).
    async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            Db::Sqlite { path, .. } => {
                let db = format!("sqlite:{}", path.display());
                store::open(Some(&db), Path::new("/nonexistent")).await
            }
            Db::Postgres { url, .. } => store::open(Some(url), Path::new("/nonexistent")).await,
        }
    }

    /// Run `sql` on the case's database, beside the store.
    async fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite { path, .. } => {
                rusqlite::Connection::open(path)
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            Db::Postgres { url, .. } => pg_client(url).await.batch_execute(sql).await.unwrap(),
        }
    }

    /// The first column of `sql`'s rows, as text.
    async fn texts(&self, sql: &str) -> Vec<String> {
        match self {
            Db::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                let mut st = conn.prepare(sql).unwrap();
                st.query_map([], |r| r.get::<_, String>(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Db::Postgres { url, .. } => pg_client(url)
                .await
                .query(sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect(),
        }
    }

    async fn finish(self) {
        if let Db::Postgres { admin, name, .. } = self {
            admin
                .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .await
                .unwrap();
        }
    }
}

async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e:?}"));
    tokio::spawn(connection);
    client
}

/// `url` naming database `db` instead (URL or key-value form).
fn with_dbname(url: &str, db: &str) -> String {
    let Some(i) = url.find("://") else {
        return format!("{url} dbname={db}");
    };
    let (head, tail) = url.split_at(i + 3);
    let (before_query, query) = match tail.find('?') {
        Some(q) => tail.split_at(q),
        None => (tail, ""),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    format!("{head}{authority}/{db}{query}")
}

/// A `sqlite_NAME` and a `postgres_NAME` test running `case`.
macro_rules! both {
    ($($case:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test]
        async fn $sqlite() {
            let db = Db::sqlite();
            $case(&db).await;
            db.finish().await;
        }

        #[tokio::test]
        async fn $postgres() {
            let Some(db) = Db::postgres().await else { return };
            $case(&db).await;
            db.finish().await;
        }
    )*};
}

both! {
    migrations_applied_once => sqlite_migrations_applied_once, postgres_migrations_applied_once;
    round_trips_every_table => sqlite_round_trips_every_table, postgres_round_trips_every_table;
    failed_commit_leaves_nothing => sqlite_failed_commit_leaves_nothing,
        postgres_failed_commit_leaves_nothing;
    events_after_cursor_and_limit => sqlite_events_after_cursor_and_limit,
        postgres_events_after_cursor_and_limit;
    newer_schema_is_refused => sqlite_newer_schema_is_refused, postgres_newer_schema_is_refused;
    data_survives_reopen => sqlite_data_survives_reopen, postgres_data_survives_reopen;
    corrupt_body_is_named => sqlite_corrupt_body_is_named, postgres_corrupt_body_is_named;
    strategies_and_steps_round_trip => sqlite_strategies_and_steps_round_trip,
        postgres_strategies_and_steps_round_trip;
    releases_round_trip => sqlite_releases_round_trip, postgres_releases_round_trip;
    schema_v1_store_gains_releases => sqlite_schema_v1_store_gains_releases,
        postgres_schema_v1_store_gains_releases;
}

// ---- sample rows

fn group(name: &str, description: &str) -> Group {
    Group {
        name: name.into(),
        description: description.into(),
        created_ms: 1_000,
    }
}

fn subcloud(name: &str, group: &str) -> Subcloud {
    Subcloud {
        name: name.into(),
        group: group.into(),
        managed: true,
        labels: BTreeMap::new(),
        release: None,
        created_ms: 2_000,
    }
}

fn release(version: &str, digest_byte: &str) -> Release {
    Release {
        version: version.into(),
        sha256: digest_byte.repeat(32),
        size: 1_234,
        added_ms: 8_000,
    }
}

fn host(name: &str, subcloud: &str, serial: &str) -> Host {
    Host {
        name: name.into(),
        subcloud: subcloud.into(),
        cert_serial: serial.into(),
        prev_cert_serial: None,
        cert_not_after_ms: 9_000_000,
        enrolled_ms: 3_000,
        revoked: false,
        heartbeat_ms: 5_000,
    }
}

fn token(id: &str) -> JoinToken {
    JoinToken {
        id: id.into(),
        secret_sha256: "ab".repeat(32),
        subcloud: "site-1".into(),
        created_ms: 4_000,
        expires_ms: 5_000,
        used: None,
    }
}

fn deployment(set: &str, target: Target, generation: u64) -> Deployment {
    Deployment {
        set: set.into(),
        target,
        generation,
        workloads: vec![serde_json::json!({"kind": "Workload", "metadata": {"name": set}})],
        updated_ms: 6_000,
    }
}

fn alarm(id: &str, host: &str, cleared_ms: Option<u64>) -> Alarm {
    Alarm {
        id: id.into(),
        code: "host.offline".into(),
        severity: Severity::Major,
        entity: format!("host/{host}"),
        host: host.into(),
        subcloud: "site-1".into(),
        reason: "missed two heartbeats".into(),
        raised_ms: 7_000,
        cleared_ms,
    }
}

fn event(seq: u64) -> Event {
    Event {
        seq,
        time_ms: seq.saturating_add(10_000),
        kind: "host-online".into(),
        subject: format!("host/h{seq}"),
        message: format!("event {seq}"),
    }
}

fn meta(key: &str, value: &str) -> Change {
    Change::PutMeta {
        key: key.into(),
        value: value.into(),
    }
}

// ---- cases

/// Releases and a subcloud's desired release: put, replace, delete, reopen.
async fn releases_round_trip(db: &Db) {
    let s = db.open().await.unwrap();
    let (r1, r2) = (release("0.1.0", "aa"), release("0.2.0+t1", "bb"));
    let mut sc = subcloud("site-1", "edge");
    sc.release = Some("0.2.0+t1".into());
    s.commit(vec![
        Change::PutGroup(group("edge", "")),
        Change::PutSubcloud(sc.clone()),
        Change::PutRelease(r2.clone()),
        Change::PutRelease(r1.clone()),
    ])
    .await
    .unwrap();
    let snap = s.load().await.unwrap();
    assert_eq!(snap.releases, vec![r1.clone(), r2.clone()]);
    assert_eq!(snap.subclouds, vec![sc.clone()]);
    assert_eq!(
        db.texts("SELECT sha256 FROM releases ORDER BY version")
            .await,
        [r1.sha256.clone(), r2.sha256.clone()]
    );
    // Replace (the digest column follows), delete, and a delete of nothing.
    let r1b = release("0.1.0", "cc");
    s.commit(vec![
        Change::PutRelease(r1b.clone()),
        Change::DeleteRelease("0.2.0+t1".into()),
        Change::DeleteRelease("never-was".into()),
    ])
    .await
    .unwrap();
    drop(s);
    let s = db.open().await.unwrap();
    assert_eq!(s.load().await.unwrap().releases, vec![r1b.clone()]);
    assert_eq!(
        db.texts("SELECT sha256 FROM releases").await,
        std::slice::from_ref(&r1b.sha256)
    );
}

/// A store made by a binary that only knew schema v1 opens with its data kept and
/// gains the releases table; a v1 subcloud body (no `release`) decodes.
async fn schema_v1_store_gains_releases(db: &Db) {
    // Schema v1 by hand, as the first release of central wrote it.
    db.exec(concat!(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms BIGINT NOT NULL);\n",
        "CREATE TABLE groups (name TEXT PRIMARY KEY, body TEXT NOT NULL);\n",
        "CREATE TABLE subclouds (name TEXT PRIMARY KEY, grp TEXT NOT NULL, body TEXT NOT NULL);\n",
        "CREATE TABLE hosts (name TEXT PRIMARY KEY, subcloud TEXT NOT NULL, body TEXT NOT NULL);\n",
        "CREATE TABLE join_tokens (id TEXT PRIMARY KEY, body TEXT NOT NULL);\n",
        "CREATE TABLE deployments (set_name TEXT NOT NULL, target TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (set_name, target));\n",
        "CREATE TABLE alarms (id TEXT PRIMARY KEY, host TEXT NOT NULL, active BOOLEAN NOT NULL, body TEXT NOT NULL);\n",
        "CREATE TABLE events (seq BIGINT PRIMARY KEY, time_ms BIGINT NOT NULL, body TEXT NOT NULL);\n",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n",
        "INSERT INTO schema_migrations (version, applied_ms) VALUES (1, 1);\n",
        "INSERT INTO subclouds (name, grp, body) VALUES ('site-1', 'edge', ",
        "'{\"name\":\"site-1\",\"group\":\"edge\",\"managed\":true,\"createdMs\":2000}');\n",
    ))
    .await;
    let s = db.open().await.unwrap();
    let snap = s.load().await.unwrap();
    assert_eq!(snap.subclouds, vec![subcloud("site-1", "edge")]);
    assert!(snap.releases.is_empty());
    s.commit(vec![Change::PutRelease(release("0.1.0", "aa"))])
        .await
        .unwrap();
    assert_eq!(s.load().await.unwrap().releases.len(), 1);
    let versions = db
        .texts("SELECT CAST(version AS TEXT) FROM schema_migrations ORDER BY version")
        .await;
    assert!(versions.len() >= 2 && versions[0] == "1", "{versions:?}");
}

async fn migrations_applied_once(db: &Db) {
    let versions = "SELECT CAST(version AS TEXT) || ':' || CAST(applied_ms AS TEXT) \
                    FROM schema_migrations ORDER BY version";
    let s = db.open().await.unwrap();
    assert_eq!(s.load().await.unwrap(), Snapshot::default());
    drop(s);
    let first = db.texts(versions).await;
    assert!(!first.is_empty());
    for (i, row) in first.iter().enumerate() {
        assert!(row.starts_with(&format!("{}:", i + 1)), "{first:?}");
    }
    // Re-opening applies nothing again: the same rows, the same times.
    for _ in 0..2 {
        let s = db.open().await.unwrap();
        assert_eq!(s.load().await.unwrap(), Snapshot::default());
        drop(s);
        assert_eq!(db.texts(versions).await, first);
    }
}

async fn round_trips_every_table(db: &Db) {
    let s = db.open().await.unwrap();
    let (g_edge, g_core) = (group("edge", "the edge"), group("core", ""));
    let sc = subcloud("site-1", "edge");
    let h = host("h1", "site-1", "01");
    let t = token("tok1");
    let d_api = deployment("api", Target::Group("edge".into()), 1);
    let d_web = deployment("web", Target::Host("h1".into()), 1);
    let (a1, a2) = (alarm("a1", "h1", None), alarm("a2", "h1", Some(8_000)));
    s.commit(vec![
        Change::PutGroup(g_edge.clone()),
        Change::PutGroup(g_core.clone()),
        Change::PutSubcloud(sc.clone()),
        Change::PutHost(h.clone()),
        Change::PutToken(t.clone()),
        Change::PutDeployment(d_web.clone()),
        Change::PutDeployment(d_api.clone()),
        Change::PutAlarm(a2.clone()),
        Change::PutAlarm(a1.clone()),
        meta("next-alarm", "3"),
        meta("epoch", "1"),
        Change::AppendEvent(event(1)),
    ])
    .await
    .unwrap();
    let mut want = Snapshot {
        groups: vec![g_core.clone(), g_edge.clone()],
        subclouds: vec![sc.clone()],
        hosts: vec![h.clone()],
        tokens: vec![t.clone()],
        deployments: vec![d_api.clone(), d_web.clone()],
        alarms: vec![a1.clone(), a2.clone()],
        meta: vec![
            ("epoch".into(), "1".into()),
            ("next-alarm".into(), "3".into()),
        ],
        last_event_seq: 1,
        ..Snapshot::default()
    };
    assert_eq!(s.load().await.unwrap(), want);
    let active = "SELECT id || '=' || CASE WHEN active THEN 'active' ELSE 'cleared' END \
                  FROM alarms ORDER BY id";
    assert_eq!(db.texts(active).await, ["a1=active", "a2=cleared"]);

    // Replace one of each: bodies and the key columns follow.
    let g_edge = group("edge", "renamed");
    let mut sc = sc;
    sc.group = "core".into();
    sc.labels.insert("zone".into(), "a".into());
    let mut h = h;
    h.prev_cert_serial = Some("01".into());
    h.cert_serial = "02".into();
    let mut t = t;
    t.used = Some(TokenUse {
        at_ms: 4_500,
        host: "h1".into(),
    });
    let d_api = deployment("api", Target::Group("edge".into()), 2);
    let a1 = alarm("a1", "h1", Some(9_000));
    s.commit(vec![
        Change::PutGroup(g_edge.clone()),
        Change::PutSubcloud(sc.clone()),
        Change::PutHost(h.clone()),
        Change::PutToken(t.clone()),
        Change::PutDeployment(d_api.clone()),
        Change::PutAlarm(a1.clone()),
        meta("next-alarm", "4"),
    ])
    .await
    .unwrap();
    want.groups = vec![g_core.clone(), g_edge.clone()];
    want.subclouds = vec![sc.clone()];
    want.hosts = vec![h.clone()];
    want.tokens = vec![t.clone()];
    want.deployments = vec![d_api.clone(), d_web.clone()];
    want.alarms = vec![a1.clone(), a2.clone()];
    want.meta[1].1 = "4".into();
    assert_eq!(s.load().await.unwrap(), want);
    assert_eq!(db.texts(active).await, ["a1=cleared", "a2=cleared"]);
    assert_eq!(db.texts("SELECT grp FROM subclouds").await, ["core"]);

    // Delete what can be deleted; deleting what is not there is no error.
    s.commit(vec![
        Change::DeleteGroup("core".into()),
        Change::DeleteSubcloud("site-1".into()),
        Change::DeleteHost("h1".into()),
        Change::DeleteDeployment {
            set: "web".into(),
            target: "host/h1".into(),
        },
        Change::DeleteGroup("never-was".into()),
        Change::DeleteHost("never-was".into()),
        Change::DeleteDeployment {
            set: "api".into(),
            target: "host/h1".into(),
        },
    ])
    .await
    .unwrap();
    want.groups = vec![g_edge];
    want.subclouds = vec![];
    want.hosts = vec![];
    want.deployments = vec![d_api];
    assert_eq!(s.load().await.unwrap(), want);
    // An empty commit is a no-op.
    s.commit(vec![]).await.unwrap();
    assert_eq!(s.load().await.unwrap(), want);
}

async fn failed_commit_leaves_nothing(db: &Db) {
    let s = db.open().await.unwrap();
    s.commit(vec![
        Change::PutGroup(group("edge", "")),
        Change::AppendEvent(event(1)),
        meta("next", "1"),
    ])
    .await
    .unwrap();
    let before = s.load().await.unwrap();

    // The duplicate seq is the last change: everything before it must vanish too.
    let err = s
        .commit(vec![
            Change::PutGroup(group("core", "")),
            Change::PutGroup(group("edge", "changed")),
            Change::PutHost(host("h1", "site-1", "01")),
            meta("next", "2"),
            Change::DeleteGroup("edge".into()),
            Change::AppendEvent(event(2)),
            Change::AppendEvent(event(1)),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Query { op: "commit", .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("change 7 of 7 (append event seq 1)"),
        "{text}"
    );
    assert!(
        text.contains("nothing of this commit was written"),
        "{text}"
    );
    assert_eq!(s.load().await.unwrap(), before);
    assert_eq!(s.events_after(0, 10).await.unwrap(), vec![event(1)]);

    // The same far into a large commit (past the PostgreSQL backend's pipeline chunk).
    let mut big: Vec<Change> = (0..600)
        .map(|n| Change::PutHost(host(&format!("h{n:03}"), "site-1", "01")))
        .collect();
    big[549] = Change::AppendEvent(event(1));
    let err = s.commit(big).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("change 550 of 600 (append event seq 1)"),
        "{text}"
    );
    assert_eq!(s.load().await.unwrap(), before);

    // A change that cannot be stored at all fails before anything is begun.
    let err = s
        .commit(vec![
            Change::PutGroup(group("core", "")),
            Change::AppendEvent(event(u64::MAX)),
        ])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("above the largest storable"),
        "{err}"
    );
    assert_eq!(s.load().await.unwrap(), before);

    // The store still works, and a reopen sees the same.
    s.commit(vec![Change::AppendEvent(event(2))]).await.unwrap();
    drop(s);
    let s = db.open().await.unwrap();
    let after = s.load().await.unwrap();
    assert_eq!(after.groups, before.groups);
    assert_eq!(after.hosts, vec![]);
    assert_eq!(after.meta, before.meta);
    assert_eq!(after.last_event_seq, 2);
    assert_eq!(
        s.events_after(0, 10).await.unwrap(),
        vec![event(1), event(2)]
    );
}

async fn events_after_cursor_and_limit(db: &Db) {
    let s = db.open().await.unwrap();
    assert_eq!(s.events_after(0, 10).await.unwrap(), vec![]);
    assert_eq!(s.load().await.unwrap().last_event_seq, 0);
    s.commit((1..=4).map(|n| Change::AppendEvent(event(n))).collect())
        .await
        .unwrap();
    s.commit(vec![Change::AppendEvent(event(5))]).await.unwrap();
    s.commit((6..=10).map(|n| Change::AppendEvent(event(n))).collect())
        .await
        .unwrap();
    let seqs = |events: Vec<Event>| events.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        s.events_after(0, 3).await.unwrap(),
        vec![event(1), event(2), event(3)]
    );
    assert_eq!(
        seqs(s.events_after(3, 100).await.unwrap()),
        (4..=10).collect::<Vec<_>>()
    );
    assert_eq!(seqs(s.events_after(9, 5).await.unwrap()), [10]);
    assert_eq!(
        seqs(s.events_after(10, 5).await.unwrap()),
        Vec::<u64>::new()
    );
    assert_eq!(seqs(s.events_after(0, 0).await.unwrap()), Vec::<u64>::new());
    assert_eq!(
        seqs(s.events_after(u64::MAX, 5).await.unwrap()),
        Vec::<u64>::new()
    );
    assert_eq!(s.events_after(0, usize::MAX).await.unwrap().len(), 10);
    // Seqs must grow, not be dense.
    s.commit(vec![Change::AppendEvent(event(20))])
        .await
        .unwrap();
    assert_eq!(seqs(s.events_after(10, 1).await.unwrap()), [20]);
    assert_eq!(seqs(s.events_after(5, 2).await.unwrap()), [6, 7]);
    assert_eq!(s.load().await.unwrap().last_event_seq, 20);
}

async fn newer_schema_is_refused(db: &Db) {
    drop(db.open().await.unwrap());
    db.exec("INSERT INTO schema_migrations (version, applied_ms) VALUES (999, 0)")
        .await;
    let err = db.open().await.unwrap_err();
    let StoreError::Open { reason, .. } = &err else {
        panic!("want an Open error, got {err:?}");
    };
    assert!(
        reason.starts_with("written by a newer Roost (schema v999, this binary knows up to v"),
        "{reason}"
    );
    assert!(reason.ends_with("); upgrade roost"), "{reason}");
}

async fn data_survives_reopen(db: &Db) {
    let s = db.open().await.unwrap();
    let mut changes = vec![
        Change::PutGroup(group("edge", "")),
        Change::PutSubcloud(subcloud("site-1", "edge")),
        Change::PutToken(token("tok1")),
        Change::PutAlarm(alarm("a1", "h1", None)),
        meta("epoch", "7"),
    ];
    changes.extend((1..=200).map(|n| Change::PutHost(host(&format!("h{n:03}"), "site-1", "01"))));
    changes.extend((1..=5).map(|n| Change::AppendEvent(event(n))));
    s.commit(changes).await.unwrap();
    let snap = s.load().await.unwrap();
    assert_eq!(snap.hosts.len(), 200);
    drop(s);
    let s = db.open().await.unwrap();
    assert_eq!(s.load().await.unwrap(), snap);
    assert_eq!(s.events_after(0, 100).await.unwrap().len(), 5);
}

async fn corrupt_body_is_named(db: &Db) {
    let s = db.open().await.unwrap();
    s.commit(vec![Change::PutGroup(group("edge", ""))])
        .await
        .unwrap();
    db.exec("INSERT INTO groups (name, body) VALUES ('bad', '{\"name\": 1}')")
        .await;
    let err = s.load().await.unwrap_err();
    let StoreError::Corrupt { table, key, .. } = &err else {
        panic!("want a Corrupt error, got {err:?}");
    };
    assert_eq!((*table, key.as_str()), ("groups", "bad"));
}

// ---- SQLite only

/// Set for the child that `sqlite_survives_sigkill_right_after_commit` spawns: the
/// store file it writes to.
const WRITER_ENV: &str = "ROOST_STORE_TEST_WRITER";

/// Does nothing unless spawned as the writer: then commits one event after another,
/// printing `committed N` once each commit returned, until killed.
#[tokio::test]
async fn sqlite_writer_child() {
    let Ok(path) = std::env::var(WRITER_ENV) else {
        return;
    };
    let s = SqliteStore::open(Path::new(&path)).await.unwrap();
    for seq in 1..=100_000 {
        s.commit(vec![
            Change::AppendEvent(event(seq)),
            Change::PutHost(host("h1", "site-1", &format!("{seq:x}"))),
            meta("last", &seq.to_string()),
        ])
        .await
        .unwrap();
        println!("committed {seq}");
    }
}

#[test]
fn sqlite_survives_sigkill_right_after_commit() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("central.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = 0u64;
    for line in std::io::BufReader::new(stdout).lines() {
        if let Some(n) = line.unwrap().strip_prefix("committed ") {
            acked = n.parse().unwrap();
            if acked >= 25 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no checkpoint runs
    child.wait().unwrap();
    assert!(acked >= 25, "the writer stopped after {acked} commits");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = SqliteStore::open(&path).await.unwrap();
        let snap = s.load().await.unwrap();
        // Everything acknowledged is there, and each commit whole or not at all.
        assert!(
            snap.last_event_seq >= acked,
            "{} < {acked}",
            snap.last_event_seq
        );
        let last = snap.last_event_seq;
        assert_eq!(snap.meta, vec![("last".to_string(), last.to_string())]);
        assert_eq!(snap.hosts[0].cert_serial, format!("{last:x}"));
        let events = s.events_after(0, usize::MAX).await.unwrap();
        assert_eq!(events, (1..=last).map(event).collect::<Vec<_>>());
    });
}

#[tokio::test]
async fn sqlite_file_is_private_and_dir_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/sub/central.db");
    let s = SqliteStore::open(&path).await.unwrap();
    assert_eq!(s.backend(), "sqlite");
    s.commit(vec![Change::PutGroup(group("edge", ""))])
        .await
        .unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("new")), 0o700);
    let wal = path.with_file_name("central.db-wal");
    assert_eq!(mode(&wal), 0o600, "the WAL file");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    drop(s);

    // An existing file readable by others is tightened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = SqliteStore::open(&path).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(s.load().await.unwrap().groups.len(), 1);
}

#[tokio::test]
async fn sqlite_open_picks_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let s = store::open(None, dir.path()).await.unwrap();
    assert_eq!(s.backend(), "sqlite");
    assert!(dir.path().join("central.db").exists());
    let err = store::open(Some("mysql://x/y"), dir.path())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--db must be"), "{err}");
    let not_a_db = dir.path().join("garbage");
    std::fs::write(&not_a_db, vec![0x55u8; 8192]).unwrap();
    let err = SqliteStore::open(&not_a_db).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
}

// ---- PostgreSQL only

#[tokio::test]
async fn postgres_lost_connection_is_reported() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let s = db.open().await.unwrap();
    s.commit(vec![Change::PutGroup(group("edge", ""))])
        .await
        .unwrap();
    let Db::Postgres { admin, name, .. } = &db else {
        unreachable!()
    };
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[name],
        )
        .await
        .unwrap();
    // The store's connection task sees the termination asynchronously: wait for the
    // store to notice, not a fixed time.
    let t = std::time::Instant::now();
    while s.load().await.is_ok() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "the store did not notice its terminated connection within 30 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for err in [
        s.commit(vec![Change::PutGroup(group("core", ""))])
            .await
            .unwrap_err(),
        s.load().await.unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Query { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("is lost"), "{text}");
        assert!(text.contains("restart central"), "{text}");
    }
    drop(s);
    db.finish().await;
}

#[tokio::test]
async fn postgres_errors_never_show_the_password() {
    // No server needed: nothing listens on this socket dir.
    let url = "postgresql://roost:hunter2@%2Fnonexistent-roost-test/roost";
    let err = PostgresStore::connect(url).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("postgresql://roost@%2Fnonexistent-roost-test/roost"),
        "{text}"
    );
    for bad in [
        "postgres://roost:hunter2@localhost:notaport/roost",
        "host=/nonexistent password=hunter2 port=x",
    ] {
        let text = PostgresStore::connect(bad).await.unwrap_err().to_string();
        assert!(!text.contains("hunter2"), "{text}");
    }
}

fn strategy(name: &str) -> roost_federation::strategy::Strategy {
    use roost_federation::strategy::*;
    let req: StrategyRequest = serde_json::from_value(serde_json::json!({
        "name": name, "release": "0.2.0", "group": "edge",
        "maxFailures": "10%", "offline": "wait:30s", "canary": 1
    }))
    .unwrap();
    Strategy {
        name: name.into(),
        change: StrategyChange::Release {
            version: "0.2.0".into(),
        },
        target: req.target().unwrap(),
        options: req.options().unwrap(),
        state: StrategyState::Initial,
        approved: false,
        created_ms: 1,
        started_ms: None,
        finished_ms: None,
        details: String::new(),
    }
}

fn step(strategy: &str, subcloud: &str, order: u32) -> roost_federation::strategy::Step {
    use roost_federation::strategy::*;
    Step {
        strategy: strategy.into(),
        subcloud: subcloud.into(),
        order,
        state: StepState::Pending,
        started_ms: None,
        finished_ms: None,
        waiting_since_ms: None,
        details: String::new(),
        previous: Some(Previous::Deployment(Some(deployment(
            "web",
            Target::Subcloud(subcloud.into()),
            3,
        )))),
    }
}

async fn strategies_and_steps_round_trip(db: &Db) {
    use roost_federation::strategy::StepState;
    let s = db.open().await.unwrap();
    let (r1, r2) = (strategy("r1"), strategy("r2"));
    let steps = vec![
        step("r1", "s1", 0),
        step("r1", "s2", 1),
        step("r2", "s3", 0),
    ];
    let mut changes = vec![
        Change::PutStrategy(r1.clone()),
        Change::PutStrategy(r2.clone()),
    ];
    changes.extend(steps.iter().cloned().map(Change::PutStep));
    s.commit(changes).await.unwrap();
    let snap = s.load().await.unwrap();
    assert_eq!(snap.strategies, vec![r1.clone(), r2.clone()]);
    assert_eq!(snap.steps, steps);

    // A step replaced by key; a strategy removed with its steps.
    let mut moved = steps[1].clone();
    moved.state = StepState::RolledBack;
    moved.details = "failed; rolled back".into();
    s.commit(vec![
        Change::PutStep(moved.clone()),
        Change::DeleteStrategySteps("r2".into()),
        Change::DeleteStrategy("r2".into()),
    ])
    .await
    .unwrap();
    let snap = s.load().await.unwrap();
    assert_eq!(snap.strategies, vec![r1]);
    assert_eq!(snap.steps, vec![steps[0].clone(), moved]);
}

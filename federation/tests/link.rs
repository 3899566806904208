//! The host link end to end in one process: a real central (SQLite store, its CA),
//! the real link client with an in-memory runtime, mutual TLS over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_federation::central::{Central, CentralConfig, NameOnlyCheck, SyncState};
use roost_federation::link::client::{enroll, CentralAddr, Link, LinkConfig};
use roost_federation::link::runtime::ApplyIssue;
use roost_federation::link::server::LinkService;
use roost_federation::link::{
    spec_digest, workload_name, CpuCore, CpuPartition, HostRuntime, LatencySample, LinkPeer,
    LogError, LogQuery, LogSlice, ReleaseRequest, ReleaseStream, RuntimeAlarm, RuntimeReport,
    UpgradeOutcome, Upgrader, WorkloadState, SET_LABEL,
};
use roost_federation::model::{SetMetadata, SetSpec, Target, WorkloadSet};
use roost_federation::pki::CentralPki;
use roost_federation::store::SqliteStore;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A host runtime in memory: whatever is applied "runs" at once.
#[derive(Debug, Default)]
struct MemRuntime {
    running: Mutex<BTreeMap<String, Value>>,
    alarms: Mutex<Vec<RuntimeAlarm>>,
    changes: Mutex<Option<tokio::sync::watch::Sender<u64>>>,
    applies: Mutex<u32>,
    /// Log text per workload (protocol 2), and whether reading one hangs.
    logs: Mutex<BTreeMap<String, String>>,
    hang_logs: Mutex<bool>,
}

impl MemRuntime {
    fn new() -> Arc<Self> {
        let (tx, _) = tokio::sync::watch::channel(0);
        let r = Self::default();
        *r.changes.lock().unwrap() = Some(tx);
        Arc::new(r)
    }
    fn bump(&self) {
        if let Some(t) = self.changes.lock().unwrap().as_ref() {
            t.send_modify(|n| *n += 1);
        }
    }
    fn names(&self) -> Vec<String> {
        self.running.lock().unwrap().keys().cloned().collect()
    }
}

#[async_trait::async_trait]
impl HostRuntime for MemRuntime {
    async fn apply(&self, workloads: Vec<Value>) -> Vec<ApplyIssue> {
        let mut m = BTreeMap::new();
        for w in workloads {
            m.insert(workload_name(&w).unwrap().to_string(), w);
        }
        *self.running.lock().unwrap() = m;
        *self.applies.lock().unwrap() += 1;
        self.bump();
        Vec::new()
    }
    async fn report(&self) -> RuntimeReport {
        RuntimeReport {
            workloads: self
                .running
                .lock()
                .unwrap()
                .iter()
                .map(|(n, w)| WorkloadState {
                    name: n.clone(),
                    set: w["metadata"]["labels"][SET_LABEL]
                        .as_str()
                        .unwrap_or("")
                        .into(),
                    phase: "running".into(),
                    restarts: 0,
                    spec_digest: spec_digest(w),
                    instance: 1,
                    cpus: String::new(),
                    placement: String::new(),
                })
                .collect(),
            local_workloads: 0,
            cpu: Some(CpuPartition {
                cores: vec![
                    CpuCore {
                        cpu: 0,
                        role: "platform".into(),
                        workloads: vec![],
                    },
                    CpuCore {
                        cpu: 1,
                        role: "isolated".into(),
                        workloads: vec!["ctl".into()],
                    },
                ],
                enforcing: true,
                profile: "edge.toml".into(),
            }),
        }
    }
    async fn logs(&self, q: LogQuery) -> Result<LogSlice, LogError> {
        if *self.hang_logs.lock().unwrap() {
            std::future::pending::<()>().await;
        }
        let text = self
            .logs
            .lock()
            .unwrap()
            .get(&q.workload)
            .cloned()
            .ok_or(LogError::NotFound(q.workload))?;
        let from = (q.offset.unwrap_or(0) as usize).min(text.len());
        Ok(LogSlice {
            text: text[from..].to_string(),
            offset: from as u64,
            next_offset: text.len() as u64,
            size: text.len() as u64,
        })
    }
    fn latency(&self) -> Option<LatencySample> {
        Some(LatencySample {
            time_ms: roost_federation::model::now_ms(),
            p50_ns: 20_000,
            p99_ns: 60_000,
            max_ns: 900_000,
            samples: 500,
            missed: 1,
            period_us: 1000,
            placement: "cpus 0, SCHED_OTHER".into(),
        })
    }
    async fn alarms(&self) -> Vec<RuntimeAlarm> {
        self.alarms.lock().unwrap().clone()
    }
    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.lock().unwrap().as_ref().unwrap().subscribe()
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    central: Arc<Central>,
    url: String,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn serve(central: Arc<Central>, tls: Arc<rustls::ServerConfig>) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let svc = LinkService::server(central);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = l.accept().await else {
                return;
            };
            let acc = acceptor.clone();
            let svc = svc.clone();
            tokio::spawn(async move {
                let Ok(tls) = acc.accept(tcp).await else {
                    return;
                };
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.to_vec());
                let svc = tower::ServiceExt::map_request(
                    svc,
                    move |mut r: http::Request<hyper::body::Incoming>| {
                        r.extensions_mut().insert(LinkPeer {
                            client_cert: cert.clone(),
                            addr: Some(peer),
                        });
                        r
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tls),
                    hyper_util::service::TowerToHyperService::new(svc),
                )
                .await;
            });
        }
    });
    addr
}

async fn fixture() -> Fixture {
    fixture_with(Duration::from_secs(30 * 24 * 3600)).await
}

async fn fixture_with(host_cert_ttl: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (pki, _) = CentralPki::load_or_create(&dir.path().join("central"), &[]).unwrap();
    let tls = pki.server_tls_config().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("central/central.db"))
            .await
            .unwrap(),
    );
    let cfg = CentralConfig {
        reconcile: Duration::from_millis(200),
        host_cert_ttl,
        releases_dir: Some(dir.path().join("central/releases")),
        ..CentralConfig::default()
    };
    let central = Central::open(cfg, store, Arc::new(pki), Arc::new(NameOnlyCheck))
        .await
        .unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    central.spawn_loops(rx);
    let addr = serve(Arc::clone(&central), tls).await;
    Fixture {
        dir,
        central,
        url: format!("https://127.0.0.1:{}", addr.port()),
        stop,
    }
}

impl Fixture {
    async fn join(
        &self,
        name: &str,
        subcloud: &str,
    ) -> (Arc<MemRuntime>, Arc<Link>, tokio::sync::watch::Sender<bool>) {
        self.join_with(name, subcloud, None).await
    }

    async fn join_with(
        &self,
        name: &str,
        subcloud: &str,
        upgrader: Option<Arc<dyn Upgrader>>,
    ) -> (Arc<MemRuntime>, Arc<Link>, tokio::sync::watch::Sender<bool>) {
        let t = self
            .central
            .create_token(subcloud, Duration::from_secs(60))
            .await
            .unwrap();
        let dir = self.dir.path().join(name);
        enroll(&self.url, &t.token, name, &dir).await.unwrap();
        let rt = MemRuntime::new();
        let mut link = Link::new(
            LinkConfig {
                central: CentralAddr::parse(&self.url).unwrap(),
                dir,
                heartbeat: Duration::from_millis(200),
                backoff_max: Duration::from_millis(500),
                roost_version: "test".into(),
            },
            rt.clone(),
        );
        if let Some(u) = upgrader {
            link = link.with_upgrader(u);
        }
        let link = Arc::new(link);
        let (stop, srx) = tokio::sync::watch::channel(false);
        tokio::spawn(Arc::clone(&link).run(srx));
        (rt, link, stop)
    }
}

async fn wait(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{what} did not happen within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t.elapsed()
}

fn set(name: &str, workloads: &[&str], arg: &str) -> WorkloadSet {
    WorkloadSet {
        api_version: "roost.dev/v1".into(),
        kind: "WorkloadSet".into(),
        metadata: SetMetadata { name: name.into() },
        spec: SetSpec {
            workloads: workloads
                .iter()
                .map(|n| json!({"apiVersion": "roost.dev/v1", "kind": "Workload", "metadata": {"name": n}, "spec": {"driver": "mock", "arg": arg}}))
                .collect(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_reaches_exactly_the_target_and_drift_is_put_back() {
    let f = fixture().await;
    f.central.add_group("g1", "").await.unwrap();
    f.central.add_subcloud("s1", Some("g1")).await.unwrap();
    f.central.add_subcloud("s2", None).await.unwrap();
    let (r1, _l1, _s1) = f.join("h1", "s1").await;
    let (r2, _l2, _s2) = f.join("h2", "s2").await;
    let c = Arc::clone(&f.central);
    wait("both hosts online", 10, || {
        c.hosts().iter().all(|h| h.availability == "online")
    })
    .await;
    let res = f
        .central
        .deploy(set("web", &["a", "b"], "1"), Target::Group("g1".into()))
        .await
        .unwrap();
    assert_eq!(res.hosts, vec!["h1".to_string()]);
    wait("h1 runs the set", 10, || r1.names() == ["a", "b"]).await;
    wait("h1 in sync", 10, || {
        c.host("h1").unwrap().sync.state == SyncState::InSync
    })
    .await;
    assert!(
        r2.names().is_empty(),
        "h2 is not in g1 but got {:?}",
        r2.names()
    );
    // The same names from another set for an overlapping target: refused, naming both.
    let e = f
        .central
        .deploy(
            set("other", &["b", "c"], "1"),
            Target::Subcloud("s1".into()),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`other`") && e.contains("`web`") && e.contains('b'),
        "{e}"
    );
    // Drift: the host loses a workload; central names it, then puts it back.
    r1.running.lock().unwrap().remove("b");
    r1.bump();
    wait("h1 out of sync with b missing", 10, || {
        let s = c.host("h1").unwrap().sync;
        s.state == SyncState::OutOfSync && s.missing == ["b"]
    })
    .await;
    wait("b put back", 10, || r1.names() == ["a", "b"]).await;
    wait("h1 in sync again", 10, || {
        c.host("h1").unwrap().sync.state == SyncState::InSync
    })
    .await;
    // A new generation is pushed as it happens; undeploy removes it.
    let res = f
        .central
        .deploy(set("web", &["a", "b"], "2"), Target::Group("g1".into()))
        .await
        .unwrap();
    assert_eq!((res.generation, res.result.as_str()), (2, "updated"));
    wait("h1 runs generation 2", 10, || {
        r1.running
            .lock()
            .unwrap()
            .get("a")
            .is_some_and(|w| w["spec"]["arg"] == "2")
    })
    .await;
    f.central
        .undeploy("web", Target::Group("g1".into()))
        .await
        .unwrap();
    wait("h1 runs nothing", 10, || r1.names().is_empty()).await;
    let _ = f.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_one_time_and_checked() {
    let f = fixture().await;
    f.central.add_subcloud("s1", None).await.unwrap();
    let t = f
        .central
        .create_token("s1", Duration::from_secs(60))
        .await
        .unwrap();
    let d = f.dir.path().join("x");
    // Wrong secret.
    let mut parts: Vec<String> = t.token.split('.').map(String::from).collect();
    parts[2] = "a".repeat(parts[2].len());
    let e = enroll(&f.url, &parts.join("."), "h1", &d)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("wrong"), "{e}");
    assert!(f.central.hosts().is_empty());
    // Right, then reused.
    enroll(&f.url, &t.token, "h1", &d).await.unwrap();
    let e = enroll(&f.url, &t.token, "h2", &f.dir.path().join("y"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already used") && e.contains("h1"), "{e}");
    assert_eq!(f.central.hosts().len(), 1);
    // Expired.
    let t = f
        .central
        .create_token("s1", Duration::from_secs(1))
        .await
        .unwrap();
    let until = roost_federation::model::now_ms() + 1000;
    wait("the token's expiry", 5, || {
        roost_federation::model::now_ms() > until
    })
    .await;
    let e = enroll(&f.url, &t.token, "h3", &f.dir.path().join("z"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("expired"), "{e}");
    assert_eq!(f.central.hosts().len(), 1);
    // A token for another central (other CA hash): the host refuses central.
    let mut parts: Vec<String> = t.token.split('.').map(String::from).collect();
    parts[3] = "0".repeat(64);
    let e = enroll(&f.url, &parts.join("."), "h4", &f.dir.path().join("w"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("CA"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_cuts_the_link_and_offline_raises_an_alarm() {
    let f = fixture().await;
    f.central.add_subcloud("s1", None).await.unwrap();
    let (_r1, l1, _s1) = f.join("h1", "s1").await;
    let (_r2, _l2, stop2) = f.join("h2", "s1").await;
    let c = Arc::clone(&f.central);
    let st = l1.status();
    wait("h1 online", 10, || {
        c.host("h1").is_ok_and(|h| h.availability == "online")
    })
    .await;
    f.central.revoke_host("h1").await.unwrap();
    let took = wait("h1's link down", 1, || !st.borrow().connected).await;
    println!("revoke -> link down on the host: {took:?}");
    // A hold, not a wait: the host redials from 500 ms on, so 1.5 s down shows the
    // revoked certificate is refused on each try.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!st.borrow().connected, "a revoked host reconnected");
    let err = st.borrow().last_error.clone().unwrap_or_default();
    assert!(err.contains("revoked"), "{err}");
    assert_eq!(c.host("h1").unwrap().availability, "revoked");

    // h2 goes silent: offline after two 200 ms heartbeats, with a critical alarm.
    wait("h2 online", 10, || {
        c.host("h2").is_ok_and(|h| h.availability == "online")
    })
    .await;
    let active = |c: &Central| {
        c.alarms(&roost_federation::central::AlarmFilter {
            host: Some("h2".into()),
            active: true,
            ..Default::default()
        })
    };
    let _ = stop2.send(true);
    let took = wait("h2 offline with its alarm", 3, || {
        c.host("h2").unwrap().availability == "offline" && !active(&c).is_empty()
    })
    .await;
    println!("h2 silent -> offline + alarm: {took:?}");
    assert!(took < Duration::from_millis(2 * 200 + 300), "{took:?}");
    let a = active(&c);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].code.as_str(), a[0].severity.as_str()),
        ("host.offline", "critical")
    );
    // Back: the alarm clears and stays in the history.
    let rt = MemRuntime::new();
    let link = Arc::new(Link::new(
        LinkConfig {
            central: CentralAddr::parse(&f.url).unwrap(),
            dir: f.dir.path().join("h2"),
            heartbeat: Duration::from_millis(200),
            backoff_max: Duration::from_millis(500),
            roost_version: "test".into(),
        },
        rt,
    ));
    let (_stop, srx) = tokio::sync::watch::channel(false);
    tokio::spawn(link.run(srx));
    wait("h2 back online", 10, || {
        c.host("h2").unwrap().availability == "online"
    })
    .await;
    wait("the offline alarm cleared", 5, || active(&c).is_empty()).await;
    let all = c.alarms(&roost_federation::central::AlarmFilter {
        host: Some("h2".into()),
        ..Default::default()
    });
    assert!(
        all.iter()
            .any(|a| a.code == "host.offline" && a.cleared_ms.is_some()),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_alarms_are_raised_and_cleared_by_level() {
    let f = fixture().await;
    f.central.add_subcloud("s1", None).await.unwrap();
    let (r1, _l1, _s1) = f.join("h1", "s1").await;
    let c = Arc::clone(&f.central);
    wait("h1 online", 10, || {
        c.host("h1").is_ok_and(|h| h.availability == "online")
    })
    .await;
    r1.alarms.lock().unwrap().push(RuntimeAlarm {
        code: "workload.failed".into(),
        severity: "major".into(),
        entity: "host/h1/workload/w".into(),
        reason: "exit 1".into(),
        raised_ms: roost_federation::model::now_ms(),
    });
    r1.bump();
    let f1 = roost_federation::central::AlarmFilter {
        subcloud: Some("s1".into()),
        active: true,
        ..Default::default()
    };
    wait("the alarm at central", 5, || c.alarms(&f1).len() == 1).await;
    assert_eq!(c.subcloud("s1").unwrap().alarms.major, 1);
    r1.alarms.lock().unwrap().clear();
    r1.bump();
    wait("the alarm cleared", 5, || c.alarms(&f1).is_empty()).await;
    assert_eq!(c.subcloud("s1").unwrap().alarms.major, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_renewed_before_they_expire() {
    // 10 s certificates: renewal is due after about 7 s.
    let f = fixture_with(Duration::from_secs(10)).await;
    f.central.add_subcloud("s1", None).await.unwrap();
    let (_r1, l1, _s1) = f.join("h1", "s1").await;
    let c = Arc::clone(&f.central);
    wait("h1 online", 10, || {
        c.host("h1").is_ok_and(|h| h.availability == "online")
    })
    .await;
    let first = c.host("h1").unwrap().cert_not_after_ms;
    let took = wait("a renewed certificate", 20, || {
        c.host("h1").unwrap().cert_not_after_ms > first
    })
    .await;
    println!("renewed after {took:?}");
    // The host reconnects with the new one, long after the first would have expired.
    let until = first + 3000;
    let st = l1.status();
    wait(
        "past the first certificate's expiry, still linked",
        20,
        || {
            roost_federation::model::now_ms() > until
                && st.borrow().connected
                && c.host("h1").unwrap().availability == "online"
        },
    )
    .await;
    let id = roost_federation::pki::HostIdentity::load(&f.dir.path().join("h1"))
        .unwrap()
        .unwrap();
    assert!(
        id.not_after_ms() > first,
        "the host did not store the renewed certificate"
    );
}

/// An upgrader in memory: it keeps what it downloaded (version, SHA-256 of the bytes,
/// size) and "runs" it at once.
#[derive(Debug, Default)]
struct MemUpgrader {
    got: Mutex<Vec<(String, String, u64)>>,
    running: Mutex<String>,
}

#[async_trait::async_trait]
impl Upgrader for MemUpgrader {
    fn wants(&self, req: Option<&ReleaseRequest>) -> bool {
        req.is_some_and(|r| *self.running.lock().unwrap() != r.version)
    }
    async fn install(&self, req: ReleaseRequest, mut data: ReleaseStream) -> UpgradeOutcome {
        use futures_util::StreamExt;
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut n = 0u64;
        while let Some(c) = data.next().await {
            let c = match c {
                Ok(c) => c,
                Err(e) => return UpgradeOutcome::Failed(e),
            };
            n += c.len() as u64;
            h.update(&c);
        }
        let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        self.got
            .lock()
            .unwrap()
            .push((req.version.clone(), digest, n));
        *self.running.lock().unwrap() = req.version;
        UpgradeOutcome::Restarting
    }
    fn alarms(&self) -> Vec<RuntimeAlarm> {
        Vec::new()
    }
}

fn chunks(parts: &[&[u8]]) -> impl futures_util::Stream<Item = Result<Vec<u8>, String>> + Send {
    let v: Vec<Result<Vec<u8>, String>> = parts.iter().map(|p| Ok(p.to_vec())).collect();
    futures_util::stream::iter(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_reaches_the_hosts_of_its_subcloud_over_the_link() {
    use roost_federation::central::CentralError;
    let f = fixture().await;
    f.central.add_subcloud("s1", None).await.unwrap();
    f.central.add_subcloud("s2", None).await.unwrap();
    let u1 = Arc::new(MemUpgrader::default());
    let u2 = Arc::new(MemUpgrader::default());
    let (_r1, _l1, _s1) = f.join_with("h1", "s1", Some(u1.clone())).await;
    let (_r2, _l2, _s2) = f.join_with("h2", "s2", Some(u2.clone())).await;
    let c = Arc::clone(&f.central);
    wait("both hosts online", 10, || {
        c.hosts().iter().all(|h| h.availability == "online")
    })
    .await;
    // 2.5 MiB in odd pieces: served back in 1 MiB chunks.
    let big = vec![7u8; 2 * 1024 * 1024 + 512 * 1024];
    let added = f
        .central
        .add_release("0.2.0+t1", chunks(&[b"roost", &big, b"!"]), 1 << 30)
        .await
        .unwrap();
    assert!(added.created);
    let want = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"roost");
        h.update(&big);
        h.update(b"!");
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(added.release.sha256, want);
    assert_eq!(added.release.size, big.len() as u64 + 6);
    let rel_dir = f.dir.path().join("central/releases");
    let files: Vec<String> = std::fs::read_dir(&rel_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        files,
        std::slice::from_ref(&want),
        "one file named by its digest, no upload left"
    );
    // The same again: unchanged; another binary under that version: a conflict.
    let again = f
        .central
        .add_release("0.2.0+t1", chunks(&[b"roost", &big, b"!"]), 1 << 30)
        .await
        .unwrap();
    assert!(!again.created);
    let e = f
        .central
        .add_release("0.2.0+t1", chunks(&[b"other"]), 1 << 30)
        .await
        .unwrap_err();
    assert!(matches!(e, CentralError::Conflict(_)), "{e}");
    // Bad version, too large, empty: refused, nothing left behind.
    let e = f
        .central
        .add_release("a/b", chunks(&[b"x"]), 10)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("version"), "{e}");
    let e = f
        .central
        .add_release("0.3.0", chunks(&[b"0123456789", b"a"]), 10)
        .await
        .unwrap_err();
    assert!(matches!(e, CentralError::TooLarge(_)), "{e}");
    let e = f
        .central
        .add_release("0.3.0", chunks(&[]), 10)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    assert_eq!(std::fs::read_dir(&rel_dir).unwrap().count(), 1);
    assert_eq!(f.central.releases().len(), 1);
    // An unknown release is refused, naming where to look.
    let e = f
        .central
        .set_subcloud_release("s1", Some("9.9.9"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("roost central release ls"), "{e}");
    // s1 moves: its host downloads exactly the binary; s2's does not.
    let s = f
        .central
        .set_subcloud_release("s1", Some("0.2.0+t1"))
        .await
        .unwrap();
    assert_eq!(s.release.as_deref(), Some("0.2.0+t1"));
    assert_eq!(
        f.central.subcloud("s1").unwrap().release.as_deref(),
        Some("0.2.0+t1")
    );
    wait("h1 downloaded the release", 10, || {
        !u1.got.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        *u1.got.lock().unwrap(),
        [("0.2.0+t1".to_string(), want.clone(), big.len() as u64 + 6)]
    );
    assert!(u2.got.lock().unwrap().is_empty());
    // A wanted release stays; once cleared it goes, with its file.
    let e = f.central.rm_release("0.2.0+t1").await.unwrap_err();
    assert!(e.to_string().contains("s1"), "{e}");
    f.central.set_subcloud_release("s1", None).await.unwrap();
    f.central.rm_release("0.2.0+t1").await.unwrap();
    assert!(f.central.releases().is_empty());
    assert_eq!(std::fs::read_dir(&rel_dir).unwrap().count(), 0);
    let _ = f.stop.send(true);
}

/// Protocol 2 over the real link: the host's CPU partition reaches central in its
/// report, its latency probe runs in its heartbeats (a ring), and a log is read on
/// request and followed by offset; an unknown workload, a host that hangs and a host
/// that is gone each give a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_cpu_partition_and_latency_cross_the_link() {
    use roost_federation::central::{CentralError, LogRead};
    let f = fixture().await;
    f.central.add_subcloud("s1", None).await.unwrap();
    let (rt, _l, stop) = f.join("h1", "s1").await;
    let c = Arc::clone(&f.central);
    wait(
        "h1 online with its CPU partition and 2 probe runs",
        10,
        || {
            c.host("h1")
                .is_ok_and(|h| h.cpu.is_some() && h.latency.len() >= 2)
        },
    )
    .await;
    let h = c.host("h1").unwrap();
    let cpu = h.cpu.unwrap();
    assert_eq!(cpu.profile, "edge.toml");
    assert_eq!(cpu.cores[1].role, "isolated");
    assert_eq!(cpu.cores[1].workloads, vec!["ctl".to_string()]);
    assert_eq!(h.latency[0].p99_ns, 60_000);
    assert!(h.latency.windows(2).all(|w| w[0].time_ms < w[1].time_ms));

    rt.logs
        .lock()
        .unwrap()
        .insert("ctl".into(), "one\ntwo\n".into());
    let t = Instant::now();
    let v = c
        .workload_logs("h1", "ctl", LogRead::default())
        .await
        .unwrap();
    println!("log read over the link: {:?}", t.elapsed());
    assert_eq!((v.text.as_str(), v.next_offset), ("one\ntwo\n", 8));
    rt.logs
        .lock()
        .unwrap()
        .insert("ctl".into(), "one\ntwo\nthree\n".into());
    let v = c
        .workload_logs(
            "h1",
            "ctl",
            LogRead {
                offset: Some(v.next_offset),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v.text, "three\n");
    let e = c
        .workload_logs("h1", "nope", LogRead::default())
        .await
        .unwrap_err();
    assert!(matches!(e, CentralError::NotFound(_)), "{e}");
    let e = c
        .workload_logs(
            "h1",
            "ctl",
            LogRead {
                tail_lines: Some(0),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("tail"), "{e}");
    // A host whose read hangs: its own deadline answers first, within central's.
    *rt.hang_logs.lock().unwrap() = true;
    let t = Instant::now();
    let e = c
        .workload_logs("h1", "ctl", LogRead::default())
        .await
        .unwrap_err();
    assert!(
        matches!(e, CentralError::Unavailable(_) | CentralError::Timeout(_)),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    println!("a hanging log read refused after {:?}: {e}", t.elapsed());
    // Gone: refused at once, saying it is offline.
    let _ = stop.send(true);
    wait("h1 offline", 5, || {
        c.host("h1").unwrap().availability == "offline"
    })
    .await;
    let t = Instant::now();
    let e = c
        .workload_logs("h1", "ctl", LogRead::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("offline"), "{e}");
    assert!(t.elapsed() < Duration::from_millis(100));
    let e = c
        .workload_logs("nohost", "ctl", LogRead::default())
        .await
        .unwrap_err();
    assert!(matches!(e, CentralError::NotFound(_)), "{e}");
}

//! `roost central` (no verb): the controller's one shape — check the flags without
//! binding anything (exit 64 on a bad one), make or load the CA, token and store,
//! serve the operator API and the host link on one TLS port, wait for a signal.
//!
//! One port carries both: TLS asks for a client certificate but does not require one.
//! The host link's gRPC paths authenticate by that certificate (verified against
//! central's CA by rustls, then checked against the host records); every other path but
//! `/healthz` needs the operator token.

use anyhow::Context;
use clap::Args;
use roost_federation::central::{Central, CentralConfig, FieldProblem, SpecCheck};
use roost_federation::link::server::LinkService;
use roost_federation::link::LinkPeer;
use roost_federation::pki::CentralPki;
use roost_federation::replica::seal::SealKey;
use roost_federation::replica::{self, proxy, Replica, Role};
use roost_federation::store::PostgresStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Default data dir.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/roost-central";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7443";

/// The server's flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where central keeps its CA, token and (SQLite) store [default: /var/lib/roost-central].
    #[arg(long, env = "ROOST_CENTRAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address for the operator API and the host link [default: 0.0.0.0:7443].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// The store: `postgres://USER@HOST:PORT/DB` [default: SQLite under --data-dir].
    #[arg(long, env = "ROOST_CENTRAL_DB", value_name = "URL")]
    pub db: Option<String>,
    /// More names or addresses hosts use to reach central (server certificate SANs).
    #[arg(long, value_name = "NAME|IP")]
    pub san: Vec<String>,
    /// How often drifted hosts are put back, e.g. 10s [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub reconcile: Option<String>,
    /// Lifetime of host certificates, e.g. 30d [default: 30d]; hosts renew at 2/3.
    #[arg(long, value_name = "DURATION")]
    pub host_cert_ttl: Option<String>,
    /// Run as one of several replicas on the --db PostgreSQL: the key that seals the
    /// shared CA and operator token in the database (64 hex digits; made if missing —
    /// give the same file to every replica).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// This replica's URL as hosts and the other replicas reach it
    /// [default: https://<--listen>, 127.0.0.1 for an unspecified address].
    #[arg(long, value_name = "URL")]
    pub advertise: Option<String>,
}

/// EX_CONFIG.
const EXIT_CONFIG: u8 = 64;

struct Settings {
    data_dir: PathBuf,
    listen: SocketAddr,
    db: Option<String>,
    sans: Vec<String>,
    cfg: CentralConfig,
    /// Replica mode: the key file and this replica's URL.
    replica: Option<(PathBuf, String)>,
}

fn duration(
    flag: &str,
    v: &Option<String>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let Some(s) = v else { return Ok(default) };
    match roost_host::daemon::parse_duration(s) {
        Some(d) if d >= min && d <= max => Ok(d),
        _ => Err(format!(
            "--{flag} `{s}`: give a duration from {}s to {}s, e.g. `10s`, `5m`, `30d`",
            min.as_secs_f64(),
            max.as_secs()
        )),
    }
}

fn settings(a: ServeArgs) -> Result<Settings, String> {
    let data_dir = a
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if !data_dir.is_absolute() {
        return Err(format!(
            "--data-dir `{}` must be an absolute path",
            data_dir.display()
        ));
    }
    let listen = match a.listen {
        Some(l) => l,
        None => DEFAULT_LISTEN.parse().map_err(|e| format!("{e}"))?,
    };
    if let Some(db) = &a.db {
        if !(db.starts_with("postgres://")
            || db.starts_with("postgresql://")
            || db.starts_with("sqlite:"))
        {
            return Err(format!(
                "--db `{db}`: give `postgres://USER@HOST:PORT/DB` (or leave it out for SQLite under --data-dir)"
            ));
        }
    }
    let mut cfg = CentralConfig {
        releases_dir: Some(data_dir.join("releases")),
        ..CentralConfig::default()
    };
    cfg.reconcile = duration(
        "reconcile",
        &a.reconcile,
        cfg.reconcile,
        Duration::from_millis(100),
        Duration::from_secs(86_400),
    )?;
    cfg.host_cert_ttl = duration(
        "host-cert-ttl",
        &a.host_cert_ttl,
        cfg.host_cert_ttl,
        Duration::from_secs(10),
        Duration::from_secs(3650 * 86_400),
    )?;
    let replica = match (&a.key_file, &a.db) {
        (None, _) => {
            if a.advertise.is_some() {
                return Err(
                    "--advertise is for replicas: give --key-file and --db postgres://… too".into(),
                );
            }
            None
        }
        (Some(k), Some(db)) if db.starts_with("postgres://") || db.starts_with("postgresql://") => {
            if !k.is_absolute() {
                return Err(format!(
                    "--key-file `{}` must be an absolute path",
                    k.display()
                ));
            }
            let url = match &a.advertise {
                Some(u) => {
                    roost_federation::link::client::CentralAddr::parse(u)
                        .map_err(|e| format!("--advertise: {e}"))?;
                    u.trim_end_matches('/').to_string()
                }
                None if listen.ip().is_unspecified() => {
                    format!("https://127.0.0.1:{}", listen.port())
                }
                None => format!("https://{listen}"),
            };
            Some((k.clone(), url))
        }
        (Some(_), _) => {
            return Err(
                "--key-file makes this central a replica on a shared PostgreSQL: give \
                        --db postgres://USER@HOST:PORT/DB too"
                    .into(),
            )
        }
    };
    let mut sans = a.san;
    if !listen.ip().is_unspecified() {
        sans.push(listen.ip().to_string());
    }
    if let Some((_, url)) = &replica {
        if let Ok(a) = roost_federation::link::client::CentralAddr::parse(url) {
            let host = a
                .authority
                .rsplit_once(':')
                .map_or(a.authority.as_str(), |h| h.0);
            sans.push(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            );
        }
    }
    let host = roost_host::uplink::default_name();
    if !host.is_empty() {
        sans.push(host);
    }
    Ok(Settings {
        data_dir,
        listen,
        db: a.db,
        sans,
        cfg,
        replica,
    })
}

/// The host's own validator: central refuses at deploy what a host would refuse.
struct HostSpecCheck;

impl SpecCheck for HostSpecCheck {
    fn normalize(&self, w: &serde_json::Value) -> Result<serde_json::Value, Vec<FieldProblem>> {
        let conv = |e: roost_host::validate::ValidationError| {
            e.0.into_iter()
                .map(|f| FieldProblem {
                    field: f.field,
                    message: f.message,
                })
                .collect::<Vec<_>>()
        };
        let parsed = roost_host::validate::validate_value(w.clone()).map_err(conv)?;
        serde_json::to_value(&parsed).map_err(|e| {
            vec![FieldProblem {
                field: String::new(),
                message: e.to_string(),
            }]
        })
    }
}

pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let s = match settings(a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    super::super::init_tracing("info");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("roost-central")
        .build()?;
    rt.block_on(serve(s))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(s: Settings) -> anyhow::Result<()> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&s.data_dir)
            .with_context(|| format!("cannot create the data dir {}", s.data_dir.display()))?;
    }
    // A replica first makes its CA and token the ones the replicas share.
    let mut pg = None;
    if let (Some((key_file, _)), Some(db)) = (&s.replica, &s.db) {
        let (key, made) = SealKey::load(key_file, true)?;
        if made {
            eprintln!(
                "roost central: made the replica key {}; give the same file to every replica",
                key_file.display()
            );
        }
        // Restarted in place after losing the database: wait for it to come back
        // (a first start fails fast, naming what is wrong).
        let restarted = std::env::var_os(RESTARTED_ENV).is_some();
        let store = loop {
            match PostgresStore::connect(db).await {
                Ok(st) => break st,
                Err(e) if restarted => {
                    tracing::warn!(error = %e, "replica: waiting for the database");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let (dir, sans) = (s.data_dir.clone(), s.sans.clone());
        replica::share_secrets(&store, &key, &s.data_dir, move || {
            CentralPki::load_or_create(&dir, &sans).map_err(|e| e.to_string())?;
            roost_federation::pki::operator_token(&dir).map_err(|e| e.to_string())?;
            Ok(())
        })
        .await?;
        pg = Some(Arc::new(store));
    }
    let (pki, created) = CentralPki::load_or_create(&s.data_dir, &s.sans)?;
    let (token, token_path, _) = roost_federation::pki::operator_token(&s.data_dir)?;
    let tls = pki.server_tls_config()?;
    let replica_tls = pki.replica_client_config()?;
    let ca_path = pki.ca_path().to_path_buf();
    let ca_hash = pki.ca_sha256();
    let pki = Arc::new(pki);
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("cannot listen on {}", s.listen))?;
    let bound = listener.local_addr()?;
    let shown = if bound.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bound.port())
    } else {
        bound
    };
    let url = format!("https://{shown}");
    let addr_file = s.data_dir.join("address");
    std::fs::write(&addr_file, format!("{url}\n"))
        .with_context(|| format!("cannot write {}", addr_file.display()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (role_tx, role_rx) = tokio::sync::watch::channel(Role::Waiting);
    let check: Arc<dyn SpecCheck> = Arc::new(HostSpecCheck);
    let (store_name, mut replica_task) = match (pg, &s.replica) {
        (Some(store), Some((_, my_url))) => {
            let r = Replica {
                url: my_url.clone(),
                db_url: s.db.clone().unwrap_or_default(),
                cfg: s.cfg.clone(),
                pki: Arc::clone(&pki),
                check,
            };
            let task = tokio::spawn(r.run(store, role_tx, stop_rx.clone()));
            (format!("postgres, replica {my_url}"), Some(task))
        }
        _ => {
            let store = roost_federation::store::open(s.db.as_deref(), &s.data_dir).await?;
            let central = Central::open(s.cfg.clone(), store, Arc::clone(&pki), check).await?;
            central.spawn_loops(stop_rx.clone());
            let name = central.backend().to_string();
            let _ = role_tx.send(Role::Leader(central));
            (name, None)
        }
    };
    let serving = serving_role(role_rx, token);
    eprintln!(
        "roost central: {} CA {} (sha256 {ca_hash})\nroost central: operator token {}\nroost central: store {store_name}\nroost central: ready on {url}",
        if created { "made" } else { "loaded" },
        ca_path.display(),
        token_path.display(),
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(256));
    let mut accept_stop = stop_rx.clone();
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = roost_federation::link::stopped(&mut accept_stop) => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let serving = serving.clone();
            let replica_tls = Arc::clone(&replica_tls);
            let handshakes = Arc::clone(&handshakes);
            tokio::spawn(async move {
                // At most 256 handshakes at once; a herd of reconnecting hosts (a
                // network back, a replica gone) waits its turn rather than being cut.
                let permit = match tokio::time::timeout(
                    Duration::from_secs(10),
                    handshakes.acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    _ => {
                        tracing::warn!(%peer, "TLS handshakes queued for 10 s; connection dropped");
                        return;
                    }
                };
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                drop(permit);
                let client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                let from_replica = client_cert.as_deref().is_some_and(proxy::is_replica);
                let conn = Conn {
                    peer: LinkPeer {
                        client_cert,
                        addr: Some(peer),
                    },
                    from_replica,
                    upstream: proxy::Upstream::new(replica_tls),
                    serving,
                };
                let conn = Arc::new(conn);
                let svc = hyper::service::service_fn(move |req| {
                    let conn = Arc::clone(&conn);
                    async move { Ok::<_, std::convert::Infallible>(conn.handle(req).await) }
                });
                let mut b = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                );
                b.http2()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .keep_alive_interval(Some(Duration::from_secs(10)))
                    .keep_alive_timeout(Duration::from_secs(10));
                if let Err(e) = b
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    });
    let lost_lead = async {
        match replica_task.as_mut() {
            Some(t) => t.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = roost_host::daemon::wait_for_signal() => {}
        r = lost_lead => {
            match r {
                Ok(Ok(())) => tracing::error!("lost the database while leading: restarting in place"),
                Ok(Err(e)) => tracing::error!(error = %e, "replica failed: restarting in place"),
                Err(e) => tracing::error!(error = %e, "replica task failed: restarting in place"),
            }
            reexec();
        }
    }
    tracing::info!("shutting down; hosts keep running their workloads");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), accept).await;
    Ok(())
}

/// Set in a replica restarted in place (it then waits for the database).
const RESTARTED_ENV: &str = "ROOST_CENTRAL_RESTARTED";

/// Start again as the same command: every connection drops (hosts and clients go to
/// another replica or come back), the database holds everything acknowledged.
fn reexec() -> ! {
    use std::os::unix::process::CommandExt;
    let mut argv = std::env::args_os();
    let arg0 = argv.next().unwrap_or_else(|| "roost".into());
    // The binary as started (not a newer one installed since, which a path would find).
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(argv)
        .env(RESTARTED_ENV, "1")
        .exec();
    eprintln!("roost central: cannot restart in place: {err}");
    std::process::exit(70)
}

/// What a request meets now: central itself, a forward to the leader, or a wait.
#[derive(Clone)]
enum Serving {
    Local(axum::Router),
    Forward(String),
    Waiting,
}

/// Follow the replica's role, building the router once per leadership.
fn serving_role(
    mut role: tokio::sync::watch::Receiver<Role>,
    token: String,
) -> tokio::sync::watch::Receiver<Serving> {
    let first = match &*role.borrow_and_update() {
        Role::Leader(c) => Serving::Local(router(Arc::clone(c), token.clone())),
        Role::Follower(l) => Serving::Forward(l.url.clone()),
        Role::Waiting => Serving::Waiting,
    };
    let (tx, rx) = tokio::sync::watch::channel(first);
    tokio::spawn(async move {
        while role.changed().await.is_ok() {
            let next = match &*role.borrow_and_update() {
                Role::Leader(c) => Serving::Local(router(Arc::clone(c), token.clone())),
                Role::Follower(l) => Serving::Forward(l.url.clone()),
                Role::Waiting => Serving::Waiting,
            };
            if tx.send(next).is_err() {
                return;
            }
        }
    });
    rx
}

/// One accepted connection.
struct Conn {
    peer: LinkPeer,
    from_replica: bool,
    upstream: proxy::Upstream<axum::body::Body>,
    serving: tokio::sync::watch::Receiver<Serving>,
}

impl Conn {
    async fn handle(
        &self,
        mut req: hyper::Request<hyper::body::Incoming>,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        use hyper::service::Service as _;
        let peer = proxy::trusted_peer(&self.peer, self.from_replica, &mut req);
        let serving = self.serving.borrow().clone();
        match serving {
            Serving::Local(app) => {
                req.extensions_mut().insert(peer);
                match hyper_util::service::TowerToHyperService::new(app)
                    .call(req)
                    .await
                {
                    Ok(r) => r,
                    Err(e) => match e {},
                }
            }
            Serving::Forward(leader) => {
                match self
                    .upstream
                    .forward(&leader, req.map(axum::body::Body::new), &peer)
                    .await
                {
                    Ok(r) => r.map(axum::body::Body::new),
                    Err(e) => unavailable(&e),
                }
            }
            Serving::Waiting => unavailable(
                "no central replica leads yet (electing, or the database is unreachable); retry shortly",
            )
            .into_response(),
        }
    }
}

fn unavailable(why: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, "1")],
        axum::Json(serde_json::json!({"error": why, "details": []})),
    )
        .into_response()
}

/// The operator API and the console, plus the host link's gRPC methods.
fn router(central: Arc<Central>, token: String) -> axum::Router {
    let link = LinkService::server(Arc::clone(&central));
    let api = super::api::router(Arc::clone(&central), token.clone());
    super::console::mount(api, central, &token)
        .route_service("/roost.link.v1.HostLink/Session", link.clone())
        .route_service("/roost.link.v1.HostLink/Enroll", link.clone())
        .route_service("/roost.link.v1.HostLink/FetchRelease", link)
}

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
}

/// EX_CONFIG.
const EXIT_CONFIG: u8 = 64;

struct Settings {
    data_dir: PathBuf,
    listen: SocketAddr,
    db: Option<String>,
    sans: Vec<String>,
    cfg: CentralConfig,
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
    let mut sans = a.san;
    if !listen.ip().is_unspecified() {
        sans.push(listen.ip().to_string());
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
    let (pki, created) = roost_federation::pki::CentralPki::load_or_create(&s.data_dir, &s.sans)?;
    let (token, token_path, _) = roost_federation::pki::operator_token(&s.data_dir)?;
    let store = roost_federation::store::open(s.db.as_deref(), &s.data_dir).await?;
    let tls = pki.server_tls_config()?;
    let ca_path = pki.ca_path().to_path_buf();
    let ca_hash = pki.ca_sha256();
    let central =
        Central::open(s.cfg.clone(), store, Arc::new(pki), Arc::new(HostSpecCheck)).await?;
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
    central.spawn_loops(stop_rx.clone());
    let app = router(Arc::clone(&central), token);
    eprintln!(
        "roost central: {} CA {} (sha256 {ca_hash})\nroost central: operator token {}\nroost central: store {}\nroost central: ready on {url}",
        if created { "made" } else { "loaded" },
        ca_path.display(),
        token_path.display(),
        central.backend(),
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
            let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                tracing::warn!(%peer, "too many TLS handshakes at once; connection dropped");
                continue;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
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
                let svc = app.layer(axum::Extension(LinkPeer {
                    client_cert,
                    addr: Some(peer),
                }));
                let svc = hyper_util::service::TowerToHyperService::new(svc);
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
    roost_host::daemon::wait_for_signal().await;
    tracing::info!("shutting down; hosts keep running their workloads");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), accept).await;
    Ok(())
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

//! The host's side of the link: enrollment with a join token, then one long-lived
//! stream to central over mutual TLS, dialled by the host (so it works behind NAT),
//! with heartbeats, reconnects with capped jittered backoff, certificate renewal, and
//! a [`HostRuntime`] that applies what central wants and says what runs.
//!
//! With central unreachable nothing here stops the host's workloads: the runtime keeps
//! supervising them, and the last desired state stays on disk (`desired.json`) so a
//! host restarted without central applies it again.

use super::proto::{self, central_message::Body as In, host_message::Body as Out};
use super::runtime::HostRuntime;
use super::upgrade::{ReleaseRequest, ReleaseStream, UpgradeOutcome, Upgrader};
use super::PROTOCOL;
use crate::model::now_ms;
use crate::pki::{HostIdentity, JoinTokenSecret, PkiError};
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The file the last desired state is kept in, under the link dir.
pub const DESIRED_FILE: &str = "desired.json";

/// Link errors say what failed against which central, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The central URL is wrong.
    #[error("--join `{url}`: {reason}")]
    Url {
        /// As given.
        url: String,
        /// Why, and the form expected.
        reason: String,
    },
    /// Keys, certificates or the token.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Central could not be reached.
    #[error("cannot reach central at {url}: {reason}")]
    Connect {
        /// Central.
        url: String,
        /// Why.
        reason: String,
    },
    /// Central refused (bad token, revoked host …).
    #[error("central at {url} refused: {message}")]
    Refused {
        /// Central.
        url: String,
        /// Central's reason.
        message: String,
    },
    /// A local file could not be written or read.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Where central is: the URL, the TCP address to dial and the TLS server name.
#[derive(Debug, Clone)]
pub struct CentralAddr {
    /// As given, e.g. `https://10.0.0.1:7443`.
    pub url: String,
    /// `host:port` to dial.
    pub authority: String,
    /// The name the server certificate must carry.
    pub server_name: rustls_pki_types::ServerName<'static>,
}

impl CentralAddr {
    /// Parse `https://HOST:PORT`.
    pub fn parse(url: &str) -> Result<Self, LinkError> {
        let bad = |reason: &str| LinkError::Url {
            url: url.into(),
            reason: reason.into(),
        };
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("central's address must be `https://HOST:PORT`"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(bad("give only `https://HOST:PORT`, without a path"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("the port is missing: `https://HOST:PORT`"))?;
        port.parse::<u16>()
            .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| bad("the host part is not a DNS name or an IP address"))?;
        Ok(Self {
            url: url.into(),
            authority: authority.into(),
            server_name,
        })
    }
}

/// Open a gRPC channel to central through our own TLS config.
async fn channel(
    addr: &CentralAddr,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<tonic::transport::Channel, LinkError> {
    let connect_err = |reason: String| LinkError::Connect {
        url: addr.url.clone(),
        reason,
    };
    // The URI only names the authority: the connector below dials and does TLS.
    let ep = tonic::transport::Endpoint::from_shared(format!("http://{}", addr.authority))
        .map_err(|e| connect_err(e.to_string()))?
        .connect_timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let authority = addr.authority.clone();
    let name = addr.server_name.clone();
    let connector = tower::service_fn(move |_: http::Uri| {
        let tls = Arc::clone(&tls);
        let authority = authority.clone();
        let name = name.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&authority).await?;
            let _ = tcp.set_nodelay(true);
            let s = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }
    });
    ep.connect_with_connector(connector)
        .await
        .map_err(|e| connect_err(error_chain(&e)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn refused(url: &str, s: tonic::Status) -> LinkError {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal => {
            LinkError::Connect {
                url: url.into(),
                reason: format!("{}: {}", s.code(), s.message()),
            }
        }
        _ => LinkError::Refused {
            url: url.into(),
            message: s.message().to_string(),
        },
    }
}

/// Enroll this host: verify central by the CA hash the token carries, make a key here
/// (it never leaves the host), send a CSR, store the signed certificate under `dir`.
pub async fn enroll(
    url: &str,
    token: &str,
    name: &str,
    dir: &Path,
) -> Result<HostIdentity, LinkError> {
    let addr = CentralAddr::parse(url)?;
    let t = JoinTokenSecret::parse(token.trim())?;
    std::fs::create_dir_all(dir).map_err(|e| LinkError::Io {
        path: dir.into(),
        reason: format!("cannot create the link dir: {e}"),
    })?;
    let (tls, pinned) = crate::pki::pinned_client_config(&t.ca_sha256)?;
    let ch = channel(&addr, tls, Duration::from_secs(10)).await?;
    let csr = HostIdentity::new_csr(dir, name)?;
    let mut client = proto::host_link_client::HostLinkClient::new(ch);
    let resp = client
        .enroll(proto::EnrollRequest {
            protocol: PROTOCOL,
            token_id: t.id.clone(),
            token_secret: t.secret.clone(),
            host: name.into(),
            csr_pem: csr,
        })
        .await
        .map_err(|s| refused(url, s))?
        .into_inner();
    // The CA central hands over must be the one the token pinned and TLS checked.
    let ca_der_hash = pem_sha256(&resp.ca_pem);
    if ca_der_hash.as_deref() != Some(t.ca_sha256.as_str()) || pinned.ca_pem().is_none() {
        return Err(LinkError::Refused {
            url: url.into(),
            message: "central sent a CA certificate that does not match the join token's CA hash"
                .into(),
        });
    }
    let id = HostIdentity::install(dir, &resp.cert_pem, &resp.ca_pem)?;
    tracing::info!(host = name, subcloud = %resp.subcloud, "enrolled with central");
    Ok(id)
}

fn pem_sha256(pem: &str) -> Option<String> {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    Some(crate::pki::sha256_hex(der.as_ref()))
}

/// The host link's settings.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Central.
    pub central: CentralAddr,
    /// Where the key, certificates and last desired state live.
    pub dir: PathBuf,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Longest wait between reconnect attempts.
    pub backoff_max: Duration,
    /// This build's version, told to central.
    pub roost_version: String,
}

/// What the link is doing, for `roost host info` and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Connected now.
    pub connected: bool,
    /// The last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Digest of the desired state last applied.
    pub applied_digest: String,
}

/// The last desired state, as kept on disk.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct SavedDesired {
    digest: String,
    workloads: Vec<serde_json::Value>,
}

/// The replicas' URLs central told of, one per line (not the configured address).
const REPLICAS_FILE: &str = "central-replicas";

fn load_replicas(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(REPLICAS_FILE))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn load_desired(dir: &Path) -> Option<SavedDesired> {
    let text = std::fs::read(dir.join(DESIRED_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn save_desired(dir: &Path, d: &SavedDesired) -> Result<(), LinkError> {
    use std::io::Write;
    let path = dir.join(DESIRED_FILE);
    let tmp = dir.join(format!("{DESIRED_FILE}.tmp"));
    let io = |e: std::io::Error| LinkError::Io {
        path: path.clone(),
        reason: e.to_string(),
    };
    let body = serde_json::to_vec(d).map_err(|e| LinkError::Io {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&body).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    Ok(())
}

/// The host's link: runs until `stop` turns true. Call [`enroll`] first (once).
#[derive(Debug)]
pub struct Link {
    cfg: LinkConfig,
    /// Where central answers: the configured address first, then every replica
    /// central told of (kept in `<dir>/central-replicas`); the index in use.
    addrs: std::sync::Mutex<(Vec<CentralAddr>, usize)>,
    runtime: Arc<dyn HostRuntimeDebug>,
    upgrader: Option<Arc<dyn Upgrader>>,
    status: watch::Sender<LinkStatus>,
}

/// [`HostRuntime`] plus Debug, for the link's own Debug.
pub trait HostRuntimeDebug: HostRuntime + std::fmt::Debug {}
impl<T: HostRuntime + std::fmt::Debug> HostRuntimeDebug for T {}

impl Link {
    /// A link for `runtime`.
    pub fn new(cfg: LinkConfig, runtime: Arc<dyn HostRuntimeDebug>) -> Self {
        let (status, _) = watch::channel(LinkStatus::default());
        let mut addrs = vec![cfg.central.clone()];
        for u in load_replicas(&cfg.dir) {
            if let Ok(a) = CentralAddr::parse(&u) {
                if a.url != cfg.central.url {
                    addrs.push(a);
                }
            }
        }
        Self {
            addrs: std::sync::Mutex::new((addrs, 0)),
            cfg,
            runtime,
            upgrader: None,
            status,
        }
    }

    /// Install the releases central asks for with `u` (without one, release
    /// requests are ignored).
    pub fn with_upgrader(mut self, u: Arc<dyn Upgrader>) -> Self {
        self.upgrader = Some(u);
        self
    }

    fn addrs(&self) -> std::sync::MutexGuard<'_, (Vec<CentralAddr>, usize)> {
        self.addrs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The central address the next session dials.
    pub fn current_central(&self) -> CentralAddr {
        let g = self.addrs();
        g.0.get(g.1).unwrap_or(&self.cfg.central).clone()
    }

    /// After a failed session: dial the next replica (if central has several).
    /// Returns how many addresses there are.
    fn next_central(&self) -> usize {
        let mut g = self.addrs();
        if g.0.len() > 1 {
            g.1 = (g.1 + 1) % g.0.len();
        }
        g.0.len()
    }

    /// Central told every replica's URL: keep them (and the one in use first in line).
    fn learn_replicas(&self, urls: &[String]) {
        if urls.is_empty() {
            return;
        }
        let parsed: Vec<CentralAddr> = urls
            .iter()
            .take(64)
            .filter_map(|u| CentralAddr::parse(u).ok())
            .collect();
        let mut g = self.addrs();
        let current = g.0.get(g.1).map(|a| a.url.clone());
        let mut list = vec![self.cfg.central.clone()];
        list.extend(parsed.into_iter().filter(|a| a.url != self.cfg.central.url));
        let idx = current
            .and_then(|c| list.iter().position(|a| a.url == c))
            .unwrap_or(0);
        let changed = list.iter().map(|a| &a.url).ne(g.0.iter().map(|a| &a.url));
        *g = (list, idx);
        if changed {
            let urls: Vec<&str> = g.0.iter().skip(1).map(|a| a.url.as_str()).collect();
            if let Err(e) = std::fs::write(self.cfg.dir.join(REPLICAS_FILE), urls.join("\n")) {
                tracing::warn!(error = %e, "cannot keep central's replica list");
            }
            tracing::info!(replicas = urls.len(), "central's replicas learnt");
        }
    }

    /// Follow the link's status.
    pub fn status(&self) -> watch::Receiver<LinkStatus> {
        self.status.subscribe()
    }

    /// Apply the desired state kept on disk (a host restarted without central).
    pub async fn apply_saved(&self) -> Option<String> {
        let d = load_desired(&self.cfg.dir)?;
        let issues = self.runtime.apply(d.workloads).await;
        for i in &issues {
            tracing::warn!(workload = %i.workload, error = %i.error, "saved desired state: apply failed");
        }
        self.status
            .send_modify(|s| s.applied_digest = d.digest.clone());
        Some(d.digest)
    }

    /// Connect, serve, reconnect — until `stop`.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        if let Some(d) = self.apply_saved().await {
            tracing::info!(digest = %d, "applied the desired state kept on disk");
        }
        let mut failures: u32 = 0;
        // Tries since the last full round of central's addresses: the backoff grows
        // once per round, so a host whose replica died reaches a live one promptly.
        let mut tries: usize = 0;
        loop {
            if *stop.borrow() {
                return;
            }
            let started = now_ms();
            let res = tokio::select! {
                r = self.session() => r,
                _ = super::stopped(&mut stop) => return,
            };
            self.status.send_modify(|s| s.connected = false);
            // Another replica (if any) for the next try.
            let addrs = self.next_central();
            let (wait, why) = match res {
                Ok(()) => (
                    Duration::from_millis(0),
                    "central closed the link".to_string(),
                ),
                Err(e) => (Duration::from_millis(0), e.to_string()),
            };
            // A session that lasted resets the backoff.
            if now_ms().saturating_sub(started) > 30_000 {
                failures = 0;
                tries = 0;
            }
            tries += 1;
            if tries >= addrs {
                tries = 0;
                failures = failures.saturating_add(1);
            }
            let backoff = wait.max(backoff(failures.max(1), self.cfg.backoff_max));
            tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64, "central link down");
            self.status.send_modify(|s| s.last_error = Some(why));
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = super::stopped(&mut stop) => return,
            }
        }
    }

    async fn session(&self) -> Result<(), LinkError> {
        let central = self.current_central();
        let url = central.url.clone();
        let id = HostIdentity::load(&self.cfg.dir)?.ok_or_else(|| LinkError::Io {
            path: self.cfg.dir.clone(),
            reason:
                "no host certificate: enroll first (`roost host --join URL --join-token TOKEN`)"
                    .into(),
        })?;
        // A dial that cannot finish within a few heartbeats is given up and retried,
        // so a host whose network returns reconnects promptly.
        let dial = (self.cfg.heartbeat * 4).clamp(Duration::from_secs(2), Duration::from_secs(10));
        let ch = channel(&central, id.client_tls_config()?, dial).await?;
        let mut client = proto::host_link_client::HostLinkClient::new(ch)
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024);
        let (tx, rx) = tokio::sync::mpsc::channel::<proto::HostMessage>(64);
        let msg = |b: Out| proto::HostMessage {
            protocol: PROTOCOL,
            body: Some(b),
        };
        let applied = self.status.borrow().applied_digest.clone();
        let _ = tx
            .send(msg(Out::Hello(proto::Hello {
                host: id.name().to_string(),
                roost_version: self.cfg.roost_version.clone(),
                heartbeat_ms: self.cfg.heartbeat.as_millis() as u64,
                applied_digest: applied,
            })))
            .await;
        let mut inbound = client
            .session(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|s| refused(&url, s))?
            .into_inner();
        self.status.send_modify(|s| {
            s.connected = true;
            s.last_error = None;
        });
        tracing::info!(central = %url, "central link up");
        // Report and alarms right away, then on every change.
        let mut changes = self.runtime.changes();
        self.send_state(&tx, 0).await;
        let mut hb = tokio::time::interval(self.cfg.heartbeat);
        hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq = 0u64;
        let mut latency_sent = 0u64;
        let mut last_heard = tokio::time::Instant::now();
        let silence = self.cfg.heartbeat * 2 + Duration::from_millis(500);
        // Applies run one at a time, off the read loop; only the newest waits.
        let (apply_tx, mut apply_rx) = watch::channel::<Option<proto::Desired>>(None);
        let mut renewing = false;
        let mut applying = false;
        let mut apply_done: Option<
            tokio::task::JoinHandle<(String, Vec<super::runtime::ApplyIssue>)>,
        > = None;
        // One release download and install at a time.
        let mut upgrade_done: Option<tokio::task::JoinHandle<UpgradeOutcome>> = None;
        loop {
            tokio::select! {
                _ = hb.tick() => {
                    if last_heard.elapsed() > silence {
                        return Err(LinkError::Connect { url, reason: format!("no answer from central for {} ms", silence.as_millis()) });
                    }
                    seq += 1;
                    // The newest probe run, once.
                    let latency = self.runtime.latency().filter(|l| l.time_ms > latency_sent);
                    if let Some(l) = &latency {
                        latency_sent = l.time_ms;
                    }
                    let latency = latency.map(latency_proto);
                    if tx.send(msg(Out::Heartbeat(proto::Heartbeat { seq, sent_ms: now_ms(), latency }))).await.is_err() {
                        return Ok(());
                    }
                    if !renewing && id.renew_due(now_ms()) {
                        match HostIdentity::new_csr(&self.cfg.dir, id.name()) {
                            Ok(csr) => {
                                renewing = true;
                                tracing::info!("certificate due for renewal; asking central");
                                let _ = tx.send(msg(Out::Renew(proto::RenewRequest { csr_pem: csr }))).await;
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot make a renewal CSR"),
                        }
                    }
                }
                m = inbound.next() => {
                    let m = match m {
                        None => return Ok(()),
                        Some(Err(s)) => return Err(refused(&url, s)),
                        Some(Ok(m)) => m,
                    };
                    last_heard = tokio::time::Instant::now();
                    match m.body {
                        Some(In::Desired(d)) => {
                            if let Some(up) = &self.upgrader {
                                let req = ReleaseRequest::of(&d);
                                let before = up.alarms();
                                if upgrade_done.is_none() && up.wants(req.as_ref()) {
                                    if let Some(req) = req {
                                        upgrade_done = Some(tokio::spawn(fetch_and_install(client.clone(), Arc::clone(up), req)));
                                    }
                                }
                                if up.alarms() != before {
                                    self.send_state(&tx, 0).await;
                                }
                            }
                            let _ = apply_tx.send(Some(d));
                        }
                        Some(In::Renewed(r)) => {
                            let ca = id.ca_pem().to_string();
                            match HostIdentity::install(&self.cfg.dir, &r.cert_pem, &ca) {
                                Ok(n) => tracing::info!(not_after_ms = n.not_after_ms(), "certificate renewed; used from the next connection"),
                                Err(e) => tracing::warn!(error = %e, "renewed certificate refused"),
                            }
                            // Reconnect with the new certificate.
                            return Ok(());
                        }
                        Some(In::Log(q)) => {
                            // Off the read loop, bounded in time; the answer goes on the stream.
                            let rt = Arc::clone(&self.runtime);
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                let reply = answer_log(rt, q).await;
                                let _ = tx.send(proto::HostMessage { protocol: PROTOCOL, body: Some(Out::Log(reply)) }).await;
                            });
                        }
                        Some(In::Welcome(w)) => {
                            tracing::info!(subcloud = %w.subcloud, managed = w.managed, "welcomed by central");
                            self.learn_replicas(&w.replicas);
                        }
                        Some(In::Audit(a)) => self.send_state(&tx, a.id).await,
                        Some(In::Ack(_)) | None => {}
                    }
                }
                r = apply_rx.changed(), if !applying => {
                    if r.is_err() { return Ok(()); }
                    let Some(d) = apply_rx.borrow_and_update().clone() else { continue };
                    applying = true;
                    let rt = Arc::clone(&self.runtime);
                    let dir = self.cfg.dir.clone();
                    apply_done = Some(tokio::spawn(async move {
                        let workloads: Vec<serde_json::Value> = d
                            .workloads_json
                            .iter()
                            .filter_map(|j| serde_json::from_str(j).ok())
                            .collect();
                        // Kept on disk first: a restart without central applies it again.
                        if let Err(e) = save_desired(&dir, &SavedDesired { digest: d.digest.clone(), workloads: workloads.clone() }) {
                            tracing::warn!(error = %e, "cannot keep the desired state on disk");
                        }
                        let issues = rt.apply(workloads).await;
                        (d.digest, issues)
                    }));
                }
                r = async { match apply_done.as_mut() { Some(h) => h.await, None => std::future::pending().await } } => {
                    apply_done = None;
                    applying = false;
                    if let Ok((digest, issues)) = r {
                        self.status.send_modify(|s| s.applied_digest = digest.clone());
                        let errors = issues.into_iter().map(|i| proto::ApplyError { workload: i.workload, error: i.error }).collect();
                        let _ = tx.send(msg(Out::Applied(proto::Applied { digest, errors }))).await;
                        self.send_state(&tx, 0).await;
                    }
                }
                r = async { match upgrade_done.as_mut() { Some(h) => h.await, None => std::future::pending().await } } => {
                    upgrade_done = None;
                    match r {
                        Ok(UpgradeOutcome::Restarting) => tracing::info!("release installed; the daemon re-executes"),
                        Ok(UpgradeOutcome::Failed(e)) => tracing::warn!(error = %e, "release not installed"),
                        Err(e) => tracing::warn!(error = %e, "the release install task ended abnormally"),
                    }
                    self.send_state(&tx, 0).await;
                }
                r = changes.changed() => {
                    if r.is_err() { return Ok(()); }
                    // Coalesce a burst of changes into one report.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    changes.borrow_and_update();
                    self.send_state(&tx, 0).await;
                }
            }
        }
    }

    /// Send a fresh report and the active alarms (`audit_id` answers central's
    /// [`proto::Audit`]; 0 on a change).
    async fn send_state(&self, tx: &tokio::sync::mpsc::Sender<proto::HostMessage>, audit_id: u64) {
        let r = self.runtime.report().await;
        let applied = self.status.borrow().applied_digest.clone();
        let report = proto::Report {
            workloads: r
                .workloads
                .into_iter()
                .map(|w| proto::WorkloadReport {
                    name: w.name,
                    phase: w.phase,
                    restarts: w.restarts,
                    spec_digest: w.spec_digest,
                    set: w.set,
                    instance: w.instance,
                    cpus: w.cpus,
                    placement: w.placement,
                })
                .collect(),
            applied_digest: applied,
            local_workloads: r.local_workloads,
            audit_id,
            cpu: r.cpu.map(|c| proto::CpuPartition {
                cores: c
                    .cores
                    .into_iter()
                    .map(|k| proto::CpuCore {
                        cpu: k.cpu,
                        role: k.role,
                        workloads: k.workloads,
                    })
                    .collect(),
                enforcing: c.enforcing,
                profile: c.profile,
            }),
        };
        let mut active = self.runtime.alarms().await;
        if let Some(up) = &self.upgrader {
            active.extend(up.alarms());
        }
        let alarms = proto::Alarms {
            active: active
                .into_iter()
                .map(|a| proto::AlarmState {
                    code: a.code,
                    severity: a.severity,
                    entity: a.entity,
                    reason: a.reason,
                    raised_ms: a.raised_ms,
                })
                .collect(),
        };
        let m = |b| proto::HostMessage {
            protocol: PROTOCOL,
            body: Some(b),
        };
        let _ = tx.send(m(Out::Report(report))).await;
        let _ = tx.send(m(Out::Alarms(alarms))).await;
    }
}

/// The most log text a host sends in one answer.
pub const MAX_LOG_REPLY: u32 = 64 * 1024;
/// How long a host may take to read a log before it answers with an error.
/// (Shorter than central's own wait, so central gets the host's reason.)
const LOG_READ_TIMEOUT: Duration = Duration::from_secs(3);

fn latency_proto(l: super::LatencySample) -> proto::LatencySample {
    proto::LatencySample {
        time_ms: l.time_ms,
        p50_ns: l.p50_ns,
        p99_ns: l.p99_ns,
        max_ns: l.max_ns,
        samples: l.samples,
        missed: l.missed,
        period_us: l.period_us,
        placement: l.placement,
    }
}

/// Answer central's `LogRequest` from the runtime, within [`LOG_READ_TIMEOUT`] and
/// [`MAX_LOG_REPLY`] bytes.
async fn answer_log(rt: Arc<dyn HostRuntimeDebug>, q: proto::LogRequest) -> proto::LogReply {
    let id = q.id;
    let query = super::LogQuery {
        workload: q.workload,
        offset: q.offset,
        tail_lines: q.tail_lines.clamp(1, 10_000),
        max_bytes: q.max_bytes.clamp(1, MAX_LOG_REPLY),
    };
    let max = query.max_bytes as usize;
    match tokio::time::timeout(LOG_READ_TIMEOUT, rt.logs(query)).await {
        Ok(Ok(mut s)) => {
            if s.text.len() > max {
                let mut cut = max;
                while !s.text.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.text.truncate(cut);
                s.next_offset = s.offset + cut as u64;
            }
            proto::LogReply {
                id,
                text: s.text,
                offset: s.offset,
                next_offset: s.next_offset,
                size: s.size,
                error: String::new(),
                not_found: false,
            }
        }
        Ok(Err(e)) => proto::LogReply {
            id,
            not_found: matches!(e, super::LogError::NotFound(_)),
            error: e.to_string(),
            ..Default::default()
        },
        Err(_) => proto::LogReply {
            id,
            error: format!(
                "the host could not read the log within {} s",
                LOG_READ_TIMEOUT.as_secs()
            ),
            ..Default::default()
        },
    }
}

/// Download `req` over the link and hand it to the upgrader.
async fn fetch_and_install(
    mut client: proto::host_link_client::HostLinkClient<tonic::transport::Channel>,
    up: Arc<dyn Upgrader>,
    req: ReleaseRequest,
) -> UpgradeOutcome {
    tracing::info!(version = %req.version, sha256 = %req.sha256, size = req.size, "central asks for a release; fetching it");
    let stream = match client
        .fetch_release(proto::FetchReleaseRequest {
            protocol: PROTOCOL,
            version: req.version.clone(),
        })
        .await
    {
        Ok(r) => release_stream(r.into_inner()),
        Err(s) => {
            let why = format!(
                "central refused to send release {}: {}: {}",
                req.version,
                s.code(),
                s.message()
            );
            let stream: ReleaseStream =
                Box::pin(futures_util::stream::once(async move { Err(why) }));
            stream
        }
    };
    up.install(req, stream).await
}

/// The chunks of a `FetchRelease` answer; a stream that ends before the size its
/// first chunk announced ends with an error naming both.
fn release_stream(inbound: tonic::Streaming<proto::ReleaseChunk>) -> ReleaseStream {
    let state = (inbound, 0u64, 0u64, false);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut inbound, mut got, mut total, done)| async move {
            if done {
                return None;
            }
            match inbound.next().await {
                Some(Ok(c)) => {
                    if c.total_size > 0 {
                        total = c.total_size;
                    }
                    got = got.saturating_add(c.data.len() as u64);
                    Some((Ok(c.data), (inbound, got, total, false)))
                }
                Some(Err(s)) => Some((
                    Err(format!(
                        "the download broke off after {got} bytes: {}: {}",
                        s.code(),
                        s.message()
                    )),
                    (inbound, got, total, true),
                )),
                None if got < total => Some((
                    Err(format!(
                        "the download is truncated: {got} of {total} bytes arrived"
                    )),
                    (inbound, got, total, true),
                )),
                None => None,
            }
        },
    ))
}

/// Capped exponential backoff with full jitter: uniform in [base/2, base] where base
/// = min(cap, 500 ms · 2^(n-1)).
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let exp = 500u64.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    let base = exp.min(cap.as_millis() as u64).max(1);
    let mut b = [0u8; 8];
    let r = if getrandom::getrandom(&mut b).is_ok() {
        u64::from_le_bytes(b)
    } else {
        now_ms()
    };
    Duration::from_millis(base / 2 + r % (base / 2 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn central_urls_are_checked() {
        let a = CentralAddr::parse("https://10.0.0.1:7443").unwrap();
        assert_eq!(a.authority, "10.0.0.1:7443");
        assert!(CentralAddr::parse("http://x:1")
            .unwrap_err()
            .to_string()
            .contains("https://HOST:PORT"));
        assert!(CentralAddr::parse("https://x")
            .unwrap_err()
            .to_string()
            .contains("port"));
        assert!(CentralAddr::parse("https://x:99999")
            .unwrap_err()
            .to_string()
            .contains("port"));
        assert!(CentralAddr::parse("https://x:1/p")
            .unwrap_err()
            .to_string()
            .contains("path"));
        assert!(CentralAddr::parse("https://[::1]:7443").is_ok());
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let cap = Duration::from_secs(30);
        for n in 1..40 {
            let b = backoff(n, cap);
            let base = (500u64 << (n - 1).min(20)).min(30_000);
            assert!(
                b.as_millis() as u64 >= base / 2 && b.as_millis() as u64 <= base,
                "{n}: {b:?}"
            );
        }
    }
}

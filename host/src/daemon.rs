//! `roost host`: the daemon's one shape — validate config without binding anything,
//! build, recover, serve, wait for a signal, drain. Workloads keep running when the
//! daemon stops: a restart re-adopts them.

use crate::admission::Admission;
use crate::api::{self, ApiState};
use crate::driver::Driver;
use crate::drivers::mock::MockDriver;
use crate::drivers::process::CgroupAttach;
use crate::events::EventBus;
use crate::server::{self, ServerError, TlsFiles};
use crate::spec::DriverKind;
use crate::store::{Store, StoreError, Writer};
use crate::supervisor::{Supervisor, SupervisorConfig};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Default state dir.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/roost";

/// The daemon's settings (config file and flags share these names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostConfig {
    /// Store, logs, run dirs.
    pub state_dir: Option<PathBuf>,
    /// API socket (default `<state-dir>/roost.sock`).
    pub socket: Option<PathBuf>,
    /// Optional TCP address for the API (needs TLS and a token).
    pub listen: Option<SocketAddr>,
    /// PEM certificate for `listen`.
    pub tls_cert: Option<PathBuf>,
    /// PEM key for `listen`.
    pub tls_key: Option<PathBuf>,
    /// File with the bearer token for `listen`.
    pub token_file: Option<PathBuf>,
    /// containerd's gRPC socket.
    pub containerd_socket: Option<PathBuf>,
    /// Host profile (CPU partition) file.
    pub profile: Option<PathBuf>,
    /// Roost's cgroup directory in each controller (default `roost`; `none` = do not
    /// enforce placements in cgroups).
    pub cgroup_prefix: Option<String>,
    /// First restart delay, ms (default 1000).
    pub restart_backoff_ms: Option<u64>,
    /// Restart delay cap, ms (default 60000).
    pub restart_backoff_max_ms: Option<u64>,
    /// Central to join (`https://CENTRAL:PORT`); after enrollment it is remembered.
    pub join: Option<String>,
    /// One-time join token (from `roost central token create`).
    pub join_token: Option<String>,
    /// This host's name at central (default: the kernel's hostname).
    pub name: Option<String>,
    /// Heartbeat to central, e.g. `5s`, `500ms` (default 5s).
    pub heartbeat: Option<String>,
    /// How long a daemon re-executed into a new release has to become healthy before
    /// the guard rolls it back, e.g. `60s` (default 60s).
    pub upgrade_deadline: Option<String>,
    /// How often the light latency probe reported to central runs, e.g. `10s`
    /// (default 10s; `off` = never). Only a host joined to a central runs it.
    pub latency_probe: Option<String>,
    /// The Linux bridge `network: bridge` containers join (default `roost0`).
    pub bridge: Option<String>,
    /// The bridge's IPv4 subnet (default `10.88.0.0/16`).
    pub bridge_subnet: Option<String>,
}

/// A config problem: the daemon exits 64 without binding anything.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file is unreadable or invalid.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A setting is wrong.
    #[error("{field}: {message}")]
    Field {
        /// Setting name (flag or config key).
        field: &'static str,
        /// What is wrong and the fix.
        message: String,
    },
}

/// Errors while running.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad configuration (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Binding the API failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

impl HostConfig {
    /// Read a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Fill unset fields from `other` (flags win over the file: call on the flags).
    pub fn or(self, other: HostConfig) -> HostConfig {
        HostConfig {
            state_dir: self.state_dir.or(other.state_dir),
            socket: self.socket.or(other.socket),
            listen: self.listen.or(other.listen),
            tls_cert: self.tls_cert.or(other.tls_cert),
            tls_key: self.tls_key.or(other.tls_key),
            token_file: self.token_file.or(other.token_file),
            containerd_socket: self.containerd_socket.or(other.containerd_socket),
            profile: self.profile.or(other.profile),
            cgroup_prefix: self.cgroup_prefix.or(other.cgroup_prefix),
            restart_backoff_ms: self.restart_backoff_ms.or(other.restart_backoff_ms),
            restart_backoff_max_ms: self.restart_backoff_max_ms.or(other.restart_backoff_max_ms),
            join: self.join.or(other.join),
            join_token: self.join_token.or(other.join_token),
            name: self.name.or(other.name),
            heartbeat: self.heartbeat.or(other.heartbeat),
            upgrade_deadline: self.upgrade_deadline.or(other.upgrade_deadline),
            latency_probe: self.latency_probe.or(other.latency_probe),
            bridge: self.bridge.or(other.bridge),
            bridge_subnet: self.bridge_subnet.or(other.bridge_subnet),
        }
    }

    /// Check everything that can be checked without binding or opening anything.
    pub fn validate(&self) -> Result<Resolved, ConfigError> {
        let state_dir = self
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        if !state_dir.is_absolute() {
            return Err(ConfigError::Field {
                field: "state-dir",
                message: format!("`{}` must be an absolute path", state_dir.display()),
            });
        }
        let socket = self
            .socket
            .clone()
            .unwrap_or_else(|| state_dir.join("roost.sock"));
        if socket.as_os_str().len() > 100 {
            return Err(ConfigError::Field {
                field: "socket",
                message: format!(
                    "`{}` is longer than a Unix socket path may be (~107 bytes); use a shorter path",
                    socket.display()
                ),
            });
        }
        let tls = match (self.listen, &self.tls_cert, &self.tls_key, &self.token_file) {
            (None, None, None, None) => None,
            (Some(_), Some(c), Some(k), Some(t)) => Some(TlsFiles {
                cert: c.clone(),
                key: k.clone(),
                token_file: t.clone(),
            }),
            (None, ..) => {
                return Err(ConfigError::Field {
                    field: "listen",
                    message: "TLS or token settings were given without --listen; add \
                              --listen ADDR or drop them"
                        .into(),
                })
            }
            _ => {
                return Err(ConfigError::Field {
                    field: "listen",
                    message: "the TCP API needs TLS and a bearer token: give all of \
                              --tls-cert, --tls-key and --token-file with --listen"
                        .into(),
                })
            }
        };
        let base = self.restart_backoff_ms.unwrap_or(1000);
        let max = self.restart_backoff_max_ms.unwrap_or(60_000);
        if base == 0 || max < base {
            return Err(ConfigError::Field {
                field: "restart-backoff-ms",
                message: format!(
                    "backoff {base} ms with cap {max} ms: the base must be at least 1 and \
                     at most the cap"
                ),
            });
        }
        if let Some(j) = &self.join {
            roost_federation::link::client::CentralAddr::parse(j).map_err(|e| {
                ConfigError::Field {
                    field: "join",
                    message: e.to_string(),
                }
            })?;
        }
        if let Some(n) = &self.name {
            roost_federation::model::check_name(n).map_err(|e| ConfigError::Field {
                field: "name",
                message: e,
            })?;
        }
        let heartbeat = match &self.heartbeat {
            None => Duration::from_secs(5),
            Some(h) => match parse_duration(h) {
                Some(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(600) => d,
                _ => {
                    return Err(ConfigError::Field {
                        field: "heartbeat",
                        message: format!(
                            "`{h}` is not a duration from 100ms to 10m; write e.g. `5s`, `500ms` or `1m`"
                        ),
                    })
                }
            },
        };
        let upgrade_deadline = match &self.upgrade_deadline {
            None => crate::upgrade::DEFAULT_DEADLINE,
            Some(h) => match parse_duration(h) {
                Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(3600) => d,
                _ => {
                    return Err(ConfigError::Field {
                        field: "upgrade-deadline",
                        message: format!(
                            "`{h}` is not a duration from 1s to 1h; write e.g. `60s` or `5m`"
                        ),
                    })
                }
            },
        };
        let latency_probe = match self.latency_probe.as_deref() {
            None => Some(Duration::from_secs(10)),
            Some("off") => None,
            Some(h) => match parse_duration(h) {
                Some(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(3600) => Some(d),
                _ => {
                    return Err(ConfigError::Field {
                        field: "latency-probe",
                        message: format!(
                            "`{h}` is not a duration from 1s to 1h; write e.g. `10s`, or `off`"
                        ),
                    })
                }
            },
        };
        let bridge = self.bridge.clone().unwrap_or_else(|| "roost0".into());
        if bridge.is_empty()
            || bridge.len() > 15
            || !bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(ConfigError::Field {
                field: "bridge",
                message: format!("`{bridge}` is not an interface name; use 1-15 letters, digits, '-', '_' or '.'"),
            });
        }
        let bridge_subnet = self
            .bridge_subnet
            .clone()
            .unwrap_or_else(|| "10.88.0.0/16".into());
        let subnet_ok = bridge_subnet.split_once('/').is_some_and(|(a, p)| {
            a.parse::<std::net::Ipv4Addr>().is_ok()
                && p.parse::<u8>().is_ok_and(|p| (8..=30).contains(&p))
        });
        if !subnet_ok {
            return Err(ConfigError::Field {
                field: "bridge-subnet",
                message: format!(
                    "`{bridge_subnet}` is not an IPv4 subnet of /8 to /30, e.g. 10.88.0.0/16"
                ),
            });
        }
        Ok(Resolved {
            bridge,
            bridge_subnet,
            upgrade_deadline,
            uplink: crate::uplink::UplinkConfig {
                join: self.join.clone(),
                join_token: self.join_token.clone(),
                name: self.name.clone(),
                heartbeat,
                backoff_max: Duration::from_secs(30)
                    .min(heartbeat * 6)
                    .max(Duration::from_secs(2)),
                latency_probe,
            },
            state_dir,
            socket,
            listen: self
                .listen
                .map(|a| (a, tls))
                .and_then(|(a, t)| t.map(|t| (a, t))),
            containerd_socket: self.containerd_socket.clone(),
            profile: self.profile.clone(),
            cgroup_prefix: self.cgroup_prefix.clone(),
            backoff_base: Duration::from_millis(base),
            backoff_max: Duration::from_millis(max),
        })
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// State dir.
    pub state_dir: PathBuf,
    /// API socket.
    pub socket: PathBuf,
    /// TCP API with its TLS files.
    pub listen: Option<(SocketAddr, TlsFiles)>,
    /// containerd's socket.
    pub containerd_socket: Option<PathBuf>,
    /// Host profile.
    pub profile: Option<PathBuf>,
    /// Roost's cgroup directory name (`none` = no enforcement).
    pub cgroup_prefix: Option<String>,
    /// First restart delay.
    pub backoff_base: Duration,
    /// Restart delay cap.
    pub backoff_max: Duration,
    /// The link to central.
    pub uplink: crate::uplink::UplinkConfig,
    /// How long a daemon re-executed into a new release has to become healthy.
    pub upgrade_deadline: Duration,
    /// The bridge for `network: bridge` containers.
    pub bridge: String,
    /// Its subnet.
    pub bridge_subnet: String,
}

/// How the daemon ended.
#[derive(Debug)]
pub enum Exit {
    /// Stopped by a signal.
    Stopped,
    /// A new release is in place: re-execute into it ([`crate::upgrade::reexec`])
    /// once the runtime is gone.
    Upgrade(crate::upgrade::UpgradeConfig),
}

/// `5s`, `500ms`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// What [`build_drivers`] builds.
pub struct Drivers {
    /// The drivers this daemon offers.
    pub drivers: Vec<Arc<dyn Driver>>,
    /// Why the others are missing.
    pub missing: HashMap<DriverKind, String>,
    /// The image service over the containerd the container driver uses.
    pub images: crate::images::Images,
    /// The container driver, when there is one (for the network sweep at start).
    pub container: Option<Arc<crate::drivers::container::ContainerDriver>>,
}

/// The drivers this daemon offers, why the others are missing, and the image
/// service over the containerd the container driver uses.
pub fn build_drivers(cfg: &Resolved, attach: Option<Arc<dyn CgroupAttach>>) -> Drivers {
    let mut mock = MockDriver::new(&cfg.state_dir);
    if let Some(a) = &attach {
        mock = mock.with_cgroups(Arc::clone(a));
    }
    let mut drivers: Vec<Arc<dyn Driver>> = vec![Arc::new(mock)];
    let mut missing = HashMap::new();
    let mut container = None;
    let exe = std::env::current_exe();
    match &exe {
        Ok(exe) => {
            let mut vm = crate::drivers::vm::VmDriver::new(exe.clone(), &cfg.state_dir);
            if let Some(a) = &attach {
                vm = vm.with_cgroups(Arc::clone(a));
            }
            drivers.push(Arc::new(vm));
        }
        Err(e) => drop(missing.insert(
            DriverKind::Vm,
            format!("cannot locate the roost binary for `roost vmm`: {e}"),
        )),
    }
    let containerd = cfg
        .containerd_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(roost_container::DEFAULT_SOCKET));
    let images = match crate::drivers::container::ContainerDriver::open(&containerd) {
        // The shim runs this binary as the container log copier (`roost container-log`).
        Ok(d) => {
            let client = d.client().clone();
            let d = match &attach {
                Some(a) => d.with_platform(Arc::clone(a)),
                None => d,
            };
            let d = d.with_network(roost_container::cni::Cni {
                plugin_dir: PathBuf::from(roost_container::cni::DEFAULT_PLUGIN_DIR),
                network: "roost".into(),
                bridge: cfg.bridge.clone(),
                subnet: cfg.bridge_subnet.clone(),
                ipam_dir: cfg.state_dir.join("cni"),
                netns_dir: cfg.state_dir.join("netns"),
            });
            let d = Arc::new(match &exe {
                Ok(exe) => d.with_log_helper(exe.clone()),
                Err(_) => d,
            });
            container = Some(Arc::clone(&d));
            drivers.push(d);
            Ok(client)
        }
        Err(e) => {
            missing.insert(DriverKind::Container, e.to_string());
            Err(e.to_string())
        }
    };
    let images = crate::images::Images::new(images, &cfg.state_dir.join("images"));
    Drivers {
        drivers,
        missing,
        images,
        container,
    }
}

/// The admission backend: the real-time-aware scheduler over this host's topology
/// and profile, enforcing placements in cgroups when run as root (bookkeeping only
/// otherwise, with a warning). When enforcing, the daemon and the containerd that
/// serves its socket move onto the platform cores (`<prefix>/platform`), and the
/// attacher returned lets drivers move what they spawn into its workload's cgroup.
pub async fn build_admission(
    cfg: &Resolved,
) -> Result<(Box<dyn Admission>, Option<Arc<dyn CgroupAttach>>), DaemonError> {
    use crate::sched::{Enforcement, SchedAdmission};
    let enforcement = match &cfg.cgroup_prefix {
        Some(p) if p.is_empty() || p == "none" => Enforcement::Off,
        Some(p) => Enforcement::Auto { prefix: p.clone() },
        None => Enforcement::Auto {
            prefix: "roost".into(),
        },
    };
    let adm = SchedAdmission::for_this_host(cfg.profile.as_deref(), enforcement).map_err(|e| {
        ConfigError::Field {
            field: "profile",
            message: format!("{e}; fix the host profile (`roost host config check FILE`)"),
        }
    })?;
    if adm.enforcing() {
        match adm.join_platform(std::process::id()) {
            Ok(()) => tracing::info!("the daemon runs on the platform cores"),
            Err(e) => {
                tracing::warn!(error = %e, "the daemon could not move onto the platform cores")
            }
        }
        let sock = cfg
            .containerd_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(roost_container::DEFAULT_SOCKET));
        match containerd_pid(&sock).await {
            Some(pid) => match adm.join_platform(pid) {
                Ok(()) => tracing::info!(pid, "containerd runs on the platform cores"),
                Err(e) => {
                    tracing::warn!(pid, error = %e, "containerd could not move onto the platform cores")
                }
            },
            None => tracing::debug!(sock = %sock.display(), "no containerd answering; not moved"),
        }
    }
    let attach = adm.attacher();
    Ok((Box::new(adm), attach))
}

/// The pid of the process serving the containerd socket (its peer credentials).
async fn containerd_pid(sock: &std::path::Path) -> Option<u32> {
    let conn = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::UnixStream::connect(sock),
    )
    .await
    .ok()?
    .ok()?;
    let pid = conn.peer_cred().ok()?.pid()?;
    u32::try_from(pid).ok().filter(|p| *p > 0)
}

/// Run the daemon until SIGINT/SIGTERM, or until an installed release asks for a
/// re-exec. `ready` is called once the API answers.
pub async fn run(cfg: Resolved, ready: impl FnOnce(&Resolved)) -> Result<Exit, DaemonError> {
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| {
        DaemonError::Other(format!(
            "cannot create the state dir {}: {e}",
            cfg.state_dir.display()
        ))
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700));
    }
    // The run root (instances' run dirs) and the logs dir.
    for sub in ["run", "logs"] {
        std::fs::create_dir_all(cfg.state_dir.join(sub)).map_err(|e| {
            DaemonError::Other(format!(
                "cannot create {}: {e}",
                cfg.state_dir.join(sub).display()
            ))
        })?;
    }
    let store = Store::open(&cfg.state_dir.join("roost.redb"))?;
    let writer = Writer::spawn(store.clone());
    let events = EventBus::new(store.clone(), writer.clone())?;
    let (admission, attach) = build_admission(&cfg).await?;
    let Drivers {
        drivers,
        missing,
        images,
        container,
    } = build_drivers(&cfg, attach);
    // Addresses of containers that died while no daemon watched, before anything
    // starts (a start racing the sweep could lose its fresh address).
    if let Some(c) = &container {
        let released = c.sweep_networks().await;
        if !released.is_empty() {
            tracing::info!(containers = ?released, "released the networks of containers that no longer run");
        }
    }
    let mut scfg = SupervisorConfig::new(cfg.state_dir.clone());
    scfg.backoff_base = cfg.backoff_base;
    scfg.backoff_max = cfg.backoff_max;
    let sup = Supervisor::new(scfg, drivers, missing, admission, writer.clone(), events);
    // Bind before recovering, so a second daemon on the same socket fails fast
    // (the store lock already stops a second daemon on the same state dir).
    let unix = server::bind_unix(&cfg.socket).await?;
    let tcp = match &cfg.listen {
        Some((addr, files)) => {
            let (acceptor, token) = server::load_tls(files)?;
            Some((server::TlsListener::bind(*addr, acceptor).await?, token))
        }
        None => None,
    };
    sup.recover(store.list()?).await;
    let state = ApiState::new(Arc::clone(&sup), images);
    let router = api::router(Arc::clone(&state));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    {
        let mut rx = stop_rx.clone();
        let r = router.clone();
        servers.spawn(async move {
            let _ = axum::serve(unix, r)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
    }
    if let Some((l, token)) = tcp {
        let mut rx = stop_rx.clone();
        let r = server::require_token(router, token);
        servers.spawn(async move {
            let _ = axum::serve(l, r)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
    }
    // Recovered and serving: a daemon that came up on a new release is healthy.
    let upgrader =
        match crate::upgrade::UpgradeConfig::for_this_process(&cfg.state_dir, cfg.upgrade_deadline)
        {
            Ok(u) => {
                let u = crate::upgrade::HostUpgrader::open(u);
                u.confirm();
                Some(u)
            }
            Err(e) => {
                tracing::warn!(error = %e, "software upgrades from central are off");
                None
            }
        };
    let _link = match crate::uplink::start(
        &sup,
        &cfg.state_dir,
        &cfg.uplink,
        upgrader.clone(),
        stop_rx.clone(),
    )
    .await
    {
        Ok(l) => l,
        Err(e) => {
            let _ = stop_tx.send(true);
            return Err(DaemonError::Other(format!("cannot join central: {e}")));
        }
    };
    tracing::info!(socket = %cfg.socket.display(), state_dir = %cfg.state_dir.display(), "roost host ready");
    ready(&cfg);
    let upgrade = async {
        match &upgrader {
            Some(u) => u.restart_requested().await,
            None => std::future::pending().await,
        }
    };
    let exit = tokio::select! {
        _ = wait_for_signal() => Exit::Stopped,
        _ = upgrade => match &upgrader {
            Some(u) => Exit::Upgrade(u.config().clone()),
            None => Exit::Stopped,
        },
    };
    tracing::info!("shutting down; workloads keep running");
    let _ = stop_tx.send(true);
    // Drain open requests (log follows and event streams are cut after the timeout).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    let _ = std::fs::remove_file(&cfg.socket);
    // Make the batched status and event writes durable before exiting.
    if let Err(e) = writer.write(crate::store::WriteOp::Flush).await {
        tracing::warn!(error = %e, "final store flush failed");
    }
    Ok(exit)
}

/// Wait for SIGTERM or SIGINT (forever if the handlers cannot be installed).
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

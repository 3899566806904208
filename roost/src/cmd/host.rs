//! `roost host`: run the per-host daemon; `roost host info` and `roost host config
//! check` ask about the host.

use clap::{Args, Subcommand};
use roost_host::daemon::{self, DaemonError, HostConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HostArgs {
    #[command(subcommand)]
    pub command: Option<HostCmd>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// Show the host's capacity, allocations and topology (asks the daemon).
    Info(super::client::InfoArgs),
    /// Host profile commands.
    Config {
        #[command(subcommand)]
        command: ConfigCmd,
    },
    /// The software-upgrade guard (run by the daemon itself, not by users).
    #[command(hide = true)]
    UpgradeGuard(GuardArgs),
}

/// `roost host upgrade-guard`: see `roost_host::upgrade::guard`.
#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The daemon's link dir (`<state>/central`).
    #[arg(long)]
    pub link_dir: PathBuf,
    /// The daemon's pid.
    #[arg(long)]
    pub pid: i32,
    /// The daemon's binary.
    #[arg(long)]
    pub bin: PathBuf,
    /// The release being tried.
    #[arg(long)]
    pub sha256: String,
    /// The daemon's argv.
    #[arg(last = true, required = true)]
    pub argv: Vec<std::ffi::OsString>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective CPU partition and any warnings for a host profile.
    Check {
        /// Host profile (TOML); without it, the default partition.
        file: Option<PathBuf>,
    },
}

/// Flags of the daemon (each may also come from the config file).
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Config file (TOML; keys as the flags, e.g. `state-dir = "/var/lib/roost"`).
    #[arg(long, short = 'c', env = "ROOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// State directory (store, logs, run dirs) [default: /var/lib/roost].
    #[arg(long, env = "ROOST_HOME")]
    pub state_dir: Option<PathBuf>,
    /// API socket [default: <state-dir>/roost.sock].
    #[arg(long, env = "ROOST_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Also serve the API on TCP (requires --tls-cert, --tls-key, --token-file).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// PEM certificate for --listen.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --listen.
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// File holding the bearer token TCP clients must send.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The Linux bridge `network: bridge` containers join [default: roost0].
    #[arg(long)]
    pub bridge: Option<String>,
    /// The bridge's IPv4 subnet [default: 10.88.0.0/16].
    #[arg(long)]
    pub bridge_subnet: Option<String>,
    /// containerd's gRPC socket [default: /run/containerd/containerd.sock].
    #[arg(long, env = "ROOST_CONTAINERD_SOCKET")]
    pub containerd_socket: Option<PathBuf>,
    /// Host profile (CPU partition, reserved memory).
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Roost's cgroup directory in each controller [default: roost]; `none` keeps
    /// placements as bookkeeping only.
    #[arg(long)]
    pub cgroup_prefix: Option<String>,
    /// First restart delay in ms [default: 1000].
    #[arg(long)]
    pub restart_backoff_ms: Option<u64>,
    /// Restart delay cap in ms [default: 60000].
    #[arg(long)]
    pub restart_backoff_max_ms: Option<u64>,
    /// Join a central controller: `https://CENTRAL:PORT` (remembered after enrollment).
    #[arg(long, env = "ROOST_JOIN")]
    pub join: Option<String>,
    /// One-time join token from `roost central token create` (only for the first start).
    #[arg(long, env = "ROOST_JOIN_TOKEN")]
    pub join_token: Option<String>,
    /// This host's name at central [default: the hostname].
    #[arg(long)]
    pub name: Option<String>,
    /// Heartbeat interval to central, e.g. 5s or 500ms [default: 5s].
    #[arg(long)]
    pub heartbeat: Option<String>,
    /// How long a daemon re-executed into a new release from central has to become
    /// healthy before it is rolled back, e.g. 60s [default: 60s].
    #[arg(long)]
    pub upgrade_deadline: Option<String>,
    /// How often the light latency probe whose figures go to central runs, e.g. 10s,
    /// or `off` [default: 10s; only on a host joined to a central].
    #[arg(long)]
    pub latency_probe: Option<String>,
}

/// EX_CONFIG: the configuration is wrong; nothing was bound or started.
const EXIT_CONFIG: u8 = 64;

pub fn run(args: HostArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(HostCmd::Info(a)) => super::client::host_info(a),
        Some(HostCmd::Config {
            command: ConfigCmd::Check { file },
        }) => config_check(file),
        Some(HostCmd::UpgradeGuard(g)) => {
            super::init_tracing("info");
            let code = roost_host::upgrade::guard::run(roost_host::upgrade::guard::GuardArgs {
                link_dir: g.link_dir,
                pid: g.pid,
                bin: g.bin,
                sha256: g.sha256,
                argv: g.argv,
            });
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        None => run_daemon(args.daemon),
    }
}

fn config_check(file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    super::host_config::check(file)
}

fn run_daemon(a: DaemonArgs) -> anyhow::Result<ExitCode> {
    let flags = HostConfig {
        state_dir: a.state_dir,
        socket: a.socket,
        listen: a.listen,
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
        token_file: a.token_file,
        containerd_socket: a.containerd_socket,
        profile: a.profile,
        cgroup_prefix: a.cgroup_prefix,
        restart_backoff_ms: a.restart_backoff_ms,
        restart_backoff_max_ms: a.restart_backoff_max_ms,
        join: a.join,
        join_token: a.join_token,
        name: a.name,
        heartbeat: a.heartbeat,
        upgrade_deadline: a.upgrade_deadline,
        latency_probe: a.latency_probe,
        bridge: a.bridge,
        bridge_subnet: a.bridge_subnet,
    };
    let file = match &a.config {
        Some(p) => match HostConfig::from_file(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        None => HostConfig::default(),
    };
    let cfg = match flags.or(file).validate() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    super::init_tracing("info");
    // Before the runtime's threads exist (see `fds`).
    let fds = roost_host::fds::prepare();
    tracing::info!(
        soft = fds.soft,
        was = fds.was,
        hard = fds.hard,
        table = fds.table,
        "descriptor limit"
    );
    if fds.soft < 2_048 {
        tracing::warn!(
            soft = fds.soft,
            hard = fds.hard,
            "the descriptor limit is low for a host of 1,024 workloads (about one each); raise LimitNOFILE"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("roost-host")
        .build()?;
    let result = rt.block_on(daemon::run(cfg, |c| {
        eprintln!("roost host: ready on {}", c.socket.display());
    }));
    // Every task, the store and the sockets are gone before a re-exec.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(daemon::Exit::Stopped) => Ok(ExitCode::SUCCESS),
        Ok(daemon::Exit::Upgrade(u)) => {
            let e = roost_host::upgrade::reexec(&u);
            Err(e.into())
        }
        Err(DaemonError::Config(e)) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        Err(e) => Err(e.into()),
    }
}

//! `roost sim`: many simulated hosts in one process, each behind the real link client
//! (real enrollment with its own join token and key, mutual TLS, heartbeats, desired
//! state, reports, alarms) over an in-memory runtime whose apply time and failure
//! rate the flags set. For benchmarks and scale tests of central.

use anyhow::{bail, Context};
use clap::Args;
use hyper::Method;
use roost_federation::link::client::{enroll, CentralAddr, Link, LinkConfig};
use roost_federation::sim::{SimRuntime, SimSettings};
use roost_host::client::Client;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `roost sim` flags.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Central's URL, e.g. https://127.0.0.1:7443.
    #[arg(long)]
    pub central: String,
    /// The operator token file (the simulator makes subclouds and join tokens).
    #[arg(long)]
    pub token_file: PathBuf,
    /// Central's CA certificate (PEM) for the operator API.
    #[arg(long)]
    pub ca_file: PathBuf,
    /// How many hosts.
    #[arg(long, default_value_t = 10)]
    pub hosts: usize,
    /// How many subclouds (hosts are spread over them round-robin).
    #[arg(long, default_value_t = 1)]
    pub subclouds: usize,
    /// The group the subclouds are made in (made if missing).
    #[arg(long, default_value = "sim")]
    pub group: String,
    /// Name prefix of subclouds (`PREFIX-s0001`) and hosts (`PREFIX-h00001`).
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// Name prefix of hosts only [default: --prefix], so that several simulators can
    /// share subclouds (`HOST_PREFIX-h00001`).
    #[arg(long)]
    pub host_prefix: Option<String>,
    /// Seconds an apply that changes something takes.
    #[arg(long, default_value_t = 0.0)]
    pub apply_seconds: f64,
    /// Share (0-1) of changing applies that end with the changed workloads failed.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Heartbeat interval in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub heartbeat: f64,
    /// Where the hosts keep their keys and certificates [default: a temporary dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 32)]
    pub enroll_parallel: usize,
}

fn check(a: &SimArgs) -> anyhow::Result<()> {
    if a.hosts == 0 || a.hosts > 100_000 {
        bail!("--hosts {}: give 1 to 100000", a.hosts);
    }
    if a.subclouds == 0 || a.subclouds > a.hosts {
        bail!(
            "--subclouds {}: give 1 to --hosts ({}), every subcloud needs a host",
            a.subclouds,
            a.hosts
        );
    }
    if !(0.0..=3600.0).contains(&a.apply_seconds) {
        bail!("--apply-seconds {}: give 0 to 3600", a.apply_seconds);
    }
    if !(0.0..=1.0).contains(&a.fail_rate) {
        bail!(
            "--fail-rate {}: give a share from 0 to 1 (0.05 = 5%)",
            a.fail_rate
        );
    }
    if !(0.1..=3600.0).contains(&a.heartbeat) {
        bail!("--heartbeat {}: give 0.1 to 3600 seconds", a.heartbeat);
    }
    Ok(())
}

async fn call(c: &Client, method: Method, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    let r = c
        .request(method, path, Some(body.to_string().into_bytes()))
        .await
        .with_context(|| format!("calling central's {path}"))?;
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    Ok((r.status.as_u16(), v))
}

/// Run the simulator until SIGINT/SIGTERM.
pub fn run(a: SimArgs) -> anyhow::Result<ExitCode> {
    check(&a)?;
    super::init_tracing("warn");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the simulator's runtime")?;
    rt.block_on(simulate(a))?;
    Ok(ExitCode::SUCCESS)
}

async fn simulate(a: SimArgs) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&a.token_file)
        .with_context(|| format!("cannot read --token-file {}", a.token_file.display()))?;
    let ca = std::fs::read(&a.ca_file)
        .with_context(|| format!("cannot read --ca-file {}", a.ca_file.display()))?;
    let api = Client::remote(&a.central, token.trim(), Some(&ca)).context("--central")?;
    let central = CentralAddr::parse(&a.central).context("--central")?;
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("cannot make a temporary dir")?;
            tmp.path().to_path_buf()
        }
    };
    let (status, v) = call(&api, Method::POST, "/v1/groups", json!({"name": a.group})).await?;
    if status != 201 && status != 409 {
        bail!("cannot make group {}: {status} {v}", a.group);
    }
    let subclouds: Vec<String> = (0..a.subclouds)
        .map(|i| format!("{}-s{:04}", a.prefix, i + 1))
        .collect();
    for s in &subclouds {
        let body = json!({"name": s, "group": a.group});
        let (status, v) = call(&api, Method::POST, "/v1/subclouds", body).await?;
        if status != 201 && status != 409 {
            bail!("cannot make subcloud {s}: {status} {v}");
        }
    }
    let settings = SimSettings {
        apply: Duration::from_secs_f64(a.apply_seconds),
        fail_rate: a.fail_rate,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.enroll_parallel.max(1)));
    let mut enrolls = tokio::task::JoinSet::new();
    let mut links = Vec::with_capacity(a.hosts);
    let host_prefix = a.host_prefix.as_deref().unwrap_or(&a.prefix);
    for i in 0..a.hosts {
        let name = format!("{host_prefix}-h{:05}", i + 1);
        let sc = subclouds[i % subclouds.len()].clone();
        let (api, sem, url) = (api.clone(), Arc::clone(&sem), a.central.clone());
        let hdir = dir.join(&name);
        enrolls.spawn(async move {
            let _p = sem.acquire_owned().await;
            let (status, v) =
                call(&api, Method::POST, "/v1/tokens", json!({"subcloud": sc})).await?;
            let Some(tok) = v
                .get("token")
                .and_then(Value::as_str)
                .filter(|_| status == 201)
            else {
                bail!("no join token for {name} in {sc}: {status} {v}");
            };
            enroll(&url, tok, &name, &hdir)
                .await
                .with_context(|| format!("enrolling {name}"))?;
            Ok::<_, anyhow::Error>((name, hdir, i as u64))
        });
    }
    while let Some(r) = enrolls.join_next().await {
        let (name, hdir, seed) = r.context("an enrollment task died")??;
        let runtime = Arc::new(SimRuntime::new(&name, settings, seed));
        let link = Arc::new(Link::new(
            LinkConfig {
                central: central.clone(),
                dir: hdir,
                heartbeat: Duration::from_secs_f64(a.heartbeat),
                backoff_max: Duration::from_secs(5),
                roost_version: env!("CARGO_PKG_VERSION").into(),
            },
            runtime,
        ));
        links.push(Arc::clone(&link));
        tokio::spawn(link.run(stop_rx.clone()));
    }
    // Ready when every link is up.
    loop {
        let up = links
            .iter()
            .filter(|l| l.status().borrow().connected)
            .count();
        if up == links.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "sim: {} hosts in {} subclouds linked in {:.1}s",
        a.hosts,
        a.subclouds,
        started.elapsed().as_secs_f64()
    );
    roost_host::daemon::wait_for_signal().await;
    let _ = stop_tx.send(true);
    Ok(())
}

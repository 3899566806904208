//! Client verbs (`apply`, `ps`, `inspect`, `logs`, `stop`, `start`, `rm`, `events`,
//! `host info`): parse flags, call the daemon's API, print. Exit 0 on success, 1 on
//! failure (one clear line on stderr), 2 on usage errors (clap).

use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use hyper::{Method, StatusCode};
use roost_host::client::{Client, Reply};
use roost_host::model::{Event, WorkloadRecord};
use serde_json::Value;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the daemon listens.
#[derive(Debug, Args, Clone)]
pub struct Conn {
    /// The daemon's API socket [env: ROOST_SOCKET; default: $ROOST_HOME/roost.sock or /var/lib/roost/roost.sock].
    #[arg(long, global = true)]
    pub socket: Option<PathBuf>,
    /// A daemon's TCP listener instead (`roost host --listen`), e.g. https://10.0.0.5:7443 [env: ROOST_ADDR].
    #[arg(long, global = true, value_name = "URL")]
    pub addr: Option<String>,
    /// The bearer token for --addr, in a file [env: ROOST_TOKEN_FILE].
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the daemon's certificate, for --addr [env: ROOST_CACERT; default: the system's CA bundle].
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

impl Conn {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if self.socket.is_some() && self.addr.is_some() {
            return Err(anyhow!("give --socket or --addr, not both"));
        }
        let addr = match &self.socket {
            Some(_) => None,
            None => self
                .addr
                .clone()
                .or_else(|| env("ROOST_ADDR").map(|v| v.to_string_lossy().into_owned())),
        };
        let Some(addr) = addr else {
            let p = self
                .socket
                .clone()
                .or_else(|| env("ROOST_SOCKET").map(PathBuf::from))
                .or_else(|| env("ROOST_HOME").map(|h| PathBuf::from(h).join("roost.sock")))
                .unwrap_or_else(|| PathBuf::from("/var/lib/roost/roost.sock"));
            return Ok(Client::new(p));
        };
        let token_file = self
            .token_file
            .clone()
            .or_else(|| env("ROOST_TOKEN_FILE").map(PathBuf::from))
            .ok_or_else(|| {
                anyhow!("--addr needs --token-file FILE holding the daemon's bearer token (or ROOST_TOKEN_FILE)")
            })?;
        let token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read the token file {}", token_file.display()))?;
        let ca_file = self
            .ca_file
            .clone()
            .or_else(|| env("ROOST_CACERT").map(PathBuf::from));
        let ca = match &ca_file {
            Some(f) => Some(
                std::fs::read(f)
                    .with_context(|| format!("cannot read the CA file {}", f.display()))?,
            ),
            None => None,
        };
        Ok(Client::remote(&addr, &token, ca.as_deref())?)
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Spec file (YAML or JSON; several YAML documents allowed); `-` reads stdin.
    #[arg(short = 'f', long = "file", required = true)]
    pub file: PathBuf,
    /// Also remove every workload on the host that the file does not name.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// Workload name.
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Workload name.
    pub name: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: Output,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Workload name.
    pub name: String,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep streaming new events.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub cursor: u64,
    /// Only events of this workload.
    #[arg(long)]
    pub workload: Option<String>,
    /// Print raw NDJSON.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: Output,
    #[command(flatten)]
    pub conn: Conn,
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Show a spinner on stderr when `fut` takes over a second (and stderr is a terminal).
pub(crate) async fn spin<T>(msg: &str, fut: impl std::future::Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return fut.await;
    }
    tokio::pin!(fut);
    let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut i = 0usize;
    let mut shown = false;
    loop {
        tokio::select! {
            out = &mut fut => {
                if shown {
                    eprint!("\r\x1b[2K");
                }
                return out;
            }
            _ = tick.tick() => {
                if start.elapsed() >= Duration::from_secs(1) {
                    shown = true;
                    eprint!("\r{} {msg}", frames[i % frames.len()]);
                    let _ = std::io::stderr().flush();
                    i += 1;
                }
            }
        }
    }
}

/// Turn an error reply into one clear error (plus field details).
pub(crate) fn fail(r: &Reply) -> anyhow::Error {
    match r.json() {
        Ok(v) => {
            let mut s = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("the daemon refused the request")
                .to_string();
            if let Some(d) = v.get("details").and_then(Value::as_array) {
                for f in d {
                    s.push_str(&format!(
                        "\n  {}: {}",
                        f.get("field").and_then(Value::as_str).unwrap_or("?"),
                        f.get("message").and_then(Value::as_str).unwrap_or("?")
                    ));
                }
            }
            anyhow!(s)
        }
        Err(_) => anyhow!(
            "the daemon answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ),
    }
}

fn print_value(v: &Value, out: Output) -> anyhow::Result<()> {
    match out {
        Output::Json | Output::Table => println!("{}", serde_json::to_string_pretty(v)?),
        Output::Yaml => print!("{}", serde_saphyr::to_string(v)?),
    }
    Ok(())
}

/// Read the spec documents of a file (YAML multi-doc or JSON).
fn read_docs(file: &PathBuf) -> anyhow::Result<Vec<Value>> {
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", file.display()))?;
        return Ok(match v {
            Value::Array(a) => a,
            v => vec![v],
        });
    }
    let mut docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .with_context(|| format!("{} is not valid YAML", file.display()))?;
    docs.retain(|v| !v.is_null());
    if docs.is_empty() {
        return Err(anyhow!("{} holds no workload spec", file.display()));
    }
    Ok(docs)
}

pub fn apply(a: ApplyArgs) -> anyhow::Result<ExitCode> {
    let docs = read_docs(&a.file)?;
    let body = serde_json::to_vec(&serde_json::json!({"workloads": docs, "prune": a.prune}))?;
    let client = a.conn.client()?;
    let r = runtime()?.block_on(spin(
        "applying",
        client.request(Method::POST, "/v1/apply", Some(body)),
    ))?;
    if r.status == StatusCode::BAD_REQUEST
        || (r.status.is_client_error() && r.status != StatusCode::UNPROCESSABLE_ENTITY)
    {
        return Err(fail(&r));
    }
    let v = r.json()?;
    let Some(results) = v.get("results").and_then(Value::as_array) else {
        return Err(fail(&r));
    };
    // A set refused as a whole (its problems in details) has no results.
    if !r.status.is_success() && !results.iter().any(|x| x["action"] == "error") {
        return Err(fail(&r));
    }
    let mut ok = true;
    for res in results {
        let name = res.get("name").and_then(Value::as_str).unwrap_or("?");
        let action = res.get("action").and_then(Value::as_str).unwrap_or("?");
        if action == "error" {
            ok = false;
            let e = res.get("error").cloned().unwrap_or(Value::Null);
            let mut msg = e
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("failed")
                .to_string();
            if let Some(d) = e.get("details").and_then(Value::as_array) {
                for f in d {
                    msg.push_str(&format!(
                        "\n  {}: {}",
                        f.get("field").and_then(Value::as_str).unwrap_or("?"),
                        f.get("message").and_then(Value::as_str).unwrap_or("?")
                    ));
                }
            }
            eprintln!("error: workload/{name}: {msg}");
        } else {
            println!("workload/{name} {action}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn age(ms: Option<u64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

pub fn ps(a: PsArgs) -> anyhow::Result<ExitCode> {
    let r = runtime()?.block_on(a.conn.client()?.request(Method::GET, "/v1/workloads", None))?;
    if !r.status.is_success() {
        return Err(fail(&r));
    }
    let v = r.json()?;
    if !matches!(a.output, Output::Table) {
        print_value(&v, a.output)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The API's own record type, not JSON pointers: a renamed field fails here.
    let recs: Vec<WorkloadRecord> = serde_json::from_value(v)
        .context("the daemon's workload list does not match this CLI's record type")?;
    let rows = recs
        .iter()
        .map(|w| {
            let s = &w.status;
            let exit = match &s.last_exit {
                Some(e) => match e.code {
                    Some(c) => format!("{} ({c})", e.reason),
                    None => e.reason.clone(),
                },
                None => "-".into(),
            };
            vec![
                w.name().to_string(),
                w.workload.spec.driver.as_str().to_string(),
                s.phase.as_str().to_string(),
                s.instance.to_string(),
                s.restarts.to_string(),
                age(Some(w.created_at_ms)),
                exit,
            ]
        })
        .collect();
    print_table(
        &[
            "NAME",
            "DRIVER",
            "STATUS",
            "RUN",
            "RESTARTS",
            "AGE",
            "LAST EXIT",
        ],
        &[false, false, false, true, true, true, false],
        rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// A table whose columns are as wide as their widest cell (`right`: numbers).
pub(crate) fn print_table(head: &[&str], right: &[bool], rows: Vec<Vec<String>>) {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (c, cell) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(c) {
                *x = (*x).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (c, cell) in cells.into_iter().enumerate() {
            let width = w.get(c).copied().unwrap_or(0);
            let pad = " ".repeat(width.saturating_sub(cell.chars().count()));
            if c > 0 {
                out.push_str("  ");
            }
            if right.get(c).copied().unwrap_or(false) {
                out.push_str(&pad);
                out.push_str(&cell);
            } else {
                out.push_str(&cell);
                if c < last {
                    out.push_str(&pad);
                }
            }
        }
        println!("{}", out.trim_end());
    };
    line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}

pub fn inspect(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/v1/workloads/{}", a.name);
    let r = runtime()?.block_on(a.conn.client()?.request(Method::GET, &path, None))?;
    if !r.status.is_success() {
        return Err(fail(&r));
    }
    print_value(&r.json()?, a.output)?;
    Ok(ExitCode::SUCCESS)
}

fn verb(a: NameArgs, action: &str, method: Method, past: &str) -> anyhow::Result<ExitCode> {
    let path = if action.is_empty() {
        format!("/v1/workloads/{}", a.name)
    } else {
        format!("/v1/workloads/{}/{action}", a.name)
    };
    let client = a.conn.client()?;
    let msg = format!(
        "{} {}",
        if action.is_empty() {
            "removing"
        } else {
            action
        },
        a.name
    );
    let r = runtime()?.block_on(spin(&msg, client.request(method, &path, None)))?;
    if !r.status.is_success() {
        return Err(fail(&r));
    }
    let v = r.json()?;
    let phase = v
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("?");
    if action.is_empty() {
        println!("workload/{} {past}", a.name);
    } else {
        println!("workload/{} {past} ({phase})", a.name);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stop(a: NameArgs) -> anyhow::Result<ExitCode> {
    verb(a, "stop", Method::POST, "stopped")
}

pub fn start(a: NameArgs) -> anyhow::Result<ExitCode> {
    verb(a, "start", Method::POST, "started")
}

pub fn rm(a: NameArgs) -> anyhow::Result<ExitCode> {
    verb(a, "", Method::DELETE, "removed")
}

pub fn logs(a: LogsArgs) -> anyhow::Result<ExitCode> {
    let mut path = format!("/v1/workloads/{}/logs?follow={}", a.name, a.follow);
    if let Some(t) = a.tail {
        path.push_str(&format!("&tail={t}"));
    }
    let client = a.conn.client()?;
    let mut err = Vec::new();
    let status = runtime()?.block_on(client.stream(&path, |chunk| {
        err.extend_from_slice(chunk);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(chunk);
        let _ = out.flush();
        if err.len() > 64 * 1024 {
            err.clear();
        }
    }))?;
    if !status.is_success() {
        return Err(fail(&Reply {
            status,
            body: err.into(),
            content_type: None,
        }));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn events(a: EventsArgs) -> anyhow::Result<ExitCode> {
    let mut path = format!("/v1/events?cursor={}&follow={}", a.cursor, a.follow);
    if let Some(w) = &a.workload {
        path.push_str(&format!("&workload={w}"));
    }
    let raw = !matches!(a.output, Output::Table);
    let client = a.conn.client()?;
    let mut buf: Vec<u8> = Vec::new();
    let status = runtime()?.block_on(client.stream(&path, |chunk| {
        buf.extend_from_slice(chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let mut out = std::io::stdout().lock();
            if raw {
                let _ = out.write_all(&line);
            } else if let Ok(e) = serde_json::from_slice::<Event>(&line) {
                // A stream: the columns cannot wait for the widest cell.
                let who = if e.workload.is_empty() {
                    "(daemon)"
                } else {
                    e.workload.as_str()
                };
                let at = roost_container::client::rfc3339(
                    std::time::UNIX_EPOCH + Duration::from_millis(e.time_ms),
                );
                let _ = writeln!(
                    out,
                    "{:>6} {at} {:<20} {:<14} {}",
                    e.seq, who, e.kind, e.message
                );
            }
            let _ = out.flush();
        }
    }))?;
    if !status.is_success() {
        return Err(fail(&Reply {
            status,
            body: buf.into(),
            content_type: None,
        }));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn host_info(a: InfoArgs) -> anyhow::Result<ExitCode> {
    let r = runtime()?.block_on(a.conn.client()?.request(Method::GET, "/v1/host", None))?;
    if !r.status.is_success() {
        return Err(fail(&r));
    }
    print_value(&r.json()?, a.output)?;
    Ok(ExitCode::SUCCESS)
}

//! `roost central VERB`: the operator's client of central's API. Each verb parses its
//! flags, makes one request (two for some tables), and prints a table (`-o table`) or
//! the API's JSON exactly (`-o json`). Exit 0 on success, 1 on failure (`error: ...`
//! plus one `  field: message` line per bad field), 2 on usage errors (clap).

mod conn;
mod release;
mod render;
mod strategy;

pub use conn::Conn;

use clap::{Args, Subcommand, ValueEnum};
use conn::Remote;
use hyper::Method;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// What went wrong in a verb; each names the flag, file or field and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A connection setting is missing or wrong.
    #[error("{0}")]
    Setting(String),
    /// A file could not be read.
    #[error("cannot read {what} `{path}`: {reason}")]
    Read {
        /// What the file is for.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error and what to do.
        reason: String,
    },
    /// Nothing answered, or TLS failed.
    #[error("cannot reach central at {addr}: {reason}")]
    Connect {
        /// The URL.
        addr: String,
        /// Why, and what to check.
        reason: String,
    },
    /// The exchange broke off.
    #[error("request to central at {addr} failed: {reason}")]
    Http {
        /// The URL.
        addr: String,
        /// Why.
        reason: String,
    },
    /// Central refused the request; its message and each field problem.
    #[error("{}", server_text(.error, .details))]
    Server {
        /// HTTP status.
        status: u16,
        /// Central's one line.
        error: String,
        /// (field, message) pairs.
        details: Vec<(String, String)>,
    },
    /// Central's answer is not what the API documents.
    #[error(
        "central answered {status} with a body that is not the expected JSON ({reason}): {body}"
    )]
    Answer {
        /// HTTP status.
        status: u16,
        /// What did not parse.
        reason: String,
        /// The start of the body.
        body: String,
    },
    /// The set file is unreadable as YAML or JSON.
    #[error("{path}: {reason}")]
    Input {
        /// The file (`-` = stdin).
        path: String,
        /// What is wrong and the fix.
        reason: String,
    },
    /// The request succeeded but what it found is a failure (exit 1).
    #[error("{0}")]
    Verdict(String),
    /// The client's event loop could not start.
    #[error("cannot start the client runtime: {0}")]
    Runtime(String),
}

fn server_text(error: &str, details: &[(String, String)]) -> String {
    let mut s = error.to_string();
    for (f, m) in details {
        let line = format!("{f}: {m}");
        // A one-field error already says it in its first line.
        if details.len() == 1 && error.contains(&line) {
            continue;
        }
        s.push_str(&format!("\n  {line}"));
    }
    s
}

/// `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human tables.
    Table,
    /// The API's JSON, exactly.
    Json,
}

/// Flags every verb takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Output format: a table, or the API's JSON exactly.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    pub output: Output,
    #[command(flatten)]
    pub conn: Conn,
}

/// The operator's verbs.
#[derive(Debug, Subcommand)]
pub enum CentralCmd {
    /// The fleet in numbers: subclouds, hosts online, sync, alarms.
    Status(Common),
    /// Subclouds: add, ls, show, manage, unmanage, sync, upgrade, rm.
    Subcloud(SubcloudArgs),
    /// Groups of subclouds: add, ls, rm.
    Group(GroupArgs),
    /// Enrolled hosts: ls, show, revoke.
    Host(HostArgs),
    /// Join tokens for new hosts.
    Token(TokenArgs),
    /// Deploy (or update) a workload set at a group, subcloud or host.
    Deploy(DeployArgs),
    /// Remove a workload set from a target.
    Undeploy(UndeployArgs),
    /// Alarms raised by hosts (and by central for silent hosts).
    Alarm(AlarmArgs),
    /// Central's event log (resumable with --cursor; -f keeps following).
    Events(EventsArgs),
    /// Orchestration strategies: roll a set or a release across subclouds.
    Strategy(strategy::StrategyArgs),
    /// Roost releases central serves to hosts: add, ls, rm.
    Release(release::ReleaseArgs),
    /// Audit the fleet's sync now: every linked host reports afresh; exits 1 if any
    /// host is out of sync or did not answer.
    Audit(AuditArgs),
}

/// `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How long to wait for the hosts' answers, e.g. 30s (1s to 600s).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub wait: String,
    #[command(flatten)]
    pub common: Common,
}

/// `subcloud`.
#[derive(Debug, Args)]
pub struct SubcloudArgs {
    #[command(subcommand)]
    pub cmd: SubcloudCmd,
    #[command(flatten)]
    pub common: Common,
}

/// `subcloud` verbs.
#[derive(Debug, Subcommand)]
pub enum SubcloudCmd {
    /// Add a subcloud (managed from the start).
    Add {
        /// DNS-label style name.
        name: String,
        /// Its group [default: default].
        #[arg(long)]
        group: Option<String>,
    },
    /// List subclouds.
    Ls,
    /// One subcloud and its hosts.
    Show {
        /// Subcloud name.
        name: String,
    },
    /// Push desired state to it from now on.
    Manage {
        /// Subcloud name.
        name: String,
    },
    /// Only watch it from now on (nothing pushed).
    Unmanage {
        /// Subcloud name.
        name: String,
    },
    /// Push its desired state to its online hosts now.
    Sync {
        /// Subcloud name.
        name: String,
    },
    /// Remove a subcloud without hosts or deployments.
    Rm {
        /// Subcloud name.
        name: String,
    },
    /// Set labels (`k=v`) and remove them (`k-`); strategies select subclouds by them.
    Label {
        /// Subcloud name.
        name: String,
        /// `key=value` to set, `key-` to remove.
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Move its hosts to a Roost release (`--version V`), or stop asking (`--clear`).
    Upgrade(release::UpgradeArgs),
}

/// `group`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub cmd: GroupCmd,
    #[command(flatten)]
    pub common: Common,
}

/// `group` verbs.
#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Add a group.
    Add {
        /// DNS-label style name.
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List groups.
    Ls,
    /// Remove an empty group.
    Rm {
        /// Group name.
        name: String,
    },
}

/// `host`.
#[derive(Debug, Args)]
pub struct HostArgs {
    #[command(subcommand)]
    pub cmd: HostCmd,
    #[command(flatten)]
    pub common: Common,
}

/// `host` verbs.
#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// List enrolled hosts.
    Ls,
    /// One host: status, workloads, sync differences.
    Show {
        /// Host name.
        name: String,
    },
    /// Cut a host off now and refuse its certificate from then on.
    Revoke {
        /// Host name.
        name: String,
    },
}

/// `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub cmd: TokenCmd,
    #[command(flatten)]
    pub common: Common,
}

/// `token` verbs.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Make a one-time join token; prints the token alone on stdout.
    Create {
        /// The subcloud the host joins.
        #[arg(long)]
        subcloud: String,
        /// Lifetime, e.g. 30m, 1h, 7d [default: 1h].
        #[arg(long)]
        ttl: Option<String>,
    },
}

/// `deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The WorkloadSet file (YAML or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// `group/NAME`, `subcloud/NAME` or `host/NAME`.
    #[arg(long)]
    pub target: String,
    #[command(flatten)]
    pub common: Common,
}

/// `undeploy`.
#[derive(Debug, Args)]
pub struct UndeployArgs {
    /// The set's name.
    pub set: String,
    /// Where it is deployed: `group/NAME`, `subcloud/NAME` or `host/NAME`.
    #[arg(long)]
    pub target: String,
    #[command(flatten)]
    pub common: Common,
}

/// `alarm`.
#[derive(Debug, Args)]
pub struct AlarmArgs {
    #[command(subcommand)]
    pub cmd: AlarmCmd,
    #[command(flatten)]
    pub common: Common,
}

/// `alarm` verbs.
#[derive(Debug, Subcommand)]
pub enum AlarmCmd {
    /// List alarms, newest first.
    Ls {
        /// Only this subcloud's.
        #[arg(long)]
        subcloud: Option<String>,
        /// Only this host's.
        #[arg(long)]
        host: Option<String>,
        /// Only this severity: critical, major, minor or warning.
        #[arg(long)]
        severity: Option<String>,
        /// Only alarms not cleared.
        #[arg(long)]
        active: bool,
    },
}

/// `events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep streaming new events.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only events after this sequence number.
    #[arg(long, default_value_t = 0)]
    pub cursor: u64,
    #[command(flatten)]
    pub common: Common,
}

/// Run one verb.
pub fn run(cmd: CentralCmd) -> anyhow::Result<ExitCode> {
    dispatch(cmd)?;
    Ok(ExitCode::SUCCESS)
}

fn dispatch(cmd: CentralCmd) -> Result<(), CliError> {
    match cmd {
        CentralCmd::Status(c) => {
            let (remote, out) = (c.conn.remote()?, c.output);
            let body = remote.call(Method::GET, "/v1/status", None)?;
            show(out, &body, render::status)
        }
        CentralCmd::Subcloud(a) => subcloud(a),
        CentralCmd::Group(a) => group(a),
        CentralCmd::Host(a) => host(a),
        CentralCmd::Token(a) => token(a),
        CentralCmd::Deploy(a) => deploy(a),
        CentralCmd::Undeploy(a) => {
            let remote = a.common.conn.remote()?;
            let req = json!({"set": a.set, "target": a.target});
            let body = remote.call(Method::POST, "/v1/undeploy", Some(req))?;
            show(a.common.output, &body, render::undeployed)
        }
        CentralCmd::Alarm(a) => alarm(a),
        CentralCmd::Events(a) => events(a),
        CentralCmd::Strategy(a) => strategy::run(a),
        CentralCmd::Release(a) => release::run(a),
        CentralCmd::Audit(a) => {
            let remote = a.common.conn.remote()?;
            let path = format!("/v1/audit?wait={}", seg(&a.wait));
            let body = remote.call(Method::POST, &path, None)?;
            show(a.common.output, &body, render::audit)?;
            let v = parse(&body)?;
            let clean = v.pointer("/outOfSync").and_then(Value::as_u64) == Some(0)
                && v.pointer("/asked") == v.pointer("/answered");
            if clean {
                Ok(())
            } else {
                Err(CliError::Verdict("the fleet is not all in sync".into()))
            }
        }
    }
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The API's body as JSON (for tables).
fn parse(body: &Reply) -> Result<Value, CliError> {
    serde_json::from_slice(&body.bytes).map_err(|e| CliError::Answer {
        status: body.status,
        reason: e.to_string(),
        body: String::from_utf8_lossy(&body.bytes[..body.bytes.len().min(200)]).into_owned(),
    })
}

/// Print `body` as the API's JSON exactly, or as `table` renders it.
fn show(out: Output, body: &Reply, table: fn(&Value) -> String) -> Result<(), CliError> {
    match out {
        Output::Json => print_raw(&body.bytes),
        // Not print!: a reader that went away (`| head`) must not panic us.
        Output::Table => {
            let _ = std::io::stdout()
                .lock()
                .write_all(table(&parse(body)?).as_bytes());
        }
    }
    Ok(())
}

fn print_raw(b: &[u8]) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(b);
    if !b.ends_with(b"\n") {
        let _ = o.write_all(b"\n");
    }
    let _ = o.flush();
}

/// A successful answer.
pub struct Reply {
    status: u16,
    bytes: Vec<u8>,
}

fn subcloud(a: SubcloudArgs) -> Result<(), CliError> {
    let (remote, out) = (a.common.conn.remote()?, a.common.output);
    match a.cmd {
        SubcloudCmd::Add { name, group } => {
            let mut req = json!({"name": name});
            if let Some(g) = group {
                req["group"] = Value::String(g);
            }
            let body = remote.call(Method::POST, "/v1/subclouds", Some(req))?;
            show(out, &body, |v| render::subcloud_line(v, "added"))
        }
        SubcloudCmd::Ls => {
            let body = remote.call(Method::GET, "/v1/subclouds", None)?;
            if out == Output::Json {
                return show(out, &body, render::status);
            }
            // The last time any of its hosts was heard from comes from the host list.
            let hosts = parse(&remote.call(Method::GET, "/v1/hosts", None)?)?;
            print_raw(render::subclouds(&parse(&body)?, &hosts).as_bytes());
            Ok(())
        }
        SubcloudCmd::Show { name } => {
            let body = remote.call(Method::GET, &format!("/v1/subclouds/{}", seg(&name)), None)?;
            show(out, &body, render::subcloud)
        }
        SubcloudCmd::Manage { name } => {
            let path = format!("/v1/subclouds/{}/manage", seg(&name));
            show(out, &remote.call(Method::POST, &path, None)?, |v| {
                render::subcloud_line(v, "managed")
            })
        }
        SubcloudCmd::Unmanage { name } => {
            let path = format!("/v1/subclouds/{}/unmanage", seg(&name));
            show(out, &remote.call(Method::POST, &path, None)?, |v| {
                render::subcloud_line(v, "unmanaged")
            })
        }
        SubcloudCmd::Sync { name } => {
            let path = format!("/v1/subclouds/{}/sync", seg(&name));
            let body = remote.call(Method::POST, &path, None)?;
            if out == Output::Json {
                print_raw(&body.bytes);
                return Ok(());
            }
            print_raw(render::synced(&name, &parse(&body)?).as_bytes());
            Ok(())
        }
        SubcloudCmd::Label { name, labels } => {
            let mut set = serde_json::Map::new();
            let mut remove = Vec::new();
            for l in labels {
                if let Some((k, v)) = l.split_once('=') {
                    set.insert(k.to_string(), Value::String(v.to_string()));
                } else if let Some(k) = l.strip_suffix('-') {
                    remove.push(Value::String(k.to_string()));
                } else {
                    return Err(CliError::Setting(format!(
                        "label `{l}`: write `key=value` to set a label or `key-` to remove it"
                    )));
                }
            }
            let path = format!("/v1/subclouds/{}/labels", seg(&name));
            let req = json!({"set": set, "remove": remove});
            show(out, &remote.call(Method::POST, &path, Some(req))?, |v| {
                render::subcloud_line(v, "labelled")
            })
        }
        SubcloudCmd::Upgrade(u) => release::upgrade(&remote, out, u),
        SubcloudCmd::Rm { name } => {
            let path = format!("/v1/subclouds/{}", seg(&name));
            show(
                out,
                &remote.call(Method::DELETE, &path, None)?,
                render::removed,
            )
        }
    }
}

fn group(a: GroupArgs) -> Result<(), CliError> {
    let (remote, out) = (a.common.conn.remote()?, a.common.output);
    match a.cmd {
        GroupCmd::Add { name, description } => {
            let req = json!({"name": name, "description": description});
            let body = remote.call(Method::POST, "/v1/groups", Some(req))?;
            show(out, &body, |v| {
                format!("group/{} added\n", render::s(v, "/name"))
            })
        }
        GroupCmd::Ls => {
            let body = remote.call(Method::GET, "/v1/groups", None)?;
            if out == Output::Json {
                print_raw(&body.bytes);
                return Ok(());
            }
            let subs = parse(&remote.call(Method::GET, "/v1/subclouds", None)?)?;
            print_raw(render::groups(&parse(&body)?, &subs).as_bytes());
            Ok(())
        }
        GroupCmd::Rm { name } => {
            let path = format!("/v1/groups/{}", seg(&name));
            show(
                out,
                &remote.call(Method::DELETE, &path, None)?,
                render::removed,
            )
        }
    }
}

fn host(a: HostArgs) -> Result<(), CliError> {
    let (remote, out) = (a.common.conn.remote()?, a.common.output);
    match a.cmd {
        HostCmd::Ls => show(
            out,
            &remote.call(Method::GET, "/v1/hosts", None)?,
            render::hosts,
        ),
        HostCmd::Show { name } => {
            let path = format!("/v1/hosts/{}", seg(&name));
            show(out, &remote.call(Method::GET, &path, None)?, render::host)
        }
        HostCmd::Revoke { name } => {
            let path = format!("/v1/hosts/{}/revoke", seg(&name));
            show(out, &remote.call(Method::POST, &path, None)?, |v| {
                format!("host/{} revoked\n", render::s(v, "/name"))
            })
        }
    }
}

fn token(a: TokenArgs) -> Result<(), CliError> {
    let (remote, out) = (a.common.conn.remote()?, a.common.output);
    let TokenCmd::Create { subcloud, ttl } = a.cmd;
    let mut req = json!({"subcloud": subcloud});
    if let Some(t) = ttl {
        req["ttl"] = Value::String(t);
    }
    let body = remote.call(Method::POST, "/v1/tokens", Some(req))?;
    let v = parse(&body)?;
    let tok = render::s(&v, "/token");
    match out {
        Output::Json => print_raw(&body.bytes),
        Output::Table => println!("{tok}"),
    }
    eprintln!(
        "token {} for subcloud {}, one use, expires {}\njoin a host with: roost host --join {} --join-token {tok}",
        render::s(&v, "/id"),
        render::s(&v, "/subcloud"),
        render::when(v.pointer("/expiresMs").and_then(Value::as_u64).unwrap_or(0)),
        remote.url(),
    );
    Ok(())
}

/// The one document of a set file (YAML or JSON), as JSON, unvalidated: central
/// validates it and names every bad field.
fn read_set(file: &std::path::Path) -> Result<Value, CliError> {
    let name = file.display().to_string();
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::Read {
                what: "the workload set from",
                path: "stdin".into(),
                reason: e.to_string(),
            })?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| CliError::Read {
            what: "the workload set file",
            path: file.to_path_buf(),
            reason: e.to_string(),
        })?
    };
    parse_set(&name, &text)
}

fn parse_set(name: &str, text: &str) -> Result<Value, CliError> {
    let input = |reason: String| CliError::Input {
        path: name.to_string(),
        reason,
    };
    let mut docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| input(format!("not valid YAML or JSON: {e}")))?;
    docs.retain(|v| !v.is_null());
    match docs.len() {
        1 => Ok(docs.remove(0)),
        0 => Err(input(
            "holds no workload set: give a document with `kind: WorkloadSet`, `metadata.name` and `spec.workloads`".into(),
        )),
        n => Err(input(format!(
            "holds {n} YAML documents; a workload set is one document (put the workloads under `spec.workloads`)"
        ))),
    }
}

fn deploy(a: DeployArgs) -> Result<(), CliError> {
    let set = read_set(&a.file)?;
    let remote = a.common.conn.remote()?;
    let req = json!({"set": set, "target": a.target});
    let body = remote.call(Method::POST, "/v1/deploy", Some(req))?;
    show(a.common.output, &body, render::deployed)
}

fn alarm(a: AlarmArgs) -> Result<(), CliError> {
    let (remote, out) = (a.common.conn.remote()?, a.common.output);
    let AlarmCmd::Ls {
        subcloud,
        host,
        severity,
        active,
    } = a.cmd;
    let mut q = Vec::new();
    for (k, v) in [
        ("subcloud", subcloud),
        ("host", host),
        ("severity", severity),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", seg(&v)));
        }
    }
    if active {
        q.push("active=true".into());
    }
    let path = if q.is_empty() {
        "/v1/alarms".to_string()
    } else {
        format!("/v1/alarms?{}", q.join("&"))
    };
    show(out, &remote.call(Method::GET, &path, None)?, render::alarms)
}

fn events(a: EventsArgs) -> Result<(), CliError> {
    let (remote, out) = (a.common.conn.remote()?, a.common.output);
    let path = format!("/v1/events?cursor={}&follow={}", a.cursor, a.follow);
    let mut header = out == Output::Table;
    remote.stream_lines(&path, |line| {
        // Heartbeats are empty lines.
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let mut o = std::io::stdout().lock();
        if out == Output::Json {
            let _ = o.write_all(line);
        } else if let Ok(e) = serde_json::from_slice::<Value>(line) {
            if header {
                let _ = writeln!(o, "{}", render::EVENT_HEADER);
                header = false;
            }
            let _ = writeln!(o, "{}", render::event(&e));
        }
        let _ = o.flush();
    })
}

impl Remote {
    /// One request; a non-2xx answer becomes [`CliError::Server`].
    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Reply, CliError> {
        let body = body.map(|b| b.to_string().into_bytes());
        let r = self.block_on(self.client.request(method, path, body))?;
        let status = r.status.as_u16();
        let bytes = r.body.to_vec();
        if !r.status.is_success() {
            return Err(server_error(status, &bytes));
        }
        Ok(Reply { status, bytes })
    }

    /// A streamed GET of NDJSON: `line` sees each complete line as it comes.
    fn stream_lines(&self, path: &str, mut line: impl FnMut(&[u8])) -> Result<(), CliError> {
        let mut buf: Vec<u8> = Vec::new();
        let status = self.block_on(self.client.stream(path, |chunk| {
            buf.extend_from_slice(chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = buf.drain(..=i).collect();
                line(&l);
            }
        }))?;
        // An error answer is one JSON object without a newline: it stays in `buf`.
        if !status.is_success() {
            return Err(server_error(status.as_u16(), &buf));
        }
        Ok(())
    }
}

/// Central's error body (`{error, details[]}`) as a [`CliError::Server`].
fn server_error(status: u16, body: &[u8]) -> CliError {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return CliError::Server {
                status,
                error: format!(
                    "central answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(500)]).trim()
                ),
                details: Vec::new(),
            }
        }
    };
    let error = v
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("central answered {status}"));
    let details = v
        .get("details")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .map(|f| {
                    (
                        render::s(f, "/field").to_string(),
                        render::s(f, "/message").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    CliError::Server {
        status,
        error,
        details,
    }
}

//! `roost central strategy create|ls|show|apply|approve|abort|rm`, and `show --watch`:
//! a live progress bar (done / failed / in flight / pending, rate and time left).

use super::conn::Remote;
use super::{parse, print_raw, read_set, seg, show, CliError, Common, Output, Reply};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// `strategy`.
#[derive(Debug, Args)]
pub struct StrategyArgs {
    #[command(subcommand)]
    pub cmd: StrategyCmd,
    #[command(flatten)]
    pub common: Common,
}

/// `strategy` verbs.
#[derive(Debug, Subcommand)]
pub enum StrategyCmd {
    /// Create a strategy (state initial; `apply` starts it, or pass --apply).
    Create(Box<CreateArgs>),
    /// List strategies with their progress.
    Ls,
    /// One strategy and every step; --watch follows it live until it ends.
    Show {
        /// Strategy name.
        name: String,
        /// Draw a live progress bar until the strategy ends or pauses (exit 1 if it
        /// fails or is aborted).
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Start an initial strategy.
    Apply {
        /// Strategy name.
        name: String,
    },
    /// Approve the canary: the strategy continues with the other subclouds.
    Approve {
        /// Strategy name.
        name: String,
    },
    /// Start no new steps; the steps in flight finish.
    Abort {
        /// Strategy name.
        name: String,
    },
    /// Remove a strategy that is not running.
    Rm {
        /// Strategy name.
        name: String,
    },
}

/// `strategy create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// DNS-label style name.
    pub name: String,
    /// Roll this WorkloadSet file (YAML or JSON; `-` reads stdin).
    #[arg(short = 'f', long = "file", conflicts_with = "release")]
    pub file: Option<PathBuf>,
    /// Roll this Roost release (added with `roost central release add`).
    #[arg(long)]
    pub release: Option<String>,
    /// Every subcloud of this group.
    #[arg(long, conflicts_with_all = ["subclouds", "selector"])]
    pub group: Option<String>,
    /// These subclouds, in this order (comma-separated).
    #[arg(long, value_delimiter = ',', conflicts_with = "selector")]
    pub subclouds: Option<Vec<String>>,
    /// Subclouds whose labels match `k=v,k2!=v2,k3`.
    #[arg(long)]
    pub selector: Option<String>,
    /// One subcloud at a time.
    #[arg(long, conflicts_with = "max_parallel")]
    pub serial: bool,
    /// The rolling window: up to N subclouds at once (1-10000) [default: 20].
    #[arg(long)]
    pub max_parallel: Option<u32>,
    /// Stop after the first failed subcloud (the default).
    #[arg(long, conflicts_with = "max_failures")]
    pub stop_on_failure: bool,
    /// Tolerate this many failed subclouds: a count (3) or a share (10%).
    #[arg(long)]
    pub max_failures: Option<String>,
    /// Offline subclouds: skip, fail, or wait:DURATION (e.g. wait:5m) [default: skip].
    #[arg(long)]
    pub offline: Option<String>,
    /// A subcloud's step completes after its workloads ran healthy this long (e.g. 30s).
    #[arg(long)]
    pub min_healthy: Option<String>,
    /// Pause for `approve` after the first N subclouds.
    #[arg(long)]
    pub canary: Option<u32>,
    /// Leave a failed subcloud as it is (by default it is rolled back).
    #[arg(long)]
    pub no_rollback: bool,
    /// A step not healthy within this long fails (e.g. 10m) [default: 10m].
    #[arg(long)]
    pub step_timeout: Option<String>,
    /// Apply it at once.
    #[arg(long)]
    pub apply: bool,
}

fn seconds(flag: &str, v: &str) -> Result<f64, CliError> {
    roost_federation::strategy::parse_duration_ms(v)
        .map(|ms| ms as f64 / 1000.0)
        .map_err(|e| CliError::Setting(format!("--{flag}: {e}")))
}

fn request(a: &CreateArgs) -> Result<Value, CliError> {
    let mut r = json!({"name": a.name});
    match (&a.file, &a.release) {
        (Some(f), _) => r["set"] = read_set(f)?,
        (None, Some(v)) => r["release"] = json!(v),
        (None, None) => {
            return Err(CliError::Setting(
                "give what to roll: -f SET_FILE (a workload set) or --release VERSION".into(),
            ))
        }
    }
    match (&a.group, &a.subclouds, &a.selector) {
        (Some(g), _, _) => r["group"] = json!(g),
        (None, Some(s), _) => r["subclouds"] = json!(s),
        (None, None, Some(s)) => r["selector"] = json!(s),
        (None, None, None) => {
            return Err(CliError::Setting(
                "give the target: --group NAME, --subclouds A,B or --selector k=v".into(),
            ))
        }
    }
    if a.serial {
        r["applyType"] = json!("serial");
    } else {
        r["applyType"] = json!("parallel");
        if let Some(n) = a.max_parallel {
            r["maxParallel"] = json!(n);
        }
    }
    if a.stop_on_failure {
        r["stopOnFailure"] = json!(true);
    }
    if let Some(m) = &a.max_failures {
        r["maxFailures"] = json!(m);
    }
    if let Some(o) = &a.offline {
        r["offline"] = json!(o);
    }
    if let Some(m) = &a.min_healthy {
        r["minHealthySeconds"] = json!(seconds("min-healthy", m)?);
    }
    if let Some(c) = a.canary {
        r["canary"] = json!(c);
    }
    if a.no_rollback {
        r["rollback"] = json!(false);
    }
    if let Some(t) = &a.step_timeout {
        r["stepTimeoutSeconds"] = json!(seconds("step-timeout", t)?);
    }
    Ok(r)
}

/// Run a `strategy` verb.
pub fn run(a: StrategyArgs) -> Result<(), CliError> {
    let (remote, out) = (a.common.conn.remote()?, a.common.output);
    let one = |name: &str| format!("/v1/strategies/{}", seg(name));
    match a.cmd {
        StrategyCmd::Create(c) => {
            let req = request(&c)?;
            let mut body = remote.call(Method::POST, "/v1/strategies", Some(req))?;
            if c.apply {
                body = remote.call(Method::POST, &format!("{}/apply", one(&c.name)), None)?;
            }
            show(out, &body, |v| {
                format!(
                    "strategy/{} created: {} subclouds, {}\n",
                    super::render::s(v, "/name"),
                    v.pointer("/progress/total")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                    super::render::s(v, "/state")
                )
            })
        }
        StrategyCmd::Ls => show(
            out,
            &remote.call(Method::GET, "/v1/strategies", None)?,
            list,
        ),
        StrategyCmd::Show { name, watch: false } => {
            show(out, &remote.call(Method::GET, &one(&name), None)?, detail)
        }
        StrategyCmd::Show { name, watch: true } => watch_it(&remote, out, &one(&name)),
        StrategyCmd::Apply { name } => verb(&remote, out, &one(&name), "apply", "applying"),
        StrategyCmd::Approve { name } => verb(&remote, out, &one(&name), "approve", "approved"),
        StrategyCmd::Abort { name } => verb(&remote, out, &one(&name), "abort", "aborting"),
        StrategyCmd::Rm { name } => show(
            out,
            &remote.call(Method::DELETE, &one(&name), None)?,
            super::render::removed,
        ),
    }
}

fn verb(remote: &Remote, out: Output, path: &str, v: &str, done: &str) -> Result<(), CliError> {
    let body = remote.call(Method::POST, &format!("{path}/{v}"), None)?;
    if out == Output::Json {
        print_raw(&body.bytes);
        return Ok(());
    }
    let x = parse(&body)?;
    let line = format!(
        "strategy/{} {done}: now {}\n",
        super::render::s(&x, "/name"),
        super::render::s(&x, "/state")
    );
    print_raw(line.as_bytes());
    Ok(())
}

fn count(v: &Value, k: &str) -> u64 {
    v.pointer(&format!("/progress/{k}"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn progress_text(v: &Value) -> String {
    format!(
        "{} done, {} failed, {} skipped, {} in flight, {} pending",
        count(v, "complete"),
        count(v, "failed") + count(v, "rolledBack"),
        count(v, "skipped"),
        count(v, "applying"),
        count(v, "pending"),
    )
}

fn list(v: &Value) -> String {
    let rows = v
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|x| {
            let change = x.pointer("/change").cloned().unwrap_or(Value::Null);
            let what = match (
                change.pointer("/set/set"),
                change.pointer("/release/version"),
            ) {
                (Some(s), _) => format!(
                    "set {} gen {}",
                    s.as_str().unwrap_or(""),
                    change
                        .pointer("/set/generation")
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                ),
                (_, Some(r)) => format!("release {}", r.as_str().unwrap_or("")),
                _ => "-".into(),
            };
            vec![
                super::render::s(x, "/name").to_string(),
                super::render::s(x, "/state").to_string(),
                what,
                format!(
                    "{}/{}",
                    count(x, "complete")
                        + count(x, "failed")
                        + count(x, "rolledBack")
                        + count(x, "skipped"),
                    count(x, "total")
                ),
                progress_text(x),
            ]
        })
        .collect();
    super::render::table(&["NAME", "STATE", "CHANGE", "ENDED", "PROGRESS"], rows)
}

fn detail(v: &Value) -> String {
    let mut out = format!(
        "strategy/{}: {} ({})\n{}\n\n",
        super::render::s(v, "/name"),
        super::render::s(v, "/state"),
        super::render::s(v, "/details"),
        progress_text(v)
    );
    let rows = v
        .pointer("/steps")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|s| {
            let t = |k: &str| s.pointer(k).and_then(Value::as_u64).unwrap_or(0);
            let took = match (t("/startedMs"), t("/finishedMs")) {
                (a, b) if a > 0 && b >= a => format!("{:.1}s", (b - a) as f64 / 1000.0),
                _ => "-".into(),
            };
            vec![
                super::render::s(s, "/subcloud").to_string(),
                super::render::s(s, "/state").to_string(),
                super::render::when(t("/startedMs")),
                took,
                super::render::s(s, "/details").to_string(),
            ]
        })
        .collect();
    out.push_str(&super::render::table(
        &["SUBCLOUD", "STATE", "STARTED", "TOOK", "DETAILS"],
        rows,
    ));
    out
}

/// Follow a strategy until it ends or pauses: a bar on a terminal, a line per change
/// otherwise.
fn watch_it(remote: &Remote, out: Output, path: &str) -> Result<(), CliError> {
    let tty = std::io::stdout().is_terminal() && out == Output::Table;
    let bar = if tty {
        let b = indicatif::ProgressBar::new(0);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} {msg}")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b.enable_steady_tick(Duration::from_millis(120));
        Some(b)
    } else {
        None
    };
    let start = Instant::now();
    let mut first_ended: Option<u64> = None;
    let mut last_line = String::new();
    loop {
        let body: Reply = remote.call(Method::GET, path, None)?;
        let v = parse(&body)?;
        let total = count(&v, "total");
        let ended = count(&v, "complete")
            + count(&v, "failed")
            + count(&v, "rolledBack")
            + count(&v, "skipped");
        let base = *first_ended.get_or_insert(ended);
        let secs = start.elapsed().as_secs_f64();
        let rate = if secs > 0.5 {
            (ended - base) as f64 / secs
        } else {
            0.0
        };
        let left = total.saturating_sub(ended);
        let eta = if rate > 0.0 {
            format!("{:.0}s left", left as f64 / rate)
        } else {
            "time left unknown".into()
        };
        let state = super::render::s(&v, "/state").to_string();
        let msg = format!("{state}: {}, {rate:.1}/s, {eta}", progress_text(&v));
        match &bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(ended);
                b.set_message(msg);
            }
            None if out == Output::Table && msg != last_line => {
                // A reader that went away (`| head`) ends the watch quietly.
                let mut o = std::io::stdout().lock();
                if writeln!(o, "{msg}").and_then(|()| o.flush()).is_err() {
                    return Ok(());
                }
                last_line = msg;
            }
            None => {}
        }
        if matches!(state.as_str(), "complete" | "failed" | "aborted" | "paused") {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            match out {
                Output::Json => print_raw(&body.bytes),
                Output::Table => {
                    let _ = std::io::stdout().lock().write_all(detail(&v).as_bytes());
                }
            }
            return match state.as_str() {
                "complete" | "paused" => Ok(()),
                _ => Err(CliError::Setting(format!(
                    "strategy {}: {}",
                    state,
                    super::render::s(&v, "/details")
                ))),
            };
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

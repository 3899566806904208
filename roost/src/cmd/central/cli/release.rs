//! `roost central release add|ls|rm` and `roost central subcloud upgrade`: the Roost
//! binaries central serves to hosts, and the release a subcloud's hosts should run.

use super::conn::Remote;
use super::{parse, print_raw, seg, server_error, show, CliError, Common, Output, Reply};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

/// `release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    pub cmd: ReleaseCmd,
    #[command(flatten)]
    pub common: Common,
}

/// `release` verbs.
#[derive(Debug, Subcommand)]
pub enum ReleaseCmd {
    /// Upload a Roost binary; hosts told to run VERSION fetch it and check its SHA-256.
    #[command(disable_version_flag = true)]
    Add {
        /// The binary.
        file: PathBuf,
        /// The version hosts report once they run it (0-9 A-Z a-z . + -, at most 64).
        #[arg(long)]
        version: String,
    },
    /// List releases.
    Ls,
    /// Remove a release no subcloud wants.
    #[command(disable_version_flag = true)]
    Rm {
        /// The version.
        version: String,
    },
}

/// `subcloud upgrade NAME --version V | --clear`.
#[derive(Debug, Args)]
#[command(disable_version_flag = true)]
pub struct UpgradeArgs {
    /// Subcloud name.
    pub name: String,
    /// The release its hosts should run (`roost central release ls`).
    #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
    pub version: Option<String>,
    /// Leave each host on what it runs.
    #[arg(long)]
    pub clear: bool,
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn releases_table(v: &Value) -> String {
    let mut out = format!(
        "{:<24}  {:<14}  {:>12}  {}\n",
        "VERSION", "SHA256", "SIZE", "ADDED"
    );
    for r in v.as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<24}  {:<14}  {:>12}  {}\n",
            super::render::s(r, "/version"),
            short(super::render::s(r, "/sha256")),
            r.pointer("/size").and_then(Value::as_u64).unwrap_or(0),
            super::render::when(r.pointer("/addedMs").and_then(Value::as_u64).unwrap_or(0)),
        ));
    }
    out
}

/// Run a `release` verb.
pub fn run(a: ReleaseArgs) -> Result<(), CliError> {
    let (remote, out) = (a.common.conn.remote()?, a.common.output);
    match a.cmd {
        ReleaseCmd::Add { file, version } => {
            let bytes = std::fs::read(&file).map_err(|e| CliError::Read {
                what: "the release binary",
                path: file.clone(),
                reason: e.to_string(),
            })?;
            let path = format!("/v1/releases?version={}", seg(&version));
            let r = remote.block_on(remote.client.request(Method::POST, &path, Some(bytes)))?;
            let status = r.status.as_u16();
            let body = r.body.to_vec();
            if !r.status.is_success() {
                return Err(server_error(status, &body));
            }
            let reply = Reply {
                status,
                bytes: body,
            };
            if out == Output::Json {
                print_raw(&reply.bytes);
                return Ok(());
            }
            let v = parse(&reply)?;
            println!(
                "release/{} {} (sha256 {}, {} bytes)",
                super::render::s(&v, "/version"),
                if status == 201 {
                    "added"
                } else {
                    "already there"
                },
                super::render::s(&v, "/sha256"),
                v.pointer("/size").and_then(Value::as_u64).unwrap_or(0)
            );
            Ok(())
        }
        ReleaseCmd::Ls => show(
            out,
            &remote.call(Method::GET, "/v1/releases", None)?,
            releases_table,
        ),
        ReleaseCmd::Rm { version } => {
            let path = format!("/v1/releases/{}", seg(&version));
            show(out, &remote.call(Method::DELETE, &path, None)?, |v| {
                format!("{} removed\n", super::render::s(v, "/removed"))
            })
        }
    }
}

/// `subcloud upgrade`.
pub fn upgrade(remote: &Remote, out: Output, a: UpgradeArgs) -> Result<(), CliError> {
    let req = match &a.version {
        Some(v) => json!({"version": v}),
        None => json!({"clear": true}),
    };
    let path = format!("/v1/subclouds/{}/release", seg(&a.name));
    let body = remote.call(Method::POST, &path, Some(req))?;
    if out == Output::Json {
        print_raw(&body.bytes);
        return Ok(());
    }
    let v = parse(&body)?;
    match super::render::s(&v, "/release") {
        "" => println!(
            "subcloud/{}: release cleared (hosts keep what they run)",
            a.name
        ),
        r => println!(
            "subcloud/{}: release {r} pushed to its online hosts ({} of {} online)",
            a.name,
            v.pointer("/hostsOnline")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            v.pointer("/hosts").and_then(Value::as_u64).unwrap_or(0)
        ),
    }
    Ok(())
}

//! `roost image import|pull|ls|rm|prune`: a front end over the daemon's image API
//! (`/v1/images`), like every other verb: `--socket` and `--addr` work, and the
//! daemon uses the containerd (and namespace) its container driver runs from.

use super::client::{fail, runtime, spin, Conn};
use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use hyper::Method;
use roost_host::images::ImageInfo;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout or a docker-archive (directory or tarball, may be
    /// gzipped); the CLI sends it to the daemon.
    Import {
        /// The archive or layout directory.
        file: PathBuf,
        /// Name for the image (when the archive has none, or only a tag).
        #[arg(long)]
        name: Option<String>,
    },
    /// Have the daemon pull from an OCI registry (loopback registries are spoken to
    /// over plain HTTP).
    Pull {
        /// Image reference, e.g. `registry.example/app:1.2` or `…@sha256:…`.
        reference: String,
        /// User for basic auth; the password is read from ROOST_REGISTRY_PASSWORD or stdin.
        #[arg(long)]
        username: Option<String>,
        /// Bearer token.
        #[arg(long, env = "ROOST_REGISTRY_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Registries (`host:port`) to reach over plain HTTP.
        #[arg(long = "insecure-registry")]
        insecure: Vec<String>,
    },
    /// List images (and the workloads using each).
    Ls {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Remove images (refused while a workload uses one).
    Rm {
        /// Image references.
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove every image no workload uses.
    Prune,
}

pub fn run(args: ImageArgs) -> anyhow::Result<ExitCode> {
    let client = args.conn.client()?;
    let rt = runtime()?;
    let call = |method: Method, path: &str, body: Option<Vec<u8>>, what: &str| {
        let r = rt.block_on(spin(what, client.request(method, path, body)))?;
        if !r.status.is_success() {
            return Err(fail(&r));
        }
        Ok::<_, anyhow::Error>(r)
    };
    match args.command {
        ImageCommand::Import { file, name } => {
            let body = archive(&file)?;
            let mut path = "/v1/images/import".to_string();
            if let Some(n) = name {
                path.push_str(&format!("?name={}", encode(&n)));
            }
            let r = call(Method::POST, &path, Some(body), "importing")?;
            for n in names(&r)? {
                println!("{n}");
            }
        }
        ImageCommand::Pull {
            reference,
            username,
            token,
            insecure,
        } => {
            let mut req = json!({"reference": reference, "insecureRegistries": insecure});
            if let Some(u) = username {
                req["username"] = json!(u);
                req["password"] = json!(password()?);
            } else if let Some(t) = token {
                req["token"] = json!(t);
            }
            let r = call(
                Method::POST,
                "/v1/images/pull",
                Some(serde_json::to_vec(&req)?),
                "pulling",
            )?;
            for n in names(&r)? {
                println!("{n}");
            }
        }
        ImageCommand::Ls { json } => {
            let r = call(Method::GET, "/v1/images", None, "listing")?;
            let list: Vec<ImageInfo> =
                serde_json::from_slice(&r.body).context("the daemon's image list")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_table(&list);
            }
        }
        ImageCommand::Rm { references } => {
            for reference in references {
                let r = call(
                    Method::DELETE,
                    &format!("/v1/images/{}", encode_path(&reference)),
                    None,
                    "removing",
                )?;
                for n in names(&r)? {
                    println!("removed {n}");
                }
            }
        }
        ImageCommand::Prune => {
            let r = call(Method::POST, "/v1/images/prune", None, "pruning")?;
            let removed = names(&r)?;
            if removed.is_empty() {
                println!("nothing to prune: every image is used by a workload");
            }
            for n in removed {
                println!("removed {n}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn names(r: &roost_host::client::Reply) -> anyhow::Result<Vec<String>> {
    let v: roost_host::api::ImageNames =
        serde_json::from_slice(&r.body).context("the daemon's answer")?;
    Ok(v.names)
}

/// The table, each column as wide as its widest cell.
fn print_table(list: &[ImageInfo]) {
    let rows = list
        .iter()
        .map(|i| {
            let digest: String = i.digest.chars().take(19).collect();
            let used = if i.used_by.is_empty() {
                "-".to_string()
            } else {
                i.used_by.join(",")
            };
            vec![i.name.clone(), digest, human(i.size.max(0) as u64), used]
        })
        .collect();
    super::client::print_table(
        &["NAME", "DIGEST", "SIZE", "USED BY"],
        &[false, false, true, false],
        rows,
    );
}

/// The archive to upload: a file as it is, a directory (an OCI layout or an
/// unpacked docker-archive) as a tarball made here.
fn archive(file: &Path) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if meta.is_dir() {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all(".", file)
            .with_context(|| format!("cannot pack the directory {}", file.display()))?;
        return b
            .into_inner()
            .with_context(|| format!("cannot pack the directory {}", file.display()));
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    if bytes.is_empty() {
        return Err(anyhow!(
            "{} is empty; give an image archive",
            file.display()
        ));
    }
    Ok(bytes)
}

/// Percent-encode a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Percent-encode a reference for the path, keeping its `/`, `:` and `@`.
fn encode_path(s: &str) -> String {
    s.split('/')
        .map(encode)
        .collect::<Vec<_>>()
        .join("/")
        .replace("%3A", ":")
        .replace("%40", "@")
}

fn password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("ROOST_REGISTRY_PASSWORD") {
        return Ok(p);
    }
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the registry password from stdin (or set ROOST_REGISTRY_PASSWORD)")?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

fn human(n: u64) -> String {
    let n = n as f64;
    if n >= 1048576.0 {
        format!("{:.1} MiB", n / 1048576.0)
    } else if n >= 1024.0 {
        format!("{:.1} KiB", n / 1024.0)
    } else {
        format!("{n} B")
    }
}

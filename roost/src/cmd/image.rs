//! `roost image import|pull|ls|rm`: a front end over `roost-container`, talking to
//! containerd directly (no daemon needed).

use anyhow::Context;
use clap::{Args, Subcommand};
use roost_container::image::{ImportOptions, PullAuth, PullOptions, PullProgress};
use roost_container::Client;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// containerd's gRPC socket.
    #[arg(long, env = "ROOST_CONTAINERD_SOCKET", default_value = roost_container::DEFAULT_SOCKET, global = true)]
    pub containerd_socket: PathBuf,
    /// containerd namespace.
    #[arg(long, env = "ROOST_CONTAINERD_NAMESPACE", default_value = roost_container::NAMESPACE, global = true)]
    pub namespace: String,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout or a docker-archive (directory or tarball, may be gzipped).
    Import {
        /// The archive or layout directory.
        file: PathBuf,
        /// Name for the image (when the archive has none, or only a tag).
        #[arg(long)]
        name: Option<String>,
    },
    /// Pull from an OCI registry (loopback registries are spoken to over plain HTTP).
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
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List images.
    Ls {
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Remove images.
    Rm {
        /// Image references.
        #[arg(required = true)]
        references: Vec<String>,
    },
}

pub fn run(args: ImageArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: ImageArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect_in(&args.containerd_socket, &args.namespace).await?;
    match args.command {
        ImageCommand::Import { file, name } => {
            let names = client
                .image_import(&file, &ImportOptions { name })
                .await
                .with_context(|| format!("import {}", file.display()))?;
            for n in names {
                println!("{n}");
            }
        }
        ImageCommand::Pull {
            reference,
            username,
            token,
            insecure,
            quiet,
        } => {
            let auth = match (username, token) {
                (Some(u), _) => PullAuth::Basic {
                    username: u,
                    password: password()?,
                },
                (None, Some(t)) => PullAuth::Bearer(t),
                (None, None) => PullAuth::Anonymous,
            };
            let bar = (!quiet && std::io::stderr().is_terminal()).then(Bar::default);
            let progress = bar.clone().map(|b| {
                Arc::new(move |p: PullProgress| b.update(&p))
                    as Arc<dyn Fn(PullProgress) + Send + Sync>
            });
            let r = client
                .image_pull(
                    &reference,
                    &PullOptions {
                        auth,
                        insecure_registries: insecure,
                        progress,
                    },
                )
                .await;
            if let Some(b) = bar {
                b.finish();
            }
            println!("{}", r?);
        }
        ImageCommand::Ls { json } => {
            let list = client.image_list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<50} {:<20} {:>10}", "NAME", "DIGEST", "SIZE");
                for i in list {
                    let short: String = i.digest.chars().take(19).collect();
                    println!(
                        "{:<50} {:<20} {:>10}",
                        i.name,
                        short,
                        human(i.size.max(0) as u64)
                    );
                }
            }
        }
        ImageCommand::Rm { references } => {
            for r in references {
                client.image_remove(&r).await?;
                println!("removed {r}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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

/// A one-line progress bar on stderr.
#[derive(Clone, Default)]
struct Bar {
    last: Arc<Mutex<Option<String>>>,
}

impl Bar {
    fn update(&self, p: &PullProgress) {
        let frac = if p.total > 0 {
            p.done as f64 / p.total as f64
        } else {
            1.0
        };
        let width = 30;
        let filled = ((frac * width as f64) as usize).min(width);
        let short: String = p
            .digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        let line = format!(
            "\rlayer {}/{} {short} [{}{}] {:>3}% {}/{}",
            p.layer.0 + 1,
            p.layer.1,
            "#".repeat(filled),
            " ".repeat(width - filled),
            (frac * 100.0) as u32,
            human(p.done),
            human(p.total)
        );
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(e) => e.into_inner(),
        };
        if last.as_deref() != Some(line.as_str()) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{line}\x1b[K");
            let _ = err.flush();
            *last = Some(line);
        }
    }

    fn finish(&self) {
        let _ = writeln!(std::io::stderr());
    }
}

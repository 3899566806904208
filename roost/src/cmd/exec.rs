//! `roost exec NAME -- CMD…`: run a command inside a workload's running container,
//! straight through containerd (the container driver's `Exec` ability).

use anyhow::Context;
use clap::Args;
use roost_container::task::{State, LABEL_WORKLOAD};
use roost_container::Client;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// containerd's gRPC socket.
    #[arg(long, env = "ROOST_CONTAINERD_SOCKET", default_value = roost_container::DEFAULT_SOCKET)]
    pub containerd_socket: PathBuf,
    /// containerd namespace.
    #[arg(long, env = "ROOST_CONTAINERD_NAMESPACE", default_value = roost_container::NAMESPACE)]
    pub namespace: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Workload name (a container workload with a running instance).
    pub name: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(a: ExecArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let client = Client::connect_in(&a.containerd_socket, &a.namespace).await?;
        let mut running = Vec::new();
        for f in client.find(LABEL_WORKLOAD, &a.name).await? {
            if client.state(&f.id).await? == State::Running {
                let n: u64 = f
                    .labels
                    .get("roost.instance")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                running.push((n, f.id));
            }
        }
        running.sort();
        let Some((_, id)) = running.pop() else {
            anyhow::bail!(
                "workload `{}` has no running container (namespace {}); `roost ps` shows its phase",
                a.name,
                a.namespace
            );
        };
        let (status, out) = client
            .exec(&id, &a.command, Duration::from_secs(a.timeout))
            .await
            .with_context(|| format!("exec in {id}"))?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&out)?;
        stdout.flush()?;
        Ok(ExitCode::from(status.min(255) as u8))
    })
}

//! `roost exec [-i] [-t] NAME -- CMD…`: run a command inside a workload's running
//! instance through the daemon's API (`POST /v1/workloads/{name}/exec`, upgraded to
//! the frame protocol of [`roost_host::exec_proto`]), so it works on the daemon's
//! own containerd and from another machine (`--addr`) alike. Exits with the
//! command's exit code.

use super::client::{fail, runtime, Conn};
use super::tty;
use anyhow::{anyhow, bail, Context};
use clap::Args;
use roost_host::exec_proto::{read_frame, write_frame, ExecBody, Frame, PROTOCOL};
use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use tokio::sync::mpsc;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give the command a terminal (raw mode here, window size passed on); needs a terminal on stdin.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Workload name (a container workload with a running instance).
    pub name: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub conn: Conn,
}

pub fn run(a: ExecArgs) -> anyhow::Result<ExitCode> {
    if a.tty && !std::io::stdin().is_terminal() {
        bail!(
            "-t needs a terminal on stdin, and stdin is not one; drop -t (keep -i to pass stdin)"
        );
    }
    let client = a.conn.client()?;
    let size = if a.tty {
        tty::size(0).or(tty::size(1))
    } else {
        None
    };
    let body = ExecBody {
        command: a.command.clone(),
        tty: a.tty,
        stdin: a.interactive,
        rows: size.map(|s| s.0),
        cols: size.map(|s| s.1),
    };
    let body = serde_json::to_vec(&body).context("encoding the exec request")?;
    let path = format!("/v1/workloads/{}/exec", a.name);
    let rt = runtime()?;
    let code = rt.block_on(async {
        let io = match client.upgrade(&path, body, PROTOCOL).await? {
            Ok(io) => io,
            Err(reply) => return Err(fail(&reply)),
        };
        let raw = if a.tty {
            Some(tty::RawMode::enter(0).context("cannot put the terminal into raw mode")?)
        } else {
            None
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        let (tx, mut rx) = mpsc::channel::<Frame>(16);
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if write_frame(&mut wr, &f).await.is_err() {
                    return;
                }
            }
        });
        if a.interactive {
            // A thread of its own: a blocking read of stdin must not hold up the exit.
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = tx.blocking_send(Frame::StdinEof);
                            return;
                        }
                        Ok(n) => {
                            if tx.blocking_send(Frame::Stdin(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
        if a.tty {
            let tx = tx.clone();
            let mut winch =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
                    .context("cannot watch for window size changes")?;
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if let Some((rows, cols)) = tty::size(0).or(tty::size(1)) {
                        if tx.send(Frame::Resize(rows, cols)).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        let result = loop {
            match read_frame(&mut rd).await {
                Ok(Some(Frame::Stdout(b))) => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&b).and_then(|()| o.flush())?;
                }
                Ok(Some(Frame::Stderr(b))) => {
                    let mut o = std::io::stderr().lock();
                    o.write_all(&b).and_then(|()| o.flush())?;
                }
                Ok(Some(Frame::Exit(code))) => break Ok(code),
                Ok(Some(Frame::Error(m))) => break Err(anyhow!("exec in `{}` failed: {m}", a.name)),
                Ok(Some(other)) => {
                    break Err(anyhow!("the daemon sent an unexpected frame: {other:?}"))
                }
                Ok(None) => {
                    break Err(anyhow!(
                        "the daemon closed the exec session without an exit code; `roost events --workload {}` may say why",
                        a.name
                    ))
                }
                Err(e) => break Err(e.into()),
            }
        };
        drop(raw);
        result
    })?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

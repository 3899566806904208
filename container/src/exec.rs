//! A command run inside a running container with its stdio streamed: the process
//! behind `roost exec` (also `-it`). containerd's shim connects the process to FIFOs
//! we make; this module opens our ends, starts the process, and hands back async
//! pipes plus resize, close-stdin and wait.
//!
//! Why each FIFO is opened the way it is (runc shim v2, containerd 1.6):
//! - stdout/stderr: our read end is opened non-blocking *before* Tasks.Exec, and we
//!   also hold a write end of our own until the process has been deleted. The shim
//!   opens its write end asynchronously during Tasks.Start; without our writer a read
//!   that came first would see end-of-file before the shim ever connected. After
//!   DeleteProcess (which waits for the shim's copy to finish) we drop our writer,
//!   so the reads end exactly when the last output is in.
//! - stdin: opened read-write (Linux does not block that), so bytes written before the
//!   shim opens its read end wait in the pipe. The shim holds a write end too, so the
//!   process sees end-of-file only after we drop ours *and* call CloseIO.

use crate::client::Client;
use crate::task::TaskError;
use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest,
    ResizePtyRequest, StartRequest, WaitRequest,
};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::unix::pipe;

/// What to run and how.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// argv (at least one element).
    pub argv: Vec<String>,
    /// Give the process a terminal (stdout and stderr merge on it).
    pub tty: bool,
    /// Connect stdin (otherwise the process reads /dev/null).
    pub stdin: bool,
    /// Initial terminal size (rows, columns), with `tty`.
    pub size: Option<(u16, u16)>,
}

/// A started exec process. Take the pipes, pump them, and call [`ExecProcess::wait`];
/// dropping it before `wait` returned kills the process and deletes it.
pub struct ExecProcess {
    client: Client,
    container_id: String,
    exec_id: String,
    /// Write here to feed the process's stdin (when asked for).
    pub stdin: Option<pipe::Sender>,
    /// The process's stdout (with a tty: the terminal's output).
    pub stdout: Option<pipe::Receiver>,
    /// The process's stderr (none with a tty).
    pub stderr: Option<pipe::Receiver>,
    /// Our own write ends of stdout/stderr (see the module docs).
    keep: std::sync::Mutex<Vec<std::fs::File>>,
    _dir: tempfile::TempDir,
    done: AtomicBool,
}

impl std::fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecProcess")
            .field("container_id", &self.container_id)
            .field("exec_id", &self.exec_id)
            .finish_non_exhaustive()
    }
}

fn stdio_err(path: &Path) -> impl FnOnce(std::io::Error) -> TaskError + '_ {
    move |source| TaskError::Stdio {
        path: path.display().to_string(),
        source,
    }
}

fn mkfifo(path: &Path) -> Result<(), TaskError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        stdio_err(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "NUL in path",
        ))
    })?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(stdio_err(path)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A FIFO's read end for us and a write end we hold until the process is deleted.
fn output_fifo(path: &Path) -> Result<(pipe::Receiver, std::fs::File), TaskError> {
    mkfifo(path)?;
    let rx = pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(stdio_err(path))?;
    let keep = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(stdio_err(path))?;
    Ok((rx, keep))
}

/// How long an exec may run: as long as its user keeps it (an interactive shell).
const NO_LIMIT: Duration = Duration::from_secs(30 * 24 * 3600);

impl Client {
    /// Start `opts.argv` inside the running container `id` (the user, env and cwd of
    /// its main process), with its stdio on pipes.
    pub async fn exec_start(&self, id: &str, opts: &ExecOptions) -> Result<ExecProcess, TaskError> {
        let req = self.req(GetContainerRequest { id: id.to_string() });
        let container = self
            .call("Containers.Get", id, self.containers().get(req))
            .await?
            .container
            .unwrap_or_default();
        let spec: serde_json::Value = container
            .spec
            .map(|a| serde_json::from_slice(&a.value).unwrap_or_default())
            .unwrap_or_default();
        let mut process = spec.get("process").cloned().unwrap_or_default();
        process["args"] = serde_json::json!(opts.argv);
        process["terminal"] = serde_json::json!(opts.tty);
        if let (true, Some((rows, cols))) = (opts.tty, opts.size) {
            process["consoleSize"] = serde_json::json!({"height": rows, "width": cols});
        }
        if opts.tty {
            // Programs that draw on a terminal look for TERM.
            let env = process["env"].as_array().cloned().unwrap_or_default();
            if !env
                .iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with("TERM=")))
            {
                let mut env = env;
                env.push(serde_json::json!("TERM=xterm"));
                process["env"] = serde_json::Value::Array(env);
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("roost-exec-")
            .tempdir()
            .map_err(stdio_err(Path::new("/tmp/roost-exec-*")))?;
        let path = |n: &str| -> PathBuf { dir.path().join(n) };
        let mut keep = Vec::new();
        let (stdout, out_keep) = output_fifo(&path("stdout"))?;
        keep.push(out_keep);
        let stderr = if opts.tty {
            None
        } else {
            let (rx, k) = output_fifo(&path("stderr"))?;
            keep.push(k);
            Some(rx)
        };
        let stdin = if opts.stdin {
            let p = path("stdin");
            mkfifo(&p)?;
            Some(
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(&p)
                    .map_err(stdio_err(&p))?,
            )
        } else {
            None
        };
        let uri = |n: &str| path(n).display().to_string();
        let exec_id = format!("exec-{}", crate::client::unique_suffix());
        let req = self.req(ExecProcessRequest {
            container_id: id.to_string(),
            stdin: if opts.stdin {
                uri("stdin")
            } else {
                String::new()
            },
            stdout: uri("stdout"),
            stderr: if opts.tty {
                String::new()
            } else {
                uri("stderr")
            },
            terminal: opts.tty,
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: serde_json::to_vec(&process).unwrap_or_default(),
            }),
            exec_id: exec_id.clone(),
        });
        self.call("Tasks.Exec", id, self.tasks().exec(req)).await?;
        let p = ExecProcess {
            client: self.clone(),
            container_id: id.to_string(),
            exec_id,
            stdin,
            stdout: Some(stdout),
            stderr,
            keep: std::sync::Mutex::new(keep),
            _dir: dir,
            done: AtomicBool::new(false),
        };
        let req = self.req(StartRequest {
            container_id: id.to_string(),
            exec_id: p.exec_id.clone(),
        });
        // On failure `p` is dropped, which deletes the process record.
        self.call("Tasks.Start", id, self.tasks().start(req))
            .await?;
        Ok(p)
    }
}

impl ExecProcess {
    /// Set the terminal's size (rows, columns); only with a tty.
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<(), TaskError> {
        let c = &self.client;
        let req = c.req(ResizePtyRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            width: u32::from(cols),
            height: u32::from(rows),
        });
        c.call(
            "Tasks.ResizePty",
            &self.container_id,
            c.tasks().resize_pty(req),
        )
        .await?;
        Ok(())
    }

    /// End the process's stdin: drop [`ExecProcess::stdin`] first. The shim holds a
    /// write end of the stdin FIFO itself (so that CloseIO can end it), so only this
    /// call brings the process its end-of-file.
    pub async fn close_stdin(&self) -> Result<(), TaskError> {
        let c = &self.client;
        let req = c.req(CloseIoRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            stdin: true,
        });
        c.call("Tasks.CloseIO", &self.container_id, c.tasks().close_io(req))
            .await?;
        Ok(())
    }

    /// Wait for the process to end, delete it (the shim first finishes copying its
    /// output) and release the pipes: the stdout/stderr readers then reach
    /// end-of-file after the last byte. Returns the exit status (128+N for signal N).
    pub async fn wait(&self) -> Result<u32, TaskError> {
        let c = &self.client;
        let req = c.req(WaitRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        });
        let status = c
            .call_within(
                "Tasks.Wait",
                &self.container_id,
                NO_LIMIT,
                c.tasks().wait(req),
            )
            .await?
            .exit_status;
        let req = c.req(DeleteProcessRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        });
        let deleted = c
            .call(
                "Tasks.DeleteProcess",
                &self.container_id,
                c.tasks().delete_process(req),
            )
            .await;
        self.done.store(true, Ordering::Release);
        match self.keep.lock() {
            Ok(mut k) => k.clear(),
            Err(p) => p.into_inner().clear(),
        }
        deleted?;
        Ok(status)
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        if self.done.load(Ordering::Acquire) {
            return;
        }
        // Cut short (the client went away, or a start failed): kill and delete the
        // process in the background so it does not outlive its session.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let c = self.client.clone();
        let (container_id, exec_id) = (self.container_id.clone(), self.exec_id.clone());
        rt.spawn(async move {
            let req = c.req(KillRequest {
                container_id: container_id.clone(),
                exec_id: exec_id.clone(),
                signal: libc::SIGKILL as u32,
                all: false,
            });
            let _ = c.tasks().kill(req).await;
            let req = c.req(WaitRequest {
                container_id: container_id.clone(),
                exec_id: exec_id.clone(),
            });
            let _ = c
                .call_within(
                    "Tasks.Wait",
                    &container_id,
                    Duration::from_secs(10),
                    c.tasks().wait(req),
                )
                .await;
            let req = c.req(DeleteProcessRequest {
                container_id: container_id.clone(),
                exec_id,
            });
            let _ = c.tasks().delete_process(req).await;
        });
    }
}

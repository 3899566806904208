//! The seam between the supervisor and whatever runs workloads.
//!
//! One trait for VMs, containers and the mock (Nomad's driver-plugin shape: start,
//! wait, stop, destroy, inspect, recover). Optional abilities live in their own traits.
//! Drivers write the workload's stdout/stderr (or serial console) to
//! [`StartRequest::log_path`]; the daemon serves that file as the workload's logs.

use crate::spec::{DriverKind, Realtime, WorkloadSpec};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// One run of a workload: its name and a number that grows with every start, so two
/// runs never share an identity (container id, VM socket, process marker).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct InstanceId {
    /// Workload name.
    pub workload: String,
    /// Start counter, from 1.
    pub instance: u64,
}

impl InstanceId {
    /// `name-N`: the identity drivers give the instance outside the daemon.
    pub fn key(&self) -> String {
        format!("{}-{}", self.workload, self.instance)
    }
}

/// What the scheduler granted a workload; drivers enforce it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Host CPUs the workload may run on (empty = no restriction).
    pub cpus: Vec<u32>,
    /// NUMA nodes for memory (empty = no restriction).
    #[serde(default)]
    pub mems: Vec<u32>,
    /// Shared-pool millicores (CFS quota/shares), when shared.
    pub millicores: Option<u32>,
    /// Whole cores exclusively (dedicated or real-time).
    pub exclusive: bool,
    /// Memory limit in MiB.
    pub memory_mib: Option<u64>,
    /// Real-time policy and priority, with the rt budget per period in µs.
    pub realtime: Option<Realtime>,
    /// `cpu.rt_runtime_us` budget the workload's cgroup gets, when real-time.
    pub rt_runtime_us: Option<u64>,
    /// Cgroup path (relative to each controller's root) the workload must live in.
    pub cgroup_path: Option<String>,
}

/// Everything a driver needs to start one instance.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Identity of this run.
    pub id: InstanceId,
    /// The workload's spec (validated).
    pub spec: WorkloadSpec,
    /// Resources granted by the scheduler.
    pub placement: Placement,
    /// File the driver appends the workload's output to.
    pub log_path: PathBuf,
    /// A directory private to this instance (sockets, exit files); not made yet: a
    /// driver that needs one creates it (`run/<name>.<instance>` under the state dir).
    pub run_dir: PathBuf,
}

/// Persisted reference to a started instance; `data` is the driver's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskHandle {
    /// The instance.
    pub id: InstanceId,
    /// The driver that started it.
    pub driver: DriverKind,
    /// Driver-specific data (pid, container id, API socket …).
    pub data: serde_json::Value,
}

impl TaskHandle {
    /// The driver's own data, decoded (an error names the instance).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, DriverError> {
        serde_json::from_value(self.data.clone()).map_err(|e| DriverError::Op {
            op: "decode handle",
            instance: self.id.key(),
            reason: e.to_string(),
        })
    }
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    /// Exit code, when it exited by itself.
    pub code: Option<i32>,
    /// Signal that ended it, when killed.
    pub signal: Option<i32>,
    /// `exited`, `killed`, `oom-killed`, `shutdown` (a VM's guest shut down),
    /// `crashed` (a VM's guest faulted), `lost` (gone while nobody watched).
    pub reason: String,
    /// Human detail (crash reason, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ExitInfo {
    /// It exited by itself with `code`.
    pub fn exited(code: i32) -> Self {
        Self {
            code: Some(code),
            signal: None,
            reason: "exited".into(),
            message: None,
        }
    }

    /// A signal ended it.
    pub fn killed(signal: i32, message: Option<String>) -> Self {
        Self {
            code: None,
            signal: Some(signal),
            reason: "killed".into(),
            message,
        }
    }

    /// It ended and nobody knows how (gone while nobody watched, or unobservable).
    pub fn lost(message: impl Into<String>) -> Self {
        Self {
            code: None,
            signal: None,
            reason: "lost".into(),
            message: Some(message.into()),
        }
    }

    /// Whether this exit counts as a success for `on-failure`.
    pub fn success(&self) -> bool {
        matches!(self.reason.as_str(), "exited" | "shutdown") && self.code.unwrap_or(0) == 0
    }
}

/// What a driver sees of an instance right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    /// Alive.
    Running,
    /// Alive but paused.
    Paused,
    /// Ended.
    Exited(ExitInfo),
    /// The driver knows nothing of it.
    NotFound,
}

/// Errors from drivers. `Spec` errors are the user's to fix (HTTP 422); the others are
/// the host's.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The spec cannot run on this host as written (missing image, kernel, user …).
    #[error("{field}: {message}")]
    Spec {
        /// Field path in the workload spec, e.g. `spec.container.image`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The driver's backend is not there (containerd down, no /dev/kvm …).
    #[error("{driver} driver unavailable: {reason}")]
    Unavailable {
        /// `vm`, `container` or `mock`.
        driver: &'static str,
        /// What is missing and how to fix it.
        reason: String,
    },
    /// An operation on an instance failed.
    #[error("{op} {instance}: {reason}")]
    Op {
        /// `start`, `stop`, …
        op: &'static str,
        /// `name-N`.
        instance: String,
        /// Why.
        reason: String,
    },
}

/// The driver seam. Every method may be called again after a daemon restart with a
/// handle read back from the store, so drivers keep no state they cannot rebuild.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Which driver this is.
    fn kind(&self) -> DriverKind;

    /// Check what can be checked before admission (image present, kernel readable …),
    /// so `roost apply` fails fast with the field to fix. Default: nothing to check.
    async fn prepare(&self, _name: &str, _spec: &WorkloadSpec) -> Result<(), DriverError> {
        Ok(())
    }

    /// Start one instance; returns once it runs (or failed to).
    async fn start(&self, req: &StartRequest) -> Result<TaskHandle, DriverError>;

    /// Resolve when the instance has ended, with how it ended.
    async fn wait(&self, handle: &TaskHandle) -> Result<ExitInfo, DriverError>;

    /// Polite stop (SIGTERM or the guest's equivalent), then a forced kill after
    /// `grace`; returns once the instance is gone.
    async fn stop(&self, handle: &TaskHandle, grace: Duration) -> Result<(), DriverError>;

    /// Free everything the instance holds (idempotent; kills it if still alive).
    async fn destroy(&self, handle: &TaskHandle) -> Result<(), DriverError>;

    /// What the instance is doing now.
    async fn inspect(&self, handle: &TaskHandle) -> Result<TaskState, DriverError>;

    /// After a daemon restart: every instance of `workload` that is still alive,
    /// found from `known` (the last handle the store holds) and by the driver's own
    /// search (an instance may have started just before the daemon died, before its
    /// handle was stored). The supervisor keeps one and destroys the rest.
    async fn recover(
        &self,
        workload: &str,
        known: Option<&TaskHandle>,
    ) -> Result<Vec<TaskHandle>, DriverError>;

    /// The exec ability, when this driver has it.
    fn as_exec(&self) -> Option<&dyn Exec> {
        None
    }
}

/// What `roost exec` asks to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// argv (at least one element).
    pub argv: Vec<String>,
    /// Give it a terminal (stdout and stderr merge on it).
    pub tty: bool,
    /// Connect its stdin (otherwise it reads /dev/null).
    pub stdin: bool,
    /// Initial terminal size (rows, columns), with `tty`.
    pub size: Option<(u16, u16)>,
}

/// A pipe end a session reads from.
pub type ExecReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
/// A pipe end a session writes to.
pub type ExecWriter = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// A started exec: its pipes (taken by whoever pumps them) and its control.
/// Dropping the control before [`ExecControl::wait`] returned kills the process.
pub struct ExecSession {
    /// The process's stdin, when asked for; drop it, then [`ExecControl::close_stdin`].
    pub stdin: Option<ExecWriter>,
    /// Its stdout (with a tty: everything the terminal shows).
    pub stdout: Option<ExecReader>,
    /// Its stderr (none with a tty).
    pub stderr: Option<ExecReader>,
    /// Resize and wait.
    pub control: Box<dyn ExecControl>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession").finish_non_exhaustive()
    }
}

/// Control of a started exec.
#[async_trait]
pub trait ExecControl: Send + Sync {
    /// Set the terminal size (rows, columns); only with a tty.
    async fn resize(&self, rows: u16, cols: u16) -> Result<(), DriverError>;
    /// End the command's stdin (after the [`ExecSession::stdin`] writer is dropped).
    async fn close_stdin(&self) -> Result<(), DriverError>;
    /// Wait for the end and release the process; its output readers then reach
    /// end-of-file after the last byte. The exit code (128+N for signal N).
    async fn wait(&self) -> Result<i32, DriverError>;
}

/// Optional ability: run a command inside a running instance (found through
/// [`Driver::as_exec`]).
#[async_trait]
pub trait Exec: Send + Sync {
    /// Start `req` in the instance.
    async fn exec(
        &self,
        handle: &TaskHandle,
        req: &ExecRequest,
    ) -> Result<ExecSession, DriverError>;
}

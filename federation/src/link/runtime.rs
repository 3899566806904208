//! The host's side of the link behind one small trait: apply a desired set, report
//! what runs, list active alarms, and say when any of that changed. The host daemon
//! implements it over its supervisor; a fleet simulator can implement it in memory.

/// One workload central owns, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadState {
    /// Name.
    pub name: String,
    /// The owning set (its `roost.dev/set` label).
    pub set: String,
    /// `running`, `failed`, … (the host's phase names).
    pub phase: String,
    /// Restarts so far.
    pub restarts: u32,
    /// [`super::spec_digest`] of the spec it runs.
    pub spec_digest: String,
    /// The running instance (0 = none).
    pub instance: u64,
    /// The CPUs it is placed on (kernel list syntax; "" = not pinned).
    pub cpus: String,
    /// `shared`, `dedicated`, `realtime`, or "" (best effort).
    pub placement: String,
}

/// One online CPU of the host and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuCore {
    /// CPU id.
    pub cpu: u32,
    /// `platform`, `shared`, `dedicated` or `isolated`.
    pub role: String,
    /// The workloads placed on it (local ones too).
    pub workloads: Vec<String>,
}

/// The host's CPU partition and who holds each CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuPartition {
    /// Every online CPU, in id order.
    pub cores: Vec<CpuCore>,
    /// Placements are enforced in cgroups (else bookkeeping only).
    pub enforcing: bool,
    /// The host profile it comes from.
    pub profile: String,
}

/// One run of the host's latency probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencySample {
    /// When it ended (Unix ms).
    pub time_ms: u64,
    /// Wake-up latency, median (ns).
    pub p50_ns: u64,
    /// Wake-up latency, 99th percentile (ns).
    pub p99_ns: u64,
    /// Wake-up latency, largest (ns).
    pub max_ns: u64,
    /// Activations measured.
    pub samples: u64,
    /// Deadlines missed.
    pub missed: u64,
    /// The loop's period (µs).
    pub period_us: u64,
    /// Where it ran (`cpu 0, SCHED_OTHER`).
    pub placement: String,
}

/// Which part of a workload's log central asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// The workload (one of central's).
    pub workload: String,
    /// From this byte offset; `None` = the last `tail_lines` lines.
    pub offset: Option<u64>,
    /// Lines for a tail.
    pub tail_lines: u32,
    /// At most this many bytes.
    pub max_bytes: u32,
}

/// Part of a workload's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSlice {
    /// The text (lossy UTF-8).
    pub text: String,
    /// Where `text` starts in the log.
    pub offset: u64,
    /// Where to read next.
    pub next_offset: u64,
    /// The log's size now.
    pub size: u64,
}

/// Why a log could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Not one of central's workloads on this host.
    #[error("no workload `{0}` of central's on this host")]
    NotFound(String),
    /// Anything else, said.
    #[error("{0}")]
    Failed(String),
}

/// What runs on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeReport {
    /// Every workload central owns.
    pub workloads: Vec<WorkloadState>,
    /// How many workloads were made locally (central leaves them alone).
    pub local_workloads: u32,
    /// The CPU partition, when the host knows it.
    pub cpu: Option<CpuPartition>,
}

/// An active alarm on the host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuntimeAlarm {
    /// `workload.failed`, `workload.restart-loop`, `admission.refused`,
    /// `apply.failed`, …
    pub code: String,
    /// `critical`, `major`, `minor` or `warning`.
    pub severity: String,
    /// `host/NAME` or `host/NAME/workload/W`.
    pub entity: String,
    /// Why.
    pub reason: String,
    /// Unix ms.
    pub raised_ms: u64,
}

/// A problem applying one workload of a desired set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyIssue {
    /// The workload.
    pub workload: String,
    /// What went wrong.
    pub error: String,
}

/// The host's side of the link.
#[async_trait::async_trait]
pub trait HostRuntime: Send + Sync + 'static {
    /// Make central's workloads exactly `workloads` (JSON `kind: Workload` specs, each
    /// with the owner and set labels): create the missing, update the changed, remove
    /// central's workloads not named; never touch local ones. Problems per workload.
    async fn apply(&self, workloads: Vec<serde_json::Value>) -> Vec<ApplyIssue>;
    /// What runs now.
    async fn report(&self) -> RuntimeReport;
    /// The alarms active now.
    async fn alarms(&self) -> Vec<RuntimeAlarm>;
    /// A counter that moves whenever the report or the alarms may have changed.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Part of one of central's workloads' logs (protocol 2). A runtime without logs
    /// says so.
    async fn logs(&self, q: LogQuery) -> Result<LogSlice, LogError> {
        Err(LogError::Failed(format!(
            "this host keeps no log for `{}`",
            q.workload
        )))
    }
    /// The newest latency probe run, if the host runs a probe.
    fn latency(&self) -> Option<LatencySample> {
        None
    }
}

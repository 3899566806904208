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
}

/// What runs on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeReport {
    /// Every workload central owns.
    pub workloads: Vec<WorkloadState>,
    /// How many workloads were made locally (central leaves them alone).
    pub local_workloads: u32,
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
}

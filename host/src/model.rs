//! What the daemon keeps about each workload, and the events it emits. These are also
//! the API's response bodies.

use crate::driver::{ExitInfo, Placement, TaskHandle};
use crate::spec::Workload;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the user wants of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Keep it running (as its restart policy says).
    Running,
    /// Keep it stopped.
    Stopped,
    /// Stop it and forget it.
    Deleted,
}

/// Where a workload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Accepted, not started yet.
    Pending,
    /// A start is under way.
    Starting,
    /// Running.
    Running,
    /// A stop is under way.
    Stopping,
    /// Stopped on request.
    Stopped,
    /// Ended, and its restart policy does not restart it (success).
    Exited,
    /// Ended with a failure, and its restart policy does not restart it.
    Failed,
    /// Waiting to be restarted.
    Backoff,
}

impl Phase {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Exited => "exited",
            Self::Failed => "failed",
            Self::Backoff => "backoff",
        }
    }

    /// Every phase, for metrics.
    pub const ALL: [Phase; 8] = [
        Self::Pending,
        Self::Starting,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Exited,
        Self::Failed,
        Self::Backoff,
    ];
}

/// The observed state of a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Where it is.
    pub phase: Phase,
    /// Number of the latest instance started (0 = never started).
    pub instance: u64,
    /// The running instance, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<TaskHandle>,
    /// Restarts so far.
    pub restarts: u32,
    /// Failures in a row (drives the backoff; reset after a long enough run).
    pub consecutive_failures: u32,
    /// How the last instance ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<ExitInfo>,
    /// Why it is where it is (start error, backoff reason …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the current instance started (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// When the last instance ended (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// When the next restart is due (Unix ms), in backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart_at_ms: Option<u64>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            phase: Phase::Pending,
            instance: 0,
            handle: None,
            restarts: 0,
            consecutive_failures: 0,
            last_exit: None,
            message: None,
            started_at_ms: None,
            finished_at_ms: None,
            next_restart_at_ms: None,
        }
    }
}

/// Everything the daemon keeps about one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRecord {
    /// The spec as accepted.
    pub workload: Workload,
    /// What the user wants.
    pub desired: Desired,
    /// Bumped on every accepted change of the spec.
    pub generation: u64,
    /// What the scheduler granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// Observed state.
    pub status: Status,
    /// When it was accepted (Unix ms).
    pub created_at_ms: u64,
}

impl WorkloadRecord {
    /// The workload's name.
    pub fn name(&self) -> &str {
        &self.workload.metadata.name
    }
}

/// One transition of one workload (or of the daemon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Position in the event log; resume a stream after it with `?cursor=`.
    pub seq: u64,
    /// Unix ms.
    pub time_ms: u64,
    /// Workload name (empty for daemon events).
    pub workload: String,
    /// Instance number, when about one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u64>,
    /// What happened: `created`, `starting`, `running`, `exited`, `backoff`,
    /// `restarting`, `stopping`, `stopped`, `failed`, `deleted`, `recovered`,
    /// `adopted`, `updated`, `daemon-started`.
    pub kind: String,
    /// Detail.
    pub message: String,
}

/// Current Unix time in ms.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

//! What a host tells central about itself beyond its workloads (link protocol 2): its
//! CPU partition (in its reports), its latency probe figures (in its heartbeats, kept
//! in a bounded ring per host, memory only), and a workload's log, read on request
//! over the host's session (a request/response with an id, bounded in size and time).

use super::state::{Live, State};
use super::{Central, CentralError};
use crate::link::client::MAX_LOG_REPLY;
use crate::link::proto::{self, central_message::Body as Out};
use crate::link::LOGS_PROTOCOL;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Latency probe runs kept per host (at one run every 10 s, an hour).
pub const LATENCY_RING: usize = 360;
/// How long central waits for a host's answer to a log request.
pub const LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of a log tail when the request does not say.
pub const DEFAULT_TAIL_LINES: u32 = 200;

/// One CPU of a host and what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoreView {
    /// CPU id.
    pub cpu: u32,
    /// `platform` (the host's own daemons), `shared` (the shared pool), `dedicated`
    /// (held whole by one workload) or `isolated` (real-time).
    pub role: String,
    /// The workloads placed on it (local ones too); shared CPUs list every shared
    /// workload, which floats over the whole pool.
    pub workloads: Vec<String>,
}

/// A host's CPU partition, as it last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CpuView {
    /// Every online CPU, in id order.
    pub cores: Vec<CoreView>,
    /// Placements are enforced in cgroups (else bookkeeping only).
    pub enforcing: bool,
    /// The host profile the partition comes from.
    pub profile: String,
}

/// One run of a host's latency probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyPoint {
    /// When the run ended (Unix ms).
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
    /// The probe loop's period (µs).
    pub period_us: u64,
    /// Where the probe ran.
    pub placement: String,
}

/// Part of a workload's log, as the host read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogView {
    /// The host.
    pub host: String,
    /// The workload.
    pub workload: String,
    /// The text (at most 64 KiB).
    pub text: String,
    /// Where `text` starts in the log (bytes).
    pub offset: u64,
    /// Pass this as `offset` to get what follows.
    pub next_offset: u64,
    /// The log's size now (bytes).
    pub size: u64,
}

/// What part of a log to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRead {
    /// From this byte offset; `None` = the last `tail_lines` lines.
    pub offset: Option<u64>,
    /// Lines for a tail (default 200, at most 10,000).
    pub tail_lines: Option<u32>,
    /// At most this many bytes (default and most: 64 KiB).
    pub max_bytes: Option<u32>,
}

fn clip(s: String, n: usize) -> String {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

pub(crate) fn cpu_view(r: &proto::Report) -> Option<CpuView> {
    let c = r.cpu.as_ref()?;
    Some(CpuView {
        cores: c
            .cores
            .iter()
            .take(4096)
            .map(|k| CoreView {
                cpu: k.cpu,
                role: clip(k.role.clone(), 16),
                workloads: k
                    .workloads
                    .iter()
                    .take(64)
                    .map(|w| clip(w.clone(), 128))
                    .collect(),
            })
            .collect(),
        enforcing: c.enforcing,
        profile: clip(c.profile.clone(), 256),
    })
}

pub(crate) fn latency_view(l: &Live) -> Vec<LatencyPoint> {
    l.latency
        .iter()
        .map(|s| LatencyPoint {
            time_ms: s.time_ms,
            p50_ns: s.p50_ns,
            p99_ns: s.p99_ns,
            max_ns: s.max_ns,
            samples: s.samples,
            missed: s.missed,
            period_us: s.period_us,
            placement: s.placement.clone(),
        })
        .collect()
}

impl State {
    fn live_mut(&mut self, host: &str) -> Option<&mut Live> {
        self.live.get_mut(host)
    }
}

impl Central {
    /// The link protocol a host's session speaks (from its Hello).
    pub fn set_peer_protocol(&self, host: &str, protocol: u32) {
        if let Some(l) = self.lock().live_mut(host) {
            l.protocol = protocol;
        }
    }

    /// A latency probe run from a host's heartbeat: into its ring.
    pub(crate) fn on_latency(&self, host: &str, mut s: proto::LatencySample) {
        s.placement = clip(s.placement, 128);
        if let Some(l) = self.lock().live_mut(host) {
            if l.latency.back().is_some_and(|b| b.time_ms >= s.time_ms) {
                return; // a repeat
            }
            if l.latency.len() >= LATENCY_RING {
                l.latency.pop_front();
            }
            l.latency.push_back(s);
        }
    }

    /// A host answered a log request.
    pub(crate) fn on_log_reply(&self, host: &str, r: proto::LogReply) {
        let waiter = self
            .lock()
            .live_mut(host)
            .and_then(|l| l.pending_logs.remove(&r.id));
        if let Some(w) = waiter {
            let _ = w.send(r);
        }
    }

    /// Read part of a central workload's log from its host, over the host's session.
    /// Refused with a clear reason when the host is unknown, offline, or too old to
    /// answer; [`LOG_TIMEOUT`] at most.
    pub async fn workload_logs(
        &self,
        host: &str,
        workload: &str,
        read: LogRead,
    ) -> Result<LogView, CentralError> {
        if let Some(t) = read.tail_lines {
            if !(1..=10_000).contains(&t) {
                return Err(CentralError::field(
                    "tail",
                    format!("{t} is out of range; use 1 to 10000"),
                ));
            }
        }
        if let Some(m) = read.max_bytes {
            if !(1..=MAX_LOG_REPLY).contains(&m) {
                return Err(CentralError::field(
                    "maxBytes",
                    format!("{m} is out of range; use 1 to {MAX_LOG_REPLY}"),
                ));
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let id = {
            let mut st = self.lock();
            if !st.hosts.contains_key(host) {
                return Err(CentralError::NotFound(format!(
                    "no host `{host}`; `roost central host ls` lists them"
                )));
            }
            st.next_log_request += 1;
            let id = st.next_log_request;
            let l = st.live.entry(host.to_string()).or_default();
            if l.session.is_none() || !l.online {
                return Err(CentralError::Unavailable(format!(
                    "host `{host}` is offline: central cannot read its logs now; on the host, `roost logs {workload}` still works"
                )));
            }
            if l.protocol < LOGS_PROTOCOL {
                return Err(CentralError::Unavailable(format!(
                    "host `{host}` speaks link protocol {} and cannot send logs to central (needs {LOGS_PROTOCOL}): upgrade its roost (`roost central subcloud upgrade`)",
                    l.protocol
                )));
            }
            // Bounded: a host that never answers cannot pile up waiters.
            if l.pending_logs.len() >= 64 {
                return Err(CentralError::Unavailable(format!(
                    "host `{host}` has 64 log requests unanswered; try again shortly"
                )));
            }
            l.pending_logs.insert(id, tx);
            id
        };
        let req = proto::LogRequest {
            id,
            workload: workload.to_string(),
            offset: read.offset,
            tail_lines: read.tail_lines.unwrap_or(DEFAULT_TAIL_LINES),
            max_bytes: read.max_bytes.unwrap_or(MAX_LOG_REPLY),
        };
        let forget = || {
            if let Some(l) = self.lock().live_mut(host) {
                l.pending_logs.remove(&id);
            }
        };
        if !self.send(host, Out::Log(req)) {
            forget();
            return Err(CentralError::Unavailable(format!(
                "host `{host}` went offline before central could ask it for logs"
            )));
        }
        let reply = match tokio::time::timeout(LOG_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => {
                return Err(CentralError::Unavailable(format!(
                    "host `{host}`'s link closed before it answered the log request"
                )))
            }
            Err(_) => {
                forget();
                return Err(CentralError::Timeout(format!(
                    "host `{host}` did not answer the log request within {} s",
                    LOG_TIMEOUT.as_secs()
                )));
            }
        };
        if reply.not_found {
            return Err(CentralError::NotFound(format!(
                "host `{host}` runs no workload `{workload}` of central's"
            )));
        }
        if !reply.error.is_empty() {
            return Err(CentralError::Unavailable(format!(
                "host `{host}` could not read `{workload}`'s log: {}",
                clip(reply.error, 1000)
            )));
        }
        Ok(LogView {
            host: host.to_string(),
            workload: workload.to_string(),
            text: clip(reply.text, MAX_LOG_REPLY as usize),
            offset: reply.offset,
            next_offset: reply.next_offset,
            size: reply.size,
        })
    }
}

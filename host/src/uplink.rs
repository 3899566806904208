//! The host's side of the central link: [`SupervisorRuntime`] implements the
//! federation's [`HostRuntime`] over the supervisor (apply a desired set, report
//! what runs, raise and clear alarms), and [`start`] enrolls and runs the link client.
//! The supervisor knows nothing of central: this module only calls its public
//! `apply`, `set_desired`, `list` and event subscription.

use crate::model::{Desired, Phase, WorkloadRecord};
use crate::supervisor::{Supervisor, SupervisorError};
use roost_federation::link::client::{CentralAddr, Link, LinkConfig, LinkError};
use roost_federation::link::runtime::ApplyIssue;
use roost_federation::link::{
    spec_digest, HostRuntime, LatencySample, LogError, LogQuery, LogSlice, RuntimeAlarm,
    RuntimeReport, WorkloadState, OWNER_CENTRAL, OWNER_LABEL, SET_LABEL,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Restarts within [`RESTART_WINDOW_MS`] that make a restart loop.
pub const RESTART_LOOP: usize = 3;
/// The restart-loop window.
pub const RESTART_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Memory pressure: less than this share of memory available.
pub const MEMORY_PRESSURE_AVAILABLE: f64 = 0.10;
/// Disk pressure: the state dir's file system fuller than this.
pub const DISK_PRESSURE_USED: f64 = 0.90;
/// How often the pressure checks run (and the alarms are re-sent if they changed).
const PRESSURE_EVERY: Duration = Duration::from_secs(10);

/// The share of memory available, from `/proc/meminfo` text.
pub fn memory_available(meminfo: &str) -> Option<f64> {
    let field = |k: &str| {
        meminfo
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let (total, avail) = (field("MemTotal:")?, field("MemAvailable:")?);
    (total > 0.0).then(|| avail / total)
}

/// The share of the file system holding `path` that is used.
pub fn disk_used(path: &Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) writes into the zeroed struct we own; `c` is a valid C string
    // that outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    let used = st.f_blocks.saturating_sub(st.f_bfree) as f64;
    let usable = used + st.f_bavail as f64;
    (usable > 0.0).then(|| used / usable)
}

/// Is this one of central's workloads?
pub fn owned(rec: &WorkloadRecord) -> bool {
    rec.workload
        .metadata
        .labels
        .get(OWNER_LABEL)
        .map(String::as_str)
        == Some(OWNER_CENTRAL)
}

#[derive(Debug, Default)]
struct Book {
    /// Restart times per workload (Unix ms), the last window's worth.
    restarts: HashMap<String, VecDeque<u64>>,
    /// Problems of the last apply, by workload: (code, reason, raised).
    apply: BTreeMap<String, (&'static str, String, u64)>,
    /// When each failure alarm was first seen (so its raised time is stable).
    first_seen: HashMap<(String, String), u64>,
}

/// The supervisor, as the link sees it.
#[derive(Debug)]
pub struct SupervisorRuntime {
    sup: Arc<Supervisor>,
    host: String,
    state_dir: PathBuf,
    book: Arc<Mutex<Book>>,
    changes: tokio::sync::watch::Sender<u64>,
    probe: Option<Arc<crate::hostinfo::LatencyProbe>>,
}

fn lock(b: &Mutex<Book>) -> std::sync::MutexGuard<'_, Book> {
    match b.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl SupervisorRuntime {
    /// A runtime over `sup` for host `host`; starts a task that follows the event log.
    /// `probe`: the latency probe whose runs go to central, if one runs.
    pub fn new(
        sup: Arc<Supervisor>,
        host: &str,
        state_dir: &Path,
        probe: Option<Arc<crate::hostinfo::LatencyProbe>>,
    ) -> Arc<Self> {
        let (changes, _) = tokio::sync::watch::channel(0u64);
        let rt = Arc::new(Self {
            sup,
            host: host.into(),
            state_dir: state_dir.to_path_buf(),
            book: Arc::default(),
            changes,
            probe,
        });
        // Pressure has no event: look every few seconds, report when it changes.
        let me = Arc::downgrade(&rt);
        tokio::spawn(async move {
            let mut last = Vec::new();
            loop {
                tokio::time::sleep(PRESSURE_EVERY).await;
                let Some(rt) = me.upgrade() else { return };
                let now = rt.pressure();
                if now != last {
                    rt.changes.send_modify(|n| *n += 1);
                    last = now;
                }
            }
        });
        let me = Arc::downgrade(&rt);
        let sub = rt.sup.events.subscribe(rt.sup.events.last_seq());
        tokio::spawn(async move {
            let Ok(mut sub) = sub else { return };
            loop {
                let e = match sub.live.recv().await {
                    Ok(e) => Some(e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(_) => return,
                };
                let Some(rt) = me.upgrade() else { return };
                if let Some(e) = e {
                    // A restart is the restart policy's decision (`backoff`), not
                    // any new instance: an update central asked for starts one too.
                    if e.kind == "backoff" {
                        let mut b = lock(&rt.book);
                        let q = b.restarts.entry(e.workload.clone()).or_default();
                        q.push_back(e.time_ms);
                        while q
                            .front()
                            .is_some_and(|t| e.time_ms.saturating_sub(*t) > RESTART_WINDOW_MS)
                        {
                            q.pop_front();
                        }
                    }
                }
                rt.changes.send_modify(|n| *n += 1);
            }
        });
        rt
    }

    fn entity(&self, workload: &str) -> String {
        format!("host/{}/workload/{workload}", self.host)
    }

    /// The pressure alarms that hold now: (code, reason).
    fn pressure(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(a) = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| memory_available(&m))
        {
            if a < MEMORY_PRESSURE_AVAILABLE {
                v.push((
                    "host.memory-pressure",
                    format!(
                        "{:.0}% of memory available (alarm below {:.0}%)",
                        a * 100.0,
                        MEMORY_PRESSURE_AVAILABLE * 100.0
                    ),
                ));
            }
        }
        if let Some(u) = disk_used(&self.state_dir) {
            if u > DISK_PRESSURE_USED {
                v.push((
                    "host.disk-pressure",
                    format!(
                        "the state dir's file system is {:.0}% full (alarm above {:.0}%)",
                        u * 100.0,
                        DISK_PRESSURE_USED * 100.0
                    ),
                ));
            }
        }
        v
    }
}

fn issue(workload: &str, e: impl std::fmt::Display) -> ApplyIssue {
    ApplyIssue {
        workload: workload.into(),
        error: e.to_string(),
    }
}

#[async_trait::async_trait]
impl HostRuntime for SupervisorRuntime {
    async fn apply(&self, workloads: Vec<serde_json::Value>) -> Vec<ApplyIssue> {
        let mut issues = Vec::new();
        let mut wanted = HashSet::new();
        let mut book_apply = BTreeMap::new();
        let now = crate::model::now_ms();
        for v in workloads {
            let name = roost_federation::link::workload_name(&v)
                .unwrap_or("?")
                .to_string();
            wanted.insert(name.clone());
            let w = match crate::validate::validate_value(v) {
                Ok(w) => w,
                Err(e) => {
                    let msg =
                        e.0.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ");
                    book_apply.insert(
                        name.clone(),
                        ("apply.failed", format!("invalid spec: {msg}"), now),
                    );
                    issues.push(issue(&name, format!("invalid spec: {msg}")));
                    continue;
                }
            };
            // A local workload of the same name is never taken over.
            if let Ok(cur) = self.sup.get(&name) {
                if !owned(&cur) {
                    let m = "a local workload of this name exists on the host; central leaves it alone (rename one of them)";
                    book_apply.insert(name.clone(), ("apply.failed", m.into(), now));
                    issues.push(issue(&name, m));
                    continue;
                }
            }
            match self.sup.apply(w).await {
                Ok(_) => {}
                Err(SupervisorError::NotAdmitted(r)) => {
                    book_apply.insert(name.clone(), ("admission.refused", r.clone(), now));
                    issues.push(issue(&name, format!("not admitted: {r}")));
                }
                Err(e) => {
                    book_apply.insert(name.clone(), ("apply.failed", e.to_string(), now));
                    issues.push(issue(&name, e));
                }
            }
        }
        for rec in self.sup.list() {
            if owned(&rec) && !wanted.contains(rec.name()) && rec.desired != Desired::Deleted {
                if let Err(e) = self.sup.set_desired(rec.name(), Desired::Deleted).await {
                    if !matches!(e, SupervisorError::NotFound(_)) {
                        issues.push(issue(rec.name(), format!("cannot remove: {e}")));
                    }
                }
            }
        }
        {
            let mut b = lock(&self.book);
            // Keep the first raise time of a problem that persists.
            for (k, v) in book_apply.iter_mut() {
                if let Some(old) = b.apply.get(k) {
                    if old.0 == v.0 {
                        v.2 = old.2;
                    }
                }
            }
            b.apply = book_apply;
        }
        self.changes.send_modify(|n| *n += 1);
        issues
    }

    async fn report(&self) -> RuntimeReport {
        let mut r = RuntimeReport::default();
        for rec in self.sup.list() {
            if !owned(&rec) {
                r.local_workloads += 1;
                continue;
            }
            if rec.desired == Desired::Deleted {
                continue;
            }
            let digest = serde_json::to_value(&rec.workload)
                .map(|v| spec_digest(&v))
                .unwrap_or_default();
            r.workloads.push(WorkloadState {
                name: rec.name().to_string(),
                set: rec
                    .workload
                    .metadata
                    .labels
                    .get(SET_LABEL)
                    .cloned()
                    .unwrap_or_default(),
                phase: rec.status.phase.as_str().to_string(),
                restarts: rec.status.restarts,
                spec_digest: digest,
                instance: if rec.status.phase == Phase::Running {
                    rec.status.instance
                } else {
                    0
                },
                cpus: rec
                    .placement
                    .as_ref()
                    .map(|p| crate::hostinfo::cpu_list(&p.cpus))
                    .unwrap_or_default(),
                placement: rec
                    .placement
                    .as_ref()
                    .map(|p| crate::hostinfo::placement_class(p).to_string())
                    .unwrap_or_default(),
            });
        }
        r.cpu = Some(crate::hostinfo::cpu_partition(&self.sup.capacity()));
        r
    }

    async fn logs(&self, q: LogQuery) -> Result<LogSlice, LogError> {
        // Central reads the logs of its own workloads only, never a local one's.
        match self.sup.get(&q.workload) {
            Ok(rec) if owned(&rec) => {}
            _ => return Err(LogError::NotFound(q.workload)),
        }
        let path = self.sup.log_path(&q.workload);
        tokio::task::spawn_blocking(move || {
            crate::hostinfo::read_log(&path, q.offset, q.tail_lines, q.max_bytes)
                .map_err(|e| LogError::Failed(format!("{}: {e}", path.display())))
        })
        .await
        .map_err(|e| LogError::Failed(format!("the log reader ended abnormally: {e}")))?
    }

    fn latency(&self) -> Option<LatencySample> {
        self.probe.as_ref().and_then(|p| p.latest())
    }

    async fn alarms(&self) -> Vec<RuntimeAlarm> {
        let now = crate::model::now_ms();
        let recs = self.sup.list();
        let mut out = Vec::new();
        let mut b = lock(&self.book);
        let mut seen = HashSet::new();
        for rec in &recs {
            if rec.desired == Desired::Deleted {
                continue;
            }
            let name = rec.name();
            if rec.status.phase == Phase::Failed {
                let key = ("workload.failed".to_string(), name.to_string());
                let raised = *b.first_seen.entry(key.clone()).or_insert(now);
                seen.insert(key);
                out.push(RuntimeAlarm {
                    code: "workload.failed".into(),
                    severity: "major".into(),
                    entity: self.entity(name),
                    reason: rec
                        .status
                        .message
                        .clone()
                        .unwrap_or_else(|| "failed and not restarted".into()),
                    raised_ms: raised,
                });
            }
            if let Some(q) = b.restarts.get_mut(name) {
                while q
                    .front()
                    .is_some_and(|t| now.saturating_sub(*t) > RESTART_WINDOW_MS)
                {
                    q.pop_front();
                }
                if q.len() >= RESTART_LOOP {
                    let n = q.len();
                    let key = ("workload.restart-loop".to_string(), name.to_string());
                    let raised = *b.first_seen.entry(key.clone()).or_insert(now);
                    seen.insert(key);
                    out.push(RuntimeAlarm {
                        code: "workload.restart-loop".into(),
                        severity: "major".into(),
                        entity: self.entity(name),
                        reason: format!("{n} restarts in the last 5 minutes"),
                        raised_ms: raised,
                    });
                }
            }
        }
        for (w, (code, reason, raised)) in &b.apply {
            out.push(RuntimeAlarm {
                code: (*code).into(),
                severity: "major".into(),
                entity: self.entity(w),
                reason: reason.clone(),
                raised_ms: *raised,
            });
        }
        for (code, reason) in self.pressure() {
            let key = (code.to_string(), String::new());
            let raised = *b.first_seen.entry(key.clone()).or_insert(now);
            seen.insert(key);
            out.push(RuntimeAlarm {
                code: code.into(),
                severity: "major".into(),
                entity: format!("host/{}", self.host),
                reason,
                raised_ms: raised,
            });
        }
        b.first_seen.retain(|k, _| seen.contains(k));
        b.restarts.retain(|_, q| !q.is_empty());
        out
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The link's settings, as the daemon's flags give them.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    /// `--join https://CENTRAL:PORT` (else the URL saved at enrollment).
    pub join: Option<String>,
    /// `--join-token`.
    pub join_token: Option<String>,
    /// `--name` (default: the kernel's hostname).
    pub name: Option<String>,
    /// `--heartbeat`.
    pub heartbeat: Duration,
    /// Longest wait between reconnects.
    pub backoff_max: Duration,
    /// How often the latency probe runs (`None` = never).
    pub latency_probe: Option<Duration>,
}

/// What enrollment saved next to the certificate: where central is, and our name.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Saved {
    central: String,
    name: String,
}

/// The link dir under a state dir.
pub fn link_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("central")
}

/// The kernel's hostname, lower-cased.
pub fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_else(|_| "host".into())
}

/// Enroll if needed and start the link. `Ok(None)` = this host is not joined to any
/// central (no `--join` and nothing saved).
pub async fn start(
    sup: &Arc<Supervisor>,
    state_dir: &Path,
    cfg: &UplinkConfig,
    upgrader: Option<Arc<crate::upgrade::HostUpgrader>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Option<Arc<Link>>, LinkError> {
    let dir = link_dir(state_dir);
    let saved_path = dir.join("link.json");
    let saved: Option<Saved> = std::fs::read(&saved_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let enrolled = roost_federation::pki::HostIdentity::load(&dir)?;
    let (url, name) = match (&enrolled, &saved, &cfg.join) {
        (Some(id), Some(s), join) => {
            if cfg.join_token.is_some() {
                tracing::info!(
                    host = id.name(),
                    "already enrolled; --join-token not needed and ignored"
                );
            }
            (
                join.clone().unwrap_or_else(|| s.central.clone()),
                id.name().to_string(),
            )
        }
        (_, _, Some(join)) => {
            let Some(token) = &cfg.join_token else {
                return Err(LinkError::Url {
                    url: join.clone(),
                    reason: "this host is not enrolled yet: give --join-token TOKEN (from `roost central token create --subcloud NAME`)".into(),
                });
            };
            let name = cfg.name.clone().unwrap_or_else(default_name);
            let id = roost_federation::link::client::enroll(join, token, &name, &dir).await?;
            let s = Saved {
                central: join.clone(),
                name: id.name().to_string(),
            };
            let body = serde_json::to_vec(&s).unwrap_or_default();
            std::fs::write(&saved_path, body).map_err(|e| LinkError::Io {
                path: saved_path.clone(),
                reason: e.to_string(),
            })?;
            (join.clone(), id.name().to_string())
        }
        (_, _, None) => return Ok(None),
    };
    let central = CentralAddr::parse(&url)?;
    let probe =
        cfg.latency_probe
            .and_then(|every| match crate::hostinfo::LatencyProbe::start(every) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the latency probe thread");
                    None
                }
            });
    let rt = SupervisorRuntime::new(Arc::clone(sup), &name, state_dir, probe);
    let version = upgrader
        .as_ref()
        .map_or(env!("CARGO_PKG_VERSION"), |u| u.running_version());
    let mut link = Link::new(
        LinkConfig {
            central,
            dir,
            heartbeat: cfg.heartbeat,
            backoff_max: cfg.backoff_max,
            roost_version: version.into(),
        },
        rt,
    );
    if let Some(u) = upgrader {
        u.set_host(&name);
        link = link.with_upgrader(u);
    }
    let link = Arc::new(link);
    tokio::spawn(Arc::clone(&link).run(stop));
    tracing::info!(central = %url, host = %name, "central link started");
    Ok(Some(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_pressure_reads_meminfo() {
        let m = "MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    50 kB\n";
        assert_eq!(memory_available(m), Some(0.05));
        assert_eq!(
            memory_available("MemTotal: 0 kB\nMemAvailable: 0 kB\n"),
            None
        );
        assert_eq!(memory_available("garbage"), None);
    }

    #[test]
    fn disk_use_of_a_real_file_system() {
        let u = disk_used(Path::new("/")).unwrap();
        assert!((0.0..=1.0).contains(&u), "{u}");
        assert_eq!(disk_used(Path::new("/nonexistent/x")), None);
    }
}

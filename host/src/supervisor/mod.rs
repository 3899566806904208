//! The supervisor: one actor per workload reconciles what the user wants (`desired`)
//! with what runs, through the drivers. Restart policies with capped exponential
//! backoff; stop = polite, grace, kill; an event for every transition; recovery of
//! running instances after a daemon restart, never two copies of one workload.

use crate::admission::Admission;
use crate::driver::{Driver, DriverError, ExitInfo};
use crate::events::EventBus;
use crate::model::{now_ms, Desired, Phase, Status, WorkloadRecord};
use crate::spec::{DriverKind, RestartPolicy, Workload};
use crate::store::{StoreError, WriteOp, Writer};
use crate::validate::FieldError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Supervisor settings.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The daemon's state dir (run dirs and logs live below it).
    pub state_dir: PathBuf,
    /// First restart delay.
    pub backoff_base: Duration,
    /// Restart delay cap.
    pub backoff_max: Duration,
    /// A run at least this long resets the backoff.
    pub stable_after: Duration,
    /// Grace between polite stop and kill when the spec does not say.
    pub default_grace: Duration,
}

impl SupervisorConfig {
    /// Defaults under `state_dir`: backoff 1 s doubling to 60 s, reset after 10 s of
    /// running, 10 s grace.
    pub fn new(state_dir: PathBuf) -> Self {
        Self {
            state_dir,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stable_after: Duration::from_secs(10),
            default_grace: Duration::from_secs(10),
        }
    }
}

/// Why an operation was refused; the API maps each to a status code.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No such workload (404).
    #[error("workload `{0}` not found; `roost ps` lists the workloads")]
    NotFound(String),
    /// The name is taken (409).
    #[error("workload `{0}` already exists; pick another name, or `roost rm {0}` first")]
    Conflict(String),
    /// The spec is wrong (422).
    #[error("invalid workload spec")]
    Invalid(Vec<FieldError>),
    /// The scheduler said no (422).
    #[error("not admitted: {0}")]
    NotAdmitted(String),
    /// The driver the spec names is not there (503).
    #[error("{0}")]
    Unavailable(String),
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The daemon is shutting down (503).
    #[error("the daemon is shutting down; try again when it is back")]
    ShuttingDown,
    /// The workload has no running instance to act on (409).
    #[error("workload `{name}` has no running instance (phase `{phase}`); `roost start {name}` starts it")]
    NotRunning {
        /// Workload name.
        name: String,
        /// Its phase now.
        phase: String,
    },
    /// The driver failed the operation (502; 422 for a spec problem, 503 when its
    /// backend is down).
    #[error(transparent)]
    Driver(#[from] crate::driver::DriverError),
}

enum Msg {
    Exited {
        instance: u64,
        info: ExitInfo,
    },
    Desire(Desired, oneshot::Sender<WorkloadRecord>),
    Replace(
        Box<Workload>,
        Option<crate::driver::Placement>,
        oneshot::Sender<WorkloadRecord>,
    ),
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Instances started.
    pub starts: AtomicU64,
    /// Restarts after an exit.
    pub restarts: AtomicU64,
    /// Start failures.
    pub start_failures: AtomicU64,
    /// Instances re-adopted after a daemon restart.
    pub adopted: AtomicU64,
    /// Extra copies found and removed at recovery.
    pub duplicates_removed: AtomicU64,
}

/// The supervisor. Cheap to share (`Arc`).
pub struct Supervisor {
    cfg: SupervisorConfig,
    drivers: HashMap<DriverKind, Arc<dyn Driver>>,
    unavailable: HashMap<DriverKind, String>,
    admission: Mutex<Box<dyn Admission>>,
    writer: Writer,
    /// The event log.
    pub events: EventBus,
    records: RwLock<BTreeMap<String, WorkloadRecord>>,
    actors: Mutex<HashMap<String, mpsc::UnboundedSender<Msg>>>,
    reserved: Mutex<HashSet<String>>,
    /// Counters for metrics.
    pub counters: Counters,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// What the actor should do next (kube-rs style: a pure function of the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start a new instance.
    Start,
    /// Stop the running instance.
    Stop,
    /// Nothing runs and nothing should: settle the phase to `stopped`.
    MarkStopped,
    /// Remove the workload for good.
    Finalize,
    /// Wait for a message, or until the given Unix ms.
    Wait(Option<u64>),
}

/// Decide the next step for a record at time `now` (Unix ms).
pub fn reconcile(rec: &WorkloadRecord, now: u64) -> Action {
    let st = &rec.status;
    let running = st.handle.is_some();
    match rec.desired {
        Desired::Deleted if running => Action::Stop,
        Desired::Deleted => Action::Finalize,
        Desired::Stopped if running => Action::Stop,
        Desired::Stopped => match st.phase {
            Phase::Pending | Phase::Backoff | Phase::Starting | Phase::Running => {
                Action::MarkStopped
            }
            _ => Action::Wait(None),
        },
        Desired::Running => match st.phase {
            Phase::Pending => Action::Start,
            Phase::Starting | Phase::Running if !running => Action::Start,
            Phase::Backoff => match st.next_restart_at_ms {
                Some(t) if t > now => Action::Wait(Some(t)),
                _ => Action::Start,
            },
            _ => Action::Wait(None),
        },
    }
}

/// Restart delay after `failures` consecutive failures: base·2^(n-1), capped.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << shift).min(max)
}

impl Supervisor {
    /// A supervisor over the given drivers; `unavailable` names drivers that could not
    /// be set up, with the reason (reported when a spec asks for them).
    pub fn new(
        cfg: SupervisorConfig,
        drivers: Vec<Arc<dyn Driver>>,
        unavailable: HashMap<DriverKind, String>,
        admission: Box<dyn Admission>,
        writer: Writer,
        events: EventBus,
    ) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            drivers: drivers.into_iter().map(|d| (d.kind(), d)).collect(),
            unavailable,
            admission: Mutex::new(admission),
            writer,
            events,
            records: RwLock::new(BTreeMap::new()),
            actors: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashSet::new()),
            counters: Counters::default(),
        })
    }

    fn driver(&self, kind: DriverKind) -> Result<Arc<dyn Driver>, SupervisorError> {
        self.drivers.get(&kind).cloned().ok_or_else(|| {
            SupervisorError::Unavailable(format!(
                "driver `{}` is not available on this host: {}",
                kind.as_str(),
                self.unavailable
                    .get(&kind)
                    .map(String::as_str)
                    .unwrap_or("it is not built into this daemon yet")
            ))
        })
    }

    /// Start a command inside `name`'s running instance (`roost exec`).
    pub async fn exec(
        &self,
        name: &str,
        req: &crate::driver::ExecRequest,
    ) -> Result<crate::driver::ExecSession, SupervisorError> {
        let rec = self.get(name)?;
        let Some(handle) = rec.status.handle.clone() else {
            return Err(SupervisorError::NotRunning {
                name: name.to_string(),
                phase: rec.status.phase.as_str().to_string(),
            });
        };
        let driver = self.driver(handle.driver)?;
        let Some(exec) = driver.as_exec() else {
            return Err(SupervisorError::Unavailable(format!(
                "workload `{name}` runs under driver `{}`, which cannot run commands inside its instances; only container workloads take `roost exec`",
                handle.driver.as_str()
            )));
        };
        Ok(exec.exec(&handle, req).await?)
    }

    /// Every workload, by name.
    pub fn list(&self) -> Vec<WorkloadRecord> {
        match self.records.read() {
            Ok(r) => r.values().cloned().collect(),
            Err(p) => p.into_inner().values().cloned().collect(),
        }
    }

    /// One workload.
    pub fn get(&self, name: &str) -> Result<WorkloadRecord, SupervisorError> {
        let r = match self.records.read() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        r.get(name)
            .cloned()
            .ok_or_else(|| SupervisorError::NotFound(name.to_string()))
    }

    /// Admission's view of the host.
    pub fn capacity(&self) -> crate::admission::HostCapacity {
        lock(&self.admission).capacity()
    }

    /// Log file of a workload.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.cfg.state_dir.join("logs").join(format!("{name}.log"))
    }

    /// An instance's run directory: `run/<name>.<instance>` (names have no dots). Flat,
    /// so a create allocates one directory inode, not two (inode allocation showed as
    /// a quarter of the daemon's CPU in a `make bench-api` profile on this ext4, though
    /// an A/B of the two layouts showed no measurable latency difference).
    fn run_dir(&self, name: &str, instance: u64) -> PathBuf {
        self.cfg
            .state_dir
            .join("run")
            .join(format!("{name}.{instance}"))
    }

    /// Remove the run directories of `name`'s instances below `below`. Instances
    /// need not have one (a driver makes it only when it needs it), so the run root
    /// is listed rather than counted down.
    fn remove_run_dirs_below(&self, name: &str, below: u64) {
        let Ok(entries) = std::fs::read_dir(self.cfg.state_dir.join("run")) else {
            return;
        };
        let prefix = format!("{name}.");
        for e in entries.flatten() {
            let file = e.file_name();
            let n = file
                .to_str()
                .and_then(|f| f.strip_prefix(&prefix))
                .and_then(|n| n.parse::<u64>().ok());
            if n.is_some_and(|n| n < below) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// Create the workload's log file (and the logs dir). Idempotent and cheap when
    /// it exists (the common case: `create` makes it while the accept is being
    /// committed). An instance's run dir is made by the driver that needs one (the VM
    /// monitor's socket and state; a mock's exit code), so a container's start
    /// allocates no inode for it.
    fn prepare_log(&self, name: &str) -> std::io::Result<()> {
        let log = self.log_path(name);
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(drop)
        };
        match open(&log) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(self.cfg.state_dir.join("logs"))?;
                open(&log)
            }
            r => r,
        }
    }

    fn cache(&self, rec: &WorkloadRecord) {
        let mut r = match self.records.write() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        r.insert(rec.name().to_string(), rec.clone());
    }

    fn uncache(&self, name: &str) {
        let mut r = match self.records.write() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        r.remove(name);
    }

    /// Accept a new workload: driver checks, admission, durable store, then start.
    pub async fn create(self: &Arc<Self>, w: Workload) -> Result<WorkloadRecord, SupervisorError> {
        let name = w.metadata.name.clone();
        {
            // A name that still holds an allocation is taken too (its record may be
            // on its way out): admitting it would hand back that allocation, and a
            // failed create would then free what the other one holds.
            let exists = self.get(&name).is_ok() || lock(&self.admission).holds(&name);
            let mut res = lock(&self.reserved);
            if exists || !res.insert(name.clone()) {
                return Err(SupervisorError::Conflict(name));
            }
        }
        // Its own task: a caller that goes away (a client hanging up) must not cut a
        // create short between its commit and the start of its actor.
        let sup = Arc::clone(self);
        tokio::spawn(async move {
            let out = sup.create_reserved(w).await;
            lock(&sup.reserved).remove(&name);
            out
        })
        .await
        .unwrap_or(Err(SupervisorError::ShuttingDown))
    }

    async fn create_reserved(
        self: &Arc<Self>,
        w: Workload,
    ) -> Result<WorkloadRecord, SupervisorError> {
        let name = w.metadata.name.clone();
        let driver = self.driver(w.spec.driver)?;
        driver
            .prepare(&name, &w.spec)
            .await
            .map_err(|e| driver_error_to_supervisor(e, &name))?;
        let (placement, setup) = lock(&self.admission)
            .admit_deferred(&name, &w.spec)
            .map_err(|r| SupervisorError::NotAdmitted(r.reason))?;
        let rec = WorkloadRecord {
            workload: w,
            desired: Desired::Running,
            generation: 1,
            placement: Some(placement),
            status: Status::default(),
            created_at_ms: now_ms(),
        };
        // While the accept commits: the workload's cgroup (when admission left it to
        // us) and its log file (file creation costs as much as the commit here);
        // start finds them in place. The file is left behind if the commit fails:
        // harmless, and reused.
        let prep = {
            let sup = Arc::clone(self);
            let name = name.clone();
            tokio::task::spawn_blocking(move || {
                let set = setup.map_or(Ok(()), |f| f());
                // A failure here shows again, with its reason, when the instance starts.
                let _ = sup.prepare_log(&name);
                set
            })
        };
        let written = self
            .writer
            .write(WriteOp::InsertNew(Box::new(rec.clone())))
            .await;
        let set = prep
            .await
            .unwrap_or_else(|e| Err(format!("the cgroup setup task failed: {e}")));
        match (written, set) {
            (Ok(true), Ok(())) => {}
            (Ok(true), Err(reason)) => {
                // Accepted on disk but cannot run here: take the accept back.
                if let Err(e) = self.writer.write(WriteOp::Remove(name.clone())).await {
                    tracing::error!(workload = %name, error = %e, "an accept whose cgroup failed is still stored; it is retried at the next start");
                }
                lock(&self.admission).release(&name);
                return Err(SupervisorError::NotAdmitted(reason));
            }
            (Ok(false), _) => {
                lock(&self.admission).release(&name);
                return Err(SupervisorError::Conflict(name));
            }
            (Err(e), _) => {
                lock(&self.admission).release(&name);
                return Err(e.into());
            }
        }
        self.cache(&rec);
        self.events.emit(
            &name,
            None,
            "created",
            format!("accepted (driver {})", rec.workload.spec.driver.as_str()),
        );
        self.spawn_actor(rec.clone());
        Ok(rec)
    }

    /// Create or update to match `w`; unchanged specs are left alone. Returns the
    /// record and what happened (`created`, `updated`, `unchanged`).
    pub async fn apply(
        self: &Arc<Self>,
        w: Workload,
    ) -> Result<(WorkloadRecord, &'static str), SupervisorError> {
        let name = w.metadata.name.clone();
        let Ok(cur) = self.get(&name) else {
            return match self.create(w.clone()).await {
                Ok(r) => Ok((r, "created")),
                // Lost a race with another create of the same name: apply again.
                Err(SupervisorError::Conflict(_)) => {
                    let cur = self.get(&name)?;
                    if cur.workload == w {
                        Ok((cur, "unchanged"))
                    } else {
                        Err(SupervisorError::Conflict(name))
                    }
                }
                Err(e) => Err(e),
            };
        };
        if cur.workload == w {
            return Ok((cur, "unchanged"));
        }
        let driver = self.driver(w.spec.driver)?;
        driver
            .prepare(&name, &w.spec)
            .await
            .map_err(|e| driver_error_to_supervisor(e, &name))?;
        let placement = {
            let mut adm = lock(&self.admission);
            adm.release(&name);
            match adm.admit(&name, &w.spec) {
                Ok(p) => p,
                Err(r) => {
                    if let Some(old) = &cur.placement {
                        let _ = adm.restore(&name, old);
                    }
                    return Err(SupervisorError::NotAdmitted(r.reason));
                }
            }
        };
        let (tx, rx) = oneshot::channel();
        self.send(&name, Msg::Replace(Box::new(w), Some(placement), tx))?;
        let rec = rx.await.map_err(|_| SupervisorError::ShuttingDown)?;
        Ok((rec, "updated"))
    }

    fn send(&self, name: &str, msg: Msg) -> Result<(), SupervisorError> {
        let actors = lock(&self.actors);
        let tx = actors
            .get(name)
            .ok_or_else(|| SupervisorError::NotFound(name.to_string()))?;
        tx.send(msg).map_err(|_| SupervisorError::ShuttingDown)
    }

    /// Set what the user wants and wait until the workload has settled.
    pub async fn set_desired(
        &self,
        name: &str,
        desired: Desired,
    ) -> Result<WorkloadRecord, SupervisorError> {
        let (tx, rx) = oneshot::channel();
        self.send(name, Msg::Desire(desired, tx))?;
        rx.await.map_err(|_| SupervisorError::ShuttingDown)
    }

    fn spawn_actor(self: &Arc<Self>, rec: WorkloadRecord) {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.actors).insert(rec.name().to_string(), tx.clone());
        let actor = Actor {
            sup: Arc::clone(self),
            rec,
            rx,
            tx,
            replies: Vec::new(),
        };
        tokio::spawn(actor.run());
    }
}

fn driver_error_to_supervisor(e: DriverError, _name: &str) -> SupervisorError {
    match e {
        DriverError::Spec { field, message } => {
            SupervisorError::Invalid(vec![FieldError { field, message }])
        }
        DriverError::Unavailable { .. } => SupervisorError::Unavailable(e.to_string()),
        DriverError::Op { .. } => SupervisorError::Unavailable(e.to_string()),
    }
}

fn wants_restart(policy: RestartPolicy, info: &ExitInfo) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !info.success(),
        RestartPolicy::Never => false,
    }
}

/// One line about how an instance ended.
pub fn describe_exit(i: &ExitInfo) -> String {
    let mut s = i.reason.clone();
    if let Some(c) = i.code {
        s.push_str(&format!(", code {c}"));
    }
    if let Some(sig) = i.signal {
        s.push_str(&format!(", signal {sig}"));
    }
    if let Some(m) = &i.message {
        s.push_str(&format!(": {m}"));
    }
    s
}

mod actor;
mod recover;
use actor::Actor;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_that_still_holds_an_allocation_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("roost.redb")).unwrap();
        let writer = Writer::spawn(store.clone());
        let events = EventBus::new(store, writer.clone()).unwrap();
        let w = crate::validate::parse_workload(
            "apiVersion: roost.dev/v1\nkind: Workload\nmetadata: {name: held}\n\
             spec: {driver: mock, mock: {}, resources: {cpu: 500m}}\n",
        )
        .unwrap();
        // An allocation with no record (the state a half-finished removal or a
        // store that disagrees with the cache leaves).
        let mut adm = crate::admission::CapacityCheck::new(2, 1024);
        adm.admit("held", &w.spec).unwrap();
        let sup = Supervisor::new(
            SupervisorConfig::new(dir.path().to_path_buf()),
            vec![Arc::new(crate::drivers::mock::MockDriver::new(dir.path()))],
            HashMap::new(),
            Box::new(adm),
            writer,
            events,
        );
        let e = sup.create(w).await.unwrap_err();
        assert!(
            matches!(&e, SupervisorError::Conflict(n) if n == "held"),
            "{e}"
        );
        // Refused before admission: what the name holds is still held.
        assert!(lock(&sup.admission).holds("held"));
        assert!(sup.list().is_empty());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_millis(100);
        let m = Duration::from_secs(5);
        assert_eq!(backoff(b, m, 1), Duration::from_millis(100));
        assert_eq!(backoff(b, m, 2), Duration::from_millis(200));
        assert_eq!(backoff(b, m, 4), Duration::from_millis(800));
        assert_eq!(backoff(b, m, 30), m);
    }
}

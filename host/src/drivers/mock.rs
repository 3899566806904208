//! The mock driver: a real host process (`/bin/sh`) that logs ticks (a second apart
//! when it has a `runSeconds`, else 5 s apart), exits
//! with a given code after a given time, and can ignore the polite stop or refuse to
//! start. Real processes, so daemon restarts, recovery and "never two copies" are
//! tested for real without KVM or containerd.

use crate::driver::{
    Driver, DriverError, ExitInfo, InstanceId, StartRequest, TaskHandle, TaskState,
};
use crate::drivers::process::{
    exit_of_wait_status, host_id, marked, reap, spawn_placed, CgroupAttach, ProcId, SpawnError,
};
use crate::spec::{DriverKind, MockSpec, WorkloadSpec};
use async_trait::async_trait;
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Marker in each mock's argv[0] so recovery can find it: `roost-mock:<host>:<name>-<n>`.
const MARKER: &str = "roost-mock:";

/// The mock driver. `host_id` separates the mocks of daemons with different state dirs.
#[derive(Debug)]
pub struct MockDriver {
    host_id: String,
    /// Moves each mock into its workload's cgroup (when placements are enforced).
    cgroups: Option<Arc<dyn CgroupAttach>>,
    /// One /proc scan serves a burst of `recover` calls.
    scan: Mutex<Option<(Instant, HashMap<String, ProcId>)>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Data {
    proc: ProcId,
    exit_file: PathBuf,
}

impl MockDriver {
    /// A mock driver for the daemon whose state dir is `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        Self {
            host_id: host_id(state_dir),
            cgroups: None,
            scan: Mutex::new(None),
        }
    }

    /// Put every mock into its workload's cgroup through `attach`.
    pub fn with_cgroups(mut self, attach: Arc<dyn CgroupAttach>) -> Self {
        self.cgroups = Some(attach);
        self
    }

    fn marker(&self, id: &InstanceId) -> String {
        format!("{MARKER}{}:{}", self.host_id, id.key())
    }

    fn data(h: &TaskHandle) -> Result<Data, DriverError> {
        h.decode()
    }

    /// Every live mock of this host: marker key (`name-N`) → process.
    fn scan_proc(&self) -> HashMap<String, ProcId> {
        let mut guard = match self.scan.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((at, map)) = guard.as_ref() {
            if at.elapsed() < Duration::from_millis(500) {
                return map.clone();
            }
        }
        // argv = ["/bin/sh", "-c", script, marker]; the marker is $0 of the script.
        let map: HashMap<String, ProcId> = marked(&format!("{MARKER}{}:", self.host_id))
            .into_iter()
            .filter_map(|m| ProcId::of(m.pid).map(|p| (m.key, p)))
            .collect();
        *guard = Some((Instant::now(), map.clone()));
        map
    }

    fn exit_from_file(path: &Path) -> Option<ExitInfo> {
        let s = std::fs::read_to_string(path).ok()?;
        let code: i32 = s.trim().parse().ok()?;
        Some(ExitInfo::exited(code))
    }
}

/// `EXIT_FILE` from a mock's environment (`/proc/<pid>/environ`).
fn exit_file_of(pid: i32) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"EXIT_FILE="))
        .map(|v| PathBuf::from(std::ffi::OsStr::from_bytes(v)))
}

fn script(m: &MockSpec) -> String {
    let on_term = if m.ignore_stop {
        r#"echo "mock: ignoring the polite stop""#.to_string()
    } else {
        r#"echo "mock: stopping"; kill $SLEEPER 2>/dev/null; finish 143; exit 143"#.to_string()
    };
    let run = m
        .run_seconds
        .map(|s| s.to_string())
        .unwrap_or_else(|| "-1".into());
    format!(
        r#"# The run dir is made only when there is an exit code to keep in it.
finish() {{ [ -d "$RUN_DIR" ] || mkdir -p "$RUN_DIR"; echo "$1" > "$EXIT_FILE"; }}
trap '{on_term}' TERM
echo "mock $ROOST_INSTANCE started"
i=0
while :; do
  if [ {run} -ge 0 ] && [ $i -ge {run} ]; then
    echo "mock $ROOST_INSTANCE exiting with {code}"
    finish {code}
    exit {code}
  fi
  echo "tick $i"
  # A line a second while an end is set; a mock that runs until stopped ticks every
  # 5 s (each tick forks `sleep`: 1,000 of those at 1 s saturate a core).
  s=1
  if [ {run} -lt 0 ]; then s=5; fi
  if [ {run} -ge 0 ] && [ $((i+s)) -gt {run} ]; then s=$(({run}-i)); fi
  sleep $s &
  SLEEPER=$!
  wait $SLEEPER
  i=$((i+s))
done
"#,
        code = m.exit_code
    )
}

#[async_trait]
impl Driver for MockDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Mock
    }

    async fn prepare(&self, _name: &str, spec: &WorkloadSpec) -> Result<(), DriverError> {
        if !Path::new("/bin/sh").exists() {
            return Err(DriverError::Unavailable {
                driver: "mock",
                reason: "/bin/sh is missing; the mock driver runs its workloads with it".into(),
            });
        }
        let _ = spec;
        Ok(())
    }

    async fn start(&self, req: &StartRequest) -> Result<TaskHandle, DriverError> {
        let m = req.spec.mock.clone().unwrap_or_default();
        let op = |reason: String| DriverError::Op {
            op: "start",
            instance: req.id.key(),
            reason,
        };
        if m.fail_start {
            return Err(op(
                "the mock is told to fail its start (mock.failStart)".into()
            ));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&req.log_path)
            .map_err(|e| op(format!("open log {}: {e}", req.log_path.display())))?;
        let log2 = log
            .try_clone()
            .map_err(|e| op(format!("dup log fd: {e}")))?;
        let exit_file = req.run_dir.join("exit");
        let _ = std::fs::remove_file(&exit_file);
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script(&m))
            .arg(self.marker(&req.id))
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("ROOST_INSTANCE", req.id.key())
            .env("EXIT_FILE", &exit_file)
            .env("RUN_DIR", &req.run_dir)
            // Under the state dir (the run root), where the daemon's own workloads
            // are found by tests and operators.
            .current_dir(req.run_dir.parent().unwrap_or(Path::new("/")))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Its own process group: stop signals the whole group, and a Ctrl-C or a
        // daemon restart does not reach it. (No pre_exec hook, so std can use
        // posix_spawn: much cheaper than fork from a daemon holding 1,000 tasks.)
        cmd.process_group(0);
        // Born in its workload's cgroup (nothing to move afterwards).
        let child = match spawn_placed(self.cgroups.as_ref(), &req.placement, cmd) {
            Ok(c) => c,
            Err(SpawnError::Spawn(e)) => return Err(op(format!("spawn /bin/sh: {e}"))),
            Err(e) => return Err(op(e.discard())),
        };
        let pid = child.id() as i32;
        // We reap through waitpid ourselves (see ProcId::exited); dropping `child`
        // neither kills nor waits.
        drop(child);
        // A mock told to exit at once may be a zombie already: it still started;
        // `wait` reaps it and reads its exit file. (start_time 0 never matches a
        // live process, so it counts as ended.)
        let proc = ProcId::of(pid).unwrap_or(ProcId { pid, start_time: 0 });
        let data = serde_json::to_value(Data { proc, exit_file }).map_err(|e| op(e.to_string()))?;
        Ok(TaskHandle {
            id: req.id.clone(),
            driver: DriverKind::Mock,
            data,
        })
    }

    async fn wait(&self, h: &TaskHandle) -> Result<ExitInfo, DriverError> {
        let d = Self::data(h)?;
        d.proc.exited().await;
        let reaped = reap(d.proc.pid);
        if let Some(info) = Self::exit_from_file(&d.exit_file) {
            return Ok(info);
        }
        if let Some(info) = reaped.and_then(|st| exit_of_wait_status(st, None)) {
            return Ok(info);
        }
        // Not our child (we restarted) and no exit file: it was killed.
        Ok(ExitInfo::lost(
            "the process ended without recording an exit status",
        ))
    }

    async fn stop(&self, h: &TaskHandle, grace: Duration) -> Result<(), DriverError> {
        let d = Self::data(h)?;
        d.proc.signal_group(libc::SIGTERM);
        if tokio::time::timeout(grace, d.proc.exited()).await.is_err() {
            d.proc.signal_group(libc::SIGKILL);
            d.proc.exited().await;
        }
        Ok(())
    }

    async fn destroy(&self, h: &TaskHandle) -> Result<(), DriverError> {
        let d = Self::data(h)?;
        d.proc.signal_group(libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), d.proc.exited()).await;
        reap(d.proc.pid);
        Ok(())
    }

    async fn inspect(&self, h: &TaskHandle) -> Result<TaskState, DriverError> {
        let d = Self::data(h)?;
        if d.proc.alive() {
            return Ok(TaskState::Running);
        }
        Ok(match Self::exit_from_file(&d.exit_file) {
            Some(i) => TaskState::Exited(i),
            None => TaskState::NotFound,
        })
    }

    async fn recover(
        &self,
        workload: &str,
        known: Option<&TaskHandle>,
    ) -> Result<Vec<TaskHandle>, DriverError> {
        let mut out = Vec::new();
        let prefix = format!("{workload}-");
        for (key, proc) in self.scan_proc() {
            let Some(n) = key
                .strip_prefix(&prefix)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let id = InstanceId {
                workload: workload.to_string(),
                instance: n,
            };
            let exit_file = match known {
                Some(k) if k.id == id => Self::data(k)?.exit_file,
                // Read it back from the process's environment.
                _ => exit_file_of(proc.pid).unwrap_or_default(),
            };
            let data =
                serde_json::to_value(Data { proc, exit_file }).map_err(|e| DriverError::Op {
                    op: "recover",
                    instance: id.key(),
                    reason: e.to_string(),
                })?;
            out.push(TaskHandle {
                id,
                driver: DriverKind::Mock,
                data,
            });
        }
        out.sort_by_key(|h| h.id.instance);
        Ok(out)
    }
}

//! The container driver: workloads run by containerd (through `roost-container`'s
//! gRPC client, never the `ctr` CLI). Container id = [`InstanceId::key`]; the
//! container's labels carry the workload name and instance so `recover` finds them
//! after a daemon restart, and `Tasks.Wait` from the new daemon still sees their exit.

use crate::driver::{
    Driver, DriverError, Exec, ExecControl, ExecReader, ExecRequest, ExecSession, ExecWriter,
    ExitInfo, InstanceId, Placement, StartRequest, TaskHandle, TaskState,
};
use crate::drivers::process::{children_of, parent_of, CgroupAttach};
use crate::spec::{ContainerSpec, DriverKind, NetworkMode, RtPolicy as SpecRtPolicy, WorkloadSpec};
use async_trait::async_trait;
use roost_container::cgroup::CgroupV1;
use roost_container::cni::{Cni, CniError, PortMapping};
use roost_container::exec::{ExecOptions, ExecProcess};
use roost_container::spec::{BindMount, Resources, RtPolicy, RunSpec};
use roost_container::task::{CheckError, Exit, State, TaskError, LABEL_WORKLOAD};
use roost_container::Client;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Label with the instance number.
const LABEL_INSTANCE: &str = "roost.instance";
/// Where containers' cgroups go when the scheduler names none.
const DEFAULT_CGROUP_PARENT: &str = "/roost/containers";

/// Runs container workloads through containerd.
#[derive(Debug, Clone)]
pub struct ContainerDriver {
    client: Client,
    cgroups: CgroupV1,
    platform: Option<Arc<dyn CgroupAttach>>,
    cni: Option<Arc<Cni>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    container_id: String,
    cgroup: String,
    /// On the bridge (its network is released with it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    bridge: bool,
}

fn unavailable(e: impl std::fmt::Display) -> DriverError {
    DriverError::Unavailable {
        driver: "container",
        reason: e.to_string(),
    }
}

impl ContainerDriver {
    /// Connect to containerd at `socket` (namespace `roost`); fails with what to do when
    /// it does not answer.
    pub async fn connect(socket: &Path) -> Result<Self, DriverError> {
        let client = Client::connect(socket).await.map_err(unavailable)?;
        Ok(Self {
            client,
            cgroups: CgroupV1::default(),
            platform: None,
            cni: None,
        })
    }

    /// Open the driver without waiting on containerd (the daemon's driver table is
    /// built synchronously): fails only when the socket does not exist; each call then
    /// says clearly when containerd does not answer. Must run inside a tokio runtime.
    pub fn open(socket: &Path) -> Result<Self, DriverError> {
        let client = Client::connect_lazy(socket, &namespace()).map_err(unavailable)?;
        Ok(Self {
            client,
            cgroups: CgroupV1::default(),
            platform: None,
            cni: None,
        })
    }

    /// Send container output through the log copier at `roost` (the `roost` binary),
    /// which keeps every line; see [`roost_container::logcopy`].
    pub fn with_log_helper(mut self, roost: PathBuf) -> Self {
        self.client = self.client.with_log_helper(roost);
        self
    }

    /// A driver over an existing client and cgroup root (tests use their own namespace).
    pub fn with_client(client: Client, cgroups: CgroupV1) -> Self {
        Self {
            client,
            cgroups,
            platform: None,
            cni: None,
        }
    }

    /// Give `network: bridge` containers their own namespace on this network.
    pub fn with_network(mut self, cni: Cni) -> Self {
        self.cni = Some(Arc::new(cni));
        self
    }

    /// Release the network of container `id` (logged, never fatal: a sweep at the
    /// next daemon start retries what is left).
    async fn release_network(&self, id: &str) {
        if let Some(cni) = &self.cni {
            if let Err(e) = cni.del(id).await {
                tracing::warn!(container = %id, error = %e, "could not release the container's network");
            }
        }
    }

    /// At daemon start, before anything starts: release every address and network
    /// namespace held for a container that no longer runs (a daemon that died
    /// between a start and its record, or before a delete finished). Returns the
    /// container ids released.
    pub async fn sweep_networks(&self) -> Vec<String> {
        let Some(cni) = &self.cni else {
            return Vec::new();
        };
        let mut released = Vec::new();
        for id in cni.holders() {
            match self.client.state(&id).await {
                Ok(State::Running | State::Paused) => continue,
                Ok(_) => {}
                // containerd does not answer: leave it for the next start.
                Err(e) => {
                    tracing::warn!(error = %e, "network sweep skipped: containerd does not answer");
                    return released;
                }
            }
            tracing::info!(container = %id, "releasing the network of a container that no longer runs");
            self.release_network(&id).await;
            released.push(id);
        }
        released
    }

    /// Keep each container's shim and log copier on the platform cores through
    /// `attach` (a shim is born where containerd is, which may not be there yet).
    pub fn with_platform(mut self, attach: Arc<dyn CgroupAttach>) -> Self {
        self.platform = Some(attach);
        self
    }

    /// Move the shim serving container `id`, and its helpers (the log copier), onto
    /// the platform cores; the container's own processes stay in their cgroup.
    async fn shim_to_platform(&self, id: &str) {
        let Some(a) = &self.platform else { return };
        let Ok(pids) = self.client.pids(id).await else {
            return;
        };
        let proc_root = Path::new("/proc");
        // The shim is the parent of the container's processes that is not one of them.
        let Some(shim) = pids
            .iter()
            .filter_map(|&p| parent_of(proc_root, p))
            .find(|pp| !pids.contains(pp))
        else {
            return;
        };
        let mut moving = vec![shim];
        moving.extend(
            children_of(proc_root, shim)
                .into_iter()
                .filter(|c| !pids.contains(c)),
        );
        for pid in moving {
            if let Err(e) = a.to_platform(pid, false) {
                tracing::warn!(container = %id, pid, error = %e, "could not move a shim process onto the platform cores");
            }
        }
    }

    /// The client (for tools and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn data(h: &TaskHandle) -> Result<Data, DriverError> {
        h.decode()
    }

    fn handle(id: InstanceId, data: Data) -> Result<TaskHandle, DriverError> {
        let key = id.key();
        Ok(TaskHandle {
            id,
            driver: DriverKind::Container,
            data: serde_json::to_value(data).map_err(|e| DriverError::Op {
                op: "encode handle",
                instance: key,
                reason: e.to_string(),
            })?,
        })
    }
}

/// containerd namespace: `roost`, or `ROOST_CONTAINERD_NAMESPACE` (tests and hosts
/// sharing one containerd between several Roost daemons).
pub fn namespace() -> String {
    std::env::var("ROOST_CONTAINERD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| roost_container::NAMESPACE.to_string())
}

fn container_spec(spec: &WorkloadSpec) -> Result<&ContainerSpec, DriverError> {
    spec.container.as_ref().ok_or_else(|| DriverError::Spec {
        field: "spec.container".into(),
        message: "driver `container` needs a `container` section with at least `image`".into(),
    })
}

/// The cgroup path for an instance: a child (named by the instance) of the workload
/// cgroup the scheduler made, else under Roost's own tree. A child, because runc
/// removes the container's cgroup on delete and the scheduler's (with its budgets)
/// must outlive one instance.
fn cgroup_path(key: &str, placement: &Placement) -> String {
    match &placement.cgroup_path {
        Some(p) if !p.trim_matches('/').is_empty() => format!("/{}/{key}", p.trim_matches('/')),
        _ => format!("{DEFAULT_CGROUP_PARENT}/{key}"),
    }
}

/// The library's run request from a workload and what the scheduler granted.
fn run_spec(
    id: &InstanceId,
    c: &ContainerSpec,
    spec: &WorkloadSpec,
    placement: &Placement,
    log_path: PathBuf,
) -> RunSpec {
    let key = id.key();
    let memory_mib = placement.memory_mib.or(spec.resources.memory_mib);
    let realtime = placement.realtime.or(spec.resources.realtime).map(|r| {
        let p = match r.policy {
            SpecRtPolicy::Fifo => RtPolicy::Fifo,
            SpecRtPolicy::Rr => RtPolicy::Rr,
        };
        (p, r.priority)
    });
    RunSpec {
        id: key.clone(),
        image: c.image.clone(),
        command: c.command.clone(),
        args: c.args.clone(),
        env: c.env.clone(),
        working_dir: c.working_dir.clone(),
        user: c.user.clone(),
        mounts: c
            .mounts
            .iter()
            .map(|m| BindMount {
                source: m.source.clone(),
                destination: m.destination.clone(),
                read_only: m.read_only,
            })
            .collect(),
        resources: Resources {
            cpus: placement.cpus.clone(),
            mems: placement.mems.clone(),
            millicores: placement.millicores,
            memory_bytes: memory_mib.map(|m| (m as i64).saturating_mul(1 << 20)),
            pids: None,
            realtime,
            rt_runtime_us: if realtime.is_some() {
                Some(placement.rt_runtime_us.unwrap_or(50_000))
            } else {
                None
            },
        },
        cgroup_path: cgroup_path(&key, placement),
        log_path,
        labels: [
            (LABEL_WORKLOAD.to_string(), id.workload.clone()),
            (LABEL_INSTANCE.to_string(), id.instance.to_string()),
        ]
        .into_iter()
        .collect(),
        netns: None,
    }
}

/// A check failure as the field of the workload spec to fix.
fn check_to_driver(e: CheckError, c: &ContainerSpec) -> DriverError {
    let spec = |field: String, message: String| DriverError::Spec { field, message };
    match e {
        CheckError::Image(m) => spec("spec.container.image".into(), m),
        CheckError::Command(m) => {
            let field = if c.command.is_empty() && !c.args.is_empty() {
                "spec.container.args"
            } else {
                "spec.container.command"
            };
            spec(field.into(), m)
        }
        CheckError::User(m) => spec("spec.container.user".into(), m),
        CheckError::Mount { index, message } => {
            let part = if message.starts_with("destination") {
                "destination"
            } else {
                "source"
            };
            spec(format!("spec.container.mounts[{index}].{part}"), message)
        }
        CheckError::WorkingDir(m) => spec("spec.container.workingDir".into(), m),
        CheckError::Rpc(r) => unavailable(r),
    }
}

fn task_err(
    op: &'static str,
    instance: &str,
    e: TaskError,
    c: Option<&ContainerSpec>,
) -> DriverError {
    match (e, c) {
        (TaskError::Check(ch), Some(c)) => check_to_driver(ch, c),
        (TaskError::Rpc(r @ roost_container::RpcError::Unreachable { .. }), _) => unavailable(r),
        (e, _) => DriverError::Op {
            op,
            instance: instance.to_string(),
            reason: e.to_string(),
        },
    }
}

/// How the shim's exit status reads as an [`ExitInfo`].
fn exit_info(e: Exit) -> ExitInfo {
    if e.oom_killed {
        return ExitInfo {
            code: None,
            signal: Some(libc::SIGKILL),
            reason: "oom-killed".into(),
            message: Some("the kernel killed it for exceeding its memory limit".into()),
        };
    }
    // The shim reports death by signal N as 128+N.
    if e.status > 128 && e.status < 128 + 65 {
        return ExitInfo {
            code: None,
            signal: Some(e.status as i32 - 128),
            reason: "killed".into(),
            message: None,
        };
    }
    ExitInfo {
        code: Some(e.status as i32),
        signal: None,
        reason: "exited".into(),
        message: None,
    }
}

fn lost(message: &str) -> ExitInfo {
    ExitInfo {
        code: None,
        signal: None,
        reason: "lost".into(),
        message: Some(message.into()),
    }
}

#[async_trait]
impl Driver for ContainerDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Container
    }

    async fn prepare(&self, name: &str, spec: &WorkloadSpec) -> Result<(), DriverError> {
        let c = container_spec(spec)?;
        if c.network == Some(NetworkMode::Bridge) {
            let ok = self.cni.as_ref().map(|n| n.check());
            match ok {
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    return Err(DriverError::Spec {
                        field: "spec.container.network".into(),
                        message: e.to_string(),
                    })
                }
                None => {
                    return Err(DriverError::Spec {
                        field: "spec.container.network".into(),
                        message: "this daemon has no container network set up; use `network: host`"
                            .into(),
                    })
                }
            }
        }
        let id = InstanceId {
            workload: name.to_string(),
            instance: 0,
        };
        let run = run_spec(
            &id,
            c,
            spec,
            &Placement::default(),
            PathBuf::from("/dev/null"),
        );
        self.client
            .check(&run)
            .await
            .map(|_| ())
            .map_err(|e| check_to_driver(e, c))
    }

    async fn start(&self, req: &StartRequest) -> Result<TaskHandle, DriverError> {
        let c = container_spec(&req.spec)?;
        let key = req.id.key();
        let mut run = run_spec(&req.id, c, &req.spec, &req.placement, req.log_path.clone());
        let bridge = c.network == Some(NetworkMode::Bridge);
        if bridge {
            let cni = self.cni.as_ref().ok_or_else(|| DriverError::Spec {
                field: "spec.container.network".into(),
                message: "this daemon has no container network set up; use `network: host`".into(),
            })?;
            let ports: Vec<PortMapping> = c
                .ports
                .iter()
                .map(|p| PortMapping {
                    host_port: p.host_port,
                    container_port: p.container_port,
                    protocol: p.protocol.as_str().into(),
                })
                .collect();
            let attached = cni.add(&key, &ports).await.map_err(|e| match e {
                CniError::Missing { .. } => DriverError::Spec {
                    field: "spec.container.network".into(),
                    message: e.to_string(),
                },
                e => DriverError::Op {
                    op: "start",
                    instance: key.clone(),
                    reason: e.to_string(),
                },
            })?;
            tracing::info!(container = %key, address = ?attached.address, "on the bridge");
            run.netns = Some(attached.netns);
        }
        if let Err(e) = self.client.run(&run, &self.cgroups).await {
            if bridge {
                self.release_network(&key).await;
            }
            return Err(task_err("start", &key, e, Some(c)));
        }
        self.shim_to_platform(&key).await;
        Self::handle(
            req.id.clone(),
            Data {
                container_id: key,
                cgroup: run.cgroup_path,
                bridge,
            },
        )
    }

    async fn wait(&self, h: &TaskHandle) -> Result<ExitInfo, DriverError> {
        let d = Self::data(h)?;
        match self.client.wait(&d.container_id, &self.cgroups).await {
            Ok(e) => Ok(exit_info(e)),
            Err(TaskError::Rpc(r)) if r.is_not_found() => Ok(lost(
                "containerd has no task for it (deleted while Roost was not watching)",
            )),
            Err(e) => Err(task_err("wait", &d.container_id, e, None)),
        }
    }

    async fn stop(&self, h: &TaskHandle, grace: Duration) -> Result<(), DriverError> {
        let d = Self::data(h)?;
        self.client
            .stop(&d.container_id, grace, &self.cgroups)
            .await
            .map(|_| ())
            .map_err(|e| task_err("stop", &d.container_id, e, None))
    }

    async fn destroy(&self, h: &TaskHandle) -> Result<(), DriverError> {
        let d = Self::data(h)?;
        let st = self
            .client
            .state(&d.container_id)
            .await
            .map_err(|e| task_err("destroy", &d.container_id, e.into(), None))?;
        match st {
            State::NotFound => {
                if d.bridge {
                    self.release_network(&d.container_id).await;
                }
                Ok(())
            }
            // Already ended: nothing runs and nothing holds resources the scheduler
            // hands out, so the containerd records (≈40 ms of metadata writes) go in
            // the background and the exit is reported without waiting on them. A
            // daemon that dies first leaves a stopped container that `recover` removes.
            // On the bridge: delete and release before answering, so a daemon
            // stopped right after leaves no address or port rule behind.
            State::Stopped(_) | State::NoTask if d.bridge => {
                let r = self
                    .client
                    .delete(&d.container_id, &self.cgroups)
                    .await
                    .map_err(|e| task_err("destroy", &d.container_id, e, None));
                self.release_network(&d.container_id).await;
                r
            }
            State::Stopped(_) | State::NoTask => {
                let (this, id, bridge) = (self.clone(), d.container_id, d.bridge);
                tokio::spawn(async move {
                    if let Err(e) = this.client.delete(&id, &this.cgroups).await {
                        tracing::warn!(container = %id, error = %e, "background delete failed");
                    }
                    if bridge {
                        this.release_network(&id).await;
                    }
                });
                Ok(())
            }
            State::Running | State::Paused => {
                let r = self
                    .client
                    .delete(&d.container_id, &self.cgroups)
                    .await
                    .map_err(|e| task_err("destroy", &d.container_id, e, None));
                if d.bridge {
                    self.release_network(&d.container_id).await;
                }
                r
            }
        }
    }

    async fn inspect(&self, h: &TaskHandle) -> Result<TaskState, DriverError> {
        let d = Self::data(h)?;
        let st = self
            .client
            .state(&d.container_id)
            .await
            .map_err(|e| task_err("inspect", &d.container_id, e.into(), None))?;
        Ok(match st {
            State::Running => TaskState::Running,
            State::Paused => TaskState::Paused,
            State::Stopped(status) => {
                let oom = self.cgroups.oom_kills(&d.cgroup).is_ok_and(|n| n > 0);
                TaskState::Exited(exit_info(Exit {
                    status,
                    oom_killed: oom,
                }))
            }
            State::NoTask => TaskState::Exited(lost("the container has no task")),
            State::NotFound => TaskState::NotFound,
        })
    }

    async fn recover(
        &self,
        workload: &str,
        known: Option<&TaskHandle>,
    ) -> Result<Vec<TaskHandle>, DriverError> {
        let found = self
            .client
            .find(LABEL_WORKLOAD, workload)
            .await
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for f in found {
            let Some(instance) = f
                .labels
                .get(LABEL_INSTANCE)
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let id = InstanceId {
                workload: workload.to_string(),
                instance,
            };
            let cgroup = f
                .labels
                .get(roost_container::task::LABEL_CGROUP)
                .cloned()
                .unwrap_or_else(|| format!("{DEFAULT_CGROUP_PARENT}/{}", f.id));
            let st = self
                .client
                .state(&f.id)
                .await
                .map_err(|e| task_err("recover", &f.id, e.into(), None))?;
            let is_known = known.is_some_and(|k| k.id == id);
            match st {
                State::Running | State::Paused => {}
                // Exited while the daemon was down: hand it back so `wait` reports how.
                State::Stopped(_) if is_known => {}
                _ => {
                    tracing::info!(container = %f.id, state = ?st, "removing a dead container found at recovery");
                    if let Err(e) = self.client.delete(&f.id, &self.cgroups).await {
                        tracing::warn!(container = %f.id, error = %e, "could not remove");
                    }
                    if self
                        .cni
                        .as_ref()
                        .is_some_and(|c| c.holders().contains(&f.id))
                    {
                        self.release_network(&f.id).await;
                    }
                    continue;
                }
            }
            tracing::info!(container = %f.id, state = ?st, "re-adopted container");
            if matches!(st, State::Running | State::Paused) {
                self.shim_to_platform(&f.id).await;
            }
            out.push(Self::handle(
                id,
                Data {
                    bridge: self
                        .cni
                        .as_ref()
                        .is_some_and(|c| c.netns_path(&f.id).exists()),
                    container_id: f.id,
                    cgroup,
                },
            )?);
        }
        out.sort_by_key(|h| h.id.instance);
        Ok(out)
    }

    fn as_exec(&self) -> Option<&dyn Exec> {
        Some(self)
    }
}

#[async_trait]
impl Exec for ContainerDriver {
    async fn exec(
        &self,
        handle: &TaskHandle,
        req: &ExecRequest,
    ) -> Result<ExecSession, DriverError> {
        let d = Self::data(handle)?;
        let opts = ExecOptions {
            argv: req.argv.clone(),
            tty: req.tty,
            stdin: req.stdin,
            size: req.size,
        };
        let mut p = self
            .client
            .exec_start(&d.container_id, &opts)
            .await
            .map_err(|e| task_err("exec", &d.container_id, e, None))?;
        Ok(ExecSession {
            stdin: p.stdin.take().map(|w| Box::new(w) as ExecWriter),
            stdout: p.stdout.take().map(|r| Box::new(r) as ExecReader),
            stderr: p.stderr.take().map(|r| Box::new(r) as ExecReader),
            control: Box::new(ContainerExec(p)),
        })
    }
}

/// A container exec's control: the process itself, its pipes taken.
struct ContainerExec(ExecProcess);

#[async_trait]
impl ExecControl for ContainerExec {
    async fn resize(&self, rows: u16, cols: u16) -> Result<(), DriverError> {
        self.0
            .resize(rows, cols)
            .await
            .map_err(|e| task_err("resize", "exec", e, None))
    }

    async fn close_stdin(&self) -> Result<(), DriverError> {
        self.0
            .close_stdin()
            .await
            .map_err(|e| task_err("close stdin", "exec", e, None))
    }

    async fn wait(&self) -> Result<i32, DriverError> {
        self.0
            .wait()
            .await
            .map(|s| i32::try_from(s).unwrap_or(i32::MAX))
            .map_err(|e| task_err("exec", "exec", e, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_map_to_reasons() {
        let e = exit_info(Exit {
            status: 3,
            oom_killed: false,
        });
        assert_eq!((e.code, e.reason.as_str()), (Some(3), "exited"));
        let e = exit_info(Exit {
            status: 137,
            oom_killed: false,
        });
        assert_eq!((e.signal, e.reason.as_str()), (Some(9), "killed"));
        let e = exit_info(Exit {
            status: 137,
            oom_killed: true,
        });
        assert_eq!(e.reason, "oom-killed");
        assert!(!e.success());
    }

    #[test]
    fn check_errors_name_the_field() {
        let c = ContainerSpec {
            image: "x".into(),
            ..Default::default()
        };
        let f = |e| match check_to_driver(e, &c) {
            DriverError::Spec { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(f(CheckError::Image("m".into())), "spec.container.image");
        assert_eq!(f(CheckError::Command("m".into())), "spec.container.command");
        assert_eq!(f(CheckError::User("m".into())), "spec.container.user");
        assert_eq!(
            f(CheckError::Mount {
                index: 2,
                message: "source /x does not exist".into()
            }),
            "spec.container.mounts[2].source"
        );
    }

    #[test]
    fn cgroup_paths_default_under_roost() {
        let p = Placement::default();
        assert_eq!(cgroup_path("web-1", &p), "/roost/containers/web-1");
        // Each instance gets its own child of the workload's cgroup.
        let p = Placement {
            cgroup_path: Some("roost/rt/web/".into()),
            ..Default::default()
        };
        assert_eq!(cgroup_path("web-1", &p), "/roost/rt/web/web-1");
    }
}

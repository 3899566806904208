//! Container lifecycle through containerd: check a run request against its image,
//! create (container record → rootfs snapshot → task under the runc v2 shim), start,
//! wait, stop (SIGTERM, grace, SIGKILL), delete, and find Roost's containers again
//! after a restart. Order per NOTES: Containers.Create before Snapshots.Prepare so GC
//! never sees an unreferenced rootfs.

use crate::cgroup::{set_realtime_all_threads, CgroupError, CgroupV1};
use crate::client::{Client, RpcError, SNAPSHOTTER};
use crate::image::{ImageError, ImageFiles, ResolvedImage, User};
use crate::spec::{self, RunSpec};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::PrepareSnapshotRequest;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetContainerRequest, GetRequest, KillRequest, ListContainersRequest,
    ListPidsRequest, StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status as ProcStatus;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The shim every Roost container runs under.
pub const RUNTIME: &str = "io.containerd.runc.v2";
/// Type URL containerd expects for a JSON runtime spec.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// Label naming the Roost workload a container belongs to.
pub const LABEL_WORKLOAD: &str = "roost.workload";
/// Label holding the container's cgroup path.
pub const LABEL_CGROUP: &str = "roost.cgroup";
/// Label set when the container holds an rt budget.
pub const LABEL_RT: &str = "roost.rt";
/// Shim start + runc create can be slow when many start at once on 2 cores.
const CREATE_TIMEOUT: Duration = Duration::from_secs(120);

/// What is wrong with a run request, by the part of it that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The image is missing or unusable.
    #[error("{0}")]
    Image(String),
    /// The command is missing or not in the image.
    #[error("{0}")]
    Command(String),
    /// The user does not resolve.
    #[error("{0}")]
    User(String),
    /// A mount is wrong (index into the mounts).
    #[error("mount {index}: {message}")]
    Mount {
        /// Index in the request's mounts.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// Working directory is not absolute.
    #[error("{0}")]
    WorkingDir(String),
    /// containerd itself failed while checking.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// Errors running containers.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The request cannot run as written.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// containerd refused.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A cgroup file operation failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The image layer could not be re-unpacked.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A container with this id is already running (left by a Roost whose state was
    /// reset?); it is left alone.
    #[error(
        "container {id} is already running in containerd (left by an earlier run?); \
         remove it with `ctr -n {namespace} task kill -s KILL {id}`, \
         `ctr -n {namespace} task rm {id}` and `ctr -n {namespace} c rm {id}`"
    )]
    AlreadyRunning {
        /// The container id.
        id: String,
        /// Its containerd namespace.
        namespace: String,
    },
    /// An exec's stdio pipe could not be made or opened.
    #[error("exec stdio pipe {path}: {source}")]
    Stdio {
        /// The pipe's path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The log file's directory could not be made.
    #[error("log file {path}: {source}")]
    Log {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A request checked against its image, ready to create.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The image, resolved.
    pub image: ResolvedImage,
    /// Resolved user.
    pub user: User,
    /// Process argv.
    pub args: Vec<String>,
    /// Process env.
    pub env: Vec<String>,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit status as the shim reports it (128+N for a signal).
    pub status: u32,
    /// The kernel OOM-killed in the container's cgroup.
    pub oom_killed: bool,
}

/// What a container's task is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Created or running.
    Running,
    /// Paused.
    Paused,
    /// Stopped with this status.
    Stopped(u32),
    /// A container record exists but no task.
    NoTask,
    /// No such container.
    NotFound,
}

/// A Roost container found in containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Container id.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

impl Client {
    /// Check a run request against the image without creating anything: the image is
    /// there, the command exists in it, the user resolves, mount sources exist.
    pub async fn check(&self, run: &RunSpec) -> Result<Checked, CheckError> {
        for (index, m) in run.mounts.iter().enumerate() {
            if !m.source.starts_with('/') {
                return Err(CheckError::Mount {
                    index,
                    message: format!("source {:?} must be an absolute host path", m.source),
                });
            }
            if !m.destination.starts_with('/') {
                return Err(CheckError::Mount {
                    index,
                    message: format!("destination {:?} must be an absolute path", m.destination),
                });
            }
            if !Path::new(&m.source).exists() {
                return Err(CheckError::Mount {
                    index,
                    message: format!(
                        "source {} does not exist on this host; create it or fix the path",
                        m.source
                    ),
                });
            }
        }
        if let Some(w) = &run.working_dir {
            if !w.starts_with('/') {
                return Err(CheckError::WorkingDir(format!(
                    "working directory {w:?} must be absolute"
                )));
            }
        }
        let (image, files) = self.resolve_for_run(&run.image).await?;
        let env = spec::env(run, &image.config);
        let mut args = spec::argv(run, &image.config);
        let Some(cmd) = args.first().cloned() else {
            return Err(CheckError::Command(format!(
                "image {} has no entrypoint or cmd; set a command",
                image.name
            )));
        };
        let path = spec::path_env(&env);
        match files.find_executable(&cmd, &path) {
            Some(abs) => {
                if !cmd.contains('/') {
                    args[0] = abs;
                }
            }
            None => {
                return Err(CheckError::Command(format!(
                    "{cmd:?} is not an executable in image {} (searched {})",
                    image.name,
                    if cmd.contains('/') {
                        cmd.clone()
                    } else {
                        format!("PATH={path}")
                    }
                )))
            }
        }
        let user_spec = run
            .user
            .clone()
            .or_else(|| image.config.config.as_ref().and_then(|c| c.user.clone()))
            .unwrap_or_default();
        let user = files
            .resolve_user(&user_spec)
            .map_err(|e| CheckError::User(e.to_string()))?;
        Ok(Checked {
            image,
            user,
            args,
            env,
        })
    }

    /// The image and its layer directories, from the cache when the name still points
    /// at the same digest (one Images.Get instead of ~6 calls, two of them writes).
    async fn resolve_for_run(&self, name: &str) -> Result<(ResolvedImage, ImageFiles), CheckError> {
        let to_check = |e: ImageError| match e {
            ImageError::Rpc(r) => CheckError::Rpc(r),
            other => CheckError::Image(other.to_string()),
        };
        let normalized = crate::image::normalize_reference(name).map_err(to_check)?;
        let target = self
            .image_get(&normalized)
            .await
            .map_err(to_check)?
            .and_then(|i| i.target)
            .map(|t| t.digest)
            .ok_or_else(|| {
                to_check(ImageError::NotFound {
                    name: normalized.clone(),
                    namespace: self.namespace().to_string(),
                })
            })?;
        if let Some((digest, img, files)) = lock(&self.images).get(&normalized) {
            if *digest == target {
                return Ok((img.clone(), files.clone()));
            }
        }
        let image = self.image_resolve(&normalized).await.map_err(to_check)?;
        self.ensure_unpacked(&image).await.map_err(to_check)?;
        let files = self.image_files(&image.chain_id).await.map_err(to_check)?;
        lock(&self.images).insert(normalized, (target, image.clone(), files.clone()));
        Ok((image, files))
    }

    /// Unpack again if the snapshots went missing (an image imported by another tool).
    async fn ensure_unpacked(&self, image: &ResolvedImage) -> Result<(), ImageError> {
        if self.snapshot_exists(&image.chain_id).await? {
            return Ok(());
        }
        let (m, c) = (image.manifest.clone(), image.config.clone());
        self.under_lease("unpack", |lease| async move {
            let r = self.unpack(&lease, &m, &c).await.map(|_| ());
            (Vec::new(), r)
        })
        .await
    }

    /// Create and start a container; returns the task's pid. On failure everything
    /// created for it is removed again.
    pub async fn run(&self, run: &RunSpec, cgroups: &CgroupV1) -> Result<u32, TaskError> {
        let checked = self.check(run).await?;
        self.run_checked(run, &checked, cgroups).await
    }

    /// [`Client::run`] for a request already checked.
    pub async fn run_checked(
        &self,
        run: &RunSpec,
        checked: &Checked,
        cgroups: &CgroupV1,
    ) -> Result<u32, TaskError> {
        let r = self.create_and_start(run, checked, cgroups).await;
        // A running container with this id is not ours to remove.
        if r.is_err() && !matches!(r, Err(TaskError::AlreadyRunning { .. })) {
            if let Err(e) = self.delete(&run.id, cgroups).await {
                tracing::warn!(container = %run.id, error = %e, "cleanup after a failed start failed");
            }
        }
        r
    }

    async fn create_and_start(
        &self,
        run: &RunSpec,
        checked: &Checked,
        cgroups: &CgroupV1,
    ) -> Result<u32, TaskError> {
        let id = &run.id;
        let spec = spec::runtime_spec(
            run,
            &checked.image.config,
            checked.user,
            checked.args.clone(),
            checked.env.clone(),
        );
        let mut labels: HashMap<String, String> = run.labels.clone().into_iter().collect();
        labels.insert(LABEL_CGROUP.into(), run.cgroup_path.clone());
        if let Some(rt) = run.resources.rt_runtime_us {
            cgroups.reserve_rt_budget(&run.cgroup_path, rt)?;
            labels.insert(LABEL_RT.into(), rt.to_string());
        }
        if let Some(dir) = run.log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| TaskError::Log {
                path: run.log_path.display().to_string(),
                source,
            })?;
        }
        let container = Container {
            id: id.clone(),
            labels,
            image: checked.image.name.clone(),
            runtime: Some(Runtime {
                name: RUNTIME.into(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.into(),
                value: serde_json::to_vec(&spec).unwrap_or_default(),
            }),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: id.clone(),
            ..Default::default()
        };
        let req = self.req(CreateContainerRequest {
            container: Some(container.clone()),
        });
        match self
            .call("Containers.Create", id, self.containers().create(req))
            .await
        {
            Ok(_) => {}
            // A record left with this id (a delete cut short by a daemon stop, or a
            // daemon whose state dir was reset): a stopped one is removed, once.
            Err(e) if e.is_already_exists() => {
                if matches!(self.state(id).await?, State::Running | State::Paused) {
                    return Err(TaskError::AlreadyRunning {
                        id: id.clone(),
                        namespace: self.namespace().to_string(),
                    });
                }
                tracing::warn!(container = %id, "removing a stopped container left with this id");
                self.delete(id, cgroups).await?;
                // Its delete may have shrunk the budget this start reserved.
                if let Some(rt) = run.resources.rt_runtime_us {
                    cgroups.reserve_rt_budget(&run.cgroup_path, rt)?;
                }
                let req = self.req(CreateContainerRequest {
                    container: Some(container),
                });
                self.call("Containers.Create", id, self.containers().create(req))
                    .await?;
            }
            Err(e) => return Err(e.into()),
        }
        let req = self.req(PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: id.clone(),
            parent: checked.image.chain_id.clone(),
            labels: HashMap::new(),
        });
        let mounts = self
            .call("Snapshots.Prepare", id, self.snapshots().prepare(req))
            .await?
            .mounts;
        let log = match &self.log_helper {
            Some(roost) => crate::logcopy::uri(roost, &run.log_path),
            None => format!("file://{}", run.log_path.display()),
        };
        let req = self.req(CreateTaskRequest {
            container_id: id.clone(),
            rootfs: mounts,
            stdout: log.clone(),
            stderr: log,
            ..Default::default()
        });
        let init = self
            .call_within("Tasks.Create", id, CREATE_TIMEOUT, self.tasks().create(req))
            .await?
            .pid;
        // runc ignores OCI `process.scheduler`: the policy is set from the host on
        // every thread of the created (not yet started) init process, so the
        // workload's first instruction already runs real-time (exec keeps it).
        if let Some((policy, prio)) = run.resources.realtime {
            set_realtime_all_threads(init, policy, prio)?;
        }
        let req = self.req(StartRequest {
            container_id: id.clone(),
            exec_id: String::new(),
        });
        let pid = self
            .call_within("Tasks.Start", id, CREATE_TIMEOUT, self.tasks().start(req))
            .await?
            .pid;
        // And on whatever else runs in it by now (a process forked meanwhile).
        if let Some((policy, prio)) = run.resources.realtime {
            for p in self.pids(id).await? {
                set_realtime_all_threads(p, policy, prio)?;
            }
        }
        tracing::info!(container = %id, pid, image = %checked.image.name, "container started");
        Ok(pid)
    }

    /// Host pids of the container's processes.
    pub async fn pids(&self, id: &str) -> Result<Vec<u32>, RpcError> {
        let req = self.req(ListPidsRequest {
            container_id: id.to_string(),
        });
        Ok(self
            .call("Tasks.ListPids", id, self.tasks().list_pids(req))
            .await?
            .processes
            .into_iter()
            .map(|p| p.pid)
            .collect())
    }

    /// The container record's labels, if it exists.
    pub async fn container_labels(
        &self,
        id: &str,
    ) -> Result<Option<HashMap<String, String>>, RpcError> {
        let req = self.req(GetContainerRequest { id: id.to_string() });
        match self
            .call("Containers.Get", id, self.containers().get(req))
            .await
        {
            Ok(r) => Ok(r.container.map(|c| c.labels)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Wait until the task ends (works from any client, also after a restart).
    pub async fn wait(&self, id: &str, cgroups: &CgroupV1) -> Result<Exit, TaskError> {
        let req = self.req(WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        });
        let status = match self.tasks().wait(req).await {
            Ok(r) => r.into_inner().exit_status,
            Err(s) => return Err(RpcError::status("Tasks.Wait", id, &s).into()),
        };
        let oom_killed = match self.container_labels(id).await? {
            Some(l) => l
                .get(LABEL_CGROUP)
                .and_then(|cg| cgroups.oom_kills(cg).ok())
                .is_some_and(|n| n > 0),
            None => false,
        };
        tracing::info!(container = %id, status, oom_killed, "container exited");
        Ok(Exit { status, oom_killed })
    }

    /// What the task is doing.
    pub async fn state(&self, id: &str) -> Result<State, RpcError> {
        let req = self.req(GetRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        });
        match self.call("Tasks.Get", id, self.tasks().get(req)).await {
            Ok(r) => {
                let p = r.process.unwrap_or_default();
                Ok(
                    match ProcStatus::try_from(p.status).unwrap_or(ProcStatus::Unknown) {
                        ProcStatus::Stopped => State::Stopped(p.exit_status),
                        ProcStatus::Paused | ProcStatus::Pausing => State::Paused,
                        _ => State::Running,
                    },
                )
            }
            Err(e) if e.is_not_found() => Ok(if self.container_labels(id).await?.is_some() {
                State::NoTask
            } else {
                State::NotFound
            }),
            Err(e) => Err(e),
        }
    }

    /// Send a signal to all processes of the task; a gone task is not an error.
    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), RpcError> {
        let req = self.req(KillRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            signal: signal as u32,
            all: true,
        });
        match self.call("Tasks.Kill", id, self.tasks().kill(req)).await {
            Err(e) if e.is_not_found() => Ok(()),
            // Killing a task that already stopped.
            Err(e) if e.code() == Some(containerd_client::tonic::Code::FailedPrecondition) => {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL; returns once it has ended.
    pub async fn stop(
        &self,
        id: &str,
        grace: Duration,
        cgroups: &CgroupV1,
    ) -> Result<Option<Exit>, TaskError> {
        match self.state(id).await? {
            State::Running | State::Paused => {}
            _ => return Ok(None),
        }
        self.kill(id, libc::SIGTERM).await?;
        match tokio::time::timeout(grace, self.wait(id, cgroups)).await {
            Ok(r) => r.map(Some),
            Err(_) => {
                tracing::info!(container = %id, grace = ?grace, "grace period over; SIGKILL");
                self.kill(id, libc::SIGKILL).await?;
                match tokio::time::timeout(Duration::from_secs(30), self.wait(id, cgroups)).await {
                    Ok(r) => r.map(Some),
                    Err(_) => Err(RpcError::Timeout {
                        op: "Tasks.Wait",
                        subject: id.to_string(),
                        timeout: Duration::from_secs(30),
                        socket: self.socket().to_path_buf(),
                    }
                    .into()),
                }
            }
        }
    }

    /// Remove the task (killing it if alive), the rootfs snapshot and the container
    /// record. Idempotent.
    pub async fn delete(&self, id: &str, cgroups: &CgroupV1) -> Result<(), TaskError> {
        let labels = self.container_labels(id).await?;
        match self.state(id).await? {
            State::Running | State::Paused => {
                self.kill(id, libc::SIGKILL).await?;
                let _ = tokio::time::timeout(Duration::from_secs(30), self.wait(id, cgroups)).await;
            }
            _ => {}
        }
        let req = self.req(DeleteTaskRequest {
            container_id: id.to_string(),
        });
        match self
            .call("Tasks.Delete", id, self.tasks().delete(req))
            .await
        {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
        self.snapshot_remove(id).await?;
        let req = self.req(DeleteContainerRequest { id: id.to_string() });
        match self
            .call("Containers.Delete", id, self.containers().delete(req))
            .await
        {
            Err(e) if !e.is_not_found() => return Err(e.into()),
            _ => {}
        }
        if let Some(l) = labels {
            if let (Some(cg), Some(_)) = (l.get(LABEL_CGROUP), l.get(LABEL_RT)) {
                if let Err(e) = cgroups.release_rt_budget(cg) {
                    tracing::warn!(container = %id, error = %e, "rt budget not released");
                }
            }
        }
        tracing::debug!(container = %id, "container deleted");
        Ok(())
    }

    /// Every container in the namespace whose label `key` equals `value`.
    pub async fn find(&self, key: &str, value: &str) -> Result<Vec<Found>, RpcError> {
        let req = self.req(ListContainersRequest { filters: vec![] });
        let r = self
            .call("Containers.List", "", self.containers().list(req))
            .await?;
        Ok(r.containers
            .into_iter()
            .filter(|c| c.labels.get(key).map(String::as_str) == Some(value))
            .map(|c| Found {
                id: c.id,
                labels: c.labels,
            })
            .collect())
    }
}

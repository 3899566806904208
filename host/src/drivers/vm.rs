//! The VM driver: each instance is one `roost vmm --api-sock` process (its own process
//! group, so it outlives a daemon restart), configured and started through its HTTP API on a
//! Unix socket in the instance's run dir. The guest's serial console is the process's
//! stdout, appended to the instance log. The monitor writes how the VM ended
//! (`shutdown`, `crashed`, `stopped`) to `vmm-state.json` in the run dir before it exits,
//! so the daemon learns the ending even if it was down at the time.

use crate::driver::{
    Driver, DriverError, ExitInfo, InstanceId, StartRequest, TaskHandle, TaskState,
};
use crate::drivers::process::{
    exit_of_wait_status, host_id, marked, reap, spawn_placed, threads_except, CgroupAttach, ProcId,
    SpawnError,
};
use crate::spec::{DriverKind, RtPolicy, VmSpec, WorkloadSpec};
use async_trait::async_trait;
use roost_vmm::config::{self, ConfigError, HostInfo};
use roost_vmm::virtio::block::{open_disk, DiskConfig};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `--tag` value prefix that marks our monitors: `roost-vm:<host>:<name>-<n>`.
const TAG: &str = "roost-vm:";
const SOCK: &str = "vmm.sock";
const STATE: &str = "vmm-state.json";
const STDERR: &str = "vmm.stderr";

/// The VM driver.
#[derive(Debug)]
pub struct VmDriver {
    roost_bin: PathBuf,
    host_id: String,
    /// Moves each monitor into its workload's cgroup (when placements are enforced).
    cgroups: Option<Arc<dyn CgroupAttach>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Data {
    proc: ProcId,
    sock: PathBuf,
    state_file: PathBuf,
}

impl VmDriver {
    /// A driver that runs `roost_bin vmm` for each VM; `state_dir` (the daemon's) keeps
    /// the monitors of two daemons on one host apart.
    pub fn new(roost_bin: PathBuf, state_dir: &Path) -> Self {
        Self {
            roost_bin,
            host_id: host_id(state_dir),
            cgroups: None,
        }
    }

    /// Put every monitor into its workload's cgroup through `attach`, before it
    /// creates its vCPU threads (they inherit it).
    pub fn with_cgroups(mut self, attach: Arc<dyn CgroupAttach>) -> Self {
        self.cgroups = Some(attach);
        self
    }

    fn tag(&self, id: &InstanceId) -> String {
        format!("{TAG}{}:{}", self.host_id, id.key())
    }

    fn data(h: &TaskHandle) -> Result<Data, DriverError> {
        h.decode()
    }
}

fn spec_err(field: &str, e: &ConfigError) -> DriverError {
    DriverError::Spec {
        field: field.to_string(),
        message: e.to_string(),
    }
}

fn vm_spec(spec: &WorkloadSpec) -> Result<&VmSpec, DriverError> {
    spec.vm.as_ref().ok_or_else(|| DriverError::Spec {
        field: "spec.vm".into(),
        message: "driver `vm` needs a `vm` section with at least `kernel`".into(),
    })
}

/// Everything `roost vmm` would refuse, checked here so `roost apply` fails fast.
fn check(vm: &VmSpec) -> Result<(), DriverError> {
    let host = HostInfo::probe().map_err(|e| DriverError::Unavailable {
        driver: "vm",
        reason: e.to_string(),
    })?;
    config::validate_machine(vm.vcpus, vm.memory_mib, &host).map_err(|e| match e {
        ConfigError::Vcpus { .. } => spec_err("spec.vm.vcpus", &e),
        _ => spec_err("spec.vm.memoryMiB", &e),
    })?;
    config::validate_boot(
        Path::new(&vm.kernel),
        vm.initrd.as_deref().map(Path::new),
        vm.cmdline.as_deref().unwrap_or(""),
    )
    .map_err(|e| match e {
        ConfigError::InitrdOpen { .. } => spec_err("spec.vm.initrd", &e),
        ConfigError::Cmdline { .. } => spec_err("spec.vm.cmdline", &e),
        _ => spec_err("spec.vm.kernel", &e),
    })?;
    for (i, d) in vm.disks.iter().enumerate() {
        let mut c = DiskConfig::new(&d.path);
        c.read_only = d.read_only;
        open_disk(&c).map_err(|e| DriverError::Spec {
            field: format!("spec.vm.disks[{i}].path"),
            message: e.to_string(),
        })?;
    }
    Ok(())
}

/// One request to a monitor's API: hyper's HTTP/1.1 client over its Unix socket,
/// one request per connection (as the monitor serves them), 30 s at most.
async fn api_async(
    sock: PathBuf,
    method: &'static str,
    path: &str,
    body: Option<Value>,
) -> std::io::Result<(u16, String)> {
    use http_body_util::{BodyExt, Full};
    let other = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("{what} {}: {e}", sock.display()))
    };
    let t0 = Instant::now();
    let stream = loop {
        match tokio::net::UnixStream::connect(&sock).await {
            Ok(s) => break s,
            // A monitor that is just starting: give it a moment.
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && t0.elapsed() < Duration::from_secs(2) =>
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let exchange = async {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| other("HTTP handshake with", &e))?;
        let conn = tokio::spawn(conn);
        let body = body.map(|v| v.to_string()).unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| other("building a request for", &e))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| other("request to", &e))?;
        let status = res.status().as_u16();
        let bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| other("reading the answer of", &e))?
            .to_bytes();
        drop(sender);
        conn.abort();
        Ok::<_, std::io::Error>((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the VM monitor at {} did not answer within 30 s",
                    sock.display()
                ),
            )
        })?
}

fn fault_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["fault_message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.to_string())
}

/// How a monitor ended, from the state file it wrote before exiting.
fn exit_from_state(path: &Path) -> Option<ExitInfo> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let status = v["status"].as_str()?;
    let reason = v["reason"].as_str().map(str::to_string);
    Some(match status {
        "shutdown" => ExitInfo {
            code: Some(0),
            signal: None,
            reason: "shutdown".into(),
            message: None,
        },
        "crashed" => ExitInfo {
            code: None,
            signal: None,
            reason: "crashed".into(),
            message: reason,
        },
        _ => ExitInfo {
            code: None,
            signal: None,
            reason: "killed".into(),
            message: Some("the VM was stopped".into()),
        },
    })
}

/// `; <why>` if monitor `pid` died of a signal within the next half second, else "".
async fn death_note(pid: i32) -> String {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(500) {
        if let Some(st) = reap(pid) {
            if libc::WIFSIGNALED(st) {
                return format!("; {}", killed_message(libc::WTERMSIG(st)));
            }
            return String::new();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    String::new()
}

/// Why a monitor died of signal `sig`: SIGSYS is its seccomp filter at work.
fn killed_message(sig: i32) -> &'static str {
    if sig == libc::SIGSYS {
        "the VM monitor was killed by its seccomp filter (SIGSYS): one of its threads made a \
         system call its thread kind is not allowed; the monitor's last lines are in vmm.stderr \
         in the run dir"
    } else {
        "the VM monitor was killed"
    }
}

fn find_arg(args: &[&str], name: &str) -> Option<PathBuf> {
    args.iter()
        .position(|a| *a == name)
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
}

#[async_trait]
impl Driver for VmDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Vm
    }

    async fn prepare(&self, _name: &str, spec: &WorkloadSpec) -> Result<(), DriverError> {
        if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            return Err(DriverError::Unavailable {
                driver: "vm",
                reason: "/dev/kvm cannot be opened; this host needs KVM (load kvm_intel/kvm_amd) to run VMs".into(),
            });
        }
        check(vm_spec(spec)?)
    }

    async fn start(&self, req: &StartRequest) -> Result<TaskHandle, DriverError> {
        let vm = vm_spec(&req.spec)?.clone();
        check(&vm)?;
        let op = |reason: String| DriverError::Op {
            op: "start",
            instance: req.id.key(),
            reason,
        };
        std::fs::create_dir_all(&req.run_dir)
            .map_err(|e| op(format!("create the run dir {}: {e}", req.run_dir.display())))?;
        let sock = req.run_dir.join(SOCK);
        let state_file = req.run_dir.join(STATE);
        let _ = std::fs::remove_file(&sock);
        let _ = std::fs::remove_file(&state_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&req.log_path)
            .map_err(|e| op(format!("open log {}: {e}", req.log_path.display())))?;
        let stderr = std::fs::File::create(req.run_dir.join(STDERR))
            .map_err(|e| op(format!("create {STDERR} in {}: {e}", req.run_dir.display())))?;
        let mut cmd = Command::new(&self.roost_bin);
        cmd.arg("vmm")
            .arg("--api-sock")
            .arg(&sock)
            .arg("--state-file")
            .arg(&state_file)
            .arg("--tag")
            .arg(self.tag(&req.id))
            .current_dir(&req.run_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        // Its own process group: a Ctrl-C at the daemon's terminal and a daemon
        // restart do not reach it, and stop signals the whole group. (No pre_exec
        // hook, so std can use posix_spawn instead of forking the daemon.)
        cmd.process_group(0);
        // Born in its workload's cgroup (nothing to move afterwards).
        let child = match spawn_placed(self.cgroups.as_ref(), &req.placement, cmd) {
            Ok(c) => c,
            Err(SpawnError::Spawn(e)) => {
                return Err(op(format!("spawn {} vmm: {e}", self.roost_bin.display())))
            }
            Err(e) => {
                let msg = e.discard();
                let _ = std::fs::remove_file(&sock);
                return Err(op(msg));
            }
        };
        let pid = child.id() as i32;
        // Reaped through waitpid (ProcId::exited); dropping `child` neither kills nor waits.
        drop(child);
        let proc = ProcId::of(pid).ok_or_else(|| op("the monitor died at once".into()))?;
        let kill = || {
            proc.signal_group(libc::SIGKILL);
            reap(pid);
            let _ = std::fs::remove_file(&sock);
        };
        let t0 = Instant::now();
        while !sock.exists() {
            if !proc.alive() || t0.elapsed() > Duration::from_secs(10) {
                kill();
                let err = std::fs::read_to_string(req.run_dir.join(STDERR)).unwrap_or_default();
                return Err(op(format!(
                    "the monitor never opened its API socket: {}",
                    err.trim()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut steps: Vec<(String, Value)> = vec![
            (
                "/boot-source".into(),
                json!({
                    "kernel_image_path": vm.kernel,
                    "initrd_path": vm.initrd,
                    "boot_args": vm.cmdline.clone().unwrap_or_default(),
                }),
            ),
            (
                "/machine-config".into(),
                json!({ "vcpu_count": vm.vcpus, "mem_size_mib": vm.memory_mib }),
            ),
        ];
        for (i, d) in vm.disks.iter().enumerate() {
            steps.push((
                format!("/drives/disk{i}"),
                json!({
                    "drive_id": format!("disk{i}"),
                    "path_on_host": d.path,
                    "is_read_only": d.read_only,
                    "is_root_device": d.root,
                    "rate_limiter": d.rate_limit.map(|r| json!({
                        "bytesPerSec": r.bytes_per_sec,
                        "opsPerSec": r.ops_per_sec,
                    })),
                }),
            ));
        }
        let p = &req.placement;
        if !p.cpus.is_empty() || p.realtime.is_some() {
            let mut c = json!({ "cpus": p.cpus });
            if let Some(rt) = p.realtime {
                c["rt_priority"] = json!(rt.priority);
                c["rt_policy"] = json!(match rt.policy {
                    RtPolicy::Fifo => "fifo",
                    RtPolicy::Rr => "rr",
                });
            }
            steps.push(("/cpu-config".into(), c));
        }
        steps.push(("/actions".into(), json!({ "action_type": "start" })));
        for (path, body) in steps {
            let path = path.as_str();
            match api_async(sock.clone(), "PUT", path, Some(body)).await {
                Ok((204, _)) => {}
                // The guest already ended (a tiny guest can finish during `start`).
                _ if path == "/actions" && state_file.exists() => break,
                Ok((400, b)) => {
                    kill();
                    let field = match path {
                        "/machine-config" => "spec.vm",
                        "/cpu-config" => "placement",
                        p if p.starts_with("/drives/") => "spec.vm.disks",
                        _ => "spec.vm.kernel",
                    };
                    return Err(DriverError::Spec {
                        field: field.into(),
                        message: fault_message(&b),
                    });
                }
                Ok((s, b)) => {
                    let note = death_note(pid).await;
                    kill();
                    return Err(op(format!(
                        "PUT {path}: HTTP {s}: {}{note}",
                        fault_message(&b)
                    )));
                }
                Err(e) => {
                    // A monitor that died mid-request (its seccomp filter, a crash) says
                    // more than the broken connection does.
                    let note = death_note(pid).await;
                    kill();
                    return Err(op(format!("PUT {path}: {e}{note}")));
                }
            }
        }
        // Only the vCPUs belong on the workload's cores: the monitor's other threads
        // (main, API; the helpers the API thread starts later are born beside it)
        // move onto the platform cores.
        if let Some(a) = &self.cgroups {
            for tid in threads_except(Path::new("/proc"), pid as u32, "vcpu") {
                if let Err(e) = a.to_platform(tid, true) {
                    tracing::warn!(instance = %req.id.key(), tid, error = %e, "a VM monitor thread could not move onto the platform cores");
                }
            }
        }
        tracing::info!(instance = %req.id.key(), pid, sock = %sock.display(), "VM started");
        let data = serde_json::to_value(Data {
            proc,
            sock,
            state_file,
        })
        .map_err(|e| op(e.to_string()))?;
        Ok(TaskHandle {
            id: req.id.clone(),
            driver: DriverKind::Vm,
            data,
        })
    }

    async fn wait(&self, h: &TaskHandle) -> Result<ExitInfo, DriverError> {
        let d = Self::data(h)?;
        d.proc.exited().await;
        let reaped = reap(d.proc.pid);
        if let Some(info) = exit_from_state(&d.state_file) {
            return Ok(info);
        }
        if let Some(st) = reaped.filter(|st| libc::WIFSIGNALED(*st)) {
            if let Some(info) = exit_of_wait_status(st, Some(killed_message(libc::WTERMSIG(st)))) {
                return Ok(info);
            }
        }
        Ok(ExitInfo::lost(
            "the VM monitor ended without recording how the VM ended",
        ))
    }

    async fn stop(&self, h: &TaskHandle, grace: Duration) -> Result<(), DriverError> {
        let d = Self::data(h)?;
        if !d.proc.alive() {
            return Ok(());
        }
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let asked = api_async(
            d.sock.clone(),
            "PUT",
            "/actions",
            Some(json!({ "action_type": "stop", "grace_ms": grace_ms })),
        )
        .await;
        let polite = matches!(asked, Ok((204, _)));
        if !polite
            || tokio::time::timeout(grace + Duration::from_secs(1), d.proc.exited())
                .await
                .is_err()
        {
            d.proc.signal_group(libc::SIGKILL);
            d.proc.exited().await;
        }
        let _ = std::fs::remove_file(&d.sock);
        Ok(())
    }

    async fn destroy(&self, h: &TaskHandle) -> Result<(), DriverError> {
        let d = Self::data(h)?;
        d.proc.signal_group(libc::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), d.proc.exited()).await;
        reap(d.proc.pid);
        let _ = std::fs::remove_file(&d.sock);
        Ok(())
    }

    async fn inspect(&self, h: &TaskHandle) -> Result<TaskState, DriverError> {
        let d = Self::data(h)?;
        if d.proc.alive() {
            if let Ok((200, body)) = api_async(d.sock.clone(), "GET", "/vm", None).await {
                if serde_json::from_str::<Value>(&body)
                    .map(|v| v["state"] == "paused")
                    .unwrap_or(false)
                {
                    return Ok(TaskState::Paused);
                }
            }
            return Ok(TaskState::Running);
        }
        Ok(match exit_from_state(&d.state_file) {
            Some(i) => TaskState::Exited(i),
            None => TaskState::NotFound,
        })
    }

    async fn recover(
        &self,
        workload: &str,
        known: Option<&TaskHandle>,
    ) -> Result<Vec<TaskHandle>, DriverError> {
        let prefix = format!("{TAG}{}:{workload}-", self.host_id);
        let mut out = Vec::new();
        for m in marked(&prefix) {
            let Ok(n) = m.key.parse::<u64>() else {
                continue;
            };
            let pid = m.pid;
            let args: Vec<&str> = m.args.iter().map(String::as_str).collect();
            let (Some(sock), Some(state_file), Some(proc)) = (
                find_arg(&args, "--api-sock"),
                find_arg(&args, "--state-file"),
                ProcId::of(pid),
            ) else {
                continue;
            };
            // Reconnect: a live monitor answers on its socket.
            if api_async(sock.clone(), "GET", "/vm", None).await.is_err() {
                tracing::warn!(pid, sock = %sock.display(), "VM monitor found but its API does not answer");
            }
            let id = InstanceId {
                workload: workload.to_string(),
                instance: n,
            };
            let data = serde_json::to_value(Data {
                proc,
                sock,
                state_file,
            })
            .map_err(|e| DriverError::Op {
                op: "recover",
                instance: id.key(),
                reason: e.to_string(),
            })?;
            out.push(TaskHandle {
                id,
                driver: DriverKind::Vm,
                data,
            });
        }
        if let Some(k) = known {
            if !out.iter().any(|h| h.id == k.id) {
                tracing::debug!(instance = %k.id.key(), "the stored VM is no longer running");
            }
        }
        out.sort_by_key(|h| h.id.instance);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_map_to_exit_reasons() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.json");
        std::fs::write(&p, r#"{"status":"shutdown"}"#).unwrap();
        let i = exit_from_state(&p).unwrap();
        assert!(i.success() && i.reason == "shutdown");
        std::fs::write(
            &p,
            r#"{"status":"crashed","reason":"triple fault on vCPU 0"}"#,
        )
        .unwrap();
        let i = exit_from_state(&p).unwrap();
        assert_eq!(i.reason, "crashed");
        assert!(!i.success());
        assert_eq!(i.message.as_deref(), Some("triple fault on vCPU 0"));
        std::fs::write(&p, "garbage").unwrap();
        assert!(exit_from_state(&p).is_none());
    }

    #[test]
    fn prepare_checks_name_the_field() {
        let mut vm = VmSpec {
            kernel: "/nonexistent/vmlinux".into(),
            initrd: None,
            cmdline: None,
            vcpus: 1,
            memory_mib: 64,
            disks: Vec::new(),
        };
        match check(&vm) {
            Err(DriverError::Spec { field, message }) => {
                assert_eq!(field, "spec.vm.kernel");
                assert!(message.contains("/nonexistent/vmlinux"));
            }
            other => panic!("{other:?}"),
        }
        vm.vcpus = 65;
        match check(&vm) {
            Err(DriverError::Spec { field, .. }) => assert_eq!(field, "spec.vm.vcpus"),
            other => panic!("{other:?}"),
        }
        vm.vcpus = 1;
        vm.memory_mib = 1 << 40;
        match check(&vm) {
            Err(DriverError::Spec { field, .. }) => assert_eq!(field, "spec.vm.memoryMiB"),
            other => panic!("{other:?}"),
        }
        // A disk that is not there is named by its index.
        let kernel = tempfile::NamedTempFile::new().unwrap();
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[18] = 62;
        std::fs::write(kernel.path(), elf).unwrap();
        vm.kernel = kernel.path().display().to_string();
        vm.memory_mib = 64;
        vm.disks = vec![crate::spec::VmDisk {
            path: "/nonexistent/disk.img".into(),
            read_only: true,
            root: true,
            rate_limit: None,
        }];
        match check(&vm) {
            Err(DriverError::Spec { field, message }) => {
                assert_eq!(field, "spec.vm.disks[0].path");
                assert!(message.contains("/nonexistent/disk.img"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}

//! API mode: `roost vmm --api-sock PATH`. HTTP/JSON on a Unix socket, one request per
//! connection, handled on the main thread. Each handler parses its body and calls the
//! library (`roost_vmm::Vm`). When the VM ends the process writes the final state to
//! `--state-file`, removes the socket and exits (0 shutdown, 3 crashed, 4 stopped).
//!
//! Routes:
//! - `PUT /boot-source` `{"kernel_image_path", "initrd_path"?, "boot_args"?}`
//! - `PUT /machine-config` `{"vcpu_count"?, "mem_size_mib"?}`
//! - `PUT /cpu-config` `{"cpus"?: [u32] | "0,2-3", "rt_priority"?, "rt_policy"?}`
//! - `PUT /drives/{id}` `{"drive_id", "path_on_host", "is_read_only"?, "is_root_device"?,
//!   "direct"?, "rate_limiter"?: {"bytesPerSec"?, "opsPerSec"?}}` (virtio-blk; the id is
//!   what the guest reads as the disk's serial)
//! - `PUT /actions` `{"action_type": "start" | "pause" | "resume" | "stop", "grace_ms"?}`
//! - `GET /vm` (state), `GET /metrics` (exits by reason, uptime)

use super::http::{read_request, write_response, Request};
use anyhow::Context;
use roost_vmm::config::{self, HostInfo};
use roost_vmm::virtio::block::DiskConfig;
use roost_vmm::virtio::rate_limiter::RateLimit;
use roost_vmm::{RtPolicy, Vm, VmConfig, VmEnd, VmState};
use serde::Deserialize;
use serde_json::{json, Value};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BootSource {
    kernel_image_path: PathBuf,
    #[serde(default)]
    initrd_path: Option<PathBuf>,
    #[serde(default)]
    boot_args: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineConfig {
    #[serde(default)]
    vcpu_count: Option<u32>,
    #[serde(default)]
    mem_size_mib: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CpuList {
    List(Vec<u32>),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CpuConfig {
    #[serde(default)]
    cpus: Option<CpuList>,
    #[serde(default)]
    rt_priority: Option<u32>,
    #[serde(default)]
    rt_policy: Option<RtPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Drive {
    drive_id: String,
    path_on_host: PathBuf,
    #[serde(default)]
    is_read_only: bool,
    #[serde(default)]
    is_root_device: bool,
    #[serde(default)]
    direct: bool,
    #[serde(default)]
    rate_limiter: Option<RateLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Action {
    action_type: String,
    #[serde(default)]
    grace_ms: Option<u64>,
}

/// An error answer: status and message.
struct Fault(u16, String);

impl<E: std::fmt::Display> From<(u16, E)> for Fault {
    fn from((s, e): (u16, E)) -> Self {
        Fault(s, e.to_string())
    }
}

struct Server {
    sock: PathBuf,
    state_file: Option<PathBuf>,
    host: HostInfo,
    cfg: Mutex<VmConfig>,
    kernel_set: Mutex<bool>,
    vm: Mutex<Option<Arc<Vm>>>,
    /// Held while a request is handled and answered, so the process never exits
    /// halfway through a response (a tiny guest can end during its own `start`).
    busy: Mutex<()>,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub fn serve(sock: &Path, state_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let host = HostInfo::probe().context("cannot read the host's memory and CPUs")?;
    if sock.exists() {
        if UnixStream::connect(sock).is_ok() {
            anyhow::bail!(
                "{}: another monitor is serving on this socket; pick another path",
                sock.display()
            );
        }
        std::fs::remove_file(sock)
            .with_context(|| format!("cannot remove the stale socket {}", sock.display()))?;
    }
    // Bind under a temporary name and rename into place, so the socket path appears
    // only once it accepts connections (a client polling for it never sees ECONNREFUSED).
    let tmp = sock.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).with_context(|| {
        format!(
            "cannot listen on {}; check the directory exists and is writable",
            tmp.display()
        )
    })?;
    std::fs::rename(&tmp, sock).with_context(|| {
        format!(
            "cannot move the API socket into place at {}",
            sock.display()
        )
    })?;
    let server = Arc::new(Server {
        sock: sock.to_path_buf(),
        state_file: state_file.map(Path::to_path_buf),
        host,
        cfg: Mutex::new(VmConfig::new("")),
        kernel_set: Mutex::new(false),
        vm: Mutex::new(None),
        busy: Mutex::new(()),
    });
    watch_signals(server.clone())?;
    tracing::info!(sock = %sock.display(), "API listening");
    for conn in listener.incoming() {
        match conn {
            Ok(mut s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _busy = server.busy.lock().unwrap_or_else(PoisonError::into_inner);
                let (status, body) = match read_request(&mut s) {
                    Ok(req) => server.handle(&req),
                    Err(b) => (b.status, Some(fault_body(&b.message))),
                };
                if let Err(e) = write_response(&mut s, status, body.as_deref()) {
                    tracing::debug!(error = %e, "client went away");
                }
            }
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fault_body(msg: &str) -> String {
    json!({ "fault_message": msg }).to_string()
}

fn parse<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, Fault> {
    serde_json::from_slice(&req.body).map_err(|e| Fault(400, format!("{} body: {e}", req.path)))
}

impl Server {
    fn handle(self: &Arc<Self>, req: &Request) -> (u16, Option<String>) {
        let r = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/vm") | ("GET", "/") => Ok(Some(self.state_json())),
            ("GET", "/metrics") => Ok(Some(self.metrics_json())),
            ("PUT", "/boot-source") => self.boot_source(req).map(|_| None),
            ("PUT", "/machine-config") => self.machine_config(req).map(|_| None),
            ("PUT", "/cpu-config") => self.cpu_config(req).map(|_| None),
            ("PUT", "/actions") => self.action(req).map(|_| None),
            ("PUT", p) if p.starts_with("/drives/") => {
                self.drive(req, &p["/drives/".len()..]).map(|_| None)
            }
            (
                _,
                "/vm" | "/" | "/metrics" | "/boot-source" | "/machine-config" | "/cpu-config"
                | "/actions",
            ) => Err(Fault(
                405,
                format!("{} {}: method not allowed", req.method, req.path),
            )),
            _ => Err(Fault(
                404,
                format!("{}: no such resource; see `roost vmm --help`", req.path),
            )),
        };
        match r {
            Ok(Some(body)) => (200, Some(body.to_string())),
            Ok(None) => (204, None),
            Err(Fault(s, m)) => {
                tracing::info!(status = s, path = %req.path, message = %m, "API request refused");
                (s, Some(fault_body(&m)))
            }
        }
    }

    fn vm(&self) -> Option<Arc<Vm>> {
        self.vm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn not_started(&self, what: &str) -> Result<(), Fault> {
        if self.vm().is_some() {
            return Err(Fault(
                409,
                format!("{what}: the VM has started; configure before `start`"),
            ));
        }
        Ok(())
    }

    fn boot_source(&self, req: &Request) -> Result<(), Fault> {
        self.not_started("boot-source")?;
        let b: BootSource = parse(req)?;
        let cmdline = b.boot_args.unwrap_or_default();
        config::validate_boot(&b.kernel_image_path, b.initrd_path.as_deref(), &cmdline)
            .map_err(|e| Fault(400, chain(&e)))?;
        let mut c = self.cfg.lock().unwrap_or_else(PoisonError::into_inner);
        c.kernel = b.kernel_image_path;
        c.initrd = b.initrd_path;
        c.cmdline = cmdline;
        *self
            .kernel_set
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        Ok(())
    }

    fn machine_config(&self, req: &Request) -> Result<(), Fault> {
        self.not_started("machine-config")?;
        let m: MachineConfig = parse(req)?;
        let mut c = self.cfg.lock().unwrap_or_else(PoisonError::into_inner);
        let vcpus = m.vcpu_count.unwrap_or(c.vcpus);
        let mem = m.mem_size_mib.unwrap_or(c.memory_mib);
        config::validate_machine(vcpus, mem, &self.host).map_err(|e| Fault(400, chain(&e)))?;
        c.vcpus = vcpus;
        c.memory_mib = mem;
        Ok(())
    }

    fn cpu_config(&self, req: &Request) -> Result<(), Fault> {
        self.not_started("cpu-config")?;
        let m: CpuConfig = parse(req)?;
        let cpus = match m.cpus {
            Some(CpuList::List(v)) => v,
            Some(CpuList::Text(t)) => {
                config::parse_cpu_list(&t).map_err(|e| Fault(400, chain(&e)))?
            }
            None => Vec::new(),
        };
        // Probed again: the daemon moves a monitor into its workload's cgroup (and
        // so onto its cores) after starting it, so the CPUs seen at start are stale.
        let host = HostInfo::probe();
        config::validate_pinning(&cpus, m.rt_priority, host.as_ref().unwrap_or(&self.host))
            .map_err(|e| Fault(400, chain(&e)))?;
        let mut c = self.cfg.lock().unwrap_or_else(PoisonError::into_inner);
        c.cpus = cpus;
        c.rt_priority = m.rt_priority;
        c.rt_policy = m.rt_policy.unwrap_or_default();
        Ok(())
    }

    fn drive(&self, req: &Request, id: &str) -> Result<(), Fault> {
        self.not_started("drives")?;
        let d: Drive = parse(req)?;
        if d.drive_id != id {
            return Err(Fault(
                400,
                format!(
                    "drive_id {:?} differs from the path's {id:?}; make them the same",
                    d.drive_id
                ),
            ));
        }
        let disk = DiskConfig {
            path: d.path_on_host,
            read_only: d.is_read_only,
            root: d.is_root_device,
            direct: d.direct,
            id: Some(d.drive_id),
            rate_limit: d.rate_limiter,
        };
        let mut c = self.cfg.lock().unwrap_or_else(PoisonError::into_inner);
        let mut disks = c.disks.clone();
        disks.retain(|x| x.id != disk.id);
        disks.push(disk);
        config::validate_disks(&disks).map_err(|e| Fault(400, chain(&e)))?;
        c.disks = disks;
        Ok(())
    }

    fn action(self: &Arc<Self>, req: &Request) -> Result<(), Fault> {
        let a: Action = parse(req)?;
        match a.action_type.as_str() {
            "start" | "InstanceStart" => self.start(),
            "pause" | "Pause" => match self.vm() {
                Some(vm) => vm.pause().map_err(|e| Fault(409, chain(&e))),
                None => Err(Fault(
                    409,
                    "pause: the VM has not started; send `start` first".into(),
                )),
            },
            "resume" | "Resume" => match self.vm() {
                Some(vm) => vm.resume().map_err(|e| Fault(409, chain(&e))),
                None => Err(Fault(
                    409,
                    "resume: the VM has not started; send `start` first".into(),
                )),
            },
            "stop" | "Stop" => {
                self.stop(Duration::from_millis(a.grace_ms.unwrap_or(5000)));
                Ok(())
            }
            other => Err(Fault(
                400,
                format!("action_type {other:?}: expected start, pause, resume or stop"),
            )),
        }
    }

    fn start(self: &Arc<Self>) -> Result<(), Fault> {
        let mut slot = self.vm.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return Err(Fault(409, "start: the VM has already started".into()));
        }
        if !*self
            .kernel_set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Err(Fault(
                400,
                "start: no boot source; PUT /boot-source with kernel_image_path first".into(),
            ));
        }
        let cfg = self
            .cfg
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut cfg = cfg;
        cfg.seccomp = super::seccomp_on();
        let vm = Vm::create(cfg, Box::new(std::io::stdout())).map_err(|e| {
            let code = if matches!(e, roost_vmm::VmError::Config(_)) {
                400
            } else {
                500
            };
            Fault(code, chain(&e))
        })?;
        vm.start().map_err(|e| Fault(500, chain(&e)))?;
        super::trim();
        let vm = Arc::new(vm);
        *slot = Some(vm.clone());
        drop(slot);
        let me = self.clone();
        std::thread::Builder::new()
            .name("vm-wait".into())
            .spawn(move || {
                super::seccomp_api_thread();
                let end = vm.wait();
                me.finish(&end, Some(&vm));
            })
            .map_err(|e| Fault(500, format!("cannot spawn the waiter thread: {e}")))?;
        // The guest runs: from here this thread only serves the API.
        super::seccomp_api_thread();
        Ok(())
    }

    /// Graceful: stop the vCPUs at their next exit and let the waiter finish. Forced: if
    /// that has not happened within `grace`, write the state and exit anyway.
    fn stop(self: &Arc<Self>, grace: Duration) {
        let Some(vm) = self.vm() else {
            // Finish on another thread: this one may be answering a request.
            let me = self.clone();
            let _ = std::thread::Builder::new()
                .name("vm-finish".into())
                .spawn(move || me.finish(&VmEnd::Stopped, None));
            return;
        };
        let v = vm.clone();
        let _ = std::thread::Builder::new()
            .name("vm-stop".into())
            .spawn(move || {
                v.stop();
            });
        let me = self.clone();
        let _ = std::thread::Builder::new()
            .name("vm-force".into())
            .spawn(move || {
                std::thread::sleep(grace);
                tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "VM did not stop in time; forcing"
                );
                me.finish(&VmEnd::Stopped, None);
            });
    }

    fn state_json(&self) -> Value {
        match self.vm() {
            None => {
                json!({ "state": if *self.kernel_set.lock().unwrap_or_else(PoisonError::into_inner) { "configured" } else { "not-configured" } })
            }
            Some(vm) => {
                let state = match vm.state() {
                    VmState::Created => "created",
                    VmState::Running => "running",
                    VmState::Paused => "paused",
                    VmState::Ended => "ended",
                };
                let mut v = json!({ "state": state });
                if let Some(end) = vm.ended() {
                    v["status"] = json!(end.status());
                    if let VmEnd::Crashed(r) = end {
                        v["reason"] = json!(r);
                    }
                }
                v
            }
        }
    }

    fn metrics_json(&self) -> Value {
        let m = self.vm().map(|vm| vm.metrics()).unwrap_or_default();
        let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
        v["state"] = self.state_json()["state"].clone();
        if let Some(vm) = self.vm() {
            let ld =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            v["block"] = vm
                .block_metrics()
                .iter()
                .map(|b| {
                    json!({
                        "requests": ld(&b.requests),
                        "bytes": ld(&b.bytes),
                        "errors": ld(&b.errors),
                        "bad_chains": ld(&b.bad_chains),
                        "throttled": ld(&b.throttled),
                    })
                })
                .collect();
        }
        v
    }

    /// Record how the VM ended, remove the socket and exit the process.
    fn finish(&self, end: &VmEnd, vm: Option<&Vm>) -> ! {
        static ONCE: Mutex<()> = Mutex::new(());
        let _once = ONCE.lock().unwrap_or_else(PoisonError::into_inner);
        let _busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(path) = &self.state_file {
            let mut v = json!({ "status": end.status() });
            if let VmEnd::Crashed(r) = end {
                v["reason"] = json!(r);
            }
            if let Some(vm) = vm {
                v["metrics"] = serde_json::to_value(vm.metrics()).unwrap_or(Value::Null);
            }
            let tmp = path.with_extension("tmp");
            let res = std::fs::write(&tmp, v.to_string()).and_then(|_| std::fs::rename(&tmp, path));
            if let Err(e) = res {
                tracing::error!(path = %path.display(), error = %e, "cannot write the final state");
            }
        }
        let _ = std::fs::remove_file(&self.sock);
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(status = end.status(), "monitor exiting");
        let code = match end {
            VmEnd::Shutdown => 0,
            VmEnd::Crashed(_) => i32::from(super::EXIT_CRASHED),
            VmEnd::Stopped => i32::from(super::EXIT_STOPPED),
        };
        std::process::exit(code)
    }
}

/// SIGTERM / SIGINT: stop the VM (graceful, 2 s), record it, remove the socket, exit.
fn watch_signals(server: Arc<Server>) -> anyhow::Result<()> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; these calls only modify it and this thread's mask,
    // before any other thread exists, so every later thread inherits the mask.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let mut filtered = false;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            if !filtered {
                super::seccomp_api_thread();
                filtered = true;
            }
            let mut sig: libc::c_int = 0;
            // SAFETY: `set` is initialised and `sig` is a valid out-parameter.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc == 0 {
                tracing::info!(signal = sig, "stopping on signal");
                server.stop(Duration::from_secs(2));
                return;
            }
        })
        .context("cannot spawn the signal thread")?;
    Ok(())
}

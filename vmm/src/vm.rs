//! A VM: KVM objects, guest memory, devices and vCPU threads, with start, pause, resume,
//! stop and wait. Every method takes `&self` so an API thread and a waiter can share it.

use crate::config::{self, ConfigError, HostInfo, KernelFormat, VmConfig};
use crate::devices::{ConsoleOut, Devices, COM1_IRQ};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::seccomp::{self, ThreadKind};
use crate::virtio::block::BlockMetrics;
use crate::virtio::bus::{self, BusError, VirtioBus};
use crate::x86::{cpuid, mptable, regs};
use crate::{boot, memory, rt, vcpu};
use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Why a VM ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum VmEnd {
    /// The guest shut itself down (i8042 reset, system event).
    Shutdown,
    /// The guest faulted; the reason says how.
    Crashed(String),
    /// We stopped it.
    Stopped,
}

impl VmEnd {
    /// `shutdown`, `crashed` or `stopped`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::Crashed(_) => "crashed",
            Self::Stopped => "stopped",
        }
    }
}

/// What a VM is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// Built, vCPUs not running yet.
    Created,
    /// vCPUs running.
    Running,
    /// vCPUs parked.
    Paused,
    /// Over.
    Ended,
}

/// Errors building or driving a VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The config cannot run here.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// /dev/kvm or a VM-wide KVM call failed.
    #[error("KVM: cannot {what}{hint}")]
    Kvm {
        /// What was attempted.
        what: &'static str,
        /// How to fix it, if we know.
        hint: &'static str,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// Kernel, initrd, command line.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// vCPU registers.
    #[error("vCPU {index}: {source}")]
    Regs {
        /// Which vCPU.
        index: u32,
        /// What failed.
        #[source]
        source: regs::RegsError,
    },
    /// The MP table.
    #[error(transparent)]
    MpTable(#[from] mptable::MpTableError),
    /// A virtio device (a disk that cannot be opened, an eventfd KVM refused).
    #[error(transparent)]
    Virtio(#[from] BusError),
    /// A vCPU thread could not be set up (pinning, real-time priority).
    #[error("vCPU {index}: cannot {what}{hint}")]
    Thread {
        /// Which vCPU.
        index: u32,
        /// What failed.
        what: String,
        /// How to fix it.
        hint: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A seccomp filter could not be installed.
    #[error("{0}; this kernel needs seccomp filters (CONFIG_SECCOMP_FILTER), or run with ROOST_VMM_NO_SECCOMP=1")]
    Seccomp(String),
    /// The operation does not fit the VM's state.
    #[error("cannot {op} a VM that is {state}")]
    State {
        /// The operation.
        op: &'static str,
        /// The current state.
        state: &'static str,
    },
}

fn kvm_err(what: &'static str, hint: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, hint, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Want {
    Run = 0,
    Pause = 1,
    Stop = 2,
}

pub(crate) struct Ctl {
    pub(crate) paused: Vec<bool>,
    pub(crate) exited: u32,
    pub(crate) ended: Option<VmEnd>,
}

/// State shared between the controlling thread and the vCPU threads.
pub(crate) struct Shared {
    pub(crate) want: AtomicU8,
    pub(crate) ctl: Mutex<Ctl>,
    pub(crate) cv: Condvar,
    pub(crate) devices: Devices,
    pub(crate) metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Park vCPU `index` while paused; false = the thread must exit.
    pub(crate) fn park(&self, index: u32) -> bool {
        let i = index as usize;
        let mut c = self.lock();
        loop {
            if c.ended.is_some() || self.want.load(Ordering::Acquire) == Want::Stop as u8 {
                return false;
            }
            if self.want.load(Ordering::Acquire) == Want::Pause as u8 {
                if !c.paused[i] {
                    c.paused[i] = true;
                    self.cv.notify_all();
                }
                c = self.cv.wait(c).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            if c.paused[i] {
                c.paused[i] = false;
                self.cv.notify_all();
            }
            return true;
        }
    }

    /// The VM is over (first reason wins).
    pub(crate) fn end(&self, end: VmEnd) {
        let mut c = self.lock();
        if c.ended.is_none() {
            tracing::info!(status = end.status(), ?end, "VM ended");
            c.ended = Some(end);
        }
        self.want.store(Want::Stop as u8, Ordering::Release);
        self.cv.notify_all();
    }
}

/// One VM.
pub struct Vm {
    shared: Arc<Shared>,
    cfg: VmConfig,
    pending: Mutex<Vec<VcpuFd>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    started: OnceLock<Instant>,
    ended_at: OnceLock<Instant>,
    // Dropped last: the vCPU fds and threads above go first.
    _mem: GuestMemoryMmap,
    _vm: VmFd,
    _kvm: Kvm,
}

/// Check a config against this host without touching KVM; returns the kernel format.
pub fn validate(cfg: &VmConfig) -> Result<KernelFormat, ConfigError> {
    let host = HostInfo::probe()?;
    config::validate(cfg, &host)
}

impl Vm {
    /// Validate `cfg`, then build the VM (vCPUs created, not running). The guest's
    /// console goes to `console`.
    pub fn create(cfg: VmConfig, console: Box<dyn Write + Send>) -> Result<Self, VmError> {
        let format = validate(&cfg)?;
        let t0 = Instant::now();
        // Open the disks first: a bad one fails before any KVM object exists.
        let virtio_devices = VirtioBus::open_devices(&cfg.disks)?;
        let block_metrics = virtio_devices
            .iter()
            .filter_map(|d| d.block_metrics())
            .collect();
        let mut boot_cfg = cfg.clone();
        boot_cfg
            .cmdline
            .push_str(&bus::cmdline_extra(&cfg.disks, virtio_devices.len()));
        let boot_cfg = boot_cfg;
        if boot_cfg.cmdline.len() > config::MAX_CMDLINE_LEN {
            return Err(ConfigError::Cmdline {
                reason: format!(
                    "with the virtio devices announced it is {} bytes, over {}; shorten it",
                    boot_cfg.cmdline.len(),
                    config::MAX_CMDLINE_LEN
                ),
            }
            .into());
        }
        tracing::debug!(kernel = %cfg.kernel.display(), vcpus = cfg.vcpus, memory_mib = cfg.memory_mib, "config valid; opening /dev/kvm");
        let kvm = Kvm::new().map_err(kvm_err(
            "open /dev/kvm",
            "; load the kvm module and run with access to /dev/kvm",
        ))?;
        let vm = kvm.create_vm().map_err(kvm_err("create a VM", ""))?;
        vm.set_tss_address(0xfffb_d000)
            .map_err(kvm_err("set the TSS address", ""))?;
        vm.create_irq_chip()
            .map_err(kvm_err("create the in-kernel interrupt controller", ""))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm_err("create the PIT", ""))?;

        let mem = memory::create(cfg.memory_mib)?;
        // Fill guest memory before KVM knows of it: on this nested host, first-touch faults
        // in a registered slot cost several milliseconds more.
        regs::write_boot_tables(&mem).map_err(|source| VmError::Regs { index: 0, source })?;
        mptable::write(&mem, cfg.vcpus)?;
        let entry = boot::load(&boot_cfg, format, &mem)?;
        memory::register(&vm, &mem)?;

        let irq = EventFd::new(libc::EFD_NONBLOCK)
            .map_err(|e| kvm_err("create the serial interrupt eventfd", "")(e.into()))?;
        vm.register_irqfd(&irq, COM1_IRQ)
            .map_err(kvm_err("wire the serial interrupt", ""))?;
        let metrics = Arc::new(Metrics::default());
        let virtio = VirtioBus::new(&vm, &mem, virtio_devices, block_metrics)?;
        let devices = Devices::new(irq, ConsoleOut::new(console), metrics.clone(), virtio);

        let base_cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("read the supported CPUID", ""))?;
        let mut vcpus = Vec::with_capacity(cfg.vcpus as usize);
        for index in 0..cfg.vcpus {
            let fd = vm
                .create_vcpu(u64::from(index))
                .map_err(kvm_err("create a vCPU", "; use fewer vCPUs"))?;
            let mut c = base_cpuid.clone();
            cpuid::filter(&mut c, index, cfg.vcpus);
            fd.set_cpuid2(&c).map_err(kvm_err("set CPUID", ""))?;
            let r = |source| VmError::Regs { index, source };
            regs::setup_msrs(&fd).map_err(r)?;
            regs::setup_fpu(&fd).map_err(r)?;
            regs::setup_lapic(&fd).map_err(r)?;
            if index == 0 {
                regs::setup_boot_vcpu(&fd, entry).map_err(r)?;
            }
            vcpus.push(fd);
        }
        tracing::debug!(
            elapsed_us = t0.elapsed().as_micros() as u64,
            ?entry,
            "VM built"
        );
        let shared = Arc::new(Shared {
            want: AtomicU8::new(Want::Run as u8),
            ctl: Mutex::new(Ctl {
                paused: vec![false; cfg.vcpus as usize],
                exited: 0,
                ended: None,
            }),
            cv: Condvar::new(),
            devices,
            metrics,
        });
        Ok(Self {
            shared,
            cfg,
            pending: Mutex::new(vcpus),
            threads: Mutex::new(Vec::new()),
            started: OnceLock::new(),
            ended_at: OnceLock::new(),
            _mem: mem,
            _vm: vm,
            _kvm: kvm,
        })
    }

    /// The config this VM was built from.
    pub fn config(&self) -> &VmConfig {
        &self.cfg
    }

    /// Start the vCPU threads; returns once each is pinned and prioritised as asked.
    pub fn start(&self) -> Result<(), VmError> {
        let vcpus: Vec<VcpuFd> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if vcpus.is_empty() {
            return Err(VmError::State {
                op: "start",
                state: "already started",
            });
        }
        vcpu::install_kick_handler().map_err(|source| VmError::Thread {
            index: 0,
            what: "install the vCPU kick signal handler".into(),
            hint: "",
            source,
        })?;
        let seccomp = self.cfg.seccomp;
        self.shared
            .devices
            .virtio
            .start(|| {
                let on = seccomp;
                Box::new(move || {
                    if on {
                        seccomp::install(ThreadKind::Device).map_err(|e| e.to_string())
                    } else {
                        Ok(())
                    }
                })
            })
            .map_err(|source| VmError::Thread {
                index: 0,
                what: "spawn a virtio device thread".into(),
                hint: "",
                source,
            })?;
        let _ = self.started.set(Instant::now());
        let (tx, rx) = mpsc::channel::<(u32, Result<(), VmError>)>();
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        let n = vcpus.len();
        for (index, fd) in (0u32..).zip(vcpus) {
            let shared = self.shared.clone();
            let tx = tx.clone();
            let pin = self.pin_for(index);
            let rtp = self.cfg.rt_priority.map(|p| (self.cfg.rt_policy, p));
            let h = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .stack_size(256 << 10)
                .spawn(move || {
                    // Pinning and priority first (the filter does not allow them), then
                    // the filter, then the guest.
                    let setup = setup_thread(index, pin.as_deref(), rtp).and_then(|()| {
                        if seccomp {
                            seccomp::install(ThreadKind::Vcpu)
                                .map_err(|e| VmError::Seccomp(e.to_string()))?;
                        }
                        Ok(())
                    });
                    let ok = setup.is_ok();
                    let _ = tx.send((index, setup));
                    if ok {
                        vcpu::run(fd, index, &shared);
                    } else {
                        let mut c = shared.lock();
                        c.exited += 1;
                        shared.cv.notify_all();
                    }
                })
                .map_err(|source| VmError::Thread {
                    index,
                    what: "spawn its thread".into(),
                    hint: "",
                    source,
                })?;
            threads.push(h);
        }
        drop(threads);
        drop(tx);
        let mut first_err = None;
        for _ in 0..n {
            match rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((_, Err(e))) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => break,
            }
        }
        if let Some(e) = first_err {
            self.shared.end(VmEnd::Stopped);
            self.join_all();
            self.shared.devices.virtio.stop();
            return Err(e);
        }
        // Keep the monitor's own threads off the vCPUs' CPUs when others remain.
        if !self.cfg.cpus.is_empty() {
            self.move_other_threads_off_vcpu_cpus();
        }
        tracing::info!(vcpus = n, "VM started");
        Ok(())
    }

    fn move_other_threads_off_vcpu_cpus(&self) {
        let Ok(all) = rt::allowed_cpus() else { return };
        let rest: Vec<u32> = all
            .into_iter()
            .filter(|c| !self.cfg.cpus.contains(c))
            .collect();
        if rest.is_empty() {
            return;
        }
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.starts_with("vcpu") {
                continue;
            }
            if let Err(e) = rt::pin_thread(tid, &rest) {
                tracing::warn!(tid, error = %e, "cannot move a monitor thread off the vCPU CPUs");
            }
        }
    }

    fn pin_for(&self, index: u32) -> Option<Vec<u32>> {
        let cpus = &self.cfg.cpus;
        (!cpus.is_empty()).then(|| vec![cpus[index as usize % cpus.len()]])
    }

    fn kick_until(&self, mut done: impl FnMut(&Ctl) -> bool) {
        let mut c = self.shared.lock();
        while !done(&c) {
            drop(c);
            self.kick_all();
            c = self.shared.lock();
            if done(&c) {
                break;
            }
            c = self
                .shared
                .cv
                .wait_timeout(c, Duration::from_millis(5))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn kick_all(&self) {
        let threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        for h in threads.iter() {
            // SAFETY: the thread is joinable (not yet joined: we hold the handle), so
            // its pthread_t is valid; the signal's handler is installed and does nothing.
            unsafe { libc::pthread_kill(h.as_pthread_t(), vcpu::kick_signal()) };
        }
    }

    /// Park every vCPU; returns once all are parked.
    pub fn pause(&self) -> Result<(), VmError> {
        match self.state() {
            VmState::Running => {}
            VmState::Paused => return Ok(()),
            s => return Err(state_err("pause", &s)),
        }
        self.shared.want.store(Want::Pause as u8, Ordering::Release);
        let n = self.cfg.vcpus;
        self.kick_until(|c| {
            c.ended.is_some() || c.paused.iter().filter(|p| **p).count() as u32 + c.exited >= n
        });
        Ok(())
    }

    /// Let parked vCPUs run again.
    pub fn resume(&self) -> Result<(), VmError> {
        match self.state() {
            VmState::Paused | VmState::Running => {}
            s => return Err(state_err("resume", &s)),
        }
        let c = self.shared.lock();
        self.shared.want.store(Want::Run as u8, Ordering::Release);
        self.shared.cv.notify_all();
        drop(c);
        Ok(())
    }

    /// Stop the vCPUs at their next exit (kicking them out of the guest) and end the VM
    /// with status `stopped`, unless it had already ended.
    pub fn stop(&self) -> VmEnd {
        self.shared.end(VmEnd::Stopped);
        self.wait()
    }

    /// Block until the VM ends; then stop and join every vCPU thread.
    pub fn wait(&self) -> VmEnd {
        {
            let mut c = self.shared.lock();
            while c.ended.is_none() {
                c = self
                    .shared
                    .cv
                    .wait(c)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        let n = self
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len() as u32;
        self.kick_until(|c| c.exited >= n);
        self.join_all();
        self.shared.devices.virtio.stop();
        self.shared.devices.flush_console();
        let _ = self.ended_at.set(Instant::now());
        self.shared.lock().ended.clone().unwrap_or(VmEnd::Stopped)
    }

    fn join_all(&self) {
        let threads: Vec<_> =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for h in threads {
            let _ = h.join();
        }
    }

    /// How it ended, if it has.
    pub fn ended(&self) -> Option<VmEnd> {
        self.shared.lock().ended.clone()
    }

    /// What the VM is doing now.
    pub fn state(&self) -> VmState {
        let c = self.shared.lock();
        if c.ended.is_some() {
            VmState::Ended
        } else if self.started.get().is_none() {
            VmState::Created
        } else if self.shared.want.load(Ordering::Acquire) == Want::Pause as u8 {
            VmState::Paused
        } else {
            VmState::Running
        }
    }

    /// Each disk's counters, in bus order (the root disk first).
    pub fn block_metrics(&self) -> &[Arc<BlockMetrics>] {
        &self.shared.devices.virtio.block_metrics
    }

    /// Counters and uptime.
    pub fn metrics(&self) -> MetricsSnapshot {
        let up = match (self.started.get(), self.ended_at.get()) {
            (Some(s), Some(e)) => e.duration_since(*s),
            (Some(s), None) => s.elapsed(),
            _ => Duration::ZERO,
        };
        self.shared
            .metrics
            .snapshot(u64::try_from(up.as_millis()).unwrap_or(u64::MAX))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        // Device threads hold guest memory; a VM dropped without `wait` still stops them.
        self.shared.devices.virtio.stop();
    }
}

fn state_err(op: &'static str, s: &VmState) -> VmError {
    VmError::State {
        op,
        state: match s {
            VmState::Created => "not started",
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Ended => "ended",
        },
    }
}

fn setup_thread(
    index: u32,
    pin: Option<&[u32]>,
    rtp: Option<(config::RtPolicy, u32)>,
) -> Result<(), VmError> {
    if let Some(cpus) = pin {
        rt::pin_current_thread(cpus).map_err(|source| VmError::Thread {
            index,
            what: format!("pin to host CPU {}", config::format_cpu_list(cpus)),
            hint: "; pick CPUs this process may use",
            source,
        })?;
    }
    if let Some((policy, prio)) = rtp {
        rt::set_realtime(policy, prio).map_err(|source| VmError::Thread {
            index,
            what: format!("run at real-time priority {prio} ({policy:?})"),
            hint: "; run as root (CAP_SYS_NICE) in a cgroup with a cpu.rt_runtime_us budget",
            source,
        })?;
    }
    Ok(())
}

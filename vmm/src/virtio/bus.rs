//! Putting a VM's virtio devices on its MMIO bus: windows, IRQs, the command line that
//! announces them, ioeventfds, irqfds and the device threads.

use super::block::{Block, BlockError, BlockMetrics, DiskConfig};
use super::mmio::{MmioTransport, QUEUE_NOTIFY};
use super::worker::{Control, Worker, WorkerHandle};
use super::{Interrupt, VirtioDevice, FIRST_IRQ, MMIO_BASE, MMIO_SIZE};
use kvm_ioctls::{IoEventAddress, VmFd};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Building the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A disk.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// An eventfd or its registration with KVM.
    #[error("virtio device {index}: cannot {what}")]
    Kvm {
        /// Which device.
        index: usize,
        /// What failed.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where device `i` lives and which IRQ it raises.
pub fn slot(i: usize) -> (u64, u32) {
    (MMIO_BASE + i as u64 * MMIO_SIZE, FIRST_IRQ + i as u32)
}

/// Disks in bus order: the root disk first (so Linux names it `vda`), then the rest as
/// given.
pub fn disk_order(disks: &[DiskConfig]) -> Vec<&DiskConfig> {
    let mut v: Vec<&DiskConfig> = disks.iter().filter(|d| d.root).collect();
    v.extend(disks.iter().filter(|d| !d.root));
    v
}

/// What the command line gains: one `virtio_mmio.device=SIZE@ADDR:IRQ` per device, as
/// Linux's virtio_mmio driver reads them, and `root=/dev/vda` for a root disk.
pub fn cmdline_extra(disks: &[DiskConfig], devices: usize) -> String {
    let mut s = String::new();
    for i in 0..devices {
        let (base, irq) = slot(i);
        s.push_str(&format!(
            " virtio_mmio.device={}K@{base:#x}:{irq}",
            MMIO_SIZE >> 10
        ));
    }
    if let Some(root) = disks.iter().find(|d| d.root) {
        s.push_str(if root.read_only {
            " root=/dev/vda ro"
        } else {
            " root=/dev/vda rw"
        });
    }
    s
}

/// The devices as the vCPUs see them, and their threads-to-be.
pub struct VirtioBus {
    transports: Vec<Mutex<MmioTransport>>,
    pending: Mutex<Vec<Worker>>,
    stoppers: Mutex<Vec<(mpsc::Sender<Control>, EventFd)>>,
    handles: Mutex<Vec<WorkerHandle>>,
    /// Each disk's counters, in bus order.
    pub block_metrics: Vec<Arc<BlockMetrics>>,
}

impl VirtioBus {
    /// Open every disk (before any KVM object exists, so a bad disk fails early).
    pub fn open_devices(disks: &[DiskConfig]) -> Result<Vec<Box<dyn VirtioDevice>>, BusError> {
        let mut v: Vec<Box<dyn VirtioDevice>> = Vec::new();
        for (i, d) in disk_order(disks).into_iter().enumerate() {
            v.push(Box::new(Block::new(d, i)?));
        }
        Ok(v)
    }

    /// Wire `devices` to `vm`: device `i` at [`slot`]`(i)`.
    pub fn new(
        vm: &VmFd,
        mem: &GuestMemoryMmap,
        devices: Vec<Box<dyn VirtioDevice>>,
        block_metrics: Vec<Arc<BlockMetrics>>,
    ) -> Result<Self, BusError> {
        let mut transports = Vec::new();
        let mut workers = Vec::new();
        let mut stoppers = Vec::new();
        for (index, device) in devices.into_iter().enumerate() {
            let (base, irq) = slot(index);
            let err = |what: &'static str| {
                move |source: std::io::Error| BusError::Kvm {
                    index,
                    what,
                    source,
                }
            };
            let kvm = |what: &'static str| {
                move |e: kvm_ioctls::Error| BusError::Kvm {
                    index,
                    what,
                    source: std::io::Error::from_raw_os_error(e.errno()),
                }
            };
            let irq_evt = EventFd::new(libc::EFD_NONBLOCK).map_err(err("create its irqfd"))?;
            vm.register_irqfd(&irq_evt, irq)
                .map_err(kvm("register its irqfd"))?;
            let mut queue_evts = Vec::new();
            for q in 0..device.queue_max_sizes().len() {
                let e = EventFd::new(libc::EFD_NONBLOCK).map_err(err("create an ioeventfd"))?;
                vm.register_ioevent(&e, &IoEventAddress::Mmio(base + QUEUE_NOTIFY), q as u32)
                    .map_err(kvm("register an ioeventfd"))?;
                queue_evts.push(e);
            }
            let ctl_evt =
                EventFd::new(libc::EFD_NONBLOCK).map_err(err("create its control eventfd"))?;
            let wake = ctl_evt
                .try_clone()
                .map_err(err("clone its control eventfd"))?;
            let stop_wake = ctl_evt
                .try_clone()
                .map_err(err("clone its control eventfd"))?;
            let (tx, rx) = mpsc::channel();
            stoppers.push((tx.clone(), stop_wake));
            let interrupt = Interrupt::new(irq_evt);
            transports.push(Mutex::new(MmioTransport::new(
                device.device_type(),
                device.features(),
                &device.queue_max_sizes(),
                device.config_space(),
                interrupt.clone(),
                tx,
                wake,
                mem.clone(),
            )));
            workers.push(Worker {
                device,
                queue_evts,
                ctl_evt,
                ctl: rx,
                interrupt,
                mem: mem.clone(),
                on_start: None,
            });
        }
        Ok(Self {
            transports,
            pending: Mutex::new(workers),
            stoppers: Mutex::new(stoppers),
            handles: Mutex::new(Vec::new()),
            block_metrics,
        })
    }

    /// A bus with no devices.
    pub fn empty() -> Self {
        Self {
            transports: Vec::new(),
            pending: Mutex::new(Vec::new()),
            stoppers: Mutex::new(Vec::new()),
            handles: Mutex::new(Vec::new()),
            block_metrics: Vec::new(),
        }
    }

    /// How many devices.
    pub fn len(&self) -> usize {
        self.transports.len()
    }

    /// No devices at all.
    pub fn is_empty(&self) -> bool {
        self.transports.is_empty()
    }

    fn find(&self, addr: u64) -> Option<(&Mutex<MmioTransport>, u64)> {
        let off = addr.checked_sub(MMIO_BASE)?;
        let t = self
            .transports
            .get(usize::try_from(off / MMIO_SIZE).ok()?)?;
        Some((t, off % MMIO_SIZE))
    }

    /// A vCPU's MMIO read; false if no device is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((t, off)) = self.find(addr) else {
            return false;
        };
        t.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read(off, data);
        true
    }

    /// A vCPU's MMIO write; false if no device is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        let Some((t, off)) = self.find(addr) else {
            return false;
        };
        t.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write(off, data);
        true
    }

    /// Start each device's thread; `on_start` runs first on each (the seccomp filter).
    pub fn start(
        &self,
        on_start: impl Fn() -> Box<dyn FnOnce() -> Result<(), String> + Send>,
    ) -> std::io::Result<()> {
        let workers =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let stoppers =
            std::mem::take(&mut *self.stoppers.lock().unwrap_or_else(PoisonError::into_inner));
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, (mut w, (ctl, wake))) in workers.into_iter().zip(stoppers).enumerate() {
            let name = format!("virtio-{}{i}", w.device.kind());
            w.on_start = Some(on_start());
            let thread = std::thread::Builder::new()
                .name(name)
                .stack_size(256 << 10)
                .spawn(move || w.run())?;
            handles.push(WorkerHandle {
                ctl,
                wake: Arc::new(wake),
                thread: Some(thread),
            });
        }
        Ok(())
    }

    /// Stop and join every device thread.
    pub fn stop(&self) {
        let handles =
            std::mem::take(&mut *self.handles.lock().unwrap_or_else(PoisonError::into_inner));
        for mut h in handles {
            h.stop();
        }
    }
}

//! Virtio devices over MMIO (virtio 1.x, modern only).
//!
//! The split of work follows the trust boundary: [`mmio::MmioTransport`] answers the
//! guest's register accesses on the vCPU threads and only keeps state; each device's
//! queues are handled on its own thread ([`worker`]), woken by KVM through an ioeventfd
//! when the guest writes `QueueNotify`, and it interrupts the guest through an irqfd.
//! Everything a guest puts into a queue is hostile input: descriptor tables and buffers
//! are read through `virtio-queue` and `vm-memory`, which bounds-check every access.

pub mod block;
pub mod bus;
pub mod mmio;
pub mod rate_limiter;
pub mod worker;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use virtio_bindings::virtio_mmio::VIRTIO_MMIO_INT_VRING;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Guest-physical base of the first virtio-mmio device (in the 32-bit MMIO hole).
pub const MMIO_BASE: u64 = crate::x86::layout::MMIO_GAP_START;
/// Each device's window; the announced size on the command line.
pub const MMIO_SIZE: u64 = 0x1000;
/// The first device's IRQ line (COM1 has 4); device `i` gets `FIRST_IRQ + i`.
pub const FIRST_IRQ: u32 = 5;
/// Most virtio devices one VM may have (IRQs 5..=15 on the ISA range of the I/O APIC).
pub const MAX_DEVICES: usize = 11;
/// Virtio 1.x feature bit every device offers (we implement no legacy interface).
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

/// How a device raises its interrupt: the `InterruptStatus` register it shares with its
/// transport, and the irqfd KVM turns into its IRQ line.
#[derive(Debug, Clone)]
pub struct Interrupt {
    status: Arc<AtomicU32>,
    evt: Arc<EventFd>,
}

impl Interrupt {
    /// A new interrupt over `evt` (registered with KVM as an irqfd by the caller).
    pub fn new(evt: EventFd) -> Self {
        Self {
            status: Arc::new(AtomicU32::new(0)),
            evt: Arc::new(evt),
        }
    }

    /// Tell the guest there are new entries in a used ring.
    pub fn signal_used(&self) {
        self.status
            .fetch_or(VIRTIO_MMIO_INT_VRING, Ordering::AcqRel);
        if let Err(e) = self.evt.write(1) {
            tracing::warn!(error = %e, "cannot raise a virtio interrupt");
        }
    }

    /// The `InterruptStatus` register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::Acquire)
    }

    /// `InterruptACK`: clear the bits the guest has handled.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::AcqRel);
    }

    /// Forget everything pending (device reset).
    pub fn clear(&self) {
        self.status.store(0, Ordering::Release);
    }
}

/// A virtio device's back end. Its static description is read once by the transport;
/// the rest runs on the device's own thread.
pub trait VirtioDevice: Send + 'static {
    /// The virtio device ID (`VIRTIO_ID_*`).
    fn device_type(&self) -> u32;
    /// Feature bits offered (VIRTIO_F_VERSION_1 included).
    fn features(&self) -> u64;
    /// The largest size of each queue.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// The device's configuration space, as the guest reads it.
    fn config_space(&self) -> Vec<u8>;
    /// The driver set DRIVER_OK: the queues are the device's from now on.
    fn activate(&mut self, queues: Vec<Queue>, acked_features: u64);
    /// The driver reset the device: drop the queues and any request in flight.
    fn reset(&mut self);
    /// Queue `index` was notified; process what is available. Returns whether the
    /// guest must be interrupted.
    fn process_queue(&mut self, mem: &GuestMemoryMmap, index: usize) -> bool;
    /// Other file descriptors the device thread must watch (timers, sockets, TAP).
    fn extra_fds(&self) -> Vec<RawFd> {
        Vec::new()
    }
    /// One of [`Self::extra_fds`] is readable. Returns whether to interrupt the guest.
    fn on_fd(&mut self, _mem: &GuestMemoryMmap, _fd: RawFd) -> bool {
        false
    }
    /// A disk's counters (None for other devices).
    fn block_metrics(&self) -> Option<Arc<block::BlockMetrics>> {
        None
    }
    /// A short name for logs and thread names (`blk`, `net`, `vsock`).
    fn kind(&self) -> &'static str;
}

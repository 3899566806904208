//! The virtio-mmio transport, version 2 (virtio 1.x "modern"): the register file a
//! guest driver programs. It runs on the vCPU threads, so it only keeps state; when the
//! driver sets DRIVER_OK it hands the queues to the device thread (see `worker`).

use super::worker::Control;
use super::{Interrupt, VIRTIO_F_VERSION_1};
use std::sync::mpsc::Sender;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// "virt", little-endian.
const MAGIC: u32 = 0x7472_6976;
/// The modern (non-legacy) MMIO interface.
const VERSION: u32 = 2;
/// Our vendor ID ("RO" + "ST" would do; any value is fine for drivers).
const VENDOR: u32 = 0x5453_4f52;

// Register offsets (virtio 1.2, 4.2.2).
const R_MAGIC: u64 = 0x000;
const R_VERSION: u64 = 0x004;
const R_DEVICE_ID: u64 = 0x008;
const R_VENDOR_ID: u64 = 0x00c;
const R_DEVICE_FEATURES: u64 = 0x010;
const R_DEVICE_FEATURES_SEL: u64 = 0x014;
const R_DRIVER_FEATURES: u64 = 0x020;
const R_DRIVER_FEATURES_SEL: u64 = 0x024;
const R_QUEUE_SEL: u64 = 0x030;
const R_QUEUE_NUM_MAX: u64 = 0x034;
const R_QUEUE_NUM: u64 = 0x038;
const R_QUEUE_READY: u64 = 0x044;
const R_QUEUE_NOTIFY: u64 = 0x050;
const R_INTERRUPT_STATUS: u64 = 0x060;
const R_INTERRUPT_ACK: u64 = 0x064;
const R_STATUS: u64 = 0x070;
const R_QUEUE_DESC_LOW: u64 = 0x080;
const R_QUEUE_DESC_HIGH: u64 = 0x084;
const R_QUEUE_DRIVER_LOW: u64 = 0x090;
const R_QUEUE_DRIVER_HIGH: u64 = 0x094;
const R_QUEUE_DEVICE_LOW: u64 = 0x0a0;
const R_QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const R_CONFIG_GENERATION: u64 = 0x0fc;
/// Device-specific configuration space starts here.
pub const R_CONFIG: u64 = 0x100;
/// Where `QueueNotify` sits, for the ioeventfds.
pub const QUEUE_NOTIFY: u64 = R_QUEUE_NOTIFY;

/// One device's transport.
pub struct MmioTransport {
    device_type: u32,
    device_features: u64,
    config: Vec<u8>,
    interrupt: Interrupt,
    ctl: Sender<Control>,
    wake: EventFd,
    mem: GuestMemoryMmap,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    activated: bool,
}

impl MmioTransport {
    /// A transport for a device with this static description; `ctl` + `wake` reach
    /// its thread.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device_type: u32,
        device_features: u64,
        queue_max_sizes: &[u16],
        config: Vec<u8>,
        interrupt: Interrupt,
        ctl: Sender<Control>,
        wake: EventFd,
        mem: GuestMemoryMmap,
    ) -> Self {
        let queues = queue_max_sizes
            .iter()
            .filter_map(|&m| Queue::new(m).ok())
            .collect();
        Self {
            device_type,
            device_features: device_features | VIRTIO_F_VERSION_1,
            config,
            interrupt,
            ctl,
            wake,
            mem,
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            activated: false,
        }
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        // Queues are configured only before DRIVER_OK (virtio 1.2, 4.2.3.2).
        if self.activated {
            return None;
        }
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn send(&self, c: Control) {
        if self.ctl.send(c).is_ok() {
            let _ = self.wake.write(1);
        }
    }

    /// A read of `data.len()` bytes at `offset` into the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= R_CONFIG {
            let start = usize::try_from(offset - R_CONFIG).unwrap_or(usize::MAX);
            for (i, b) in data.iter_mut().enumerate() {
                *b = start
                    .checked_add(i)
                    .and_then(|j| self.config.get(j))
                    .copied()
                    .unwrap_or(0);
            }
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let v: u32 = match offset {
            R_MAGIC => MAGIC,
            R_VERSION => VERSION,
            R_DEVICE_ID => self.device_type,
            R_VENDOR_ID => VENDOR,
            R_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features as u32,
                1 => (self.device_features >> 32) as u32,
                _ => 0,
            },
            R_QUEUE_NUM_MAX => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.max_size())),
            R_QUEUE_READY => self
                .queues
                .get(self.queue_sel as usize)
                .map_or(0, |q| u32::from(q.ready())),
            R_INTERRUPT_STATUS => self.interrupt.status(),
            R_STATUS => self.status,
            R_CONFIG_GENERATION => 0,
            _ => 0,
        };
        data.copy_from_slice(&v.to_le_bytes());
    }

    /// A write of `data` at `offset` into the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= R_CONFIG {
            // No device has writable configuration fields yet.
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let v = u32::from_le_bytes(bytes);
        match offset {
            R_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            R_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            R_DRIVER_FEATURES if self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0 => {
                let (shift, mask) = match self.driver_features_sel {
                    0 => (0, 0xffff_ffffu64),
                    1 => (32, 0xffff_ffff_0000_0000u64),
                    _ => return,
                };
                self.driver_features =
                    (self.driver_features & !mask) | ((u64::from(v) << shift) & mask);
            }
            R_QUEUE_SEL => self.queue_sel = v,
            R_QUEUE_NUM => {
                if let Some(q) = self.queue() {
                    q.set_size(u16::try_from(v).unwrap_or(0));
                }
            }
            R_QUEUE_READY => {
                if let Some(q) = self.queue() {
                    q.set_ready(v == 1);
                }
            }
            R_QUEUE_DESC_LOW => self
                .queue()
                .map_or((), |q| q.set_desc_table_address(Some(v), None)),
            R_QUEUE_DESC_HIGH => self
                .queue()
                .map_or((), |q| q.set_desc_table_address(None, Some(v))),
            R_QUEUE_DRIVER_LOW => self
                .queue()
                .map_or((), |q| q.set_avail_ring_address(Some(v), None)),
            R_QUEUE_DRIVER_HIGH => self
                .queue()
                .map_or((), |q| q.set_avail_ring_address(None, Some(v))),
            R_QUEUE_DEVICE_LOW => self
                .queue()
                .map_or((), |q| q.set_used_ring_address(Some(v), None)),
            R_QUEUE_DEVICE_HIGH => self
                .queue()
                .map_or((), |q| q.set_used_ring_address(None, Some(v))),
            // Normally caught by the ioeventfd; a write KVM did not match (another width,
            // a queue we do not have) lands here and wakes nothing.
            R_QUEUE_NOTIFY => {}
            R_INTERRUPT_ACK => self.interrupt.ack(v),
            R_STATUS => self.set_status(v),
            _ => {}
        }
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        // The driver may only add bits (virtio 1.2, 3.1.1); anything else is a broken
        // driver: refuse it by flagging the device as needing a reset.
        if v & old != old {
            self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
            return;
        }
        let new = v & !old;
        let allowed = match new {
            VIRTIO_CONFIG_S_ACKNOWLEDGE => old == 0,
            VIRTIO_CONFIG_S_DRIVER => old == VIRTIO_CONFIG_S_ACKNOWLEDGE,
            VIRTIO_CONFIG_S_FEATURES_OK => {
                old == VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER && self.features_ok()
            }
            VIRTIO_CONFIG_S_DRIVER_OK => {
                old & VIRTIO_CONFIG_S_FEATURES_OK != 0 && old & VIRTIO_CONFIG_S_NEEDS_RESET == 0
            }
            VIRTIO_CONFIG_S_FAILED => true,
            _ => false,
        };
        if !allowed {
            // A FEATURES_OK we refuse stays unset, so the driver sees it was not accepted.
            if new != VIRTIO_CONFIG_S_FEATURES_OK {
                self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
            }
            return;
        }
        self.status = v;
        if new == VIRTIO_CONFIG_S_DRIVER_OK {
            self.activate();
        }
    }

    fn features_ok(&self) -> bool {
        // Only what we offered, and the modern interface is not optional.
        self.driver_features & !self.device_features == 0
            && self.driver_features & VIRTIO_F_VERSION_1 != 0
    }

    fn activate(&mut self) {
        let ready: Vec<Queue> = self
            .queues
            .iter()
            .filter(|q| q.ready())
            .filter_map(|q| Queue::try_from(q.state()).ok())
            .collect();
        if ready.len() != self.queues.len() || !ready.iter().all(|q| q.is_valid(&self.mem)) {
            tracing::warn!(
                device = self.device_type,
                "driver set DRIVER_OK with a queue that is not ready or not valid; device needs a reset"
            );
            self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
            return;
        }
        self.activated = true;
        self.send(Control::Activate {
            queues: ready,
            features: self.driver_features,
        });
    }

    fn reset(&mut self) {
        if self.activated {
            self.send(Control::Reset);
        }
        self.activated = false;
        self.status = 0;
        self.queue_sel = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.interrupt.clear();
        for q in &mut self.queues {
            q.reset();
        }
    }

    /// The driver status register (for tests and metrics).
    pub fn status(&self) -> u32 {
        self.status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use vm_memory::GuestAddress;

    fn transport() -> (MmioTransport, mpsc::Receiver<Control>) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let (tx, rx) = mpsc::channel();
        let t = MmioTransport::new(
            2,
            1 << 5,
            &[8],
            vec![1, 2, 3, 4, 5, 6, 7, 8],
            Interrupt::new(EventFd::new(0).unwrap()),
            tx,
            EventFd::new(0).unwrap(),
            mem,
        );
        (t, rx)
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }
    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    #[test]
    fn a_driver_brings_the_device_up_and_resets_it() {
        let (mut t, rx) = transport();
        assert_eq!(r(&mut t, R_MAGIC), MAGIC);
        assert_eq!(r(&mut t, R_VERSION), 2);
        assert_eq!(r(&mut t, R_DEVICE_ID), 2);
        assert_eq!(r(&mut t, R_DEVICE_FEATURES), 1 << 5);
        w(&mut t, R_DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, R_DEVICE_FEATURES), 1, "VERSION_1 offered");
        w(&mut t, R_STATUS, 1);
        w(&mut t, R_STATUS, 3);
        // Without VERSION_1 FEATURES_OK is refused.
        w(&mut t, R_STATUS, 11);
        assert_eq!(r(&mut t, R_STATUS), 3);
        w(&mut t, R_DRIVER_FEATURES_SEL, 1);
        w(&mut t, R_DRIVER_FEATURES, 1);
        w(&mut t, R_STATUS, 11);
        assert_eq!(r(&mut t, R_STATUS), 11);
        assert_eq!(r(&mut t, R_QUEUE_NUM_MAX), 8);
        w(&mut t, R_QUEUE_NUM, 8);
        w(&mut t, R_QUEUE_DESC_LOW, 0x1000);
        w(&mut t, R_QUEUE_DRIVER_LOW, 0x2000);
        w(&mut t, R_QUEUE_DEVICE_LOW, 0x3000);
        w(&mut t, R_QUEUE_READY, 1);
        w(&mut t, R_STATUS, 15);
        assert_eq!(r(&mut t, R_STATUS), 15);
        match rx.try_recv().unwrap() {
            Control::Activate { queues, features } => {
                assert_eq!(queues.len(), 1);
                assert_eq!(features, VIRTIO_F_VERSION_1);
            }
            other => panic!("{other:?}"),
        }
        // Config space, any width.
        let mut b = [0u8; 2];
        t.read(R_CONFIG + 6, &mut b);
        assert_eq!(b, [7, 8]);
        t.read(R_CONFIG + 7, &mut b);
        assert_eq!(b, [8, 0]);
        w(&mut t, R_STATUS, 0);
        assert!(matches!(rx.try_recv().unwrap(), Control::Reset));
        assert_eq!(r(&mut t, R_STATUS), 0);
        assert_eq!(r(&mut t, R_QUEUE_READY), 0);
    }

    #[test]
    fn a_queue_outside_memory_is_not_activated() {
        let (mut t, rx) = transport();
        for s in [1, 3] {
            w(&mut t, R_STATUS, s);
        }
        w(&mut t, R_DRIVER_FEATURES_SEL, 1);
        w(&mut t, R_DRIVER_FEATURES, 1);
        w(&mut t, R_STATUS, 11);
        w(&mut t, R_QUEUE_NUM, 8);
        w(&mut t, R_QUEUE_DESC_LOW, 0x4000_0000);
        w(&mut t, R_QUEUE_READY, 1);
        w(&mut t, R_STATUS, 15);
        assert!(r(&mut t, R_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET != 0);
        assert!(rx.try_recv().is_err());
        // Status going backwards is refused too.
        let (mut t, _rx) = transport();
        w(&mut t, R_STATUS, 1);
        w(&mut t, R_STATUS, 2);
        assert!(r(&mut t, R_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET != 0);
    }
}

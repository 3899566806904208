//! A Roost VM's devices: a 16550 UART on COM1, the i8042's reset line and the virtio-mmio
//! devices (see `virtio`). Every other port or MMIO access is logged, counted and
//! answered like an empty bus.

use crate::metrics::Metrics;
use crate::virtio::bus::VirtioBus;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// COM1's first port.
pub const COM1: u16 = 0x3f8;
/// COM1's IRQ line.
pub const COM1_IRQ: u32 = 4;
const I8042_DATA: u16 = 0x60;
const I8042_CMD: u16 = 0x64;
const I8042_RESET: u8 = 0xfe;
/// Log at most this many unhandled accesses (the counters keep counting).
const LOG_LIMIT: u64 = 32;

/// The serial's interrupt: an eventfd KVM turns into IRQ 4.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// Where the guest's console goes. Lines are flushed whole so a reader sees each
/// line as soon as the guest ends it.
pub struct ConsoleOut {
    buf: Vec<u8>,
    sink: Box<dyn Write + Send>,
}

impl ConsoleOut {
    /// Send console output to `sink`.
    pub fn new(sink: Box<dyn Write + Send>) -> Self {
        Self {
            buf: Vec::with_capacity(256),
            sink,
        }
    }
}

impl ConsoleOut {
    /// Write out everything buffered, a partial last line included.
    pub fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.sink.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.sink.flush()
    }
}

impl Write for ConsoleOut {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if data.contains(&b'\n') || self.buf.len() >= 4096 {
            self.drain()?;
        }
        Ok(data.len())
    }
    // The UART flushes after every byte; we keep whole lines (one write per line).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a device access asks of the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep running.
    Continue,
    /// The guest asked for a reset: the VM is over (status `shutdown`).
    Reset,
}

/// All port and MMIO devices.
pub struct Devices {
    serial: Mutex<Serial<IrqTrigger, NoEvents, ConsoleOut>>,
    metrics: Arc<Metrics>,
    logged: AtomicU64,
    /// The virtio-mmio devices.
    pub virtio: VirtioBus,
}

impl Devices {
    /// Devices with the console going to `out`.
    pub fn new(irq: EventFd, out: ConsoleOut, metrics: Arc<Metrics>, virtio: VirtioBus) -> Self {
        Self {
            serial: Mutex::new(Serial::new(IrqTrigger(irq), out)),
            metrics,
            logged: AtomicU64::new(0),
            virtio,
        }
    }

    fn log_unhandled(&self, kind: &str, addr: u64, len: usize, write: bool) {
        let n = self.logged.fetch_add(1, Ordering::Relaxed);
        if n < LOG_LIMIT {
            tracing::warn!(
                kind,
                addr = format_args!("{addr:#x}"),
                len,
                write,
                "guest touched an unhandled address"
            );
        } else if n == LOG_LIMIT {
            tracing::warn!("more unhandled accesses; only counting them from now on");
        }
    }

    /// A port read; `data` is filled in.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        match port {
            COM1..=0x3ff if data.len() == 1 => {
                let mut s = self.serial.lock().unwrap_or_else(PoisonError::into_inner);
                data[0] = s.read(u8::try_from(port - COM1).unwrap_or(0));
            }
            // i8042: no keyboard, nothing pending, input buffer empty.
            I8042_DATA | I8042_CMD => data.fill(0),
            _ => {
                self.metrics.unhandled_io();
                self.log_unhandled("pio", u64::from(port), data.len(), false);
                data.fill(0xff);
            }
        }
    }

    /// A port write.
    pub fn pio_write(&self, port: u16, data: &[u8]) -> Action {
        match port {
            COM1..=0x3ff if data.len() == 1 => {
                let mut s = self.serial.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = s.write(u8::try_from(port - COM1).unwrap_or(0), data[0]) {
                    tracing::warn!(error = %e, "serial write failed");
                }
                Action::Continue
            }
            I8042_CMD if data.first() == Some(&I8042_RESET) => Action::Reset,
            I8042_CMD | I8042_DATA => Action::Continue,
            _ => {
                self.metrics.unhandled_io();
                self.log_unhandled("pio", u64::from(port), data.len(), true);
                Action::Continue
            }
        }
    }

    /// An MMIO read: a virtio device's, or all-ones like an empty bus.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if self.virtio.read(addr, data) {
            return;
        }
        self.metrics.unhandled_mmio();
        self.log_unhandled("mmio", addr, data.len(), false);
        data.fill(0xff);
    }

    /// An MMIO write: a virtio device's, or dropped.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        if self.virtio.write(addr, data) {
            return;
        }
        self.metrics.unhandled_mmio();
        self.log_unhandled("mmio", addr, data.len(), true);
    }

    /// Push out any console bytes still buffered.
    pub fn flush_console(&self) {
        let mut s = self.serial.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = s.writer_mut().drain() {
            tracing::warn!(error = %e, "console flush failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, d: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(d);
            Ok(d.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn serial_lines_reset_and_unhandled_accesses() {
        let out = Shared::default();
        let m = Arc::new(Metrics::default());
        let d = Devices::new(
            EventFd::new(0).unwrap(),
            ConsoleOut::new(Box::new(out.clone())),
            m.clone(),
            VirtioBus::empty(),
        );
        for b in b"hi" {
            d.pio_write(COM1, &[*b]);
        }
        assert!(
            out.0.lock().unwrap().is_empty(),
            "flushed before the newline"
        );
        d.pio_write(COM1, b"\n");
        assert_eq!(&*out.0.lock().unwrap(), b"hi\n");
        assert_eq!(d.pio_write(0x64, &[0xfe]), Action::Reset);
        assert_eq!(d.pio_write(0x64, &[0x01]), Action::Continue);
        let mut b = [0u8; 4];
        d.pio_read(0x80, &mut b[..1]);
        d.mmio_read(0xd000_0000, &mut b);
        d.mmio_write(0xd000_0000, &b);
        assert_eq!(b, [0xff; 4]);
        let s = m.snapshot(0);
        assert_eq!((s.unhandled_io, s.unhandled_mmio), (1, 2));
    }
}

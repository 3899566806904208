//! A device's thread: an epoll loop over the queues' ioeventfds, the control eventfd
//! (activate, reset, stop from the transport and the VM) and the device's own fds.

use super::{Interrupt, VirtioDevice};
use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

/// What the transport and the VM tell a device thread.
#[derive(Debug)]
pub enum Control {
    /// The driver set DRIVER_OK with these queues and features.
    Activate {
        /// The queues, as the driver configured them.
        queues: Vec<Queue>,
        /// What the driver accepted.
        features: u64,
    },
    /// The driver wrote 0 to the status register.
    Reset,
    /// The VM is over: leave the loop.
    Stop,
}

const CTL: u64 = u64::MAX;
const QUEUE_BIT: u64 = 1 << 62;

/// Everything one device thread needs.
pub struct Worker {
    /// The device.
    pub device: Box<dyn VirtioDevice>,
    /// One eventfd per queue, signalled by KVM on `QueueNotify` writes.
    pub queue_evts: Vec<EventFd>,
    /// Wakes the loop when a [`Control`] was sent.
    pub ctl_evt: EventFd,
    /// The control channel.
    pub ctl: Receiver<Control>,
    /// The device's interrupt.
    pub interrupt: Interrupt,
    /// Guest memory.
    pub mem: GuestMemoryMmap,
    /// Called once on the thread before the loop (the seccomp filter goes in here); an
    /// error leaves the device dead rather than unfiltered.
    pub on_start: Option<Box<dyn FnOnce() -> Result<(), String> + Send>>,
}

impl Worker {
    /// Run until [`Control::Stop`] or the channel closes.
    pub fn run(mut self) {
        let name = self.device.kind();
        if let Some(f) = self.on_start.take() {
            if let Err(e) = f() {
                tracing::error!(device = name, error = %e, "virtio device thread not started");
                return;
            }
        }
        if let Err(e) = self.event_loop() {
            tracing::error!(device = name, error = %e, "virtio device thread failed; the device stops answering");
        }
    }

    fn event_loop(&mut self) -> std::io::Result<()> {
        let ep = Epoll::new()?;
        let add = |fd: RawFd, data: u64| {
            ep.ctl(
                ControlOperation::Add,
                fd,
                EpollEvent::new(EventSet::IN, data),
            )
        };
        add(self.ctl_evt.as_raw_fd(), CTL)?;
        for (i, e) in self.queue_evts.iter().enumerate() {
            add(e.as_raw_fd(), QUEUE_BIT | i as u64)?;
        }
        let mut watched: BTreeSet<RawFd> = BTreeSet::new();
        let mut active = false;
        let mut events = vec![EpollEvent::default(); 16];
        loop {
            // Device fds come and go (vsock connections): keep the set in step.
            // An inactive device has nothing to say about its fds (a level-triggered fd
            // nobody reads would spin the loop).
            let want: BTreeSet<RawFd> = if active {
                self.device.extra_fds().into_iter().collect()
            } else {
                BTreeSet::new()
            };
            for fd in watched.difference(&want) {
                let _ = ep.ctl(ControlOperation::Delete, *fd, EpollEvent::default());
            }
            for fd in want.difference(&watched) {
                add(*fd, *fd as u64)?;
            }
            watched = want;

            let n = match ep.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut notify = false;
            for ev in &events[..n] {
                let data = ev.data();
                if data == CTL {
                    let _ = self.ctl_evt.read();
                    loop {
                        match self.ctl.try_recv() {
                            Ok(Control::Activate { queues, features }) => {
                                self.device.activate(queues, features);
                                active = true;
                                // Requests may already be waiting (a notify before DRIVER_OK
                                // reached us).
                                for i in 0..self.queue_evts.len() {
                                    notify |= self.device.process_queue(&self.mem, i);
                                }
                            }
                            Ok(Control::Reset) => {
                                self.device.reset();
                                active = false;
                            }
                            Ok(Control::Stop) | Err(TryRecvError::Disconnected) => return Ok(()),
                            Err(TryRecvError::Empty) => break,
                        }
                    }
                } else if data & QUEUE_BIT != 0 && data != CTL {
                    let i = (data & !QUEUE_BIT) as usize;
                    if let Some(e) = self.queue_evts.get(i) {
                        let _ = e.read();
                    }
                    if active {
                        notify |= self.device.process_queue(&self.mem, i);
                    }
                } else if active {
                    notify |= self.device.on_fd(&self.mem, data as RawFd);
                }
            }
            if notify {
                self.interrupt.signal_used();
            }
        }
    }
}

/// A handle the VM keeps to stop a device thread.
pub struct WorkerHandle {
    /// Sends [`Control::Stop`].
    pub ctl: std::sync::mpsc::Sender<Control>,
    /// Wakes the thread.
    pub wake: Arc<EventFd>,
    /// The thread.
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl WorkerHandle {
    /// Stop the thread and wait for it.
    pub fn stop(&mut self) {
        let _ = self.ctl.send(Control::Stop);
        let _ = self.wake.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

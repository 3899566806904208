//! One thread per vCPU: the KVM_RUN loop, exit handling, pause and stop.

use crate::devices::Action;
use crate::metrics::ExitReason;
use crate::vm::{Shared, VmEnd, Want};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::sync::atomic::Ordering;
use std::sync::{Once, PoisonError};

const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;
const KVM_SYSTEM_EVENT_CRASH: u32 = 3;

/// The signal that kicks a vCPU thread out of KVM_RUN.
pub fn kick_signal() -> i32 {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: interrupting the KVM_RUN ioctl with EINTR is the whole point.
}

/// Install the (empty) kick handler once per process.
pub fn install_kick_handler() -> std::io::Result<()> {
    static ONCE: Once = Once::new();
    let mut res = Ok(());
    ONCE.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick) {
            res = Err(std::io::Error::from_raw_os_error(e.errno()));
        }
    });
    res
}

/// Run vCPU `index` until the VM ends or is stopped.
pub fn run(mut vcpu: VcpuFd, index: u32, shared: &Shared) {
    loop {
        if shared.want.load(Ordering::Acquire) != Want::Run as u8 && !shared.park(index) {
            break;
        }
        let end = match vcpu.run() {
            Ok(exit) => handle_exit(exit, index, shared),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                shared.metrics.exit(ExitReason::Interrupted);
                None
            }
            Err(e) => Some(VmEnd::Crashed(format!(
                "KVM_RUN failed on vCPU {index}: {e}"
            ))),
        };
        if let Some(mut end) = end {
            if let VmEnd::Crashed(reason) = &mut end {
                if reason.contains("internal error") {
                    // SAFETY: after KVM_EXIT_INTERNAL_ERROR the `internal` member of the
                    // kvm_run union is the one KVM filled in.
                    let sub = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                    reason.push_str(&format!(", suberror {sub}"));
                }
                if let Ok(regs) = vcpu.get_regs() {
                    reason.push_str(&format!(" at rip={:#x}", regs.rip));
                }
            }
            shared.end(end);
            break;
        }
    }
    let mut c = shared.ctl.lock().unwrap_or_else(PoisonError::into_inner);
    c.exited += 1;
    shared.cv.notify_all();
}

fn handle_exit(exit: VcpuExit<'_>, index: u32, shared: &Shared) -> Option<VmEnd> {
    let m = &shared.metrics;
    match exit {
        VcpuExit::IoOut(port, data) => {
            m.exit(ExitReason::IoOut);
            (shared.devices.pio_write(port, data) == Action::Reset).then_some(VmEnd::Shutdown)
        }
        VcpuExit::IoIn(port, data) => {
            m.exit(ExitReason::IoIn);
            shared.devices.pio_read(port, data);
            None
        }
        VcpuExit::MmioRead(addr, data) => {
            m.exit(ExitReason::MmioRead);
            shared.devices.mmio_read(addr, data);
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            m.exit(ExitReason::MmioWrite);
            shared.devices.mmio_write(addr, data);
            None
        }
        VcpuExit::Hlt => {
            // Only without an in-kernel irqchip: nothing can wake the vCPU.
            m.exit(ExitReason::Hlt);
            Some(VmEnd::Crashed(format!(
                "vCPU {index} halted with no interrupt controller to wake it"
            )))
        }
        VcpuExit::Shutdown => {
            m.exit(ExitReason::Shutdown);
            Some(VmEnd::Crashed(format!("triple fault on vCPU {index}")))
        }
        VcpuExit::InternalError => {
            m.exit(ExitReason::InternalError);
            Some(VmEnd::Crashed(format!(
                "KVM internal error on vCPU {index} (a guest fault KVM could not deliver)"
            )))
        }
        VcpuExit::FailEntry(reason, cpu) => {
            m.exit(ExitReason::FailEntry);
            Some(VmEnd::Crashed(format!(
                "KVM could not enter vCPU {index} (hardware reason {reason:#x}, host CPU {cpu})"
            )))
        }
        VcpuExit::SystemEvent(kind, _) => {
            m.exit(ExitReason::SystemEvent);
            match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN | KVM_SYSTEM_EVENT_RESET => Some(VmEnd::Shutdown),
                KVM_SYSTEM_EVENT_CRASH => Some(VmEnd::Crashed(format!(
                    "guest reported a crash on vCPU {index}"
                ))),
                other => {
                    tracing::warn!(vcpu = index, kind = other, "ignoring system event");
                    None
                }
            }
        }
        VcpuExit::Intr => {
            m.exit(ExitReason::Interrupted);
            None
        }
        other => {
            m.exit(ExitReason::Other);
            Some(VmEnd::Crashed(format!(
                "unexpected exit on vCPU {index}: {other:?}"
            )))
        }
    }
}

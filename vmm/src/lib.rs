//! Roost's KVM microVM monitor (library). One `roost vmm` process runs one VM.
//!
//! [`Vm::create`] validates a [`VmConfig`] (before any KVM object exists), builds guest
//! memory, loads the kernel and sets up the vCPUs; [`Vm::start`] runs one thread per
//! vCPU; [`Vm::wait`] returns how the VM ended: `shutdown` (the guest reset through the
//! i8042), `crashed` (triple fault, KVM internal error) or `stopped`.

pub mod boot;
pub mod config;
pub mod devices;
pub mod memory;
pub mod metrics;
pub mod rt;
pub mod seccomp;
pub mod trim;
mod vcpu;
pub mod virtio;
pub mod vm;
pub mod x86;

pub use config::{BootProtocol, ConfigError, KernelFormat, RtPolicy, VmConfig};
pub use metrics::MetricsSnapshot;
pub use vm::{validate, Vm, VmEnd, VmError, VmState};

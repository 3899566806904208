//! Counters a VM keeps: exits by reason, unhandled accesses, uptime.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a vCPU left KVM_RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Port read.
    IoIn,
    /// Port write.
    IoOut,
    /// MMIO read.
    MmioRead,
    /// MMIO write.
    MmioWrite,
    /// HLT without an in-kernel irqchip.
    Hlt,
    /// Triple fault.
    Shutdown,
    /// KVM could not go on (emulation failure, …).
    InternalError,
    /// Entry into the guest failed.
    FailEntry,
    /// A system event (reset, shutdown request).
    SystemEvent,
    /// We kicked the vCPU out (pause, stop).
    Interrupted,
    /// Anything else.
    Other,
}

/// Live counters, shared by all vCPU threads.
#[derive(Debug, Default)]
pub struct Metrics {
    io_in: AtomicU64,
    io_out: AtomicU64,
    mmio_read: AtomicU64,
    mmio_write: AtomicU64,
    hlt: AtomicU64,
    shutdown: AtomicU64,
    internal_error: AtomicU64,
    fail_entry: AtomicU64,
    system_event: AtomicU64,
    interrupted: AtomicU64,
    other: AtomicU64,
    unhandled_io: AtomicU64,
    unhandled_mmio: AtomicU64,
}

impl Metrics {
    /// Count one exit.
    pub fn exit(&self, r: ExitReason) {
        let c = match r {
            ExitReason::IoIn => &self.io_in,
            ExitReason::IoOut => &self.io_out,
            ExitReason::MmioRead => &self.mmio_read,
            ExitReason::MmioWrite => &self.mmio_write,
            ExitReason::Hlt => &self.hlt,
            ExitReason::Shutdown => &self.shutdown,
            ExitReason::InternalError => &self.internal_error,
            ExitReason::FailEntry => &self.fail_entry,
            ExitReason::SystemEvent => &self.system_event,
            ExitReason::Interrupted => &self.interrupted,
            ExitReason::Other => &self.other,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an access to a port no device claims.
    pub fn unhandled_io(&self) {
        self.unhandled_io.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an access to an MMIO address no device claims.
    pub fn unhandled_mmio(&self) {
        self.unhandled_mmio.fetch_add(1, Ordering::Relaxed);
    }

    /// A consistent-enough copy for reporting.
    pub fn snapshot(&self, uptime_ms: u64) -> MetricsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            uptime_ms,
            exits: ExitCounts {
                io_in: g(&self.io_in),
                io_out: g(&self.io_out),
                mmio_read: g(&self.mmio_read),
                mmio_write: g(&self.mmio_write),
                hlt: g(&self.hlt),
                shutdown: g(&self.shutdown),
                internal_error: g(&self.internal_error),
                fail_entry: g(&self.fail_entry),
                system_event: g(&self.system_event),
                interrupted: g(&self.interrupted),
                other: g(&self.other),
            },
            unhandled_io: g(&self.unhandled_io),
            unhandled_mmio: g(&self.unhandled_mmio),
        }
    }
}

/// Exits by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExitCounts {
    /// Port reads.
    pub io_in: u64,
    /// Port writes.
    pub io_out: u64,
    /// MMIO reads.
    pub mmio_read: u64,
    /// MMIO writes.
    pub mmio_write: u64,
    /// HLT exits.
    pub hlt: u64,
    /// Triple faults.
    pub shutdown: u64,
    /// KVM internal errors.
    pub internal_error: u64,
    /// Failed entries.
    pub fail_entry: u64,
    /// System events.
    pub system_event: u64,
    /// Kicks (pause, stop).
    pub interrupted: u64,
    /// Other reasons.
    pub other: u64,
}

/// A VM's metrics at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// Milliseconds since start (0 before start).
    pub uptime_ms: u64,
    /// Exits by reason.
    pub exits: ExitCounts,
    /// Accesses to unclaimed ports.
    pub unhandled_io: u64,
    /// Accesses to unclaimed MMIO addresses.
    pub unhandled_mmio: u64,
}

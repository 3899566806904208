//! Seccomp filters, one per thread kind, built with `seccompiler`. Each thread installs
//! its own before the guest can reach it: a vCPU thread before its first KVM_RUN, a
//! device thread before its event loop, the API threads once the VM is started. A call
//! outside the list kills the whole monitor (SIGSYS), which the host daemon reports.
//!
//! The lists are what each thread was seen to call (strace of the test guests), plus
//! what the Rust runtime needs to end a thread, allocate and panic.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Which thread a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// Runs KVM_RUN and the exit handlers.
    Vcpu,
    /// A virtio device's event loop.
    Device,
    /// The API server, the waiter and the signal thread.
    Api,
}

impl ThreadKind {
    /// `vcpu`, `device`, `api`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vcpu => "vcpu",
            Self::Device => "device",
            Self::Api => "api",
        }
    }
}

/// A filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot install the {kind} seccomp filter: {reason}")]
pub struct SeccompError {
    /// The thread kind.
    pub kind: &'static str,
    /// seccompiler's reason.
    pub reason: String,
}

// Every thread: memory, futexes, signals, thread exit, logging, panics.
const COMMON: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_rseq,
    libc::SYS_set_robust_list,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

const VCPU: &[i64] = &[];

const DEVICE: &[i64] = &[
    libc::SYS_epoll_create1,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_readv,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_lseek,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    // vsock and net: streams to and from Unix sockets, the TAP device.
    libc::SYS_accept4,
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_shutdown,
    libc::SYS_getsockopt,
];

const API: &[i64] = &[
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_getdents64,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_prctl,
    libc::SYS_getrandom,
    libc::SYS_prlimit64,
    libc::SYS_sched_setaffinity,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_ctl,
];

// The vCPU thread's ioctls: KVM_RUN, and reading registers for a crash report.
const KVM_RUN: u64 = 0xae80;
const KVM_GET_REGS: u64 = 0x8090_ae81;
const KVM_GET_SREGS: u64 = 0x8138_ae83;

fn ioctl_rule(req: u64) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(vec![SeccompCondition::new(
        1,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        req,
    )?])
}

/// The compiled filter for `kind`.
pub fn filter(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let err = |e: &dyn std::fmt::Display| SeccompError {
        kind: kind.name(),
        reason: e.to_string(),
    };
    let extra = match kind {
        ThreadKind::Vcpu => VCPU,
        ThreadKind::Device => DEVICE,
        ThreadKind::Api => API,
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = COMMON
        .iter()
        .chain(extra)
        .map(|s| (*s, Vec::new()))
        .collect();
    match kind {
        ThreadKind::Vcpu => {
            let r = [KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS]
                .into_iter()
                .map(ioctl_rule)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(&e))?;
            rules.insert(libc::SYS_ioctl, r);
        }
        // Pausing and stopping read vCPU state through KVM on the API side.
        ThreadKind::Api => {
            rules.insert(libc::SYS_ioctl, Vec::new());
        }
        ThreadKind::Device => {}
    }
    let f = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(|e| err(&e))?;
    BpfProgram::try_from(f).map_err(|e| err(&e))
}

/// Build and install the filter for `kind` on the calling thread.
pub fn install(kind: ThreadKind) -> Result<(), SeccompError> {
    let prog = filter(kind)?;
    seccompiler::apply_filter(&prog).map_err(|e| SeccompError {
        kind: kind.name(),
        reason: e.to_string(),
    })?;
    tracing::debug!(kind = kind.name(), "seccomp filter installed");
    trip(kind);
    Ok(())
}

/// Test builds only: `ROOST_VMM_SECCOMP_TRIP=vcpu|device|api` makes that thread kind
/// call `personality(2)`, which no filter allows, right after installing its filter,
/// so tests can see a forbidden call kill the monitor and the host report it.
fn trip(kind: ThreadKind) {
    #[cfg(debug_assertions)]
    if std::env::var("ROOST_VMM_SECCOMP_TRIP").is_ok_and(|v| v == kind.name()) {
        tracing::warn!(
            kind = kind.name(),
            "ROOST_VMM_SECCOMP_TRIP: making a forbidden call"
        );
        // SAFETY: personality(0xffffffff) only queries the persona; the filter kills
        // the process before it runs.
        unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) };
    }
    #[cfg(not(debug_assertions))]
    let _ = kind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_compiles() {
        for k in [ThreadKind::Vcpu, ThreadKind::Device, ThreadKind::Api] {
            assert!(!filter(k).unwrap().is_empty());
        }
    }

    #[test]
    fn a_forbidden_call_kills_the_process() {
        // In a child, so the test process lives on; built before the fork so the child
        // does not allocate.
        let prog = filter(ThreadKind::Device).unwrap();
        // SAFETY: the child only installs a filter and makes raw syscalls, then exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            if seccompiler::apply_filter(&prog).is_err() {
                // SAFETY: ends the forked child at once, without running anything else.
                unsafe { libc::_exit(2) };
            }
            // SAFETY: a query-only personality call; the filter kills us before it runs.
            unsafe { libc::syscall(libc::SYS_personality, 0xffff_ffffu64) };
            // SAFETY: as above; reached only if the filter did not kill us.
            unsafe { libc::_exit(0) };
        }
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert!(libc::WIFSIGNALED(st), "status {st:#x}");
        assert_eq!(libc::WTERMSIG(st), libc::SIGSYS);
    }
}

//! CPU affinity and real-time scheduling of the calling thread.

use crate::config::RtPolicy;
use std::io;

/// CPUs the calling thread may run on.
pub fn allowed_cpus() -> io::Result<Vec<u32>> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size we pass; pid 0 = this thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let max = u32::try_from(libc::CPU_SETSIZE).unwrap_or(1024);
    // SAFETY: CPU_ISSET only reads the set, with an index below CPU_SETSIZE.
    Ok((0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c as usize, &set) })
        .collect())
}

/// Restrict the calling thread to `cpus` (must be non-empty).
pub fn pin_current_thread(cpus: &[u32]) -> io::Result<()> {
    pin_thread(0, cpus)
}

/// Restrict thread `tid` of this process (0 = the caller) to `cpus` (must be non-empty).
pub fn pin_thread(tid: i32, cpus: &[u32]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c as usize >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {c} is beyond CPU_SETSIZE"),
            ));
        }
        // SAFETY: index checked against CPU_SETSIZE above.
        unsafe { libc::CPU_SET(c as usize, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size we pass; `tid` names a thread
    // (a wrong one only makes the call fail).
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Run the calling thread under SCHED_FIFO or SCHED_RR at `priority` (1–99).
pub fn set_realtime(policy: RtPolicy, priority: u32) -> io::Result<()> {
    let pol = match policy {
        RtPolicy::Fifo => libc::SCHED_FIFO,
        RtPolicy::Rr => libc::SCHED_RR,
    };
    let param = libc::sched_param {
        sched_priority: i32::try_from(priority).unwrap_or(i32::MAX),
    };
    // SAFETY: `param` is a valid sched_param; pid 0 = the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, pol, &param) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The calling thread's scheduling policy and priority (for tests and metrics).
pub fn current_policy(tid: i32) -> io::Result<(i32, i32)> {
    // SAFETY: sched_getscheduler only reads the target's policy.
    let pol = unsafe { libc::sched_getscheduler(tid) };
    if pol < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid out-parameter.
    let rc = unsafe { libc::sched_getparam(tid, &mut param) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((pol, param.sched_priority))
}

/// Kernel thread id of the calling thread.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_has_cpus_and_can_pin_to_one_of_them() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        std::thread::spawn(move || {
            pin_current_thread(&cpus[..1]).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![cpus[0]]);
        })
        .join()
        .unwrap();
    }
}

//! File-descriptor headroom for the daemon, set up once at start while it still has
//! one thread.
//!
//! The daemon holds about one descriptor per workload (a pidfd per watched process,
//! sockets to VM monitors), so a host at its default limit of 1,024 workloads would
//! hit the usual soft limit of 1,024 descriptors that systemd gives services. And each
//! time a multi-threaded process outgrows its descriptor table (at 256, 512, 1,024, …
//! entries) the kernel waits for an RCU grace period while it swaps the table: about
//! 10 ms on this host, seen as two of the ten slowest creates of a `make bench-api`
//! run. So, before any thread starts, [`prepare`] raises the soft limit (to the hard
//! limit, at most [`SOFT_LIMIT`]) and grows the table once, to [`TABLE`] entries.

/// The soft limit the daemon asks for (when the hard limit allows). Kept well below
/// the usual hard limits: processes the daemon starts inherit it, and some programs
/// close every descriptor up to their limit when they start.
pub const SOFT_LIMIT: u64 = 65_536;

/// Descriptor-table entries made at start (a few KiB of kernel memory).
pub const TABLE: u64 = 4_096;

/// What [`prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
    /// Entries the descriptor table was grown to (0 if it was not).
    pub table: u64,
}

/// Raise the soft `RLIMIT_NOFILE` and grow the descriptor table. Call it before the
/// runtime starts its threads (growing a table nobody shares needs no RCU wait).
/// Nothing here fails the daemon: on any error the limits stay as they were.
pub fn prepare() -> Headroom {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass, which lives on our stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Headroom {
            was: 0,
            soft: 0,
            hard: 0,
            table: 0,
        };
    }
    let was = lim.rlim_cur;
    let want = target(was, lim.rlim_max);
    if want > was {
        let new = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the
        // hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            lim.rlim_cur = want;
        }
    }
    let table = TABLE.min(lim.rlim_cur);
    let grown = table > 64 && grow_table(table);
    Headroom {
        was,
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
        table: if grown { table } else { 0 },
    }
}

/// The soft limit to ask for: at least what it is, up to [`SOFT_LIMIT`], never above
/// the hard limit.
fn target(soft: u64, hard: u64) -> u64 {
    soft.max(SOFT_LIMIT.min(hard))
}

/// Make the kernel's table hold `entries` descriptors: duplicate one onto the last
/// slot, then close that copy (a table never shrinks).
fn grow_table(entries: u64) -> bool {
    let Ok(last) = i32::try_from(entries - 1) else {
        return false;
    };
    // SAFETY: fcntl(F_DUPFD) takes two integers and returns a new descriptor (the
    // lowest free one at or above `last`) or -1; stderr (2) is open in a daemon
    // whose output goes to its log.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, last) };
    if fd < 0 {
        return false;
    }
    // SAFETY: closing the descriptor we just made; nobody else knows of it.
    unsafe { libc::close(fd) };
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_to_the_cap_or_the_hard_limit() {
        assert_eq!(target(1_024, 524_288), SOFT_LIMIT);
        assert_eq!(target(1_024, 4_096), 4_096);
        assert_eq!(target(1_024, 1_024), 1_024);
        // Never lowered.
        assert_eq!(target(1_048_576, 1_048_576), 1_048_576);
    }

    /// Slots in this process's descriptor table (`FDSize` in /proc/self/status).
    fn fd_size() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_table_grows_and_the_copy_is_closed() {
        let before = fd_size();
        let want = (before * 4).max(512);
        assert!(grow_table(want));
        assert!(
            fd_size() >= want,
            "FDSize {} after growing to {want}",
            fd_size()
        );
        // The copy on the last slot is closed again.
        let last = format!("/proc/self/fd/{}", want - 1);
        assert!(!std::path::Path::new(&last).exists(), "{last} still open");
    }
}

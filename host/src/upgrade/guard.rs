//! The upgrade guard: the previous binary, run as `roost host upgrade-guard …` just
//! before the daemon re-executes into a new release. It forks into a session of its
//! own (the daemon's wait for it returns once it watches), then watches the daemon by
//! a pidfd (the pid stays the same across the re-exec) and `upgrade.json`:
//!
//! - the record turns `healthy` (or anything but `pending`): done, it exits;
//! - the daemon exits first, or the deadline passes (it is then killed): it puts
//!   `<bin>.prev` back, records `rolled-back` with the reason, and becomes the daemon
//!   again by `execv` of the restored binary with the original argv and environment.
//!
//! It needs nothing from central and no runtime: one thread, `poll(2)` on the pidfd.

use super::record::{self, UpgradeRecord, UpgradeState};
use super::{execv, UpgradeConfig, UpgradeError, GUARD_ARGS};
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the guard looks at the record.
const TICK: Duration = Duration::from_millis(25);
/// How long a killed daemon has to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What the guard is told.
#[derive(Debug, Clone)]
pub struct GuardArgs {
    /// `<state>/central`.
    pub link_dir: PathBuf,
    /// The daemon.
    pub pid: i32,
    /// The daemon's binary path (what `.prev` goes back to).
    pub bin: PathBuf,
    /// The release being tried.
    pub sha256: String,
    /// The daemon's original argv.
    pub argv: Vec<OsString>,
}

/// Start the guard from `prev` (the previous binary) and wait until it watches.
pub(super) fn arm(
    cfg: &UpgradeConfig,
    prev: &Path,
    rec: &UpgradeRecord,
) -> Result<(), UpgradeError> {
    let fail = |reason: String| UpgradeError::Guard {
        bin: prev.to_path_buf(),
        reason,
    };
    let mut cmd = std::process::Command::new(prev);
    cmd.args(GUARD_ARGS)
        .arg("--link-dir")
        .arg(&cfg.link_dir)
        .arg("--pid")
        .arg(rec.pid.to_string())
        .arg("--bin")
        .arg(&cfg.exe)
        .arg("--sha256")
        .arg(&rec.sha256)
        .arg("--")
        .args(&cfg.argv)
        .stdin(std::process::Stdio::null());
    let st = cmd.status().map_err(|e| fail(e.to_string()))?;
    if !st.success() {
        return Err(fail(format!(
            "it exited {st} before it watched the daemon (its log says why)"
        )));
    }
    Ok(())
}

/// Put `<bin>.prev` back over `<bin>` and record the rollback with `reason`.
pub fn restore(cfg: &UpgradeConfig, reason: &str) -> Result<(), UpgradeError> {
    restore_at(&cfg.link_dir, &cfg.exe, &cfg.prev_path(), reason)
}

fn restore_at(link_dir: &Path, bin: &Path, prev: &Path, reason: &str) -> Result<(), UpgradeError> {
    if prev.exists() {
        std::fs::rename(prev, bin)
            .map_err(|e| UpgradeError::io(bin, "cannot put the previous binary back at", &e))?;
        record::sync_dir(bin.parent().unwrap_or(Path::new("/")))?;
    }
    if let Some(mut r) = record::read(link_dir)? {
        r.state = UpgradeState::RolledBack;
        r.reason = Some(reason.to_string());
        r.lifted = false;
        r.changed_ms = crate::model::now_ms();
        record::write(link_dir, &r)?;
    }
    Ok(())
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags, no pointers; it returns a new fd
    // or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by pidfd_open and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Has the process ended? Waits at most `timeout`.
fn exited(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd we own for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
    n > 0 && p.revents & libc::POLLIN != 0
}

fn kill(fd: &OwnedFd) {
    // SAFETY: pidfd_send_signal(2) with a pidfd we own, a signal number, a null
    // siginfo (allowed) and no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// Still the pending upgrade this guard watches?
fn pending(args: &GuardArgs) -> Option<UpgradeRecord> {
    match record::read(&args.link_dir) {
        Ok(Some(r)) if r.state == UpgradeState::Pending && r.sha256 == args.sha256 => Some(r),
        _ => None,
    }
}

/// Run the guard; the exit code. Must be called before any other thread exists.
pub fn run(args: GuardArgs) -> i32 {
    let fd = match pidfd_open(args.pid) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::error!(pid = args.pid, error = %e, "upgrade guard: cannot watch the daemon");
            return 1;
        }
    };
    if pending(&args).is_none() {
        tracing::error!(dir = %args.link_dir.display(), "upgrade guard: no pending upgrade of this release to watch");
        return 1;
    }
    // SAFETY: fork(2) in a process with one thread (the guard runs before any thread
    // or runtime is made); the child only uses what it owns.
    match unsafe { libc::fork() } {
        -1 => {
            tracing::error!(error = %std::io::Error::last_os_error(), "upgrade guard: cannot fork");
            return 1;
        }
        0 => {}
        // The parent: the daemon's wait ends; the child watches.
        _ => return 0,
    }
    // SAFETY: setsid(2) has no arguments; the forked child is not a group leader.
    unsafe {
        libc::setsid();
    }
    let deadline = pending(&args).map_or(0, |r| r.deadline_ms);
    tracing::info!(
        pid = args.pid,
        deadline_ms = deadline,
        "upgrade guard: watching the new daemon"
    );
    let reason = loop {
        if pending(&args).is_none() {
            tracing::info!(
                "upgrade guard: the new daemon is healthy (or the upgrade was called off); done"
            );
            return 0;
        }
        if exited(&fd, TICK) {
            // It may have marked itself healthy just before it ended: then it was
            // stopped, not broken, and whoever stopped it starts it again.
            if pending(&args).is_none() {
                return 0;
            }
            break "the new daemon exited before it was healthy".to_string();
        }
        let now = crate::model::now_ms();
        if now >= deadline {
            if pending(&args).is_none() {
                return 0;
            }
            kill(&fd);
            if !exited(&fd, KILL_WAIT) {
                tracing::error!(
                    pid = args.pid,
                    "upgrade guard: the new daemon does not die; rolling back anyway"
                );
            }
            break "the new daemon was not healthy by the deadline; killed".to_string();
        }
    };
    tracing::warn!(reason = %reason, "upgrade guard: rolling back");
    let prev = {
        let mut s = args.bin.as_os_str().to_owned();
        s.push(".prev");
        PathBuf::from(s)
    };
    if let Err(e) = restore_at(&args.link_dir, &args.bin, &prev, &reason) {
        tracing::error!(error = %e, "upgrade guard: rollback incomplete; starting the daemon anyway");
    }
    tracing::info!(bin = %args.bin.display(), "upgrade guard: starting the previous daemon");
    let e = execv(&args.bin, &args.argv);
    tracing::error!(bin = %args.bin.display(), error = %e, "upgrade guard: cannot start the daemon again; start it by hand");
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, pid: i32) -> GuardArgs {
        GuardArgs {
            link_dir: dir.join("central"),
            pid,
            bin: dir.join("roost"),
            sha256: "ab".repeat(32),
            argv: vec!["roost".into()],
        }
    }

    #[test]
    fn restore_puts_prev_back_and_records_why() {
        let d = tempfile::tempdir().unwrap();
        let a = args(d.path(), 1);
        std::fs::write(&a.bin, b"new").unwrap();
        std::fs::write(d.path().join("roost.prev"), b"old").unwrap();
        let rec = UpgradeRecord {
            version: "0.2.0".into(),
            sha256: a.sha256.clone(),
            previous: "0.1.0".into(),
            deadline_ms: 0,
            state: UpgradeState::Pending,
            pid: 1,
            bin: a.bin.clone(),
            ino: 0,
            previous_ino: 0,
            reason: None,
            lifted: true,
            changed_ms: 0,
        };
        record::write(&a.link_dir, &rec).unwrap();
        assert!(pending(&a).is_some());
        restore_at(
            &a.link_dir,
            &a.bin,
            &d.path().join("roost.prev"),
            "it broke",
        )
        .unwrap();
        assert_eq!(std::fs::read(&a.bin).unwrap(), b"old");
        assert!(!d.path().join("roost.prev").exists());
        let r = record::read(&a.link_dir).unwrap().unwrap();
        assert_eq!(r.state, UpgradeState::RolledBack);
        assert_eq!(r.reason.as_deref(), Some("it broke"));
        assert!(!r.lifted, "a fresh rollback is refused again");
        assert!(pending(&a).is_none());
        // Without `.prev` (already restored) it only records.
        restore_at(&a.link_dir, &a.bin, &d.path().join("roost.prev"), "again").unwrap();
        assert_eq!(std::fs::read(&a.bin).unwrap(), b"old");
    }

    #[test]
    fn the_guard_refuses_without_a_pending_upgrade_or_daemon() {
        let d = tempfile::tempdir().unwrap();
        // No record: nothing to watch.
        assert_eq!(run(args(d.path(), std::process::id() as i32)), 1);
        // No such process.
        assert_eq!(run(args(d.path(), i32::MAX)), 1);
    }

    #[test]
    fn a_pidfd_sees_a_child_exit() {
        let mut c = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let fd = pidfd_open(c.id() as i32).unwrap();
        assert!(exited(&fd, Duration::from_secs(10)));
        let _ = c.wait();
        let mut c = std::process::Command::new("/bin/sh")
            .args(["-c", "read x"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let fd = pidfd_open(c.id() as i32).unwrap();
        assert!(!exited(&fd, Duration::from_millis(50)));
        kill(&fd);
        assert!(exited(&fd, Duration::from_secs(10)));
        let _ = c.wait();
    }
}

//! The container log copier: containerd's `binary://` logging protocol, served by the
//! `roost` binary itself (`roost container-log FILE`, started by the shim).
//!
//! Why not `file://`: the runc shim (containerd 1.6 and later) gives the stdout copier
//! the raw log file and the stderr copier a counted wrapper over the same file, so when
//! stdout reaches end-of-file first it closes the file under the stderr copier, and a
//! short-lived container's last stderr lines are lost (measured: about 1 run in 4 here).
//! With `binary://` the shim hands both pipes to this copier instead; it lives under the
//! shim (not the daemon), so logs keep flowing while the daemon restarts.
//!
//! Protocol: fd 3 is the container's stdout, fd 4 its stderr, fd 5 is closed (or written)
//! once the copier is ready. On delete the shim closes its pipe ends and sends SIGTERM;
//! the copier ignores the signal and drains both pipes to end-of-file, so nothing written
//! before the container exited is dropped.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The subcommand name the shim runs (`roost container-log FILE`).
pub const SUBCOMMAND: &str = "container-log";

/// The stdio URI for a container whose output goes to `log` through the copier at
/// `helper` (the `roost` binary). containerd passes each query key and its value as
/// arguments, so one key gives a fixed argument order.
pub fn uri(helper: &Path, log: &Path) -> String {
    format!(
        "binary://{}?{}={}",
        encode(&helper.to_string_lossy(), true),
        SUBCOMMAND,
        encode(&log.to_string_lossy(), false)
    )
}

/// Percent-encode everything but unreserved characters (and `/` in a path).
fn encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (path && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const STDOUT_FD: i32 = 3;
const STDERR_FD: i32 = 4;
const READY_FD: i32 = 5;

/// Run the copier until both pipes reach end-of-file. Errors writing the file are
/// reported once on stderr (the shim's log) and the pipes are still drained, so the
/// container never blocks on a full pipe.
pub fn run(log: &Path) -> io::Result<()> {
    // SAFETY: installing SIG_IGN for SIGTERM has no memory-safety preconditions; the
    // shim's SIGTERM must not cut the drain short (see the module docs).
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    for fd in [STDOUT_FD, STDERR_FD] {
        // SAFETY: F_GETFD on an arbitrary fd number only queries it.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "fd {fd} is not open: `roost {SUBCOMMAND}` is started by containerd's \
                     shim (binary:// log URI), not by hand"
                ),
            ));
        }
    }
    // Ready at once: the shim waits on fd 5 before it starts the container, and the
    // pipes hold what is written meanwhile.
    // SAFETY: fd 5 is the shim's ready pipe, owned by this process and not used again.
    unsafe {
        libc::close(READY_FD);
    }
    let opened = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(log);
    let mut file = match opened {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!(
                "roost {SUBCOMMAND}: cannot open {}: {e}; output is dropped",
                log.display()
            );
            None
        }
    };
    let mut fds = vec![
        libc::pollfd {
            fd: STDOUT_FD,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: STDERR_FD,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let mut buf = vec![0u8; 64 * 1024];
    while !fds.is_empty() {
        // SAFETY: `fds` is a valid, initialised slice of pollfd for the call's duration.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut open = Vec::with_capacity(fds.len());
        for p in &fds {
            if p.revents == 0 {
                open.push(*p);
                continue;
            }
            // SAFETY: reading into our own buffer of its stated length from a pipe fd.
            let r = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r > 0 {
                if let Some(f) = file.as_mut() {
                    if let Err(e) = f.write_all(&buf[..r as usize]) {
                        eprintln!(
                            "roost {SUBCOMMAND}: writing {} failed: {e}; further output is dropped",
                            log.display()
                        );
                        file = None;
                    }
                }
                open.push(*p);
            } else if r < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    open.push(*p);
                }
                // Any other error: this pipe is done.
            }
            // r == 0: end-of-file, drop it.
        }
        fds = open;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encodes_the_log_path_as_one_query_value() {
        assert_eq!(
            uri(Path::new("/usr/bin/roost"), Path::new("/var/lib/roost/run/a b/log&x=1")),
            "binary:///usr/bin/roost?container-log=%2Fvar%2Flib%2Froost%2Frun%2Fa%20b%2Flog%26x%3D1"
        );
        assert_eq!(
            uri(Path::new("/opt/my roost/roost"), Path::new("/l")),
            "binary:///opt/my%20roost/roost?container-log=%2Fl"
        );
    }
}

//! `roost exec` through the daemon's API against real containerd: the CLI is given
//! only the daemon's socket (`roost --socket S exec`), never containerd's. Streams
//! stdout and stderr apart, passes stdin with `-i`, returns the exit code; `-it`
//! gives a terminal in raw mode whose size follows the local one; refusals name
//! what to do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::container::ContainerDaemon;
use roost_tests::daemon::{mock_spec, write_file};
use roost_tests::{roost_bin, wait_until};
use serde_json::json;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const IMG: &str = "roost.test/busybox:1";
const T: Duration = Duration::from_secs(30);

/// `roost --socket S exec ARGS`, with no containerd socket in sight.
fn exec_cmd(s: &ContainerDaemon, args: &[&str]) -> Command {
    let mut c = Command::new(roost_bin());
    c.arg("--socket")
        .arg(s.d.socket())
        .arg("exec")
        .args(args)
        .env_remove("ROOST_SOCKET")
        .env_remove("ROOST_CONTAINERD_SOCKET")
        .env_remove("ROOST_CONTAINERD_NAMESPACE");
    c
}

fn sleeper(s: &ContainerDaemon, name: &str) {
    let out = s.apply(
        name,
        json!({"image": IMG, "command": ["sleep", "600"]}),
        json!({}),
    );
    assert!(out.status.success(), "{out:?}");
    s.d.wait_phase(name, "running", T);
}

#[test]
fn exec_streams_stdout_and_stderr_passes_stdin_and_returns_the_code() {
    let Some(s) = ContainerDaemon::start("exec", IMG, &[]) else {
        return;
    };
    sleeper(&s, "box");

    let out = exec_cmd(
        &s,
        &["box", "--", "sh", "-c", "echo out; echo err >&2; exit 5"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // More output than any pipe holds arrives whole, in order.
    let out = exec_cmd(
        &s,
        &["box", "--", "sh", "-c", "yes 0123456789 | head -c 3000000"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout.len(), 3_000_000);
    assert!(out.stdout.starts_with(b"0123456789\n0123456789\n"));

    // -i: stdin reaches the command, and its end is the command's end of input.
    let mut child = exec_cmd(&s, &["-i", "box", "--", "sh", "-c", "cat; echo done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"line one\nline two\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line one\nline two\ndone\n"
    );
    // Without -i the command reads nothing.
    let out = exec_cmd(&s, &["box", "--", "sh", "-c", "cat; echo after"])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after\n", "{out:?}");

    // A command killed by a signal: 128+N, as a shell would say.
    let out = exec_cmd(&s, &["box", "--", "sh", "-c", "kill -9 $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(137), "{out:?}");

    // Refusals say what to do.
    let err = |args: &[&str]| {
        let out = exec_cmd(&s, args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(&["nope", "--", "true"]);
    assert!(e.contains("`nope` not found"), "{e}");
    let e = err(&["box", "--", "/no/such/program"]);
    assert!(e.contains("/no/such/program"), "{e}");
    let e = err(&["-t", "box", "--", "true"]);
    assert!(e.contains("-t needs a terminal"), "{e}");
    let f = write_file(
        s.d.dir.path(),
        "m.json",
        &mock_spec("mocky", json!({"runSeconds": 600}), json!({})),
    );
    assert!(s
        .d
        .cli(&["apply", "-f", f.to_str().unwrap()])
        .status
        .success());
    s.d.wait_phase("mocky", "running", T);
    let e = err(&["mocky", "--", "true"]);
    assert!(
        e.contains("only container workloads take `roost exec`"),
        "{e}"
    );
    assert!(s.d.cli(&["stop", "box"]).status.success());
    s.d.wait_phase("box", "stopped", T);
    let e = err(&["box", "--", "true"]);
    assert!(
        e.contains("no running instance") && e.contains("roost start box"),
        "{e}"
    );
    // The API itself refuses a plain request (no upgrade) and bad fields, each named.
    let (code, v) = s.d.api(
        "POST",
        "/v1/workloads/box/exec",
        Some(r#"{"command":["true"]}"#),
    );
    assert_eq!(code, 400, "{v}");
    assert!(s.d.cli(&["rm", "mocky"]).status.success());
    s.finish(&["box"]);
}

fn set_size(fd: i32, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one valid winsize.
    assert_eq!(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) }, 0);
}

#[test]
fn exec_it_gives_a_raw_terminal_that_follows_resizes_and_passes_the_exit_code() {
    let Some(s) = ContainerDaemon::start("exectty", IMG, &[]) else {
        return;
    };
    sleeper(&s, "term");
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two fds; the name, termios and winsize may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty gave us these fds; we own them from here on.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    set_size(master.as_raw_fd(), 24, 80);
    let mut cmd = exec_cmd(&s, &["-it", "term", "--", "sh"]);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec: a new session
    // whose controlling terminal is the pty (stdin), as a terminal emulator does.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut reader = std::fs::File::from(master.try_clone().unwrap());
    let seen2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // Ends with EIO once every slave fd is closed.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen2.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let ask_until = |writer: &mut std::fs::File, line: &str, want: &str| {
        wait_until(
            &format!("`{want}` on the terminal after `{line}`"),
            T,
            Duration::from_millis(300),
            || {
                writer.write_all(format!("{line}\r").as_bytes()).unwrap();
                let t = text();
                if t.contains(want) {
                    Ok(())
                } else {
                    Err(t)
                }
            },
        )
    };
    // The remote terminal starts at the local size.
    ask_until(&mut writer, "stty size", "24 80");
    // Our terminal is raw while the session runs: no echo, no line editing here.
    // SAFETY: zeroed termios is valid for tcgetattr to fill.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: a valid fd and a writable termios.
    assert_eq!(unsafe { libc::tcgetattr(slave.as_raw_fd(), &mut tio) }, 0);
    assert_eq!(tio.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
    // A resize here reaches the command's terminal.
    set_size(master.as_raw_fd(), 40, 120);
    ask_until(&mut writer, "stty size", "40 120");
    // Ctrl-C goes to the remote shell, not to `roost`: the session lives on.
    writer.write_all(b"\x03").unwrap();
    ask_until(&mut writer, "echo still-$((40+2))", "still-42");
    assert!(child.try_wait().unwrap().is_none());
    writer.write_all(b"exit 7\r").unwrap();
    let status = wait_until(
        "roost exec -it to end",
        T,
        Duration::from_millis(100),
        || child.try_wait().unwrap().ok_or_else(text),
    );
    assert_eq!(status.code(), Some(7), "{}", text());
    // SAFETY: as above.
    assert_eq!(unsafe { libc::tcgetattr(slave.as_raw_fd(), &mut tio) }, 0);
    assert_ne!(tio.c_lflag & libc::ICANON, 0, "terminal mode restored");
    s.finish(&["term"]);
}

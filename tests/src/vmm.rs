//! Helpers for the VM monitor's tests: KVM detection, building the test guests, running
//! `roost vmm` with a deadline, and a tiny HTTP client for its API socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether /dev/kvm can be opened; prints why a test is skipped when not.
pub fn kvm_available() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: this test needs read-write /dev/kvm (hardware or nested KVM): {e}");
            false
        }
    }
}

/// Build test guest `name` (hello, cmdline, smp, spin, fault, mmio) with the machine's
/// GNU as and ld; returns the ELF's path.
pub fn guest(name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = crate::workspace_root();
    let out = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"))
        .join("roost-test-guests")
        .join(std::process::id().to_string());
    let path = out.join(name);
    if !path.exists() {
        let st = Command::new(root.join("vmm/guests/build.sh"))
            .arg(&out)
            .arg(name)
            .status()
            .expect("run vmm/guests/build.sh");
        assert!(
            st.success(),
            "building guest {name} failed (needs GNU as and ld: apt-get install binutils)"
        );
    }
    path
}

/// Run `roost vmm ARGS` to completion, killing it after `deadline`.
pub fn run_vmm(args: &[&str], deadline: Duration) -> Output {
    let child = Command::new(crate::roost_bin())
        .arg("vmm")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn roost vmm");
    wait_output(child, deadline)
}

/// Wait for `child` with a deadline; kill it (and say so) when it overruns.
pub fn wait_output(mut child: Child, deadline: Duration) -> Output {
    let t0 = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if t0.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "roost vmm ran past {deadline:?}; stdout: {} stderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

/// Whether process `pid` still exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Poll `f` every 20 ms until it returns true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// One HTTP/1.1 request on a Unix socket; returns (status, body).
pub fn http(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A `roost vmm --api-sock` process in a temp dir, killed on drop.
pub struct ApiVmm {
    /// The process.
    pub child: Child,
    /// Its socket.
    pub sock: PathBuf,
    /// Its final-state file.
    pub state_file: PathBuf,
    /// The console log (the process's stdout).
    pub log: PathBuf,
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
}

impl ApiVmm {
    /// Spawn it and wait for the socket to appear.
    pub fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("vmm.sock");
        let state_file = dir.path().join("state.json");
        let log = dir.path().join("console.log");
        let child = Command::new(crate::roost_bin())
            .arg("vmm")
            .arg("--api-sock")
            .arg(&sock)
            .arg("--state-file")
            .arg(&state_file)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("create log"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn roost vmm --api-sock");
        assert!(
            eventually(Duration::from_secs(10), || sock.exists()),
            "the API socket {} never appeared",
            sock.display()
        );
        Self {
            child,
            sock,
            state_file,
            log,
            dir,
        }
    }

    /// A request to this VMM's API.
    pub fn req(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(&self.sock, method, path, body).expect("API request")
    }

    /// The console output so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ApiVmm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A real `roost host` daemon on a temp socket, for integration tests.

use crate::roost_bin;
use roost_host::client::Client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A daemon under test. Dropping it stops the daemon and kills every workload
/// process it left (anything whose cwd is under its state dir).
pub struct Daemon {
    /// Temp dir holding state dir and socket.
    pub dir: tempfile::TempDir,
    /// The daemon process.
    pub child: Option<Child>,
    /// Extra flags it was started with.
    pub flags: Vec<String>,
    rt: tokio::runtime::Runtime,
}

impl Daemon {
    /// Start a daemon with a fast restart backoff (100 ms base, 2 s cap).
    pub fn start() -> Self {
        Self::start_with(&[
            "--restart-backoff-ms",
            "100",
            "--restart-backoff-max-ms",
            "2000",
        ])
    }

    /// Start a daemon with extra flags.
    pub fn start_with(flags: &[&str]) -> Self {
        // `ROOST_TEST_TMPDIR` puts state dirs on another filesystem (e.g. to compare
        // file systems in `make bench-api`); /tmp by default, which keeps socket
        // paths short.
        let base = std::env::var_os("ROOST_TEST_TMPDIR").unwrap_or_else(|| "/tmp".into());
        let dir = tempfile::Builder::new()
            .prefix("roost-t")
            .tempdir_in(base)
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut d = Self {
            dir,
            child: None,
            flags: flags.iter().map(|s| s.to_string()).collect(),
            rt,
        };
        d.spawn();
        d
    }

    /// State dir.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("api.sock")
    }

    /// (Re)start the daemon process and wait until it answers.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(roost_bin())
            .arg("host")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--socket")
            .arg(self.socket())
            .args(&self.flags)
            .env(
                "RUST_LOG",
                std::env::var("ROOST_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok((200, _)) = self.try_get("/healthz") {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("roost host exited early ({st}); log:\n{}", self.log());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "roost host did not answer within 20 s; log:\n{}",
            self.log()
        );
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL the daemon (workloads keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the daemon and wait for it.
    pub fn term(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    /// Pids of processes whose cwd is under this daemon's state dir (its workloads).
    pub fn workload_pids(&self) -> Vec<i32> {
        let root = self.state_dir();
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
                    if cwd.starts_with(&root) && is_running(pid) {
                        out.push(pid);
                    }
                }
            }
        }
        out
    }

    /// Mock processes per workload name (from their `roost-mock:` marker).
    pub fn mock_instances(&self) -> std::collections::HashMap<String, Vec<String>> {
        let mut map: std::collections::HashMap<String, Vec<String>> = Default::default();
        for pid in self.workload_pids() {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            for arg in cmd.split(|b| *b == 0) {
                let a = String::from_utf8_lossy(arg);
                if let Some(rest) = a.strip_prefix("roost-mock:") {
                    // <hostid>:<name>-<n>
                    if let Some((_, key)) = rest.split_once(':') {
                        if let Some((name, _)) = key.rsplit_once('-') {
                            // A forked shell child carries the marker too until it
                            // execs: count instances, not processes.
                            let v = map.entry(name.to_string()).or_default();
                            if !v.iter().any(|k| k == key) {
                                v.push(key.to_string());
                            }
                        }
                    }
                }
            }
        }
        map
    }

    /// Kill every workload process (the "host reboot").
    pub fn kill_workloads(&self) {
        for pid in self.workload_pids() {
            // SAFETY: kill(2) with a pid we just read; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    fn client(&self) -> Client {
        Client::new(self.socket())
    }

    fn try_get(&self, path: &str) -> Result<(u16, Value), String> {
        let r = self
            .rt
            .block_on(self.client().request(hyper::Method::GET, path, None))
            .map_err(|e| e.to_string())?;
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        Ok((r.status.as_u16(), v))
    }

    /// One API call; returns status and JSON body (Null if not JSON).
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (s, b) = self.api_raw(method, path, body.map(|b| b.as_bytes().to_vec()));
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    /// One API call with raw bytes.
    pub fn api_raw(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Vec<u8>) {
        let m = hyper::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .rt
            .block_on(self.client().request(m, path, body))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.log()));
        (r.status.as_u16(), r.body.to_vec())
    }

    /// One API call: status, content type and raw body.
    pub fn api_full(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Option<String>, Vec<u8>) {
        let m = hyper::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .rt
            .block_on(self.client().request(m, path, body))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.log()));
        (r.status.as_u16(), r.content_type, r.body.to_vec())
    }

    /// Run `roost <args>` against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(roost_bin())
            .args(args)
            .env("ROOST_SOCKET", self.socket())
            .output()
            .unwrap()
    }

    /// The names of every workload the daemon lists.
    pub fn names(&self) -> std::collections::HashSet<String> {
        let (_, list) = self.api("GET", "/v1/workloads", None);
        list.as_array()
            .expect("the workload list is an array")
            .iter()
            .map(|w| {
                w["workload"]["metadata"]["name"]
                    .as_str()
                    .expect("every listed workload has a name")
                    .to_string()
            })
            .collect()
    }

    /// A workload's record.
    pub fn get(&self, name: &str) -> Value {
        let (s, v) = self.api("GET", &format!("/v1/workloads/{name}"), None);
        assert_eq!(s, 200, "GET {name}: {v}");
        v
    }

    /// Wait until `pred` holds for the workload's record.
    pub fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let t = Instant::now();
        loop {
            let (s, v) = self.api("GET", &format!("/v1/workloads/{name}"), None);
            if s == 200 && pred(&v) {
                return v;
            }
            if t.elapsed() > timeout {
                panic!(
                    "{name}: {what} did not happen within {timeout:?}; last: {v}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait for a phase.
    pub fn wait_phase(&self, name: &str, phase: &str, timeout: Duration) -> Value {
        self.wait_for(name, &format!("phase {phase}"), timeout, |v| {
            v.pointer("/status/phase").and_then(Value::as_str) == Some(phase)
        })
    }
}

fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        == Some(false)
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Workload cgroups outlive the daemon (workloads do too); remove the ones
        // this daemon made once its workloads are gone, so test runs do not pile up
        // thousands of empty cgroups (each CFS quota write walks them all).
        let placed: Vec<String> = match self.child.is_some().then(|| self.try_get("/v1/workloads"))
        {
            Some(Ok((200, Value::Array(ws)))) => ws
                .iter()
                .filter_map(|w| w["placement"]["cgroupPath"].as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        };
        self.term();
        self.kill_workloads();
        // The killed workloads leave their cgroups once the kernel has reaped them.
        let t = Instant::now();
        let mut left: Vec<PathBuf> = placed
            .iter()
            .filter(|r| !r.contains("/rt/"))
            .flat_map(|rel| {
                ["cpuset", "cpu", "memory"].map(|c| Path::new("/sys/fs/cgroup").join(c).join(rel))
            })
            .collect();
        while !left.is_empty() && t.elapsed() < Duration::from_secs(5) {
            left.retain(|p| p.exists() && std::fs::remove_dir(p).is_err());
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A mock workload spec as JSON.
pub fn mock_spec(name: &str, mock: Value, extra: Value) -> String {
    let mut spec = serde_json::json!({"driver": "mock", "mock": mock});
    if let (Some(s), Value::Object(e)) = (spec.as_object_mut(), extra) {
        s.extend(e);
    }
    serde_json::json!({
        "apiVersion": "roost.dev/v1",
        "kind": "Workload",
        "metadata": {"name": name},
        "spec": spec
    })
    .to_string()
}

/// Write `text` to a file in `dir` and return its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

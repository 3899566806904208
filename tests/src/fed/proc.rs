//! Processes: the CLI, `roost central` and `roost host`.

use super::*;
use std::os::unix::ffi::OsStrExt;

/// A finished CLI run.
#[derive(Debug)]
pub struct CliOut {
    /// Exit status.
    pub status: ExitStatus,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl CliOut {
    /// Did it exit 0?
    pub fn ok(&self) -> bool {
        self.status.success()
    }
}

impl std::fmt::Display for CliOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (st, out, err) = (self.status, &self.stdout, &self.stderr);
        write!(f, "{st}\nstdout:\n{out}\nstderr:\n{err}")
    }
}

pub(crate) async fn run_cli(cmd: &mut tokio::process::Command) -> CliOut {
    let out = cmd.stdin(Stdio::null()).output().await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    CliOut {
        status: out.status,
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
    }
}

/// One daemon of ours (central or a host): a temp dir kept across its restarts
/// (`/tmp/roost-f<kind><pid hex>x…`, so a crashed run's are found), a log every start
/// appends to, and the running child.
#[derive(Debug)]
pub(crate) struct Proc {
    pub(crate) dir: tempfile::TempDir,
    what: String,
    child: Option<Child>,
}

impl Proc {
    fn new(kind: char, what: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("roost-f{kind}{:x}x", std::process::id()))
            .tempdir_in("/tmp")
            .unwrap();
        Self {
            dir,
            what: what.into(),
            child: None,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn spawn(&mut self, mut cmd: Command) {
        assert!(!self.running(), "{} is already running", self.what);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("log"))
            .unwrap();
        let child = cmd
            .env("RUST_LOG", log_level())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Spawn and wait until the log says `ready` once more; `Err` with the exit status
    /// and the log if it exits first or stays silent for [`T`].
    async fn start(&mut self, cmd: Command, ready: &str) -> Result<(), String> {
        let before = self.log().matches(ready).count();
        self.spawn(cmd);
        let t = Instant::now();
        while self.log().matches(ready).count() <= before {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                let log = tail(&self.log(), 40);
                return Err(format!("{} exited ({st}); log:\n{log}", self.what));
            }
            if t.elapsed() > T {
                let log = tail(&self.log(), 40);
                return Err(format!(
                    "{} did not say `{ready}` within {T:?}; log:\n{log}",
                    self.what
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Wait for the child to exit on its own (SIGKILL and panic after `timeout`).
    async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("the process was started");
        match wait_child(&mut c, timeout).await {
            Some(st) => st,
            None => {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "{} still ran after {timeout:?}; log:\n{}",
                    self.what,
                    tail(&self.log(), 40)
                );
            }
        }
    }

    /// SIGTERM and wait for the exit (at most 10 s).
    async fn term(&mut self) -> ExitStatus {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is involved.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        self.wait_exit(Duration::from_secs(10)).await
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `roost central` with its data dir kept across restarts.
#[derive(Debug)]
pub struct Central {
    pub(crate) p: Proc,
    /// Where it listens (the bridge's address).
    pub listen: SocketAddr,
    /// `--db`, for PostgreSQL.
    pub db: Option<String>,
    /// More flags.
    pub flags: Vec<String>,
}

impl Central {
    /// A central (not started yet).
    pub fn new(listen: SocketAddr, db: Option<String>, flags: &[&str]) -> Self {
        Self {
            p: Proc::new('c', "roost central"),
            listen,
            db,
            flags: flags.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.p.dir.path().join("data")
    }

    /// Its log (every start's, appended).
    pub fn log(&self) -> String {
        self.p.log()
    }

    /// `https://IP:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.listen)
    }

    /// Is the process running?
    pub fn running(&mut self) -> bool {
        self.p.running()
    }

    /// Start it and wait until it says it serves.
    pub async fn start(&mut self) {
        let mut cmd = Command::new(roost_bin());
        cmd.arg("central")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(self.listen.to_string());
        if let Some(db) = &self.db {
            cmd.arg("--db").arg(db);
        }
        cmd.args(&self.flags);
        if let Err(e) = self.p.start(cmd, "roost central: ready on").await {
            panic!("{e}");
        }
    }

    /// SIGTERM and wait for it to exit.
    pub async fn stop(&mut self) -> ExitStatus {
        self.p.term().await
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        self.p.kill9();
    }

    /// The operator token.
    pub fn token(&self) -> String {
        let t = std::fs::read_to_string(self.data_dir().join("operator.token")).unwrap();
        t.trim().to_string()
    }

    /// Central's CA certificate (PEM).
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir().join("ca.pem")).unwrap()
    }

    /// An API client with the operator token.
    pub fn client(&self) -> Client {
        Client::remote(&self.url(), &self.token(), Some(&self.ca_pem())).unwrap()
    }

    /// One API call: status and JSON body (a string if not JSON), or why it failed.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let m = hyper::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .client()
            .request(m, path, body.map(|b| b.to_string().into_bytes()))
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let v = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
        Ok((r.status.as_u16(), v))
    }

    /// GET that must answer 200 (else `Err` with what it answered).
    pub async fn try_get(&self, path: &str) -> Result<Value, String> {
        match self.api("GET", path, None).await? {
            (200, v) => Ok(v),
            (s, v) => Err(format!("GET {path}: {s} {v}")),
        }
    }

    /// GET that must answer 200.
    pub async fn get(&self, path: &str) -> Value {
        self.try_get(path).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// `roost central ARGS --data-dir DIR`.
    pub async fn cli(&self, args: &[&str]) -> CliOut {
        let mut cmd = tokio::process::Command::new(roost_bin());
        cmd.arg("central")
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir());
        run_cli(&mut cmd).await
    }

    /// `roost central ARGS` that must succeed; its stdout.
    pub async fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args).await;
        assert!(out.ok(), "roost central {}: {out}", args.join(" "));
        out.stdout
    }

    /// `roost central ARGS -o json` that must succeed; its JSON.
    pub async fn cli_json(&self, args: &[&str]) -> Value {
        let a = [args, &["-o", "json"]].concat();
        let out = self.cli_ok(&a).await;
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("roost central {}: not JSON ({e}): {out}", a.join(" ")))
    }
}

/// A `roost host` in a network namespace, with its own state dir. Dropping it kills
/// the daemon and its workloads.
#[derive(Debug)]
pub struct Host {
    /// Its name at central.
    pub name: String,
    /// Its network namespace.
    pub ns: String,
    /// The binary it runs (default: [`roost_bin`]); a host that swaps its binary must
    /// run a copy of its own ([`Host::own_copy`]).
    pub bin: Option<PathBuf>,
    /// More daemon flags.
    pub flags: Vec<String>,
    p: Proc,
}

/// One of central's workloads as its host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Phase.
    pub phase: String,
    /// Instance.
    pub instance: u64,
    /// Restarts.
    pub restarts: u64,
    /// The running process (0 = none).
    pub pid: i64,
}

impl Host {
    /// A host (not started).
    pub fn new(name: &str, ns: &str) -> Self {
        Self {
            name: name.into(),
            ns: ns.into(),
            bin: None,
            flags: Vec::new(),
            p: Proc::new('h', name),
        }
    }

    /// Run a copy of the roost binary of its own, `<dir>/bin/roost` (so that swapping
    /// it leaves the build's alone); returns its path.
    pub fn own_copy(&mut self) -> PathBuf {
        let dir = self.p.dir.path().join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("roost");
        std::fs::copy(roost_bin(), &bin).unwrap();
        self.bin = Some(bin.clone());
        bin
    }

    /// The pid of the daemon serving its socket (by the socket's peer credentials),
    /// whoever started it.
    pub fn daemon_pid(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        let s = std::os::unix::net::UnixStream::connect(self.socket()).ok()?;
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: getsockopt(2) writes at most `len` bytes into `cred`, which we own.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        (r == 0 && cred.pid > 0).then_some(cred.pid)
    }

    /// The pid of the daemon process this harness started (it stays the daemon's
    /// across an in-place re-exec).
    pub fn child_pid(&self) -> Option<i32> {
        self.p.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILL every process naming this host's state dir in its arguments: a daemon
    /// the upgrade guard started, and the guard.
    fn kill_strays(&self) {
        let root = self.state_dir();
        let me = std::process::id() as i32;
        let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten();
        for pid in pids.filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let names = cmd
                .split(|b| *b == 0)
                .any(|a| Path::new(std::ffi::OsStr::from_bytes(a)).starts_with(&root));
            if pid != me && names {
                sigkill(pid);
            }
        }
    }

    /// `--state-dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.p.dir.path().join("state")
    }

    /// `--socket`.
    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("roost.sock")
    }

    /// Its log (every start's, appended).
    pub fn log(&self) -> String {
        self.p.log()
    }

    /// Is the daemon running?
    pub fn running(&mut self) -> bool {
        self.p.running()
    }

    /// `ip netns exec NS roost host …` (`ip netns exec` execs: the child is the daemon).
    fn command(&self, join: Option<(&str, &str)>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(self.bin.clone().unwrap_or_else(roost_bin))
            .arg("host")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--socket")
            .arg(self.socket())
            .args(["--cgroup-prefix", "none"])
            .args(["--heartbeat", &format!("{}ms", HEARTBEAT.as_millis())])
            .args(["--restart-backoff-ms", "100"])
            .args(["--restart-backoff-max-ms", "2000"]);
        if let Some((url, token)) = join {
            cmd.args(["--join", url, "--join-token", token, "--name", &self.name]);
        }
        cmd.args(&self.flags);
        cmd
    }

    /// Start the daemon (joining with `join` = (central URL, token) on the first start)
    /// and wait until it says it is ready; `Err` with its exit and log if it exits.
    pub async fn start(&mut self, join: Option<(&str, &str)>) -> Result<(), String> {
        let cmd = self.command(join);
        self.p.start(cmd, "roost host: ready on").await
    }

    /// Start; panic if it does not come up.
    pub async fn start_ok(&mut self, join: Option<(&str, &str)>) {
        if let Err(e) = self.start(join).await {
            panic!("{e}");
        }
    }

    /// Start expecting the daemon to exit; returns its status and log.
    pub async fn start_fails(&mut self, join: Option<(&str, &str)>) -> (ExitStatus, String) {
        let cmd = self.command(join);
        self.p.spawn(cmd);
        let st = self.p.wait_exit(T).await;
        (st, self.log())
    }

    /// SIGTERM the daemon and wait (its workloads keep running).
    pub async fn term(&mut self) -> ExitStatus {
        self.p.term().await
    }

    /// The "reboot": SIGKILL the daemon and every workload process group it started;
    /// returns once none of them is left.
    pub async fn kill_all(&mut self) {
        self.p.kill9();
        let t = Instant::now();
        while !self.kill_workloads() {
            assert!(t.elapsed() < T, "{}'s workloads did not die", self.name);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// SIGKILL every workload (group first: each leads its own); true if none was left.
    fn kill_workloads(&self) -> bool {
        let pids = self.workload_pids();
        for pid in &pids {
            sigkill(-pid);
            sigkill(*pid);
        }
        pids.is_empty()
    }

    /// Live processes whose cwd is under the state dir (its workloads).
    pub fn workload_pids(&self) -> Vec<i32> {
        let root = self.state_dir();
        let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten();
        pids.filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|c| c.starts_with(&root))
                    && alive(*pid)
            })
            .collect()
    }

    /// `pid` is alive and is the mock of workload `name` of this host.
    pub fn is_mock_of(&self, pid: i64, name: &str) -> bool {
        let Ok(pid) = i32::try_from(pid) else {
            return false;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        alive(pid)
            && String::from_utf8_lossy(&cmd).contains(&format!(":{name}-"))
            && self.workload_pids().contains(&pid)
    }

    /// `GET /v1/workloads` on the host's socket.
    pub async fn workloads(&self) -> Result<Vec<Value>, String> {
        let r = Client::new(self.socket())
            .request(hyper::Method::GET, "/v1/workloads", None)
            .await
            .map_err(|e| format!("{}: GET /v1/workloads: {e}", self.name))?;
        match serde_json::from_slice(&r.body) {
            Ok(Value::Array(v)) if r.status.as_u16() == 200 => Ok(v),
            _ => {
                let body = String::from_utf8_lossy(&r.body);
                Err(format!(
                    "{}: GET /v1/workloads: {} {body}",
                    self.name, r.status
                ))
            }
        }
    }

    /// Central's workloads on this host (label `roost.dev/owner: central`), by name.
    pub async fn owned(&self) -> Result<BTreeMap<String, Seen>, String> {
        Ok(owned_of(&self.workloads().await?))
    }

    /// `roost --socket S ARGS`.
    pub async fn cli(&self, args: &[&str]) -> CliOut {
        let mut cmd = tokio::process::Command::new(roost_bin());
        cmd.arg("--socket").arg(self.socket()).args(args);
        run_cli(&mut cmd).await
    }

    /// `roost --socket S ps -o json`.
    pub async fn ps_json(&self) -> Result<Vec<Value>, String> {
        let out = self.cli(&["ps", "-o", "json"]).await;
        match serde_json::from_str(&out.stdout) {
            Ok(Value::Array(v)) if out.ok() => Ok(v),
            _ => Err(format!("{}: roost ps -o json: {out}", self.name)),
        }
    }
}

/// Central's workloads in a workload list (as `ps -o json` or the API give it).
pub fn owned_of(list: &[Value]) -> BTreeMap<String, Seen> {
    let owner = Some(json!("central"));
    list.iter()
        .filter(|w| w.pointer("/workload/metadata/labels/roost.dev~1owner") == owner.as_ref())
        .filter_map(|w| {
            let name = w.pointer("/workload/metadata/name")?.as_str()?.to_string();
            let s = &w["status"];
            let pid = s.pointer("/handle/data/proc/pid").and_then(Value::as_i64);
            let seen = Seen {
                phase: s["phase"].as_str().unwrap_or("").to_string(),
                instance: s["instance"].as_u64().unwrap_or(0),
                restarts: s["restarts"].as_u64().unwrap_or(0),
                pid: pid.unwrap_or(0),
            };
            Some((name, seen))
        })
        .collect()
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill_strays();
        self.p.kill9();
        self.kill_workloads();
    }
}

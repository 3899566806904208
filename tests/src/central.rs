//! A real `roost central` on loopback in a temp data dir, for the API tests and
//! `make bench-central` (the multi-host network tests use [`crate::fed`] instead).

use crate::roost_bin;
use roost_host::client::Client;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Central under test. Dropping it kills it.
pub struct LoopbackCentral {
    /// Holds the data dir and the log.
    pub dir: tempfile::TempDir,
    child: Child,
    /// `https://127.0.0.1:PORT`.
    pub url: String,
}

impl LoopbackCentral {
    /// Start central and wait until it serves.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Run `seed` on the (new) data dir, e.g. to fill the store, then start central
    /// on it and wait until it serves.
    pub fn start_with(seed: impl FnOnce(&std::path::Path)) -> Self {
        Self::start_full(seed, &[])
    }

    /// As [`LoopbackCentral::start_with`], with more flags for `roost central`.
    pub fn start_full(seed: impl FnOnce(&std::path::Path), args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("roost-c")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        seed(&dir.path().join("data"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("central.log")).unwrap();
        let child = Command::new(roost_bin())
            .args(["central", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Self {
            dir,
            child,
            url: format!("https://127.0.0.1:{port}"),
        };
        let t = Instant::now();
        while !c.log().contains("ready on") {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "central did not start:\n{}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its data dir.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("central.log")).unwrap_or_default()
    }

    /// `roost central ARGS --data-dir DATA`; panics unless it succeeds; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(roost_bin())
            .arg("central")
            .args(args)
            .arg("--data-dir")
            .arg(self.data())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "roost central {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// An API client holding the operator token and trusting central's CA.
    pub fn client(&self) -> Client {
        self.client_with_token(None)
    }

    /// An API client sending `token` (or the operator token).
    pub fn client_with_token(&self, token: Option<&str>) -> Client {
        let real = std::fs::read_to_string(self.data().join("operator.token")).unwrap();
        let ca = std::fs::read(self.data().join("ca.pem")).unwrap();
        Client::remote(&self.url, token.unwrap_or(real.trim()), Some(&ca)).unwrap()
    }
}

impl Drop for LoopbackCentral {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call to central's API that must succeed (panics naming the path, status and
/// body otherwise); its JSON body (`null` if it has none).
pub async fn call(
    c: &Client,
    m: hyper::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let r = c
        .request(m, path, body.map(|b| b.to_string().into_bytes()))
        .await
        .unwrap();
    assert!(
        r.status.is_success(),
        "{path}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null)
}

/// `roost sim` against central at `url`, with the operator token and CA of `data` (a
/// central's data dir), `hosts` hosts in `subclouds` subclouds; callers add their own
/// flags and stdio.
pub fn sim_command(url: &str, data: &std::path::Path, hosts: usize, subclouds: usize) -> Command {
    let mut c = Command::new(roost_bin());
    c.args(["sim", "--central", url, "--token-file"])
        .arg(data.join("operator.token"))
        .arg("--ca-file")
        .arg(data.join("ca.pem"))
        .args(["--hosts", &hosts.to_string()])
        .args(["--subclouds", &subclouds.to_string()]);
    c
}

/// Wait until `roost sim` writes `linked` to its stdout `log` (at most 120 s).
pub fn wait_sim_linked(log: &std::path::Path) -> Duration {
    let t = Instant::now();
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains("linked")
    {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the simulator never linked: {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

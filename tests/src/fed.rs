//! A federation under test: a real `roost central` in the root network namespace and
//! real `roost host` daemons, each in a network namespace of its own, joined to central
//! by a bridge. Cutting a host's uplink is setting its veth down, as a site losing its
//! link would; a "reboot" is SIGKILL of the daemon and of every workload it started.
//!
//! - [`run`] (through [`fed_test!`](crate::fed_test)) skips, saying what it needs, when
//!   the machine is not root or has no `ip`, and skips the PostgreSQL variant when
//!   `ROOST_TEST_PG_URL` is unset.
//! - [`Net`] makes the bridge and namespaces under names unique to this process and
//!   removes them on drop; it first removes what a crashed earlier run left.
//! - [`Central`] and [`Host`] are the processes; [`Fleet`] is a central plus hosts.
//! - [`wait_for`] polls a condition with a deadline and says what never happened;
//!   [`hold_for`] checks that a condition keeps holding for a while.
//! - [`record`] prints a measured time and appends it to `target/fed-measurements.txt`.

use crate::{roost_bin, workspace_root};
use roost_host::client::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The generous deadline of most waits.
pub const T: Duration = Duration::from_secs(30);
/// The hosts' heartbeat interval.
pub const HEARTBEAT: Duration = Duration::from_millis(500);
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(20);

/// Which store central runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The embedded default, a file under the data dir.
    Sqlite,
    /// A fresh database on the server `ROOST_TEST_PG_URL` names.
    Postgres,
}

/// What a case runs on, and its name (for measurements).
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// The store.
    pub store: Store,
    /// The test's name.
    pub test: &'static str,
}

/// Make `sqlite_*` and `postgres_*` tests from one `async fn case(Backend)`:
/// `fed_test!(case: sqlite_case, postgres_case);`
#[macro_export]
macro_rules! fed_test {
    ($case:ident: $sqlite:ident, $postgres:ident) => {
        #[test]
        fn $sqlite() {
            $crate::fed::run(stringify!($sqlite), $crate::fed::Store::Sqlite, $case);
        }
        #[test]
        fn $postgres() {
            $crate::fed::run(stringify!($postgres), $crate::fed::Store::Postgres, $case);
        }
    };
}

/// Why this machine cannot run the federation tests, if it cannot.
pub fn missing_privileges() -> Option<String> {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some(
            "needs root (it makes network namespaces, veth pairs and a bridge)".to_string(),
        );
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("needs iproute2 (`ip`) to make network namespaces".to_string()),
    }
}

/// The PostgreSQL server to make test databases on.
pub fn pg_admin_url() -> Option<String> {
    std::env::var("ROOST_TEST_PG_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
}

/// Run one case on one store, or say why it is skipped.
pub fn run<F, Fut>(test: &'static str, store: Store, case: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(why) = missing_privileges() {
        println!("skipped: {why}");
        return;
    }
    if store == Store::Postgres && pg_admin_url().is_none() {
        println!("skipped: needs ROOST_TEST_PG_URL (make test starts a private PostgreSQL)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(case(Backend { store, test }));
}

/// Unix time in ms.
pub fn now_ms() -> u64 {
    roost_federation::model::now_ms()
}

/// Poll `f` until it gives `Ok`, at most `timeout`; panic naming `what` and the last
/// `Err` (what was seen instead). Capture only references (`move || async move {..}`).
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let t = Instant::now();
    loop {
        let last = match f().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if t.elapsed() > timeout {
            panic!("{what}: did not happen within {timeout:?}; last seen: {last}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Check `f` every [`POLL`] for `dur`; panic naming `what` the first time it fails.
pub async fn hold_for<F, Fut>(dur: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let t = Instant::now();
    while t.elapsed() < dur {
        if let Err(e) = f().await {
            panic!("{what}: stopped holding after {:?}: {e}", t.elapsed());
        }
        tokio::time::sleep(POLL).await;
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Print a measured time and append it to `target/fed-measurements.txt`.
pub fn record(test: &str, what: &str, d: Duration) {
    use std::io::Write;
    let line = format!("{test}: {what}: {} ms", d.as_millis());
    println!("{line}");
    let dir = target_dir();
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("fed-measurements.txt"))
    {
        let _ = writeln!(f, "{} {line}", now_ms());
    }
}

fn log_level() -> String {
    std::env::var("ROOST_TEST_LOG").unwrap_or_else(|_| "info".into())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| !s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn sigkill(pid: i32) {
    // SAFETY: kill(2) with a pid we just read; no memory is involved.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Wait (async) for a child to exit, at most `timeout`.
async fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let t = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if t.elapsed() > timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------
// The network.

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_ok(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

static NEXT_NET: AtomicU32 = AtomicU32::new(0);
/// One process makes one network at a time (the subnet choice reads what exists).
static CREATING: Mutex<()> = Mutex::new(());
/// Tags of the networks this process holds now.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `<pid hex>x<n>` → the pid, if `tag` has that shape.
fn tag_pid(tag: &str) -> Option<u32> {
    let (pid, n) = tag.split_once('x')?;
    if pid.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    u32::from_str_radix(pid, 16).ok()
}

/// A tag from a crashed run: its process is gone (or it carries our pid but is not one
/// of ours, a leftover of an earlier process that had our pid).
fn stale(tag: &str) -> bool {
    let Some(pid) = tag_pid(tag) else {
        return false;
    };
    if pid == std::process::id() {
        return !lock(&LIVE).contains(tag);
    }
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn kill_netns_pids(ns: &str) {
    if let Ok(out) = ip(&["netns", "pids", ns]) {
        for pid in out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            sigkill(pid);
        }
    }
}

/// Kill `roost central` processes listening on `addr_prefix` (`10.a.b.1:`).
fn kill_centrals_on(addr_prefix: &str) {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.iter().any(|a| a == "central") && args.iter().any(|a| a.starts_with(addr_prefix)) {
            sigkill(pid);
        }
    }
}

/// Remove the namespaces, links (and their processes) a crashed run left behind.
fn cleanup_stale() {
    for line in ip(&["netns", "list"]).unwrap_or_default().lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some((tag, _)) = name.strip_prefix("rh").and_then(|r| r.rsplit_once('-')) else {
            continue;
        };
        if stale(tag) {
            eprintln!("removing namespace {name} left by an earlier run");
            kill_netns_pids(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
    for line in ip(&["-o", "link", "show"]).unwrap_or_default().lines() {
        let Some(name) = line
            .split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        else {
            continue;
        };
        let tag = if let Some(t) = name.strip_prefix("rbr") {
            Some(t.to_string())
        } else {
            name.strip_prefix("rv")
                .and_then(|r| r.rsplit_once('h'))
                .map(|(t, _)| t.to_string())
        };
        let Some(tag) = tag else { continue };
        if !stale(&tag) {
            continue;
        }
        eprintln!("removing link {name} left by an earlier run");
        if name.starts_with("rbr") {
            // A central left listening on the bridge's address goes too.
            let addrs = ip(&["-4", "-o", "addr", "show", "dev", &name]).unwrap_or_default();
            for a in addrs.split_whitespace().filter(|w| w.contains('/')) {
                if let Some((addr, _)) = a.split_once('/') {
                    kill_centrals_on(&format!("{addr}:"));
                }
            }
        }
        let _ = ip(&["link", "del", &name]);
    }
    // Data and state dirs (`/tmp/roost-f{c,h}<pid hex>x…`) of processes that are gone.
    for e in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = n
            .strip_prefix("roost-fc")
            .or_else(|| n.strip_prefix("roost-fh"))
        else {
            continue;
        };
        let pid = rest
            .split_once('x')
            .and_then(|(p, _)| u32::from_str_radix(p, 16).ok());
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A /24 of 10/8 that no address or route here uses yet.
fn free_subnet(seed: u32) -> (u8, u8) {
    let used = format!(
        "{}\n{}",
        ip(&["-4", "-o", "addr", "show"]).unwrap_or_default(),
        ip(&["-4", "route", "show", "table", "all"]).unwrap_or_default()
    );
    for k in 0..(120 * 256) {
        let idx = (seed.wrapping_add(k)) % (120 * 256);
        let (a, b) = ((130 + idx / 256) as u8, (idx % 256) as u8);
        if !used.contains(&format!("10.{a}.{b}.")) {
            return (a, b);
        }
    }
    panic!("no free 10.x.y.0/24 subnet here");
}

/// One host's namespace.
#[derive(Debug, Clone)]
pub struct Ns {
    /// Its name (`ip netns exec NAME`).
    pub name: String,
    /// The veth end on the bridge (root namespace): set it down to cut the host off.
    pub veth: String,
    /// The host's address.
    pub ip: Ipv4Addr,
}

/// A bridge with `n` namespaces on it; removed on drop.
#[derive(Debug)]
pub struct Net {
    tag: String,
    /// The bridge.
    pub bridge: String,
    /// The bridge's address (central listens on it).
    pub gateway: Ipv4Addr,
    /// The namespaces.
    pub nss: Vec<Ns>,
}

impl Net {
    /// Make a bridge `rbr<tag>` with 10.a.b.1/24 and `n` namespaces `rh<tag>-<i>` at
    /// 10.a.b.(10+i), each with a veth pair; `<tag>` is `<our pid, hex>x<counter>`.
    pub fn new(n: usize) -> Self {
        assert!(
            n < 10,
            "at most 9 namespaces (interface names stay within 15 characters)"
        );
        let _g = lock(&CREATING);
        cleanup_stale();
        let k = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("{pid:x}x{k}");
        lock(&LIVE).insert(tag.clone());
        let (a, b) = free_subnet(pid.wrapping_mul(7).wrapping_add(k * 131));
        let mut net = Self {
            bridge: format!("rbr{tag}"),
            gateway: Ipv4Addr::new(10, a, b, 1),
            tag,
            nss: Vec::new(),
        };
        // Created step by step into `net`, so a failure half-way still cleans up.
        ip_ok(&["link", "add", &net.bridge, "type", "bridge"]);
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/24", net.gateway),
            "dev",
            &net.bridge,
        ]);
        ip_ok(&["link", "set", &net.bridge, "up"]);
        for i in 0..n {
            let ns = Ns {
                name: format!("rh{}-{i}", net.tag),
                veth: format!("rv{}h{i}", net.tag),
                ip: Ipv4Addr::new(10, a, b, 10 + i as u8),
            };
            let peer = format!("rn{}h{i}", net.tag);
            assert!(
                ns.veth.len() <= 15 && peer.len() <= 15 && net.bridge.len() <= 15,
                "interface names over 15 characters: {} {peer} {}",
                ns.veth,
                net.bridge
            );
            ip_ok(&["netns", "add", &ns.name]);
            net.nss.push(ns.clone());
            ip_ok(&[
                "link", "add", &ns.veth, "type", "veth", "peer", "name", &peer,
            ]);
            ip_ok(&["link", "set", &peer, "netns", &ns.name]);
            ip_ok(&["link", "set", &ns.veth, "master", &net.bridge]);
            ip_ok(&["link", "set", &ns.veth, "up"]);
            ip_ok(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{}/24", ns.ip),
                "dev",
                &peer,
            ]);
            ip_ok(&["-n", &ns.name, "link", "set", &peer, "up"]);
            ip_ok(&["-n", &ns.name, "link", "set", "lo", "up"]);
        }
        for ns in &net.nss {
            net.wait_forwarding(ns, Duration::from_secs(10));
        }
        net
    }

    /// Wait until the bridge forwards on `ns`'s port (state 3 = forwarding).
    fn wait_forwarding(&self, ns: &Ns, timeout: Duration) {
        let path = format!("/sys/class/net/{}/brport/state", ns.veth);
        let t = Instant::now();
        loop {
            let st = std::fs::read_to_string(&path).unwrap_or_default();
            if st.trim() == "3" {
                return;
            }
            assert!(
                t.elapsed() < timeout,
                "bridge port {} never forwarded within {timeout:?} (state `{}`)",
                ns.veth,
                st.trim()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Cut namespace `i` off (its veth on the bridge down).
    pub fn link_down(&self, i: usize) {
        ip_ok(&["link", "set", &self.nss[i].veth, "down"]);
    }

    /// Reconnect namespace `i`.
    pub fn link_up(&self, i: usize) {
        ip_ok(&["link", "set", &self.nss[i].veth, "up"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.nss {
            kill_netns_pids(&ns.name);
            let _ = ip(&["netns", "del", &ns.name]);
            let _ = ip(&["link", "del", &ns.veth]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
        lock(&LIVE).remove(&self.tag);
    }
}

fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------
// PostgreSQL: one database per test.

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A fresh database `t_<pid>_<n>` on the `ROOST_TEST_PG_URL` server; dropped on drop.
#[derive(Debug)]
pub struct PgDb {
    admin: String,
    /// Its name.
    pub name: String,
    /// The URL central gets (`--db`).
    pub url: String,
}

/// `url` with its database replaced by `db` (query parameters kept).
pub fn with_db(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split_once('/').map(|(a, _)| a).unwrap_or(rest);
    format!("{scheme}://{authority}/{db}{query}")
}

async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to PostgreSQL at ROOST_TEST_PG_URL ({url}): {e}")
        });
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

impl PgDb {
    /// Create the database (and drop those crashed runs left).
    pub async fn create() -> Self {
        let admin = pg_admin_url().expect("ROOST_TEST_PG_URL is set");
        let c = pg_connect(&admin).await;
        let rows = c
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'",
                &[],
            )
            .await
            .unwrap();
        for r in rows {
            let name: String = r.get(0);
            let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid {
                if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            }
        }
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let url = with_db(&admin, &name);
        Self { admin, name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread of its own with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

// ---------------------------------------------------------------------------------
// Processes.

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

async fn run_cli(cmd: &mut tokio::process::Command) -> CliOut {
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
struct Proc {
    dir: tempfile::TempDir,
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
    p: Proc,
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
            p: Proc::new('h', name),
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
            .arg(roost_bin())
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
        self.p.kill9();
        self.kill_workloads();
    }
}

// ---------------------------------------------------------------------------------
// A fleet.

/// Central plus hosts `h1..hN`, host `hI` in namespace `I-1`. Dropped in field order:
/// hosts, central, network, database.
#[derive(Debug)]
pub struct Fleet {
    /// The hosts (not started by [`Fleet::new`]).
    pub hosts: Vec<Host>,
    /// Central (started).
    pub central: Central,
    /// The network.
    pub net: Net,
    /// The test's PostgreSQL database (dropped last).
    pub db: Option<PgDb>,
    /// What it runs on.
    pub backend: Backend,
}

/// A WorkloadSet of mock workloads `NAME-0..` (run until stopped, restart always).
pub fn mock_set(set: &str, names: &[String]) -> Value {
    let workloads: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({
                "apiVersion": "roost.dev/v1",
                "kind": "Workload",
                "metadata": {"name": n},
                "spec": {"driver": "mock", "mock": {}, "restartPolicy": "always"}
            })
        })
        .collect();
    set_of(set, workloads)
}

/// A WorkloadSet of the given Workload specs.
pub fn set_of(set: &str, workloads: Vec<Value>) -> Value {
    json!({
        "apiVersion": "roost.dev/v1",
        "kind": "WorkloadSet",
        "metadata": {"name": set},
        "spec": {"workloads": workloads}
    })
}

impl Fleet {
    /// A network of `n` namespaces, a central on the bridge (reconcile every 1 s) on
    /// the backend's store, and `n` hosts not started yet.
    pub async fn new(backend: Backend, n: usize) -> Self {
        let net = Net::new(n);
        let db = match backend.store {
            Store::Sqlite => None,
            Store::Postgres => Some(PgDb::create().await),
        };
        let listen = SocketAddr::new(net.gateway.into(), free_port(net.gateway));
        let mut central = Central::new(
            listen,
            db.as_ref().map(|d| d.url.clone()),
            &["--reconcile", "1s"],
        );
        central.start().await;
        let hosts = (0..n)
            .map(|i| Host::new(&format!("h{}", i + 1), &net.nss[i].name))
            .collect();
        Self {
            hosts,
            central,
            net,
            db,
            backend,
        }
    }

    /// The usual fleet: groups g1 (subclouds s1, s2) and g2 (s3); h1 in s1, h2 in s2,
    /// h3 in s3, each enrolled and online.
    pub async fn standard(backend: Backend) -> Self {
        let mut f = Self::new(backend, 3).await;
        for g in ["g1", "g2"] {
            f.central.cli_ok(&["group", "add", g]).await;
        }
        for (s, g) in [("s1", "g1"), ("s2", "g1"), ("s3", "g2")] {
            f.central
                .cli_ok(&["subcloud", "add", s, "--group", g])
                .await;
        }
        for (i, s) in ["s1", "s2", "s3"].iter().enumerate() {
            f.enroll(i, s).await;
        }
        f.wait_online(&["h1", "h2", "h3"]).await;
        f
    }

    /// `roost central token create --subcloud S [--ttl TTL] -o json`.
    pub async fn token(&self, subcloud: &str, ttl: Option<&str>) -> Value {
        let mut a = vec!["token", "create", "--subcloud", subcloud];
        if let Some(t) = ttl {
            a.extend(["--ttl", t]);
        }
        self.central.cli_json(&a).await
    }

    /// Enroll host `i` into `subcloud` with a fresh token (first start).
    pub async fn enroll(&mut self, i: usize, subcloud: &str) {
        let tok = self.token(subcloud, None).await;
        let token = tok["token"]
            .as_str()
            .expect("token create gives a token")
            .to_string();
        let url = self.central.url();
        self.hosts[i].start_ok(Some((&url, &token))).await;
    }

    /// Host by name.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .expect("a host of the fleet")
    }

    /// Host by name, mutable.
    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        self.hosts
            .iter_mut()
            .find(|h| h.name == name)
            .expect("a host of the fleet")
    }

    /// The namespace index of a host.
    pub fn index(&self, name: &str) -> usize {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .expect("a host of the fleet")
    }

    /// Central's view of a host (`GET /v1/hosts/NAME`).
    pub async fn host_view(&self, name: &str) -> Result<Value, String> {
        self.central.try_get(&format!("/v1/hosts/{name}")).await
    }

    /// Wait until central shows every host in `names` online.
    pub async fn wait_online(&self, names: &[&str]) -> Duration {
        let t = Instant::now();
        for n in names {
            let n: &str = n;
            wait_for(T, &format!("{n} online at central"), move || async move {
                let v = self.host_view(n).await?;
                if v["availability"] == "online" {
                    Ok(())
                } else {
                    Err(format!("{v}\nhost log:\n{}", tail(&self.host(n).log(), 15)))
                }
            })
            .await;
        }
        t.elapsed()
    }

    /// Wait until central shows every host in `names` online and in sync; returns the
    /// time it took.
    pub async fn wait_in_sync(&self, names: &[&str], timeout: Duration) -> Duration {
        let t = Instant::now();
        for n in names {
            let n: &str = n;
            wait_for(
                timeout.saturating_sub(t.elapsed()),
                &format!("{n} online and in sync"),
                move || async move {
                    let v = self.host_view(n).await?;
                    if v["availability"] == "online" && v["sync"]["state"] == "in-sync" {
                        Ok(())
                    } else {
                        Err(v.to_string())
                    }
                },
            )
            .await;
        }
        t.elapsed()
    }

    /// Wait until `host` runs exactly the central workloads `names`, each running.
    pub async fn wait_running(&self, host: &str, names: &BTreeSet<String>, timeout: Duration) {
        let h = self.host(host);
        wait_for(
            timeout,
            &format!("{host} runs exactly {names:?}"),
            move || async move {
                let owned = h.owned().await?;
                let have: BTreeSet<String> = owned.keys().cloned().collect();
                let not_running: Vec<&String> = owned
                    .iter()
                    .filter(|(_, s)| s.phase != "running")
                    .map(|(n, _)| n)
                    .collect();
                if &have == names && not_running.is_empty() {
                    Ok(())
                } else {
                    Err(format!("has {have:?}, not running: {not_running:?}"))
                }
            },
        )
        .await;
    }

    /// `roost central deploy -f FILE --target TARGET` of `set` (written as YAML).
    pub async fn deploy(&self, set: &Value, target: &str) -> String {
        let name = set["metadata"]["name"].as_str().unwrap();
        let file = self.central.p.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, serde_yaml::to_string(set).unwrap()).unwrap();
        self.central
            .cli_ok(&["deploy", "-f", file.to_str().unwrap(), "--target", target])
            .await
    }

    /// Print and keep a measured time.
    pub fn record(&self, what: &str, d: Duration) {
        record(self.backend.test, what, d);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- central log (tail):\n{}",
                tail(&self.central.log(), 80)
            );
            for h in &self.hosts {
                eprintln!("---- {} log (tail):\n{}", h.name, tail(&h.log(), 40));
            }
        }
        // Then field order drops the hosts, central, the network and last the
        // database (central must be gone before its database is dropped).
    }
}

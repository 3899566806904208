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

mod fleet;
mod net;
mod pg;
mod proc;
pub use fleet::*;
pub use net::*;
pub use pg::*;
pub use proc::*;

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

pub(crate) fn target_dir() -> PathBuf {
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

pub(crate) fn log_level() -> String {
    std::env::var("ROOST_TEST_LOG").unwrap_or_else(|_| "info".into())
}

pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(crate) fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| !s[i + 1..].trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

pub(crate) fn sigkill(pid: i32) {
    // SAFETY: kill(2) with a pid we just read; no memory is involved.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Wait (async) for a child to exit, at most `timeout`.
pub(crate) async fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
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

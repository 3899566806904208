//! Shared harness for Roost's workspace-level integration tests: finds the `roost`
//! binary, makes temp state dirs, starts and stops daemons.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

/// Path of the `roost` binary under test: `$ROOST_BIN`, else `target/debug/roost`,
/// built on demand so `cargo test` alone works.
pub fn roost_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ROOST_BIN") {
        return PathBuf::from(p);
    }
    let root = workspace_root();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("debug").join("roost");
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "roost"])
            .current_dir(&root)
            .status()
            .expect("run cargo build -p roost");
        assert!(status.success(), "cargo build -p roost failed");
    });
    bin
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}
pub mod browser;
pub mod central;
pub mod container;
pub mod daemon;
pub mod fed;
pub mod sched;
pub mod vmm;

/// Poll `check` every `every` until it gives `Some`, and return that; panic naming
/// `what` (and `check`'s last word on it) if `within` passes first. Tests wait on
/// conditions with this, never on a fixed sleep: a slow or fresh machine only makes
/// the wait longer.
pub fn wait_until<T>(
    what: &str,
    within: std::time::Duration,
    every: std::time::Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let t = std::time::Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if t.elapsed() >= within => {
                panic!("{what} did not happen within {within:?}; last seen: {last}")
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// [`wait_until`] for async checks (inside a tokio runtime).
pub async fn wait_until_async<T, F, Fut>(
    what: &str,
    within: std::time::Duration,
    every: std::time::Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let t = std::time::Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if t.elapsed() >= within => {
                panic!("{what} did not happen within {within:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

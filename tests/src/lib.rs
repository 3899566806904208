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

//! The one binary's front door: version, help, unknown commands.

use roost_tests::roost_bin;
use std::process::Command;

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(roost_bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains(env!("CARGO_PKG_VERSION")), "version output: {s}");
}

#[test]
fn unknown_command_exits_2_with_a_suggestion() {
    let out = Command::new(roost_bin()).arg("aply").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("apply"), "stderr should suggest `apply`: {e}");
    let out = Command::new(roost_bin()).arg("nosuchcmd").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_for_every_role() {
    for cmd in ["host", "central", "vmm", "apply", "ps"] {
        let out = Command::new(roost_bin())
            .args(["help", cmd])
            .output()
            .unwrap();
        assert!(out.status.success(), "roost help {cmd} failed");
        assert!(!out.stdout.is_empty(), "roost help {cmd} printed nothing");
    }
}

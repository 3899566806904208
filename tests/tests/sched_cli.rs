//! The scheduler's command-line front ends: `roost host config check` and
//! `roost probe latency`.

use roost_tests::roost_bin;
use std::process::Command;

#[test]
fn config_check_prints_the_default_partition() {
    let out = Command::new(roost_bin())
        .args(["host", "config", "check"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("profile:   built-in default"), "{text}");
    assert!(text.contains("platform:  0"), "{text}");
}

#[test]
fn config_check_lists_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "[cpu]\nplatform = \"0\"\nshared = \"0\"\nisolated = \"999\"\n",
    )
    .unwrap();
    let out = Command::new(roost_bin())
        .args(["host", "config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("cpu.isolated: CPU 999 does not exist"),
        "{err}"
    );
    assert!(err.contains("share_platform = true"), "{err}");
}

#[test]
fn config_check_warns_about_an_isolated_core_outside_isolcpus() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if cmdline.contains("isolcpus=") {
        eprintln!("SKIPPED: needs a kernel booted without isolcpus=");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.toml");
    std::fs::write(
        &f,
        "[cpu]\nplatform = \"0\"\nisolated = \"1\"\nshare_platform = true\n",
    )
    .unwrap();
    let out = Command::new(roost_bin())
        .args(["host", "config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("isolcpus=1 nohz_full=1"), "{text}");
}

#[test]
fn probe_reports_json_with_every_period() {
    let out = Command::new(roost_bin())
        .args([
            "probe",
            "latency",
            "--seconds",
            "0.3",
            "--period-us",
            "1000",
            "--work-us",
            "100",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["periods"], 299, "{v}");
    assert!(v["response"]["min"].as_f64().unwrap() >= 100.0, "{v}");
    for k in ["min", "p50", "p99", "p999", "max"] {
        assert!(v["wakeup"][k].is_number(), "{k} in {v}");
    }
}

#[test]
fn probe_refuses_bad_flags_by_name() {
    let out = Command::new(roost_bin())
        .args([
            "probe",
            "latency",
            "--work-us",
            "2000",
            "--period-us",
            "1000",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--work-us: 2000 must be less than the period"),
        "{err}"
    );
}

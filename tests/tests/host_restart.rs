//! Restart policies with capped exponential backoff, start failures, grace/kill.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::daemon::{mock_spec, Daemon};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

fn events(d: &Daemon, name: &str) -> Vec<Value> {
    let (s, b) = d.api_raw("GET", &format!("/v1/events?workload={name}"), None);
    assert_eq!(s, 200);
    String::from_utf8_lossy(&b)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn restart_policies() {
    let d = Daemon::start();
    for (name, policy, code) in [
        ("always-ok", "always", 0),
        ("onfail-ok", "on-failure", 0),
        ("onfail-bad", "on-failure", 3),
        ("never-bad", "never", 3),
    ] {
        let spec = mock_spec(
            name,
            json!({"runSeconds": 0, "exitCode": code}),
            json!({"restartPolicy": policy}),
        );
        let (s, v) = d.api("POST", "/v1/workloads", Some(&spec));
        assert_eq!(s, 201, "{v}");
    }
    // `always` and `on-failure` with a failing exit restart again and again.
    for name in ["always-ok", "onfail-bad"] {
        d.wait_for(name, "3 restarts", T, |v| {
            v["status"]["restarts"].as_u64() >= Some(3)
        });
    }
    // `on-failure` with success and `never` rest.
    let v = d.wait_phase("onfail-ok", "exited", T);
    assert_eq!(v["status"]["restarts"], 0);
    assert_eq!(v["status"]["lastExit"]["code"], 0);
    let v = d.wait_phase("never-bad", "failed", T);
    assert_eq!(v["status"]["restarts"], 0);
    assert_eq!(v["status"]["lastExit"]["code"], 3);
    // `roost ps` shows the exit code.
    let ps = String::from_utf8_lossy(&d.cli(&["ps"]).stdout).to_string();
    assert!(
        ps.lines()
            .any(|l| l.starts_with("never-bad") && l.contains("failed") && l.contains("(3)")),
        "{ps}"
    );
    // Only the newest instance keeps its run dir (`run/<name>.<instance>`); rm takes
    // the last one too.
    let run_dirs = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d.state_dir().join("run"))
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&format!("{name}.")))
            .collect();
        v.sort();
        v
    };
    let v = d.wait_phase("never-bad", "failed", T);
    assert_eq!(run_dirs("never-bad"), ["never-bad.1"]);
    assert_eq!(v["status"]["instance"], 1);
    let (s, v) = d.api("DELETE", "/v1/workloads/always-ok", None);
    assert!(s == 200 || s == 202 || s == 204, "{s} {v}");
    let t = std::time::Instant::now();
    while d.api("GET", "/v1/workloads/always-ok", None).0 != 404 {
        assert!(t.elapsed() < T, "always-ok was not removed within {T:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(run_dirs("always-ok"), Vec::<String>::new());
    let v = d.wait_for("onfail-bad", "5 restarts", T, |v| {
        v["status"]["restarts"].as_u64() >= Some(5)
    });
    let dirs = run_dirs("onfail-bad");
    assert!(dirs.len() <= 2, "older run dirs were kept: {dirs:?} at {v}");
}

#[test]
fn backoff_grows_and_is_capped() {
    // base 100 ms, cap 400 ms.
    let d = Daemon::start_with(&[
        "--restart-backoff-ms",
        "100",
        "--restart-backoff-max-ms",
        "400",
    ]);
    let spec = mock_spec("crashy", json!({"runSeconds": 0, "exitCode": 1}), json!({}));
    assert_eq!(d.api("POST", "/v1/workloads", Some(&spec)).0, 201);
    d.wait_for("crashy", "5 restarts", T, |v| {
        v["status"]["restarts"].as_u64() >= Some(5)
    });
    let delays: Vec<u64> = events(&d, "crashy")
        .iter()
        .filter(|e| e["kind"] == "backoff")
        .map(|e| {
            let m = e["message"].as_str().unwrap();
            m.split(" in ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(delays.len() >= 5, "{delays:?}");
    assert_eq!(&delays[..5], &[100, 200, 400, 400, 400], "{delays:?}");
    // The backoff is really waited: starts are spaced at least by the delays.
    let starts: Vec<u64> = events(&d, "crashy")
        .iter()
        .filter(|e| e["kind"] == "starting")
        .map(|e| e["timeMs"].as_u64().unwrap())
        .collect();
    for (i, w) in starts.windows(2).take(4).enumerate() {
        assert!(
            w[1] - w[0] >= delays[i] - 5,
            "start {i} came too soon: {starts:?} {delays:?}"
        );
    }
}

#[test]
fn failed_start_backs_off_and_never_policy_fails() {
    let d = Daemon::start();
    let spec = mock_spec(
        "nostart",
        json!({"failStart": true}),
        json!({"restartPolicy": "on-failure"}),
    );
    assert_eq!(d.api("POST", "/v1/workloads", Some(&spec)).0, 201);
    d.wait_for("nostart", "2 restarts", T, |v| {
        v["status"]["restarts"].as_u64() >= Some(2)
    });
    let v = d.get("nostart");
    assert_eq!(v["status"]["lastExit"]["reason"], "start-failed");
    assert!(
        v["status"]["lastExit"]["message"]
            .as_str()
            .unwrap()
            .contains("failStart"),
        "{v}"
    );
    let spec = mock_spec(
        "nostart2",
        json!({"failStart": true}),
        json!({"restartPolicy": "never"}),
    );
    assert_eq!(d.api("POST", "/v1/workloads", Some(&spec)).0, 201);
    let v = d.wait_phase("nostart2", "failed", T);
    assert_eq!(v["status"]["restarts"], 0);
    assert!(events(&d, "nostart2")
        .iter()
        .any(|e| e["kind"] == "start-failed"));
}

/// Wait until mock `name` runs and handles SIGTERM: `running` means its process
/// started; its shell sets the TERM trap before its first log line.
fn wait_trapping(d: &Daemon, name: &str) {
    d.wait_phase(name, "running", T);
    let t = Instant::now();
    while !String::from_utf8_lossy(&d.cli(&["logs", name]).stdout).contains("started") {
        assert!(t.elapsed() < T, "mock {name} never logged its start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn stop_kills_after_the_grace_period() {
    let d = Daemon::start();
    let spec = mock_spec(
        "stubborn",
        json!({"ignoreStop": true}),
        json!({"stopGraceSeconds": 1}),
    );
    assert_eq!(d.api("POST", "/v1/workloads", Some(&spec)).0, 201);
    wait_trapping(&d, "stubborn");
    let t = Instant::now();
    let (s, v) = d.api("POST", "/v1/workloads/stubborn/stop", None);
    let took = t.elapsed();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"]["phase"], "stopped");
    assert!(
        took >= Duration::from_millis(900),
        "killed before the grace ended: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert!(!d.mock_instances().contains_key("stubborn"));
    // A polite one stops at once.
    let spec = mock_spec("polite", json!({}), json!({"stopGraceSeconds": 5}));
    assert_eq!(d.api("POST", "/v1/workloads", Some(&spec)).0, 201);
    wait_trapping(&d, "polite");
    let t = Instant::now();
    assert_eq!(d.api("POST", "/v1/workloads/polite/stop", None).0, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let log = String::from_utf8_lossy(&d.cli(&["logs", "polite"]).stdout).to_string();
    assert!(log.contains("mock: stopping"), "{log}");
}

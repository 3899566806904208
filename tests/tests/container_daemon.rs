//! Containers through the real `roost host` daemon and CLI: `roost apply` runs to exit
//! code 3 with logs; bad inputs fail `roost apply` with the field to fix and leak
//! nothing; a SIGKILLed daemon re-adopts its running container on restart; a stop ends
//! a sleeper within its grace period.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::container::ContainerDaemon;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const IMG: &str = "roost.test/busybox:1";
const T: Duration = Duration::from_secs(30);

/// A daemon on the private containerd, in a namespace of this test's own with the
/// busybox image imported.
fn setup(test: &str) -> Option<ContainerDaemon> {
    ContainerDaemon::start(test, IMG, &[])
}

#[test]
fn apply_runs_to_exit_code_3_with_logs() {
    let Some(s) = setup("dexit") else { return };
    let out = s.apply(
        "three",
        json!({"image": IMG, "command": ["/bin/exit3"]}),
        json!({}),
    );
    assert!(out.status.success(), "{out:?}");
    let v = s.d.wait_phase("three", "failed", T);
    assert_eq!(v["status"]["lastExit"]["code"], 3, "{v}");
    assert_eq!(v["status"]["lastExit"]["reason"], "exited", "{v}");
    let logs = s.d.cli(&["logs", "three"]);
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        text.contains("to-stdout") && text.contains("to-stderr"),
        "{text:?}"
    );
    s.finish(&["three"]);
}

#[test]
fn bad_inputs_fail_apply_with_the_field_and_leak_nothing() {
    let Some(s) = setup("dbad") else { return };
    let cases = [
        (
            json!({"image": "roost.test/absent:1", "command": ["sh"]}),
            "spec.container.image",
        ),
        (
            json!({"image": IMG, "command": ["no-such-binary"]}),
            "spec.container.command",
        ),
        (
            json!({"image": IMG, "command": ["sh"], "user": "nobody"}),
            "spec.container.user",
        ),
        (
            json!({"image": IMG, "command": ["sh"], "mounts": [{"source": "/nonexistent/roost-src", "destination": "/data"}]}),
            "spec.container.mounts[0].source",
        ),
    ];
    for (i, (container, field)) in cases.into_iter().enumerate() {
        let out = s.apply(&format!("bad{i}"), container, json!({}));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} was accepted");
        assert!(
            err.contains(field),
            "case {i}: stderr does not name {field}: {err}"
        );
        let (code, _) = s.d.api("GET", &format!("/v1/workloads/bad{i}"), None);
        assert_eq!(code, 404, "case {i}: a rejected workload was stored");
    }
    assert!(s.containers().is_empty(), "{:?}", s.containers());
    s.finish(&[]);
}

#[test]
fn daemon_sigkill_and_restart_readopts_the_running_container() {
    let Some(mut s) = setup("dkill") else { return };
    let out = s.apply(
        "sleeper",
        json!({"image": IMG, "command": ["sh", "-c", "trap 'exit 0' TERM; echo started; sleep 300 & wait"]}),
        json!({"stopGraceSeconds": 10}),
    );
    assert!(out.status.success(), "{out:?}");
    let v = s.d.wait_phase("sleeper", "running", T);
    let instance = v["status"]["instance"].clone();
    let client = s.ns.as_ref().unwrap().client.clone();
    let pids_before = s.rt.block_on(client.pids("sleeper-1")).unwrap();
    assert!(!pids_before.is_empty());
    s.d.kill9();
    // The container keeps running under its shim with no daemon (a hold, not a
    // wait: it is still running half a second after the daemon died).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        s.rt.block_on(client.state("sleeper-1")).unwrap(),
        roost_container::task::State::Running
    );
    s.respawn();
    let v = s.d.wait_phase("sleeper", "running", T);
    assert_eq!(
        v["status"]["instance"], instance,
        "re-adopted, not restarted: {v}"
    );
    assert_eq!(
        s.rt.block_on(client.pids("sleeper-1")).unwrap(),
        pids_before
    );
    // `roost exec` runs inside the re-adopted container, through the daemon.
    let out = s.d.cli(&[
        "exec",
        "sleeper",
        "--",
        "sh",
        "-c",
        "echo inside $(id -u); exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "inside 0");
    // The re-adopted container is still supervised: stop ends it within the grace.
    let t0 = Instant::now();
    let out = s.d.cli(&["stop", "sleeper"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "stop took {:?}",
        t0.elapsed()
    );
    s.d.wait_phase("sleeper", "stopped", T);
    s.finish(&["sleeper"]);
}

#[test]
fn twenty_containers_applied_at_once_all_run_and_exit() {
    let Some(s) = setup("dtwenty") else { return };
    let workloads: Vec<Value> = (0..20)
        .map(|i| {
            json!({"apiVersion": "roost.dev/v1", "kind": "Workload", "metadata": {"name": format!("w{i}")},
                   "spec": {"driver": "container", "restartPolicy": "never",
                            "container": {"image": IMG, "command": ["sh", "-c", format!("echo hi {i}; sleep 1")]}}})
        })
        .collect();
    let body = json!({"workloads": workloads}).to_string();
    let (code, v) = s.d.api("POST", "/v1/apply", Some(&body));
    assert!(code < 300, "{code} {v}");
    for i in 0..20 {
        let v =
            s.d.wait_phase(&format!("w{i}"), "exited", Duration::from_secs(90));
        assert_eq!(v["status"]["lastExit"]["code"], 0, "{v}");
        let logs = s.d.cli(&["logs", &format!("w{i}")]);
        assert_eq!(
            String::from_utf8_lossy(&logs.stdout).trim(),
            format!("hi {i}")
        );
    }
    let names: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    s.finish(&refs);
}

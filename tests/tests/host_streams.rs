//! Logs (tail, follow) and the event stream (NDJSON, resumable from a cursor).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::daemon::{mock_spec, Daemon};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

#[test]
fn logs_tail_and_follow() {
    let d = Daemon::start();
    let spec = mock_spec(
        "talker",
        json!({"runSeconds": 4}),
        json!({"restartPolicy": "never"}),
    );
    assert_eq!(d.api("POST", "/v1/workloads", Some(&spec)).0, 201);
    d.wait_phase("talker", "running", T);
    // Follow from the CLI: lines arrive while it runs, and the stream ends after exit.
    let mut child = Command::new(roost_tests::roost_bin())
        .args(["logs", "-f", "talker"])
        .env("ROOST_SOCKET", d.socket())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let t = Instant::now();
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        seen.push((t.elapsed(), line));
    }
    let st = child.wait().unwrap();
    assert!(st.success());
    let text: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
    assert!(text.iter().any(|l| l.contains("started")), "{text:?}");
    assert!(text.contains(&"tick 3"), "{text:?}");
    assert!(
        text.iter().any(|l| l.contains("exiting with 0")),
        "{text:?}"
    );
    // Lines came over time, not all at the end.
    let first = seen.first().unwrap().0;
    let last = seen.last().unwrap().0;
    assert!(
        last - first >= Duration::from_secs(2),
        "follow did not stream: {seen:?}"
    );
    d.wait_phase("talker", "exited", T);
    // Tail.
    let (s, b) = d.api_raw("GET", "/v1/workloads/talker/logs?tail=2", None);
    assert_eq!(s, 200);
    let tail = String::from_utf8_lossy(&b).to_string();
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(tail.ends_with("exiting with 0\n"), "{tail}");
    let out = d.cli(&["logs", "--tail", "1", "talker"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // A clean exit is announced once.
    let kinds: Vec<String> = read_events(&d, 0)
        .iter()
        .filter(|e| e["workload"] == "talker")
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["created", "starting", "running", "exited"]);
}

fn read_events(d: &Daemon, cursor: u64) -> Vec<Value> {
    let (s, b) = d.api_raw("GET", &format!("/v1/events?cursor={cursor}"), None);
    assert_eq!(s, 200);
    String::from_utf8_lossy(&b)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn events_stream_and_resume() {
    let mut d = Daemon::start();
    // A follower started before anything happens sees events live.
    let mut follower = Command::new(roost_tests::roost_bin())
        .args(["events", "-f", "-o", "json"])
        .env("ROOST_SOCKET", d.socket())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let spec = mock_spec(
        "ev",
        json!({"runSeconds": 0, "exitCode": 2}),
        json!({"restartPolicy": "never"}),
    );
    assert_eq!(d.api("POST", "/v1/workloads", Some(&spec)).0, 201);
    d.wait_phase("ev", "failed", T);
    let all = read_events(&d, 0);
    let kinds: Vec<&str> = all
        .iter()
        .filter(|e| e["workload"] == "ev")
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["created", "starting", "running", "exited", "failed"],
        "{all:?}"
    );
    // Sequence numbers strictly increase.
    for w in all.windows(2) {
        assert!(w[1]["seq"].as_u64() > w[0]["seq"].as_u64());
    }
    // Resume from the middle: exactly the rest.
    let mid = all[all.len() / 2]["seq"].as_u64().unwrap();
    let rest = read_events(&d, mid);
    assert_eq!(rest.first().unwrap()["seq"].as_u64().unwrap(), mid + 1);
    assert_eq!(
        rest.len(),
        all.iter()
            .filter(|e| e["seq"].as_u64().unwrap() > mid)
            .count()
    );
    // The live follower got the same events.
    let stdout = follower.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut live = Vec::new();
    while live.len() < kinds.len() {
        let l = lines.next().unwrap().unwrap();
        let e: Value = serde_json::from_str(&l).unwrap();
        if e["workload"] == "ev" {
            live.push(e["kind"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(live, kinds);
    let _ = follower.kill();
    let _ = follower.wait();
    // Cursors survive a daemon restart: old events are still there, new ones continue.
    let last = all.last().unwrap()["seq"].as_u64().unwrap();
    d.term();
    d.spawn();
    let after = read_events(&d, last);
    assert!(!after.is_empty());
    assert!(after.iter().all(|e| e["seq"].as_u64().unwrap() > last));
    assert!(
        after.iter().any(|e| e["kind"] == "daemon-started"),
        "{after:?}"
    );
    assert_eq!(read_events(&d, 0).len(), all.len() + after.len());
}

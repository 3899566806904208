//! Restart safety: SIGKILL at any moment, re-adoption without restarts, never two
//! copies, and the offline "host reboot" bringing every `always` workload back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_host::client::Client;
use roost_tests::daemon::{mock_spec, Daemon};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

#[test]
fn sigkill_during_100_concurrent_creates_loses_nothing_accepted() {
    let mut d = Daemon::start();
    let accepted = Arc::new(Mutex::new(HashSet::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let sock = d.socket();
    let mut threads = Vec::new();
    for i in 0..100 {
        let accepted = Arc::clone(&accepted);
        let done = Arc::clone(&done);
        let sock = sock.clone();
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let name = format!("w{i:03}");
            let body = mock_spec(&name, json!({}), json!({})).into_bytes();
            let r = rt.block_on(Client::new(&sock).request(
                hyper::Method::POST,
                "/v1/workloads",
                Some(body),
            ));
            if let Ok(r) = r {
                if r.status.as_u16() == 201 {
                    accepted.lock().unwrap().insert(name);
                }
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    // Kill the daemon while the creates are still coming in.
    let t = Instant::now();
    while done.load(Ordering::SeqCst) < 25 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    d.kill9();
    for th in threads {
        th.join().unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        !accepted.is_empty(),
        "no create was accepted before the kill"
    );
    eprintln!(
        "{} of 100 creates were accepted before SIGKILL",
        accepted.len()
    );
    d.spawn();
    let present = d.names();
    let lost: Vec<_> = accepted.difference(&present).collect();
    assert!(lost.is_empty(), "accepted but lost: {lost:?}");
    // Every workload the daemon knows comes up, each exactly once.
    for name in &present {
        d.wait_phase(name, "running", T);
    }
    // A hold, not a wait: a duplicate started by a botched recovery would show up
    // within this half second; the check is that none does.
    std::thread::sleep(Duration::from_millis(500));
    let procs = d.mock_instances();
    for name in &present {
        let n = procs.get(name).map(Vec::len).unwrap_or(0);
        assert_eq!(n, 1, "{name} runs {n} copies: {:?}", procs.get(name));
    }
    // And nothing runs that the daemon does not know.
    for name in procs.keys() {
        assert!(
            present.contains(name),
            "{name} runs but is not in the store"
        );
    }
}

#[test]
fn daemon_restart_readopts_without_restarting() {
    let mut d = Daemon::start();
    for i in 0..5 {
        let spec = mock_spec(&format!("keep{i}"), json!({}), json!({}));
        assert_eq!(d.api("POST", "/v1/workloads", Some(&spec)).0, 201);
    }
    for i in 0..5 {
        d.wait_phase(&format!("keep{i}"), "running", T);
    }
    let before = d.mock_instances();
    d.kill9();
    d.spawn();
    for i in 0..5 {
        let v = d.wait_phase(&format!("keep{i}"), "running", T);
        assert_eq!(
            v["status"]["instance"], 1,
            "restarted instead of re-adopted: {v}"
        );
        assert_eq!(v["status"]["restarts"], 0);
    }
    assert_eq!(
        d.mock_instances(),
        before,
        "processes changed across the daemon restart"
    );
    // Its exit is still observed after re-adoption: stop one from outside.
    let (_, b) = d.api_raw("GET", "/v1/events?workload=keep0", None);
    assert!(String::from_utf8_lossy(&b).contains("adopted"));
    for pid in d.workload_pids() {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(":keep0-1") {
            // SAFETY: kill(2) on a pid we just read.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
    let v = d.wait_for("keep0", "restart after outside kill", T, |v| {
        v["status"]["instance"].as_u64() == Some(2) && v["status"]["phase"] == "running"
    });
    assert_eq!(v["status"]["restarts"], 1);
}

#[test]
fn simulated_reboot_brings_always_workloads_back_within_10s() {
    let mut d = Daemon::start();
    let n = 20;
    for i in 0..n {
        let spec = mock_spec(
            &format!("svc{i}"),
            json!({}),
            json!({"restartPolicy": "always"}),
        );
        assert_eq!(d.api("POST", "/v1/workloads", Some(&spec)).0, 201);
    }
    let once = mock_spec("oneshot", json!({}), json!({"restartPolicy": "never"}));
    assert_eq!(d.api("POST", "/v1/workloads", Some(&once)).0, 201);
    let parked = mock_spec("parked", json!({}), json!({}));
    assert_eq!(d.api("POST", "/v1/workloads", Some(&parked)).0, 201);
    d.wait_phase("parked", "running", T);
    assert_eq!(d.api("POST", "/v1/workloads/parked/stop", None).0, 200);
    for i in 0..n {
        d.wait_phase(&format!("svc{i}"), "running", T);
    }
    d.wait_phase("oneshot", "running", T);
    // The "reboot": daemon and every workload process die; no central anywhere.
    d.kill9();
    d.kill_workloads();
    // SIGKILL lands asynchronously: wait for the kernel to have ended them all.
    roost_tests::wait_until(
        "the killed workload processes ending",
        T,
        Duration::from_millis(20),
        || {
            let left = d.workload_pids();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("pids {left:?}"))
            }
        },
    );
    let t = Instant::now();
    d.spawn();
    for i in 0..n {
        d.wait_for(
            &format!("svc{i}"),
            "back after reboot",
            Duration::from_secs(10),
            |v| v["status"]["phase"] == "running" && v["status"]["instance"].as_u64() >= Some(2),
        );
    }
    let took = t.elapsed();
    eprintln!("{n} always-workloads back {took:?} after the daemon started");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let procs = d.mock_instances();
    for i in 0..n {
        assert_eq!(procs.get(&format!("svc{i}")).map(Vec::len), Some(1));
    }
    // `never` stays down, a stopped one stays stopped.
    let v: Value = d.get("oneshot");
    assert_eq!(v["status"]["phase"], "failed", "{v}");
    assert_eq!(d.get("parked")["status"]["phase"], "stopped");
    assert!(!procs.contains_key("oneshot") && !procs.contains_key("parked"));
}

/// Send a whole POST on a new connection and return the connection unread.
fn send_post(d: &Daemon, path: &str, body: &str) -> std::os::unix::net::UnixStream {
    use std::io::Write;
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

/// Clients that hang up in the middle of their create: each create still ends one way
/// or the other. What was stored is listed and runs, and survives a restart; what was
/// not can be created again (its name is not left taken).
#[test]
fn a_client_hanging_up_mid_create_leaves_nothing_half_made() {
    let mut d = Daemon::start();
    let names: Vec<String> = (0..40).map(|i| format!("hup{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        let body = mock_spec(name, json!({}), json!({}));
        let s = send_post(&d, "/v1/workloads", &body);
        // Hang up at once, or a few hundred microseconds in.
        std::thread::sleep(Duration::from_micros((i as u64 % 8) * 100));
        drop(s);
    }
    // Every create has ended once the list stops changing (each ends in ms; a
    // second without change is ample even on a loaded machine).
    let mut before = d.names();
    let mut still = Instant::now();
    let t = Instant::now();
    while still.elapsed() < Duration::from_secs(1) {
        assert!(t.elapsed() < T, "the list kept changing");
        std::thread::sleep(Duration::from_millis(100));
        let now = d.names();
        if now != before {
            before = now;
            still = Instant::now();
        }
    }
    for name in &before {
        d.wait_phase(name, "running", T);
    }
    // Stored means listed: a restart finds the same set.
    d.kill9();
    d.spawn();
    assert_eq!(d.names(), before, "the store and the list disagreed");
    for name in names.iter().filter(|n| !before.contains(*n)) {
        let body = mock_spec(name, json!({}), json!({}));
        let (s, v) = d.api("POST", "/v1/workloads", Some(&body));
        assert_eq!(s, 201, "{name} was not stored but its name is taken: {v}");
    }
    eprintln!(
        "{} of {} creates whose client hung up were stored",
        before.len(),
        names.len()
    );
}

/// A whole set whose client hangs up once it is sent is still applied to the end.
#[test]
fn a_set_whose_client_hangs_up_is_applied_whole() {
    let d = Daemon::start();
    let set: Vec<Value> = (0..30)
        .map(|i| {
            serde_json::from_str(&mock_spec(&format!("set{i:02}"), json!({}), json!({}))).unwrap()
        })
        .collect();
    let body = json!({ "workloads": set, "prune": false }).to_string();
    let s = send_post(&d, "/v1/apply", &body);
    // Wait for the first of them to exist, then hang up.
    let t = Instant::now();
    while d.api("GET", "/v1/workloads/set00", None).0 != 200 {
        assert!(t.elapsed() < T, "the set was never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(s);
    for i in 0..30 {
        d.wait_phase(&format!("set{i:02}"), "running", T);
    }
}

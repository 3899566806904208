//! `make bench-container` (ignored in normal runs): the same image N times through
//! Roost (API create → exit observed) and through `ctr run --rm` on the same private
//! containerd, interleaved. Writes the report to $ROOST_BENCH_OUT (the script prints it
//! last, ending with the GOAL line).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::container::{import_busybox, socket, Ns};
use roost_tests::daemon::Daemon;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const IMG: &str = "roost.test/busybox:1";
const GOAL: f64 = 0.7;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// POST a workload and poll (1 ms) until the daemon reports its exit; milliseconds.
fn roost_once(d: &Daemon, name: &str) -> f64 {
    let body = json!({
        "apiVersion": "roost.dev/v1", "kind": "Workload", "metadata": {"name": name},
        "spec": {"driver": "container", "restartPolicy": "never",
                 "container": {"image": IMG, "command": ["true"]}},
    })
    .to_string();
    let t0 = Instant::now();
    let (s, v) = d.api("POST", "/v1/workloads", Some(&body));
    assert!(s == 200 || s == 201, "create {name}: {s} {v}");
    loop {
        let (_, v) = d.api("GET", &format!("/v1/workloads/{name}"), None);
        match v.pointer("/status/phase").and_then(Value::as_str) {
            Some("exited") => break,
            Some("failed") => panic!("{name} failed: {v}"),
            _ => {}
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{name} did not exit: {v}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    let (s, v) = d.api("DELETE", &format!("/v1/workloads/{name}"), None);
    assert!(s < 300, "delete {name}: {s} {v}");
    ms
}

/// `ctr run --rm` as a whole process; milliseconds.
fn ctr_once(sock: &str, ns: &str, id: &str) -> f64 {
    let t0 = Instant::now();
    let st = Command::new("ctr")
        .args([
            "--address",
            sock,
            "--namespace",
            ns,
            "run",
            "--rm",
            IMG,
            id,
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert!(st.success(), "ctr run {id} failed");
    ms
}

#[test]
#[ignore = "benchmark: run by `make bench-container`"]
fn bench_container_vs_ctr() {
    let Some(sock) = socket() else { return };
    let n: usize = std::env::var("ROOST_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ns = rt.block_on(async {
        let ns = Ns::new(&sock, "bench").await;
        import_busybox(&ns.client, IMG).await;
        ns
    });
    std::env::set_var("ROOST_CONTAINERD_NAMESPACE", &ns.name);
    let sock_s = sock.to_str().unwrap().to_string();
    let d = Daemon::start_with(&["--containerd-socket", &sock_s]);
    // One warm-up each (shim binary and image pages in cache).
    roost_once(&d, "warm");
    ctr_once(&sock_s, &ns.name, "warm-ctr");
    let (mut roost, mut ctr) = (Vec::new(), Vec::new());
    for i in 0..n {
        roost.push(roost_once(&d, &format!("bench-{i}")));
        ctr.push(ctr_once(&sock_s, &ns.name, &format!("bench-ctr-{i}")));
    }
    let mut report = String::new();
    report.push_str(&format!(
        "runs: {n} each, interleaved, image {IMG}, command `true`\n"
    ));
    report.push_str(&format!(
        "roost (API create -> exit observed) ms: {}\n",
        roost
            .iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    report.push_str(&format!(
        "ctr run --rm (whole process) ms:       {}\n",
        ctr.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let (rm, cm) = (median(&mut roost), median(&mut ctr));
    let ratio = rm / cm;
    report.push_str(&format!("median roost {rm:.1} ms, median ctr {cm:.1} ms\n"));
    report.push_str(&format!(
        "GOAL container_vs_ctr {ratio:.3} {GOAL} {}\n",
        if ratio <= GOAL { "PASS" } else { "FAIL" }
    ));
    print!("{report}");
    if let Ok(p) = std::env::var("ROOST_BENCH_OUT") {
        std::fs::write(p, &report).unwrap();
    }
    drop(d);
    rt.block_on(ns.finish());
}

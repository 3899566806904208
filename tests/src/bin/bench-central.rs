//! `make bench-central`: a set of 10 mock workloads to 3 hosts through a release
//! `roost central`, 20 times, interleaved with the same 10 workloads applied straight
//! to each host's API (`POST /v1/apply`, the three hosts in parallel). Both are timed
//! from the request to every one of the 30 workloads reported `running` by its host's
//! API (polled every 2 ms, the same way for both). Prints p50/p99 of both and
//! `GOAL central_deploy_vs_direct <ratio of p50s> 1.5 PASS|FAIL`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_host::client::Client;
use roost_tests::central::LoopbackCentral;
use roost_tests::daemon::Daemon;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const HOSTS: usize = 3;
const WORKLOADS: usize = 10;

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn workload(name: &str) -> Value {
    json!({
        "apiVersion": "roost.dev/v1",
        "kind": "Workload",
        "metadata": {"name": name},
        "spec": {"driver": "mock", "mock": {}, "resources": {"cpu": "10m", "memoryMiB": 4}}
    })
}

/// Wait until every host lists every name in `names` as running (or, with
/// `gone`, lists none of them).
fn wait_all(rt: &tokio::runtime::Runtime, hosts: &[Client], names: &[String], gone: bool) {
    let t = Instant::now();
    rt.block_on(async {
        loop {
            let mut all = true;
            for h in hosts {
                let r = h
                    .request(hyper::Method::GET, "/v1/workloads", None)
                    .await
                    .unwrap();
                let list: Value = serde_json::from_slice(&r.body).unwrap();
                let arr = list.as_array().cloned().unwrap_or_default();
                for n in names {
                    let w = arr
                        .iter()
                        .find(|w| w["workload"]["metadata"]["name"] == n.as_str());
                    let ok = if gone {
                        w.is_none()
                    } else {
                        w.is_some_and(|w| w["status"]["phase"] == "running")
                    };
                    if !ok {
                        all = false;
                        break;
                    }
                }
                if !all {
                    break;
                }
            }
            if all {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "workloads {names:?} never {}",
                if gone { "went" } else { "ran" }
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let c = LoopbackCentral::start();
    c.cli(&["subcloud", "add", "bench"]);
    let mut daemons = Vec::new();
    for i in 0..HOSTS {
        let token = c
            .cli(&["token", "create", "--subcloud", "bench"])
            .trim()
            .to_string();
        let name = format!("bench-h{i}");
        daemons.push(Daemon::start_with(&[
            "--cgroup-prefix",
            "none",
            "--join",
            &c.url,
            "--join-token",
            &token,
            "--name",
            &name,
            "--heartbeat",
            "1s",
        ]));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hosts: Vec<Client> = daemons.iter().map(|d| Client::new(d.socket())).collect();
    let central = c.client();
    // Every host online before the first round.
    let t = Instant::now();
    loop {
        let r = rt
            .block_on(central.request(hyper::Method::GET, "/v1/status", None))
            .unwrap();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        if v["hostsOnline"] == HOSTS as u64 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "hosts never came online: {v}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let cnames: Vec<String> = (0..WORKLOADS).map(|i| format!("c-w{i}")).collect();
    let dnames: Vec<String> = (0..WORKLOADS).map(|i| format!("d-w{i}")).collect();
    let set = json!({
        "set": {
            "apiVersion": "roost.dev/v1", "kind": "WorkloadSet",
            "metadata": {"name": "bench"},
            "spec": {"workloads": cnames.iter().map(|n| workload(n)).collect::<Vec<_>>()}
        },
        "target": "subcloud/bench"
    })
    .to_string();
    let undeploy = json!({"set": "bench", "target": "subcloud/bench"}).to_string();
    let direct =
        json!({"workloads": dnames.iter().map(|n| workload(n)).collect::<Vec<_>>()}).to_string();
    let (mut via_central, mut via_direct) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Interleaved, alternating which goes first.
        for first in [round % 2 == 0, round % 2 != 0] {
            if first {
                let t = Instant::now();
                let r = rt
                    .block_on(central.request(
                        hyper::Method::POST,
                        "/v1/deploy",
                        Some(set.clone().into_bytes()),
                    ))
                    .unwrap();
                assert!(
                    r.status.is_success(),
                    "deploy: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
                wait_all(&rt, &hosts, &cnames, false);
                via_central.push(t.elapsed().as_secs_f64() * 1000.0);
                let r = rt
                    .block_on(central.request(
                        hyper::Method::POST,
                        "/v1/undeploy",
                        Some(undeploy.clone().into_bytes()),
                    ))
                    .unwrap();
                assert!(
                    r.status.is_success(),
                    "undeploy: {}",
                    String::from_utf8_lossy(&r.body)
                );
                wait_all(&rt, &hosts, &cnames, true);
            } else {
                let t = Instant::now();
                rt.block_on(async {
                    let mut js = Vec::new();
                    for h in &hosts {
                        let h = h.clone();
                        let body = direct.clone().into_bytes();
                        js.push(tokio::spawn(async move {
                            h.request(hyper::Method::POST, "/v1/apply", Some(body))
                                .await
                                .unwrap()
                        }));
                    }
                    for j in js {
                        let r = j.await.unwrap();
                        assert!(
                            r.status.is_success(),
                            "apply: {}",
                            String::from_utf8_lossy(&r.body)
                        );
                    }
                });
                wait_all(&rt, &hosts, &dnames, false);
                via_direct.push(t.elapsed().as_secs_f64() * 1000.0);
                rt.block_on(async {
                    for h in &hosts {
                        for n in &dnames {
                            let r = h
                                .request(hyper::Method::DELETE, &format!("/v1/workloads/{n}"), None)
                                .await
                                .unwrap();
                            assert!(
                                r.status.is_success(),
                                "rm {n}: {}",
                                String::from_utf8_lossy(&r.body)
                            );
                        }
                    }
                });
                wait_all(&rt, &hosts, &dnames, true);
            }
        }
    }
    via_central.sort_by(f64::total_cmp);
    via_direct.sort_by(f64::total_cmp);
    let (c50, c99) = (pct(&via_central, 0.5), pct(&via_central, 0.99));
    let (d50, d99) = (pct(&via_direct, 0.5), pct(&via_direct, 0.99));
    println!("bench-central: {rounds} rounds, {WORKLOADS} mock workloads x {HOSTS} hosts, deploy -> all running");
    println!("  through central   p50 {c50:8.1} ms   p99 {c99:8.1} ms");
    println!("  straight to hosts p50 {d50:8.1} ms   p99 {d99:8.1} ms  (REF: POST /v1/apply to the 3 hosts at once)");
    let ratio = c50 / d50;
    println!(
        "GOAL central_deploy_vs_direct {ratio:.2} 1.5 {}",
        if ratio <= 1.5 { "PASS" } else { "FAIL" }
    );
}

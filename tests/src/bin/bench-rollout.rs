//! `make bench-rollout`: a release `roost central` and a `roost sim` process of 100
//! simulated hosts in 100 subclouds (the real link protocol, one certificate each,
//! every apply taking 1 s). A strategy rolls a new generation of a set to all 100 with
//! max-parallel 10, five times. The ideal from the parameters is
//! ceil(100 / 10) × 1 s = 10 s (a rolling window of 10 slots, each running 10 applies
//! back to back). Prints every round's wall time (central's own start and finish
//! times, and as seen by the client) and
//! `GOAL rollout_overhead <median ratio to the ideal> 1.10 PASS|FAIL`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hyper::Method;
use roost_host::client::Client;
use roost_tests::central::{call, sim_command, LoopbackCentral};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBCLOUDS: usize = 100;
const PARALLEL: usize = 10;
const APPLY_S: f64 = 1.0;
const ROUNDS: usize = 5;

fn set(generation: usize) -> Value {
    json!({
        "apiVersion": "roost.dev/v1", "kind": "WorkloadSet",
        "metadata": {"name": "bench"},
        "spec": {"workloads": [{
            "apiVersion": "roost.dev/v1", "kind": "Workload",
            "metadata": {"name": "bench-app"},
            "spec": {"driver": "mock", "mock": {"runSeconds": 100_000 + generation}}
        }]}
    })
}

async fn wait_in_sync(c: &Client) {
    let t = Instant::now();
    loop {
        let s = call(c, Method::GET, "/v1/status", None).await;
        if s["subcloudsInSync"].as_u64() == Some(SUBCLOUDS as u64) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "fleet never in sync: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() {
    let central = LoopbackCentral::start();
    let data = central.data();
    let sim_log = central.dir.path().join("sim.log");
    let mut sim = sim_command(&central.url, &data, SUBCLOUDS, SUBCLOUDS)
        .args(["--apply-seconds", &APPLY_S.to_string(), "--heartbeat", "1"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&sim_log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = central.client();
    let t = Instant::now();
    while !std::fs::read_to_string(&sim_log)
        .unwrap_or_default()
        .contains("linked")
    {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the simulator never linked"
        );
        assert!(sim.try_wait().unwrap().is_none(), "the simulator exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "bench-rollout: {SUBCLOUDS} simulated hosts in {SUBCLOUDS} subclouds, {APPLY_S} s per apply, \
         max-parallel {PARALLEL}, {ROUNDS} rounds"
    );
    let ideal = (SUBCLOUDS as f64 / PARALLEL as f64).ceil() * APPLY_S;
    let mut ratios = Vec::new();
    rt.block_on(async {
        call(
            &c,
            Method::POST,
            "/v1/deploy",
            Some(json!({"set": set(0), "target": "group/sim"})),
        )
        .await;
        wait_in_sync(&c).await;
        println!("round  central_wall_s  client_wall_s  ideal_s  ratio");
        for round in 1..=ROUNDS {
            let name = format!("r{round}");
            let req = json!({"name": name, "set": set(round), "group": "sim",
                "applyType": "parallel", "maxParallel": PARALLEL});
            call(&c, Method::POST, "/v1/strategies", Some(req)).await;
            let t0 = Instant::now();
            call(&c, Method::POST, &format!("/v1/strategies/{name}/apply"), None).await;
            let v = loop {
                let v = call(&c, Method::GET, &format!("/v1/strategies/{name}"), None).await;
                match v["state"].as_str() {
                    Some("complete") => break v,
                    Some("applying") => {}
                    other => panic!("strategy {name} ended {other:?}: {v}"),
                }
                assert!(t0.elapsed() < Duration::from_secs(300), "{name} never completed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let client = t0.elapsed().as_secs_f64();
            let wall = (v["finishedMs"].as_u64().unwrap() - v["startedMs"].as_u64().unwrap())
                as f64
                / 1000.0;
            // The steps in flight never exceeded the window (from their own times).
            let mut edges: Vec<(u64, i32)> = Vec::new();
            for s in v["steps"].as_array().unwrap() {
                assert_eq!(s["state"], "complete", "{s}");
                edges.push((s["startedMs"].as_u64().unwrap(), 1));
                edges.push((s["finishedMs"].as_u64().unwrap(), -1));
            }
            edges.sort_by_key(|e| (e.0, e.1));
            let (mut now, mut most) = (0i32, 0i32);
            for (_, d) in edges {
                now += d;
                most = most.max(now);
            }
            assert!(most as usize <= PARALLEL, "{most} steps in flight at once");
            let ratio = wall / ideal;
            println!("{round:>5}  {wall:>14.2}  {client:>13.2}  {ideal:>7.1}  {ratio:.3}  (most in flight: {most})");
            ratios.push(ratio);
        }
    });
    let _ = Command::new("kill").arg(sim.id().to_string()).status();
    let _ = sim.wait();
    ratios.sort_by(|a, b| a.total_cmp(b));
    let median = ratios[ratios.len() / 2];
    println!(
        "GOAL rollout_overhead {median:.3} 1.10 {}",
        if median <= 1.10 { "PASS" } else { "FAIL" }
    );
}

//! The fleet simulator against a live `roost central`: 200 simulated hosts in 20
//! subclouds, each enrolled with its own join token and key over the real link (mutual
//! TLS, heartbeats, desired state, reports, alarms). Every host enrolls and comes in
//! sync; a set whose apply fails on some hosts gives exactly one `workload.failed`
//! alarm per failing host, and central's counts agree with its host list; a strategy
//! rolls a new version to all 20 subclouds; and once the simulator is gone, central's
//! link sessions, tasks and open files are back where they were.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hyper::Method;
use roost_host::client::Client;
use roost_tests::central::{call, sim_command, wait_sim_linked, LoopbackCentral};
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const HOSTS: usize = 200;
const SUBCLOUDS: usize = 20;

struct Sim(Child);
impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn set(v: u64) -> Value {
    json!({"apiVersion": "roost.dev/v1", "kind": "WorkloadSet", "metadata": {"name": "app"},
           "spec": {"workloads": [{"apiVersion": "roost.dev/v1", "kind": "Workload",
             "metadata": {"name": "app"}, "spec": {"driver": "mock", "mock": {"runSeconds": v}}}]}})
}

async fn wait_for<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let t = Instant::now();
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if t.elapsed() > Duration::from_secs(120) => {
                panic!("{what}: not within 120 s; last seen: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `name value` of a gauge line in /metrics.
async fn gauge(c: &Client, name: &str) -> u64 {
    let r = c.request(Method::GET, "/metrics", None).await.unwrap();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn two_hundred_simulated_hosts_enroll_sync_alarm_and_leave_nothing_behind() {
    let central = LoopbackCentral::start();
    let pid = central.pid();
    let c = central.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tasks0, files0) = rt.block_on(async {
        // Settle: one request made, the listener and its tasks up.
        call(&c, Method::GET, "/v1/status", None).await;
        (gauge(&c, "central_tasks_alive").await, open_files(pid))
    });
    let data = central.data();
    let log = central.dir.path().join("sim.log");
    let sim = Sim(sim_command(&central.url, &data, HOSTS, SUBCLOUDS)
        .args([
            "--heartbeat",
            "1",
            "--apply-seconds",
            "0.2",
            "--fail-rate",
            "0.2",
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap());
    println!("{} hosts linked in {:?}", HOSTS, wait_sim_linked(&log));
    rt.block_on(async {
        let s = call(&c, Method::GET, "/v1/status", None).await;
        assert_eq!(s["hosts"], HOSTS as u64, "{s}");
        assert_eq!(s["hostsOnline"], HOSTS as u64, "{s}");
        assert_eq!(s["subclouds"], SUBCLOUDS as u64, "{s}");
        assert_eq!(gauge(&c, "central_link_sessions_open").await, HOSTS as u64);

        // A set to the whole fleet: every host reports it, in sync.
        call(
            &c,
            Method::POST,
            "/v1/deploy",
            Some(json!({"set": set(1), "target": "group/sim"})),
        )
        .await;
        wait_for("every subcloud in sync", || async {
            let s = call(&c, Method::GET, "/v1/status", None).await;
            (s["subcloudsInSync"] == SUBCLOUDS as u64)
                .then_some(())
                .ok_or(s.to_string())
        })
        .await;
        // About a fifth of the applies fail: one workload.failed alarm per host whose
        // workload central shows failed, and the counts agree.
        wait_for("alarms match the failed workloads", || async {
            let hosts = call(&c, Method::GET, "/v1/hosts", None).await;
            let mut failed: Vec<String> = Vec::new();
            for h in hosts.as_array().unwrap() {
                let name = h["name"].as_str().unwrap();
                let v = call(&c, Method::GET, &format!("/v1/hosts/{name}"), None).await;
                if v["workloads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|w| w["phase"] == "failed")
                {
                    failed.push(name.to_string());
                }
            }
            let alarms = call(&c, Method::GET, "/v1/alarms?active=true", None).await;
            let mut alarmed: Vec<String> = alarms
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["code"] == "workload.failed")
                .map(|a| a["host"].as_str().unwrap().to_string())
                .collect();
            alarmed.sort();
            failed.sort();
            let s = call(&c, Method::GET, "/v1/status", None).await;
            if !failed.is_empty()
                && alarmed == failed
                && s["alarms"]["major"] == failed.len() as u64
            {
                println!(
                    "{} of {HOSTS} applies failed; {} major alarms",
                    failed.len(),
                    alarmed.len()
                );
                Ok(())
            } else {
                Err(format!(
                    "failed {failed:?}\nalarmed {alarmed:?}\nstatus {s}"
                ))
            }
        })
        .await;

        // A strategy rolls a new version over all 20 subclouds (failures tolerated:
        // the simulator fails a fifth of its applies).
        let req = json!({"name": "r", "set": set(2), "group": "sim", "maxParallel": 5,
                         "maxFailures": "100%", "rollback": false});
        call(&c, Method::POST, "/v1/strategies", Some(req)).await;
        call(&c, Method::POST, "/v1/strategies/r/apply", None).await;
        wait_for("the strategy ends", || async {
            let v = call(&c, Method::GET, "/v1/strategies/r", None).await;
            (v["state"] == "complete")
                .then_some(())
                .ok_or(v["progress"].to_string())
        })
        .await;
        let v = call(&c, Method::GET, "/v1/strategies/r", None).await;
        let p = &v["progress"];
        println!("strategy over {SUBCLOUDS} subclouds: {p}");
        assert_eq!(
            p["complete"].as_u64().unwrap() + p["failed"].as_u64().unwrap(),
            SUBCLOUDS as u64,
            "{v}"
        );

        // A fleet sync audit: every host asked, every host answers, all in sync (a
        // failed workload still runs the spec central wants).
        let a = call(&c, Method::POST, "/v1/audit?wait=60s", None).await;
        println!("audit: {a}");
        assert_eq!(a["hosts"], HOSTS as u64, "{a}");
        assert_eq!(a["asked"], HOSTS as u64, "{a}");
        assert_eq!(a["answered"], HOSTS as u64, "{a}");
        assert_eq!(a["inSync"], HOSTS as u64, "{a}");
        // Every heartbeat's lag was counted (read after the count: as many or more).
        let beats = gauge(&c, "central_heartbeats_total").await;
        let lagged = gauge(&c, "central_heartbeat_lag_ms_count").await;
        assert!(
            beats > 0 && lagged >= beats,
            "{beats} heartbeats, {lagged} lags"
        );
    });

    // The simulator goes: every host offline, and central holds nothing of theirs.
    drop(sim);
    rt.block_on(async {
        wait_for("every host offline and no session open", || async {
            let s = call(&c, Method::GET, "/v1/status", None).await;
            let open = gauge(&c, "central_link_sessions_open").await;
            (s["hostsOffline"] == HOSTS as u64 && open == 0)
                .then_some(())
                .ok_or(format!("{open} sessions open; {s}"))
        })
        .await;
        // Nobody to ask: every host unknown.
        let a = call(&c, Method::POST, "/v1/audit?wait=1s", None).await;
        assert_eq!(
            (a["asked"].as_u64(), a["unknown"].as_u64()),
            (Some(0), Some(HOSTS as u64)),
            "{a}"
        );
        wait_for("tasks and open files back to where they were", || async {
            let (tasks, files) = (gauge(&c, "central_tasks_alive").await, open_files(pid));
            println!("tasks {tasks0} -> {tasks}, open files {files0} -> {files}");
            (tasks <= tasks0 + 2 && files <= files0 + 2)
                .then_some(())
                .ok_or(format!(
                    "tasks {tasks0} -> {tasks}, files {files0} -> {files}"
                ))
        })
        .await;
    });
}

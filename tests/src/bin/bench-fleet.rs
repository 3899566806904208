//! `make bench-fleet`: a release `roost central` (SQLite) and `roost sim` processes
//! holding 1,000, then 5,000, then 10,000 simulated hosts in 1,000 subclouds (the real
//! link: one certificate per host, mutual TLS, heartbeats every 5 s, desired state,
//! reports, alarms; every apply takes 1 s). At each size it measures:
//!
//! - steady state over 30 s: central's CPU (% of one core, from /proc) and RSS, and the
//!   heartbeat-to-status lag p99 (central's histogram, from each heartbeat's send time);
//! - a fleet sync audit (`POST /v1/audit`: every host reports afresh and is judged);
//! - a deploy of a new set generation to the whole fleet until every host reports it;
//! - a strategy rolling a set change to the 1,000 subclouds, max-parallel 100, against
//!   the ideal ceil(1000 / 100) x 1 s;
//! - 1,000 hosts' links dropped at once (their simulator SIGSTOPped: silent, as a cut
//!   cable): the time until central shows them offline, beyond the two heartbeat
//!   intervals that define offline; then SIGCONT: until they are online and in sync.
//!
//! Prints a table and the GOAL lines, and writes `target/bench-fleet.json`.
//! `ROOST_BENCH_FLEET_SIZES=100,300` runs other sizes (a smoke run: subclouds are then
//! at most the first size, and the GOAL lines judge the last size).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hyper::Method;
use roost_host::client::Client;
use roost_tests::central::{call, sim_command, LoopbackCentral};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MAX_SUBCLOUDS: usize = 1_000;
const SIZES: [usize; 3] = [1_000, 5_000, 10_000];
/// The hosts whose links are dropped (one simulator of their own).
const DROPPED: usize = 1_000;
const HEARTBEAT_S: f64 = 5.0;
const APPLY_S: f64 = 1.0;
const PARALLEL: usize = 100;
const STEADY: Duration = Duration::from_secs(30);
const LONG: Duration = Duration::from_secs(600);

struct Sim {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(central: &LoopbackCentral, host_prefix: &str, hosts: usize, subclouds: usize) -> Sim {
    let data = central.data();
    let log = central.dir.path().join(format!("sim-{host_prefix}.log"));
    let child = sim_command(&central.url, &data, hosts, subclouds)
        .args(["--prefix", "fleet", "--host-prefix", host_prefix])
        .args(["--apply-seconds", &APPLY_S.to_string()])
        .args(["--heartbeat", &HEARTBEAT_S.to_string()])
        .args(["--enroll-parallel", "64"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap();
    Sim { child, log }
}

fn wait_linked(sim: &mut Sim) -> f64 {
    let t = Instant::now();
    loop {
        if std::fs::read_to_string(&sim.log)
            .unwrap_or_default()
            .contains("linked")
        {
            return t.elapsed().as_secs_f64();
        }
        assert!(t.elapsed() < LONG, "the simulator never linked");
        if let Some(st) = sim.child.try_wait().unwrap() {
            panic!(
                "the simulator exited ({st}): {}",
                std::fs::read_to_string(sim.log.with_extension("err")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(sim: &Sim, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is shared.
    let r = unsafe { libc::kill(sim.child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({sig}) failed");
}

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

/// The heartbeat-lag histogram's cumulative buckets: (upper bound ms, count).
async fn lag_buckets(c: &Client) -> Vec<(f64, u64)> {
    let r = c.request(Method::GET, "/metrics", None).await.unwrap();
    String::from_utf8_lossy(&r.body)
        .lines()
        .filter_map(|l| l.strip_prefix("central_heartbeat_lag_ms_bucket{le=\""))
        .filter_map(|l| {
            let (le, n) = l.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, n.trim().parse().ok()?))
        })
        .collect()
}

/// The p99 between two scrapes: the upper bound of the bucket holding it.
fn p99(before: &[(f64, u64)], after: &[(f64, u64)]) -> (f64, u64) {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .zip(before)
        .map(|(a, b)| (a.0, a.1.saturating_sub(b.1)))
        .collect();
    let total = delta.last().map_or(0, |d| d.1);
    let want = (total as f64 * 0.99).ceil() as u64;
    let le = delta
        .iter()
        .find(|d| d.1 >= want)
        .map_or(f64::INFINITY, |d| d.0);
    (le, total)
}

async fn wait_for(c: &Client, what: &str, f: impl Fn(&Value) -> bool) -> f64 {
    let t = Instant::now();
    let mut last;
    loop {
        // A busy central may refuse a connection now and then: that is not an answer.
        match c.request(Method::GET, "/v1/status", None).await {
            Ok(r) if r.status.is_success() => {
                let s: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                if f(&s) {
                    return t.elapsed().as_secs_f64();
                }
                last = s.to_string();
            }
            Ok(r) => last = format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
            Err(e) => last = e.to_string(),
        }
        assert!(t.elapsed() < LONG, "{what}: not within {LONG:?}: {last}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The largest delay past two heartbeat intervals of the `host-offline` events after
/// `cursor` for hosts named `prefix-…` (their reason says `no heartbeat for X ms (two
/// H ms intervals)`, measured when central commits the verdict), how many there were,
/// and how many other hosts were also declared offline (starved on this machine).
async fn offline_delays(c: &Client, cursor: u64, prefix: &str) -> (f64, usize, usize) {
    let r = c
        .request(Method::GET, &format!("/v1/events?cursor={cursor}"), None)
        .await
        .unwrap();
    let mut worst: f64 = 0.0;
    let mut n = 0;
    let mut others = 0;
    for line in String::from_utf8_lossy(&r.body).lines() {
        let Ok(e) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if e["kind"] != "host-offline" {
            continue;
        }
        if !e["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("host/{prefix}-")))
        {
            others += 1;
            continue;
        }
        let msg = e["message"].as_str().unwrap_or("");
        let num = |after: &str| -> Option<f64> {
            msg.split(after).nth(1)?.split(' ').next()?.parse().ok()
        };
        if let (Some(silent), Some(hb)) = (num("no heartbeat for "), num("(two ")) {
            worst = worst.max((silent - 2.0 * hb) / 1000.0);
            n += 1;
        }
    }
    (worst, n, others)
}

fn set(generation: usize) -> Value {
    json!({
        "apiVersion": "roost.dev/v1", "kind": "WorkloadSet",
        "metadata": {"name": "fleet"},
        "spec": {"workloads": [{
            "apiVersion": "roost.dev/v1", "kind": "Workload",
            "metadata": {"name": "fleet-app"},
            "spec": {"driver": "mock", "mock": {"runSeconds": 100_000 + generation}}
        }]}
    })
}

fn all_in_sync(n: usize, subclouds: usize) -> impl Fn(&Value) -> bool {
    move |s| {
        s["hostsOnline"].as_u64() == Some(n as u64)
            && s["subcloudsInSync"].as_u64() == Some(subclouds as u64)
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Row {
    hosts: usize,
    link_s: f64,
    cpu_pct: f64,
    rss_mib: f64,
    heartbeat_p99_ms: f64,
    heartbeats: u64,
    audit_s: f64,
    audit_answered: u64,
    deploy_s: f64,
    rollout_s: f64,
    rollout_ideal_s: f64,
    offline_all_s: f64,
    offline_beyond_s: f64,
    /// Hosts not dropped but declared offline meanwhile (their simulator starved).
    other_offline: usize,
    back_in_sync_s: f64,
}

async fn steady(c: &Client, pid: u32, row: &mut Row) {
    // Let the joins settle before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = lag_buckets(c).await;
    let cpu0 = cpu_seconds(pid);
    let t = Instant::now();
    tokio::time::sleep(STEADY).await;
    let cpu1 = cpu_seconds(pid);
    let after = lag_buckets(c).await;
    row.cpu_pct = (cpu1 - cpu0) / t.elapsed().as_secs_f64() * 100.0;
    row.rss_mib = rss_mib(pid);
    (row.heartbeat_p99_ms, row.heartbeats) = p99(&before, &after);
}

fn main() {
    let sizes: Vec<usize> = match std::env::var("ROOST_BENCH_FLEET_SIZES") {
        Ok(v) => v
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .expect("ROOST_BENCH_FLEET_SIZES: comma-separated counts")
            })
            .collect(),
        Err(_) => SIZES.to_vec(),
    };
    assert!(
        !sizes.is_empty() && sizes.windows(2).all(|w| w[0] < w[1]),
        "ROOST_BENCH_FLEET_SIZES must grow"
    );
    assert!(
        sizes[0] <= DROPPED,
        "the first size holds only the dropped simulator's hosts"
    );
    let subclouds = MAX_SUBCLOUDS.min(sizes[0]);
    let central = LoopbackCentral::start();
    let pid = central.pid();
    let c = central.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "bench-fleet: central (SQLite) + simulated hosts in {subclouds} subclouds, heartbeat \
         {HEARTBEAT_S} s, apply {APPLY_S} s; sizes {sizes:?}"
    );
    let mut rows: Vec<Row> = Vec::new();
    let mut sims: Vec<Sim> = Vec::new();
    let mut generation = 0;
    for (i, &n) in sizes.iter().enumerate() {
        let mut row = Row {
            hosts: n,
            ..Row::default()
        };
        // The first simulator is the one whose links are dropped; the others add hosts.
        let (prefix, more) = if i == 0 {
            ("drop".to_string(), DROPPED.min(n))
        } else {
            (format!("add{i}"), n - sizes[i - 1])
        };
        let t = Instant::now();
        let mut sim = start_sim(&central, &prefix, more, subclouds);
        wait_linked(&mut sim);
        sims.push(sim);
        rt.block_on(async {
            wait_for(&c, "every host online", |s| {
                s["hostsOnline"].as_u64() == Some(n as u64)
            })
            .await;
            row.link_s = t.elapsed().as_secs_f64();
            println!(
                "{n}: {more} more hosts enrolled and linked in {:.1} s",
                row.link_s
            );
            if generation == 0 {
                generation += 1;
                call(
                    &c,
                    Method::POST,
                    "/v1/deploy",
                    Some(json!({"set": set(generation), "target": "group/sim"})),
                )
                .await;
            }
            wait_for(&c, "every host in sync", all_in_sync(n, subclouds)).await;

            steady(&c, pid, &mut row).await;
            println!(
                "{n}: steady {:.1}% CPU, {:.0} MiB, heartbeat p99 <= {} ms ({} beats)",
                row.cpu_pct, row.rss_mib, row.heartbeat_p99_ms, row.heartbeats
            );

            let a = call(&c, Method::POST, "/v1/audit?wait=120s", None).await;
            row.audit_s = a["seconds"].as_f64().unwrap();
            row.audit_answered = a["answered"].as_u64().unwrap();
            assert_eq!(a["inSync"].as_u64(), Some(n as u64), "audit: {a}");
            println!(
                "{n}: audit {:.3} s ({} answered)",
                row.audit_s, row.audit_answered
            );

            generation += 1;
            let t = Instant::now();
            call(
                &c,
                Method::POST,
                "/v1/deploy",
                Some(json!({"set": set(generation), "target": "group/sim"})),
            )
            .await;
            // In sync means every host reports the new generation's digest.
            wait_for(&c, "the deploy reaches every host", |s| {
                s["subcloudsOutOfSync"].as_u64() == Some(0)
                    && s["subcloudsInSync"].as_u64() == Some(subclouds as u64)
                    && s["hostsOnline"].as_u64() == Some(n as u64)
            })
            .await;
            row.deploy_s = t.elapsed().as_secs_f64();
            println!("{n}: deploy to every host {:.2} s", row.deploy_s);

            generation += 1;
            let name = format!("roll{n}");
            let req = json!({"name": name, "set": set(generation), "group": "sim",
                "applyType": "parallel", "maxParallel": PARALLEL});
            call(&c, Method::POST, "/v1/strategies", Some(req)).await;
            call(
                &c,
                Method::POST,
                &format!("/v1/strategies/{name}/apply"),
                None,
            )
            .await;
            let t = Instant::now();
            let v = loop {
                let v = call(&c, Method::GET, &format!("/v1/strategies/{name}"), None).await;
                match v["state"].as_str() {
                    Some("complete") => break v,
                    Some("applying") => {}
                    other => panic!("strategy {name} ended {other:?}: {}", v["progress"]),
                }
                assert!(t.elapsed() < LONG, "{name} never completed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            row.rollout_s = (v["finishedMs"].as_u64().unwrap() - v["startedMs"].as_u64().unwrap())
                as f64
                / 1000.0;
            row.rollout_ideal_s = (subclouds as f64 / PARALLEL as f64).ceil() * APPLY_S;
            println!(
                "{n}: strategy over {subclouds} subclouds {:.2} s (ideal {:.1} s)",
                row.rollout_s, row.rollout_ideal_s
            );
            wait_for(
                &c,
                "every host in sync after the strategy",
                all_in_sync(n, subclouds),
            )
            .await;
        });

        // Drop the first simulator's links at once: silent, as a cut cable.
        let dropped = DROPPED.min(n);
        let cursor = rt.block_on(async {
            call(&c, Method::GET, "/v1/status", None).await["lastEvent"]
                .as_u64()
                .unwrap_or(0)
        });
        signal(&sims[0], libc::SIGSTOP);
        let t = Instant::now();
        rt.block_on(async {
            row.offline_all_s = wait_for(&c, "the dropped hosts offline", |s| {
                s["hostsOffline"].as_u64() == Some(dropped as u64)
            })
            .await;
        });
        // Per host: from its last heartbeat to central's verdict, less the two
        // intervals that define offline (central's own figures, in its events).
        let (beyond, counted, others) = rt.block_on(offline_delays(&c, cursor, "drop"));
        assert_eq!(counted, dropped, "host-offline events of the dropped hosts");
        row.offline_beyond_s = beyond;
        row.other_offline = others;
        println!(
            "{n}: {dropped} links dropped: all offline after {:.2} s; worst {:.3} s beyond 2 heartbeats; {} other hosts offline meanwhile",
            t.elapsed().as_secs_f64(),
            row.offline_beyond_s,
            row.other_offline
        );
        signal(&sims[0], libc::SIGCONT);
        rt.block_on(async {
            row.back_in_sync_s =
                wait_for(&c, "the dropped hosts back", all_in_sync(n, subclouds)).await;
        });
        println!(
            "{n}: back online and in sync {:.2} s after they returned",
            row.back_in_sync_s
        );
        rows.push(row);
    }
    drop(sims);

    println!();
    println!(
        "{:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10}",
        "hosts",
        "cpu_%",
        "rss_MiB",
        "hb_p99",
        "audit_s",
        "deploy_s",
        "rollout_s",
        "offline+_s",
        "back_s",
        "link_s"
    );
    for r in &rows {
        println!(
            "{:>6} {:>7.1} {:>7.0} {:>8} {:>8.3} {:>8.2} {:>9.2} {:>10.2} {:>10.2} {:>10.1}",
            r.hosts,
            r.cpu_pct,
            r.rss_mib,
            format!("<={}", r.heartbeat_p99_ms),
            r.audit_s,
            r.deploy_s,
            r.rollout_s,
            r.offline_beyond_s,
            r.back_in_sync_s,
            r.link_s
        );
    }
    drop(central);
    let last_n = *sizes.last().unwrap_or(&0);
    let replicas = replicas_steady(last_n, subclouds, &rt);
    let report = json!({"subclouds": subclouds, "heartbeatS": HEARTBEAT_S, "applyS": APPLY_S,
        "maxParallel": PARALLEL, "sqlite": rows, "postgresTwoReplicas": replicas});
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-fleet.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("written {}", out.display());

    let last = rows.last().unwrap();
    let held = rows.iter().map(|r| r.hosts).max().unwrap_or(0);
    let goal = |name: &str, v: f64, limit: f64, ok: bool| {
        println!(
            "GOAL {name} {v} {limit} {}",
            if ok { "PASS" } else { "FAIL" }
        );
    };
    goal("fleet_hosts_held", held as f64, 10_000.0, held >= 10_000);
    goal(
        "fleet_central_cpu_pct",
        (last.cpu_pct * 10.0).round() / 10.0,
        50.0,
        last.cpu_pct <= 50.0,
    );
    goal(
        "fleet_central_rss_mib",
        last.rss_mib.round(),
        1024.0,
        last.rss_mib <= 1024.0,
    );
    goal(
        "fleet_audit_s",
        (last.audit_s * 1000.0).round() / 1000.0,
        2.0,
        last.audit_s <= 2.0,
    );
    goal(
        "fleet_offline_detect_s",
        (last.offline_beyond_s * 100.0).round() / 100.0,
        1.0,
        last.offline_beyond_s <= 1.0,
    );
    let ratio = last.rollout_s / last.rollout_ideal_s;
    goal(
        "fleet_rollout_overhead",
        (ratio * 1000.0).round() / 1000.0,
        1.10,
        ratio <= 1.10,
    );
}

/// The steady state of `n` hosts against two central replicas on one private
/// PostgreSQL (started here with `ci/postgres.sh`): half the hosts join through each
/// replica; the follower forwards its half to the leader.
fn replicas_steady(n: usize, subclouds: usize, rt: &tokio::runtime::Runtime) -> Value {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::Builder::new()
        .prefix("roost-bf")
        .tempdir_in("/tmp")
        .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let pg = dir.path().join("pg");
    let out = Command::new(repo.join("ci/postgres.sh"))
        .arg("start")
        .arg(&pg)
        .output()
        .unwrap();
    if !out.status.success() {
        println!(
            "SKIP replicas: needs PostgreSQL (ci/postgres.sh start failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Value::Null;
    }
    struct PgStop(std::path::PathBuf, std::path::PathBuf);
    impl Drop for PgStop {
        fn drop(&mut self) {
            let _ = Command::new(self.0.join("ci/postgres.sh"))
                .arg("stop")
                .arg(&self.1)
                .output();
        }
    }
    let _stop = PgStop(repo.clone(), pg.clone());
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let key = dir.path().join("replica.key");
    let key = key.to_str().unwrap();
    let args = ["--db", url.as_str(), "--key-file", key];
    let leader = LoopbackCentral::start_full(|_| {}, &args);
    let c = leader.client();
    rt.block_on(wait_for(&c, "the first replica leads", |_| true));
    let follower = LoopbackCentral::start_full(|_| {}, &args);
    rt.block_on(wait_for(
        &follower.client(),
        "the second replica forwards",
        |_| true,
    ));
    let half = n / 2;
    let mut a = start_sim(&leader, "ra", half, subclouds);
    let mut b = start_sim(&follower, "rb", n - half, subclouds);
    let t = Instant::now();
    wait_linked(&mut a);
    wait_linked(&mut b);
    let mut row = Row {
        hosts: n,
        ..Row::default()
    };
    rt.block_on(async {
        wait_for(&c, "every host online through two replicas", |s| {
            s["hostsOnline"].as_u64() == Some(n as u64)
        })
        .await;
        row.link_s = t.elapsed().as_secs_f64();
        let before = lag_buckets(&c).await;
        let (l0, f0) = (cpu_seconds(leader.pid()), cpu_seconds(follower.pid()));
        let t = Instant::now();
        tokio::time::sleep(STEADY).await;
        let secs = t.elapsed().as_secs_f64();
        let (l1, f1) = (cpu_seconds(leader.pid()), cpu_seconds(follower.pid()));
        let after = lag_buckets(&c).await;
        (row.heartbeat_p99_ms, row.heartbeats) = p99(&before, &after);
        row.cpu_pct = (l1 - l0) / secs * 100.0;
        row.rss_mib = rss_mib(leader.pid());
        let follower_cpu = (f1 - f0) / secs * 100.0;
        let follower_rss = rss_mib(follower.pid());
        println!(
            "{n} hosts, 2 replicas on PostgreSQL: linked in {:.1} s; leader {:.1}% CPU {:.0} MiB; \
             follower {follower_cpu:.1}% CPU {follower_rss:.0} MiB; heartbeat p99 <= {} ms ({} beats)",
            row.link_s, row.cpu_pct, row.rss_mib, row.heartbeat_p99_ms, row.heartbeats
        );
        json!({"hosts": n, "linkS": row.link_s, "leaderCpuPct": row.cpu_pct,
            "leaderRssMib": row.rss_mib, "followerCpuPct": follower_cpu,
            "followerRssMib": follower_rss, "heartbeatP99Ms": row.heartbeat_p99_ms,
            "heartbeats": row.heartbeats})
    })
}

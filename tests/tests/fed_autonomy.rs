//! Federation, autonomy and durability: hosts keep running exactly what they ran while
//! central is down (60 s, checked every second), a host rebooted while central is down
//! brings its desired workloads back from its own disk, and a central SIGKILLed right
//! after acknowledging a deploy — with an alarm active — comes back with the deployment
//! and the alarm, and the deploy completes. On SQLite and (with ROOST_TEST_PG_URL)
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::fed::{
    hold_for, mock_set, owned_of, set_of, wait_for, Backend, Fleet, Seen, HEARTBEAT, T,
};
use roost_tests::fed_test;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fed_test!(central_down: sqlite_central_down, postgres_central_down);
fed_test!(central_sigkill: sqlite_central_sigkill, postgres_central_sigkill);

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

type Snapshot = BTreeMap<String, BTreeMap<String, Seen>>;

/// Every host's central workloads: pid, instance, restarts, phase.
async fn snapshot(f: &Fleet, hosts: &[&str]) -> Snapshot {
    let mut s = BTreeMap::new();
    for h in hosts {
        s.insert(h.to_string(), f.host(h).owned().await.unwrap());
    }
    s
}

/// Each host still runs what `snap` recorded: same pids (alive, the same mocks), same
/// instances and restart counts, all running.
async fn unchanged(f: &Fleet, snap: &Snapshot) -> Result<(), String> {
    for (h, was) in snap {
        let host = f.host(h);
        let now = host.owned().await?;
        if &now != was {
            return Err(format!("{h}: was {was:?}\nnow {now:?}"));
        }
        for (name, s) in &now {
            if s.phase != "running" || !host.is_mock_of(s.pid, name) {
                return Err(format!(
                    "{h}: {name} is not running as pid {}: {s:?}",
                    s.pid
                ));
            }
        }
    }
    Ok(())
}

async fn central_down(b: Backend) {
    let mut f = Fleet::standard(b).await;
    let all = ["h1", "h2", "h3"];
    let web = names("web", 3);
    let db = names("db", 2);
    f.deploy(&mock_set("web", &web), "group/g1").await;
    f.deploy(&mock_set("db", &db), "subcloud/s3").await;
    for h in ["h1", "h2"] {
        f.wait_running(h, &set(&web), T).await;
    }
    f.wait_running("h3", &set(&db), T).await;
    f.wait_in_sync(&all, T).await;
    let snap = snapshot(&f, &all).await;
    unchanged(&f, &snap).await.unwrap();
    println!("before central stops: {snap:?}");

    // 6. Central away for 60 s: nothing on any host restarts or changes. The 60 s are
    // the scenario; the hosts are checked every second throughout.
    let st = f.central.stop().await;
    assert!(st.success(), "central exited {st} on SIGTERM");
    let t = Instant::now();
    let mut checks = 0;
    while t.elapsed() < Duration::from_secs(60) {
        if let Err(e) = unchanged(&f, &snap).await {
            panic!("{:?} into central's absence: {e}", t.elapsed());
        }
        for h in &mut f.hosts {
            assert!(h.running(), "{} exited while central was down", h.name);
        }
        checks += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("hosts checked {checks} times in 60 s without central: nothing changed");
    for h in &f.hosts {
        assert!(
            h.log().contains("central link down"),
            "{} never noticed central left",
            h.name
        );
    }
    f.central.start().await;
    let took = f.wait_in_sync(&all, Duration::from_secs(10)).await;
    f.record("central back after 60 s -> every host in sync", took);
    unchanged(&f, &snap).await.unwrap();

    // 7. A host rebooted while central is down brings its workloads back by itself.
    f.central.stop().await;
    let h1 = f.host_mut("h1");
    h1.kill_all().await;
    assert!(h1.workload_pids().is_empty());
    let t = Instant::now();
    h1.start_ok(None).await;
    let old = &snap["h1"];
    let h1 = f.host("h1");
    let back = wait_for(
        T,
        "h1's workloads running again after its reboot (roost ps)",
        || async {
            let o = owned_of(&h1.ps_json().await?);
            let have: BTreeSet<String> = o.keys().cloned().collect();
            let fresh = o.iter().all(|(n, s)| {
                s.phase == "running"
                    && old.get(n).is_some_and(|was| was.pid != s.pid)
                    && h1.is_mock_of(s.pid, n)
            });
            if have == set(&web) && fresh {
                Ok(o)
            } else {
                Err(format!("{o:?}"))
            }
        },
    )
    .await;
    f.record(
        "h1 rebooted without central -> its 3 workloads running",
        t.elapsed(),
    );
    println!("h1 after its reboot: {back:?}");
    let others: Snapshot = snap
        .iter()
        .filter(|(h, _)| *h != "h1")
        .map(|(h, s)| (h.clone(), s.clone()))
        .collect();
    unchanged(&f, &others).await.unwrap();
    f.central.start().await;
    let took = f.wait_in_sync(&all, Duration::from_secs(10)).await;
    f.record("central back after h1's reboot -> every host in sync", took);
    unchanged(&f, &others).await.unwrap();
    let h1v = f.host_view("h1").await.unwrap();
    assert_eq!(h1v["workloads"].as_array().map(Vec::len), Some(3), "{h1v}");
}

async fn central_sigkill(b: Backend) {
    let mut f = Fleet::standard(b).await;
    // An alarm first: a central workload on h3 that exits 1 and is never restarted.
    let bad = json!({
        "apiVersion": "roost.dev/v1",
        "kind": "Workload",
        "metadata": {"name": "bad"},
        "spec": {"driver": "mock", "mock": {"runSeconds": 0, "exitCode": 1}, "restartPolicy": "never"}
    });
    f.deploy(&set_of("flaky", vec![bad]), "host/h3").await;
    let alarm = wait_for(
        T,
        "a major workload.failed alarm for h3's `bad`",
        || async {
            let out = f
                .central
                .cli(&[
                    "alarm",
                    "ls",
                    "--severity",
                    "major",
                    "--active",
                    "-o",
                    "json",
                ])
                .await;
            let v: Value = serde_json::from_str(&out.stdout).map_err(|e| format!("{e}: {out}"))?;
            v.as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|a| {
                            a["code"] == "workload.failed" && a["entity"] == "host/h3/workload/bad"
                        })
                        .cloned()
                })
                .ok_or_else(|| v.to_string())
        },
    )
    .await;
    let id = alarm["id"].as_str().unwrap().to_string();
    let s3 = f
        .central
        .cli_json(&["alarm", "ls", "--subcloud", "s3"])
        .await;
    assert!(
        s3.as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str()),
        "{s3}"
    );
    println!("alarm before the kill: {alarm}");

    // A set of 20 to g1, whose hosts' uplinks are cut first, so central's push cannot
    // reach them: central is SIGKILLed as soon as it acknowledged the deploy, and the
    // only place the deploy can come back from is central's store.
    let g1 = [f.index("h1"), f.index("h2")];
    let offsets: Vec<usize> = ["h1", "h2"].iter().map(|h| f.host(h).log().len()).collect();
    for i in g1 {
        f.net.link_down(i);
    }
    let big = names("big", 20);
    f.deploy(&mock_set("big", &big), "group/g1").await;
    f.central.kill9();
    // The hosts give up on the dead link (two heartbeats of silence) before the links
    // return, so nothing the old central had queued reaches them.
    for (h, off) in ["h1", "h2"].iter().zip(offsets) {
        let host = f.host(h);
        wait_for(T, &format!("{h} notices its link is gone"), || async {
            let l = host.log()[off..].to_string();
            if l.contains("central link down") {
                Ok(())
            } else {
                Err(l)
            }
        })
        .await;
        let o = host.owned().await.unwrap();
        assert!(o.is_empty(), "{h} got the set through its cut link: {o:?}");
    }
    let t = Instant::now();
    f.central.start().await;
    f.record("central restart after SIGKILL (to ready)", t.elapsed());
    let deps = f.central.get("/v1/deployments").await;
    let d = deps
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["set"] == "big" && d["target"] == "group/g1")
        .cloned()
        .unwrap_or_else(|| panic!("the acknowledged deploy is gone after SIGKILL: {deps}"));
    assert_eq!(d["workloads"].as_array().map(Vec::len), Some(20), "{d}");
    assert!(
        deps.as_array()
            .unwrap()
            .iter()
            .any(|d| d["set"] == "flaky" && d["target"] == "host/h3"),
        "{deps}"
    );
    let s1 = f.central.cli_json(&["subcloud", "show", "s1"]).await;
    println!("s1 right after the restart: sync {}", s1["sync"]);
    let active = f.central.get("/v1/alarms?active=true").await;
    assert!(
        active
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str()),
        "the alarm {id} is not active after the restart: {active}"
    );

    // The links return; the deploy completes: all 20 on h1 and h2, nothing on h3.
    for i in g1 {
        f.net.link_up(i);
    }
    let t = Instant::now();
    for h in ["h1", "h2"] {
        f.wait_running(h, &set(&big), T).await;
    }
    let took = f.wait_in_sync(&["h1", "h2", "h3"], T).await;
    f.record(
        "links up after central's SIGKILL -> the 20 running on h1 and h2",
        t.elapsed(),
    );
    println!("in sync {took:?} after the 20 ran");
    let h3 = f.host("h3").owned().await.unwrap();
    assert_eq!(h3.keys().cloned().collect::<Vec<_>>(), ["bad"], "{h3:?}");
    assert_eq!(h3["bad"].phase, "failed", "{h3:?}");
    let s1 = f.central.cli_json(&["subcloud", "show", "s1"]).await;
    assert_eq!(s1["sync"], "in-sync", "{s1}");
    // h3 reconnected and re-sent its alarms: the same alarm stays, not cleared.
    let id = id.as_str();
    hold_for(
        3 * HEARTBEAT,
        "the workload.failed alarm stays active (same id)",
        || async {
            let active = f.central.get("/v1/alarms?active=true").await;
            if active.as_array().unwrap().iter().any(|a| a["id"] == id) {
                Ok(())
            } else {
                Err(active.to_string())
            }
        },
    )
    .await;
}

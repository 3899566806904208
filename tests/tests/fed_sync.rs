//! Federation, desired state: a set deployed to a group runs on exactly that group's
//! hosts and is removed by undeploy; drift (a central workload removed on a host) is
//! seen and put back by the reconcile loop, and left alone while the subcloud is
//! unmanaged; a host whose uplink is cut goes offline with a critical alarm within two
//! heartbeats and comes back in sync. One fleet of 3 hosts, each in its own network
//! namespace. On SQLite and (with ROOST_TEST_PG_URL) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::fed::{
    hold_for, mock_set, now_ms, owned_of, wait_for, Backend, Fleet, HEARTBEAT, T,
};
use roost_tests::fed_test;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fed_test!(deploy_drift_offline: sqlite_deploy_drift_offline, postgres_deploy_drift_offline);

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn set_of(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

/// Events after `cursor` from the API (NDJSON).
async fn events_after(f: &Fleet, cursor: u64) -> Result<Vec<Value>, String> {
    let (s, v) = f
        .central
        .api("GET", &format!("/v1/events?cursor={cursor}"), None)
        .await?;
    if s != 200 {
        return Err(format!("GET /v1/events: {s} {v}"));
    }
    // The body is NDJSON (not one JSON value): the API helper hands it back as text.
    let text = match &v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

async fn last_event(f: &Fleet) -> u64 {
    f.central.get("/v1/status").await["lastEvent"]
        .as_u64()
        .unwrap()
}

async fn deploy_drift_offline(b: Backend) {
    let f = Fleet::standard(b).await;
    let web = names("web", 3);
    let db = names("db", 1);

    // 3. A set to group g1 runs on h1 and h2 (g1's hosts), not on h3.
    let t = Instant::now();
    f.deploy(&mock_set("web", &web), "group/g1").await;
    f.deploy(&mock_set("db", &db), "subcloud/s3").await;
    for h in ["h1", "h2"] {
        f.wait_running(h, &set_of(&web), T).await;
    }
    f.wait_running("h3", &set_of(&db), T).await;
    f.record(
        "deploy web to group/g1 -> running on h1 and h2",
        t.elapsed(),
    );
    f.wait_in_sync(&["h1", "h2", "h3"], T).await;
    for h in ["h1", "h2", "h3"] {
        let ps = f.host(h).ps_json().await.unwrap();
        let have: BTreeSet<String> = owned_of(&ps).keys().cloned().collect();
        let want = if h == "h3" { set_of(&db) } else { set_of(&web) };
        assert_eq!(have, want, "{h}: central's workloads in `roost ps -o json`");
    }
    let s1 = f.central.cli_json(&["subcloud", "show", "s1"]).await;
    assert_eq!(s1["sync"], "in-sync", "{s1}");
    let h1 = f.central.cli_json(&["host", "show", "h1"]).await;
    let ws = h1["workloads"].as_array().unwrap();
    assert_eq!(ws.len(), 3, "{h1}");
    for w in ws {
        assert_eq!(w["set"], "web", "{w}");
        assert_eq!(w["phase"], "running", "{w}");
        assert!(!w["specDigest"].as_str().unwrap().is_empty(), "{w}");
    }
    let deps = f.central.get("/v1/deployments").await;
    let got: BTreeSet<(String, String)> = deps
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["set"].as_str().unwrap().into(),
                d["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        BTreeSet::from([
            ("db".to_string(), "subcloud/s3".to_string()),
            ("web".to_string(), "group/g1".to_string())
        ])
    );

    // 4. Drift on a managed host: central sees it and puts it back.
    let cursor = last_event(&f).await;
    let before = f.host("h1").owned().await.unwrap()["web-1"].clone();
    let rm = f.host("h1").cli(&["rm", "web-1"]).await;
    assert!(rm.ok(), "roost rm web-1 on h1: {rm}");
    let t = Instant::now();
    // Central's record of the drift is its sync-changed event: the out-of-sync state
    // itself lasts only until the next reconcile tick (up to 1 s, maybe a few ms), so
    // polling `host show` for it could miss it; the event log cannot.
    let ev = wait_for(
        T,
        "central records h1 out of sync, missing web-1",
        || async {
            let evs = events_after(&f, cursor).await?;
            evs.iter()
                .find(|e| {
                    e["kind"] == "sync-changed"
                        && e["subject"] == "host/h1"
                        && e["message"].as_str().is_some_and(|m| {
                            m.contains("out-of-sync") && m.contains("missing: web-1")
                        })
                })
                .cloned()
                .ok_or_else(|| format!("{evs:?}"))
        },
    )
    .await;
    println!("drift seen: {ev}");
    wait_for(T, "web-1 put back on h1", || async {
        let o = f.host("h1").owned().await?;
        match o.get("web-1") {
            Some(s) if s.phase == "running" && s.pid != before.pid => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    f.wait_in_sync(&["h1"], T).await;
    f.record(
        "drift on h1 (roost rm) -> put back and in sync (reconcile 1s)",
        t.elapsed(),
    );

    // Unmanaged: central shows the drift and leaves it; managing again puts it back.
    let s2 = f.central.cli_json(&["subcloud", "unmanage", "s2"]).await;
    assert_eq!(s2["management"], "unmanaged", "{s2}");
    let rm = f.host("h2").cli(&["rm", "web-2"]).await;
    assert!(rm.ok(), "roost rm web-2 on h2: {rm}");
    wait_for(T, "central shows h2 out of sync, missing web-2", || async {
        let v = f.host_view("h2").await?;
        if v["sync"]["state"] == "out-of-sync"
            && v["sync"]["missing"] == serde_json::json!(["web-2"])
        {
            Ok(())
        } else {
            Err(v["sync"].to_string())
        }
    })
    .await;
    // Two and a half reconcile periods: nothing is pushed to an unmanaged subcloud.
    hold_for(
        Duration::from_millis(2500),
        "h2's drift left alone while unmanaged",
        || async {
            let v = f.host_view("h2").await?;
            let o = f.host("h2").owned().await?;
            if v["sync"]["missing"] == serde_json::json!(["web-2"]) && !o.contains_key("web-2") {
                Ok(())
            } else {
                Err(format!("{} / {:?}", v["sync"], o.keys()))
            }
        },
    )
    .await;
    let sync = f.central.cli(&["subcloud", "sync", "s2"]).await;
    assert!(
        !sync.ok() && sync.stderr.contains("unmanaged"),
        "sync of an unmanaged subcloud: {sync}"
    );
    let t = Instant::now();
    let s2 = f.central.cli_json(&["subcloud", "manage", "s2"]).await;
    assert_eq!(s2["management"], "managed", "{s2}");
    f.wait_running("h2", &set_of(&web), T).await;
    f.wait_in_sync(&["h2"], T).await;
    f.record(
        "subcloud manage s2 -> drift put back and in sync",
        t.elapsed(),
    );
    let sync = f.central.cli(&["subcloud", "sync", "s2"]).await;
    assert!(sync.ok(), "subcloud sync s2: {sync}");

    // Undeploy removes the set from g1's hosts; h3 keeps its own.
    let t = Instant::now();
    f.central
        .cli_ok(&["undeploy", "web", "--target", "group/g1"])
        .await;
    for h in ["h1", "h2"] {
        f.wait_running(h, &BTreeSet::new(), T).await;
    }
    f.record("undeploy web -> gone from h1 and h2", t.elapsed());
    f.wait_in_sync(&["h1", "h2", "h3"], T).await;
    f.wait_running("h3", &set_of(&db), T).await;

    // 5. h3's uplink cut: offline within two heartbeats, with a critical alarm.
    let i3 = f.index("h3");
    let db_before = f.host("h3").owned().await.unwrap();
    f.net.link_down(i3);
    let t = Instant::now();
    let down_ms = now_ms();
    wait_for(
        Duration::from_secs(10),
        "central marks h3 offline",
        || async {
            let v = f.host_view("h3").await?;
            if v["availability"] == "offline" {
                Ok(())
            } else {
                Err(v["availability"].to_string())
            }
        },
    )
    .await;
    let took = t.elapsed();
    f.record("h3 veth down -> offline at central", took);
    let limit = 2 * HEARTBEAT + Duration::from_millis(300);
    assert!(
        took <= limit,
        "h3 went offline {took:?} after its link went down (limit {limit:?})"
    );
    // Central marks the host offline in memory, then commits the alarm: the alarm may
    // be listed a few ms after `offline` shows (seen with PostgreSQL commits).
    let alarm = wait_for(
        Duration::from_secs(2),
        "an active host.offline alarm for h3",
        || async {
            let alarms = f.central.get("/v1/alarms?active=true").await;
            alarms
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["code"] == "host.offline" && a["entity"] == "host/h3")
                .cloned()
                .ok_or_else(|| alarms.to_string())
        },
    )
    .await;
    let raised = alarm["raisedMs"].as_u64().unwrap();
    println!(
        "host.offline raised {} ms after the link went down; listed {:?} after",
        raised.saturating_sub(down_ms),
        t.elapsed()
    );
    assert!(
        raised <= down_ms + limit.as_millis() as u64,
        "the alarm was raised {} ms after the link went down: {alarm}",
        raised.saturating_sub(down_ms)
    );
    assert_eq!(alarm["severity"], "critical", "{alarm}");
    assert_eq!(alarm["subcloud"], "s3", "{alarm}");
    assert!(alarm.get("clearedMs").is_none(), "{alarm}");
    let id = alarm["id"].as_str().unwrap().to_string();
    let crit = f
        .central
        .cli_json(&["alarm", "ls", "--active", "--severity", "critical"])
        .await;
    assert!(
        crit.as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str()),
        "{crit}"
    );
    let s1_alarms = f
        .central
        .cli_json(&["alarm", "ls", "--subcloud", "s1"])
        .await;
    assert!(
        !s1_alarms
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str()),
        "{s1_alarms}"
    );
    // Cut off, h3 runs on as it was.
    assert_eq!(f.host("h3").owned().await.unwrap(), db_before);

    f.net.link_up(i3);
    let t = Instant::now();
    let id = id.as_str();
    wait_for(T, "h3's host.offline alarm cleared", || async {
        let all = f.central.get("/v1/alarms").await;
        let a = all
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .cloned()
            .ok_or("the alarm is gone from the list")?;
        if a["clearedMs"].as_u64().is_some() {
            Ok(())
        } else {
            Err(a.to_string())
        }
    })
    .await;
    f.wait_in_sync(&["h3"], T).await;
    f.record(
        "h3 veth up -> alarm cleared, online and in sync",
        t.elapsed(),
    );
    let active = f.central.cli_json(&["alarm", "ls", "--active"]).await;
    assert!(
        !active.as_array().unwrap().iter().any(|a| a["id"] == id),
        "{active}"
    );
    assert_eq!(
        f.host("h3").owned().await.unwrap(),
        db_before,
        "h3's workloads restarted"
    );
}

//! Orchestration strategies end to end: a real central and real hosts, each host in its
//! own network namespace and subcloud (groups g1 = s1, s2 and g2 = s3, s4). Serial and
//! parallel (the window measured from the steps' own times), two strategies at once
//! on disjoint groups and an overlapping one refused, canary then approve, abort, stop
//! on failure and max-failures with rollback, offline subclouds under each policy, and
//! a central SIGKILLed mid-rollout that resumes without applying any step twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::fed::{hold_for, owned_of, set_of, wait_for, Backend, Fleet, Seen, T};
use roost_tests::fed_test;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

fed_test!(rolls_sets: sqlite_strategies_roll_sets, postgres_strategies_roll_sets);
fed_test!(
    fails_and_rolls_back: sqlite_strategies_fail_roll_back_and_handle_offline,
    postgres_strategies_fail_roll_back_and_handle_offline
);
fed_test!(
    resumes_after_sigkill: sqlite_strategy_resumes_after_central_sigkill,
    postgres_strategy_resumes_after_central_sigkill
);

/// The set `app` at version `v`: one mock workload `app` (a different `runSeconds`
/// per version, so every version is a real change on the host).
fn app(v: u64) -> Value {
    set_of(
        "app",
        vec![json!({
            "apiVersion": "roost.dev/v1", "kind": "Workload",
            "metadata": {"name": "app"},
            "spec": {"driver": "mock", "mock": {"runSeconds": 100_000 + v},
                     "restartPolicy": "always"}
        })],
    )
}

/// A version of `app` whose start always fails (the host backs it off).
fn broken() -> Value {
    set_of(
        "app",
        vec![json!({
            "apiVersion": "roost.dev/v1", "kind": "Workload",
            "metadata": {"name": "app"},
            "spec": {"driver": "mock", "mock": {"failStart": true},
                     "restartPolicy": "always"}
        })],
    )
}

/// Four hosts h1..h4 in s1..s4; g1 = s1, s2; g2 = s3, s4; every subcloud labelled
/// `tier=edge`; `app` v1 deployed to both groups and running everywhere.
async fn fleet(b: Backend) -> Fleet {
    let mut f = Fleet::new(b, 4).await;
    for g in ["g1", "g2"] {
        f.central.cli_ok(&["group", "add", g]).await;
    }
    for (i, (s, g)) in [("s1", "g1"), ("s2", "g1"), ("s3", "g2"), ("s4", "g2")]
        .iter()
        .enumerate()
    {
        f.central
            .cli_ok(&["subcloud", "add", s, "--group", g])
            .await;
        f.central
            .cli_ok(&["subcloud", "label", s, "tier=edge", &format!("n={}", i + 1)])
            .await;
        f.enroll(i, s).await;
    }
    f.wait_online(&["h1", "h2", "h3", "h4"]).await;
    f.deploy(&app(1), "group/g1").await;
    f.deploy(&app(1), "group/g2").await;
    f.wait_in_sync(&["h1", "h2", "h3", "h4"], T).await;
    f
}

/// `roost central strategy create NAME -f SET ARGS… -o json`.
async fn create(f: &Fleet, name: &str, set: &Value, args: &[&str]) -> Value {
    let file = f.set_file(name, set);
    let a = [&["strategy", "create", name, "-f", file.as_str()], args].concat();
    f.central.cli_json(&a).await
}

async fn strategy(f: &Fleet, name: &str) -> Result<Value, String> {
    f.central.try_get(&format!("/v1/strategies/{name}")).await
}

/// Wait until strategy `name` is in `state`; its view.
async fn wait_state(f: &Fleet, name: &str, state: &str, timeout: Duration) -> Value {
    wait_for(
        timeout,
        &format!("strategy {name} {state}"),
        move || async move {
            let v = strategy(f, name).await?;
            if v["state"] == state {
                Ok(v)
            } else {
                Err(v.to_string())
            }
        },
    )
    .await
}

/// Steps by subcloud: (state, details).
fn steps(v: &Value) -> BTreeMap<String, (String, String)> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["subcloud"].as_str().unwrap().to_string(),
                (
                    s["state"].as_str().unwrap().to_string(),
                    s["details"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

fn state_of(v: &Value, sc: &str) -> String {
    steps(v)[sc].0.clone()
}

/// The most steps in flight at once, from the steps' own start and finish times.
fn most_in_flight(v: &Value) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::new();
    for s in v["steps"].as_array().unwrap() {
        if let (Some(a), Some(b)) = (s["startedMs"].as_u64(), s["finishedMs"].as_u64()) {
            edges.push((a, 1));
            edges.push((b, -1));
        }
    }
    edges.sort_by_key(|e| (e.0, e.1));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// What each host runs of central's: host → workload `app`'s state.
async fn apps(f: &Fleet) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    for h in &f.hosts {
        let owned = owned_of(&h.workloads().await.unwrap());
        if let Some(s) = owned.get("app") {
            out.insert(h.name.clone(), s.clone());
        }
    }
    out
}

/// Wait until `host` runs `app` as set version `v` (by central's spec digest) and
/// in sync.
async fn wait_version(f: &Fleet, host: &str, v: u64) {
    let want = 100_000 + v;
    let h = f.host(host);
    wait_for(T, &format!("{host} runs app v{v}"), move || async move {
        let list = h.workloads().await?;
        let w = list
            .iter()
            .find(|w| w["workload"]["metadata"]["name"] == "app")
            .ok_or("no app")?;
        let secs = w["workload"]["spec"]["mock"]["runSeconds"].as_u64();
        if secs == Some(want) && w["status"]["phase"] == "running" {
            Ok(())
        } else {
            Err(format!(
                "runSeconds {secs:?}, phase {}",
                w["status"]["phase"]
            ))
        }
    })
    .await;
}

async fn rolls_sets(b: Backend) {
    let f = fleet(b).await;
    let before = apps(&f).await;

    // Serial over g1: s2 starts only after s1 has finished.
    let v = create(
        &f,
        "serial",
        &app(2),
        &[
            "--group",
            "g1",
            "--serial",
            "--min-healthy",
            "1s",
            "--apply",
        ],
    )
    .await;
    assert_eq!(v["progress"]["total"], 2);
    let v = wait_state(&f, "serial", "complete", T).await;
    let st = v["steps"].as_array().unwrap();
    assert!(
        st[1]["startedMs"].as_u64() >= st[0]["finishedMs"].as_u64(),
        "serial steps overlapped: {v}"
    );
    assert_eq!(most_in_flight(&v), 1);
    wait_version(&f, "h1", 2).await;
    wait_version(&f, "h2", 2).await;
    // Every subcloud of g1 done: the steps fold into g1's own deployment.
    let deps = f.central.get("/v1/deployments").await;
    let app_at: Vec<(String, u64)> = deps
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["set"] == "app")
        .map(|d| {
            (
                d["target"].as_str().unwrap().to_string(),
                d["generation"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        app_at,
        [("group/g1".to_string(), 2), ("group/g2".to_string(), 1)],
        "{deps}"
    );
    assert!(v["details"].as_str().unwrap().contains("folded"), "{v}");
    let now = apps(&f).await;
    for h in ["h3", "h4"] {
        assert_eq!(
            now[h], before[h],
            "{h} (g2) was touched by a strategy over g1"
        );
    }
    f.wait_in_sync(&["h1", "h2", "h3", "h4"], T).await;

    // Two strategies at once on disjoint groups; one overlapping them is refused,
    // naming the strategy and the subclouds they share.
    create(
        &f,
        "g1-v3",
        &app(3),
        &[
            "--group",
            "g1",
            "--serial",
            "--min-healthy",
            "2s",
            "--apply",
        ],
    )
    .await;
    create(
        &f,
        "g2-v2",
        &app(2),
        &[
            "--group",
            "g2",
            "--serial",
            "--min-healthy",
            "2s",
            "--apply",
        ],
    )
    .await;
    let file = f.set_file("overlap", &app(9));
    let out = f
        .central
        .cli(&[
            "strategy",
            "create",
            "overlap",
            "-f",
            &file,
            "--subclouds",
            "s2,s3",
        ])
        .await;
    assert!(!out.ok(), "an overlapping strategy was accepted: {out}");
    assert!(
        out.stderr.contains("g1-v3") && out.stderr.contains("s2"),
        "the refusal names the strategy and the shared subcloud: {out}"
    );
    // Both run at the same time (each one's first step in flight together).
    let (a, c) = (
        wait_state(&f, "g1-v3", "complete", T).await,
        wait_state(&f, "g2-v2", "complete", T).await,
    );
    let first = |v: &Value| {
        let s = &v["steps"][0];
        (
            s["startedMs"].as_u64().unwrap(),
            s["finishedMs"].as_u64().unwrap(),
        )
    };
    let ((a0, a1), (c0, c1)) = (first(&a), first(&c));
    assert!(
        a0 < c1 && c0 < a1,
        "the two strategies did not run at once: {a} {c}"
    );
    assert!(
        strategy(&f, "overlap").await.is_err(),
        "nothing was made for the refused one"
    );

    // Parallel over a selector, max-parallel 2: never more than 2 in flight, and the
    // window is used.
    create(
        &f,
        "par",
        &app(4),
        &[
            "--selector",
            "tier=edge",
            "--max-parallel",
            "2",
            "--min-healthy",
            "1s",
            "--apply",
        ],
    )
    .await;
    let v = wait_state(&f, "par", "complete", T).await;
    let most = most_in_flight(&v);
    println!("parallel: most steps in flight {most} (max-parallel 2)");
    assert_eq!(most, 2, "{v}");
    for h in ["h1", "h2", "h3", "h4"] {
        wait_version(&f, h, 4).await;
    }
    // A deploy to a group replaces the set's subcloud-level steps inside it.
    let file = f.set_file("app7", &app(7));
    let out = f
        .central
        .cli_json(&["deploy", "-f", &file, "--target", "group/g1"])
        .await;
    assert_eq!(
        out["replaced"],
        json!(["subcloud/s1", "subcloud/s2"]),
        "{out}"
    );
    wait_version(&f, "h1", 7).await;
    wait_version(&f, "h2", 7).await;
    wait_version(&f, "h3", 4).await;

    // Canary: the first subcloud, then a pause until approved.
    create(
        &f,
        "canary",
        &app(5),
        &[
            "--selector",
            "tier=edge",
            "--canary",
            "1",
            "--max-parallel",
            "4",
            "--apply",
        ],
    )
    .await;
    let v = wait_state(&f, "canary", "paused", T).await;
    assert_eq!(state_of(&v, "s1"), "complete");
    hold_for(
        Duration::from_secs(1),
        "nothing more starts while paused",
        || async {
            let v = strategy(&f, "canary").await?;
            let s = steps(&v);
            match ["s2", "s3", "s4"].iter().all(|x| s[*x].0 == "pending") && v["state"] == "paused"
            {
                true => Ok(()),
                false => Err(v.to_string()),
            }
        },
    )
    .await;
    f.central.cli_ok(&["strategy", "approve", "canary"]).await;
    wait_state(&f, "canary", "complete", T).await;

    // Abort: the step in flight finishes, the rest are not started.
    create(
        &f,
        "abort",
        &app(6),
        &[
            "--selector",
            "tier=edge",
            "--serial",
            "--min-healthy",
            "2s",
            "--apply",
        ],
    )
    .await;
    wait_state(&f, "abort", "applying", T).await;
    wait_for(T, "the first step in flight", || async {
        let v = strategy(&f, "abort").await?;
        (state_of(&v, "s1") == "applying")
            .then_some(())
            .ok_or(v.to_string())
    })
    .await;
    f.central.cli_ok(&["strategy", "abort", "abort"]).await;
    let v = wait_state(&f, "abort", "aborted", T).await;
    let s = steps(&v);
    assert_eq!(s["s1"].0, "complete", "the step in flight finishes: {v}");
    for x in ["s2", "s3", "s4"] {
        assert_eq!(s[x].0, "skipped", "{v}");
        assert!(s[x].1.contains("aborted"), "{v}");
    }
    wait_version(&f, "h1", 6).await;
    wait_version(&f, "h2", 5).await;

    // Every step change is an event; the CLI's watch ends with the table.
    let out = f
        .central
        .cli_ok(&["strategy", "show", "par", "--watch"])
        .await;
    assert!(out.contains("complete") && out.contains("s4"), "{out}");
    let ls = f.central.cli_json(&["strategy", "ls"]).await;
    assert_eq!(ls.as_array().unwrap().len(), 6, "{ls}");
    f.central.cli_ok(&["strategy", "rm", "par"]).await;
    assert!(strategy(&f, "par").await.is_err());
}

async fn fails_and_rolls_back(b: Backend) {
    let mut f = fleet(b).await;
    let before = apps(&f).await;

    // Stop on failure (the default): the first subcloud fails, is rolled back to the
    // set as it was (v1, group level), and nothing else starts.
    create(
        &f,
        "bad",
        &broken(),
        &["--selector", "tier=edge", "--serial", "--apply"],
    )
    .await;
    let v = wait_state(&f, "bad", "failed", T).await;
    let s = steps(&v);
    assert_eq!(s["s1"].0, "rolled-back", "{v}");
    assert!(s["s1"].1.contains("rolled back"), "{v}");
    for x in ["s2", "s3", "s4"] {
        assert_eq!(s[x].0, "pending", "{v}");
    }
    wait_version(&f, "h1", 1).await;
    let now = apps(&f).await;
    for h in ["h2", "h3", "h4"] {
        assert_eq!(
            now[h], before[h],
            "{h} was touched after the strategy stopped"
        );
    }

    // max-failures 2 (one at a time): the third failure stops it.
    create(
        &f,
        "budget",
        &broken(),
        &[
            "--selector",
            "tier=edge",
            "--max-parallel",
            "1",
            "--max-failures",
            "2",
            "--apply",
        ],
    )
    .await;
    let v = wait_state(&f, "budget", "failed", T).await;
    let s = steps(&v);
    let failed = s.values().filter(|x| x.0 == "rolled-back").count();
    assert_eq!(failed, 3, "{v}");
    assert_eq!(s["s4"].0, "pending", "{v}");
    for h in ["h1", "h2", "h3"] {
        wait_version(&f, h, 1).await;
    }
    f.wait_in_sync(&["h1", "h2", "h3", "h4"], T).await;

    // h4 (s4) offline: skip reports it; fail counts it; wait holds it (without
    // holding back s3) until it is back.
    let i = f.index("h4");
    f.net.link_down(i);
    wait_for(T, "h4 offline at central", || async {
        let v = f.host_view("h4").await?;
        (v["availability"] == "offline")
            .then_some(())
            .ok_or(v.to_string())
    })
    .await;
    create(
        &f,
        "skip",
        &app(2),
        &["--group", "g2", "--offline", "skip", "--apply"],
    )
    .await;
    let v = wait_state(&f, "skip", "complete", T).await;
    assert_eq!(state_of(&v, "s3"), "complete", "{v}");
    assert_eq!(
        steps(&v)["s4"],
        ("skipped".to_string(), "offline: h4".to_string()),
        "{v}"
    );

    create(
        &f,
        "fail",
        &app(3),
        &[
            "--group",
            "g2",
            "--offline",
            "fail",
            "--max-failures",
            "1",
            "--apply",
        ],
    )
    .await;
    let v = wait_state(&f, "fail", "complete", T).await;
    assert_eq!(
        steps(&v)["s4"],
        ("failed".to_string(), "offline: h4".to_string()),
        "{v}"
    );
    assert!(v["details"].as_str().unwrap().contains("1 failed"), "{v}");

    create(
        &f,
        "wait",
        &app(4),
        &["--group", "g2", "--offline", "wait:60s", "--apply"],
    )
    .await;
    wait_for(T, "s3 done while s4 waits", || async {
        let v = strategy(&f, "wait").await?;
        let s = steps(&v);
        (s["s3"].0 == "complete" && s["s4"].0 == "pending" && s["s4"].1.contains("waiting"))
            .then_some(())
            .ok_or(v.to_string())
    })
    .await;
    f.net.link_up(i);
    let v = wait_state(&f, "wait", "complete", T).await;
    assert_eq!(state_of(&v, "s4"), "complete", "{v}");
    wait_version(&f, "h4", 4).await;
    let _ = &mut f;
}

async fn resumes_after_sigkill(b: Backend) {
    let mut f = fleet(b).await;
    let before = apps(&f).await;
    // Serial over all four, 2 s of health each: central dies while s2 is in flight.
    create(
        &f,
        "resume",
        &app(2),
        &[
            "--selector",
            "tier=edge",
            "--serial",
            "--min-healthy",
            "2s",
            "--apply",
        ],
    )
    .await;
    wait_for(T, "s2 in flight", || async {
        let v = strategy(&f, "resume").await?;
        (state_of(&v, "s2") == "applying")
            .then_some(())
            .ok_or(v.to_string())
    })
    .await;
    f.central.kill9();
    f.central.start().await;
    let v = wait_state(&f, "resume", "complete", Duration::from_secs(60)).await;
    for h in ["h1", "h2", "h3", "h4"] {
        wait_version(&f, h, 2).await;
    }
    // No step applied twice: one `applying` event per subcloud, and every host's
    // workload was replaced once (instance +1) with no restart.
    let (_, ev) = f
        .central
        .api("GET", "/v1/events?cursor=0", None)
        .await
        .unwrap();
    let text = ev
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| ev.to_string());
    for sc in ["s1", "s2", "s3", "s4"] {
        let n = text
            .lines()
            .filter(|l| {
                l.contains("strategy/resume")
                    && l.contains(&format!("\"message\":\"{sc}: applying"))
            })
            .count();
        assert_eq!(n, 1, "subcloud {sc} applied {n} times:\n{text}");
    }
    let now = apps(&f).await;
    for h in ["h1", "h2", "h3", "h4"] {
        println!("{h}: {:?} then {:?}", before[h], now[h]);
        assert_eq!(now[h].phase, "running", "{h}: {:?}", now[h]);
        assert_ne!(
            now[h].pid, before[h].pid,
            "{h} was not updated: {:?}",
            now[h]
        );
        assert_eq!(
            now[h].instance,
            before[h].instance + 1,
            "{h}: {:?} then {:?}",
            before[h],
            now[h]
        );
    }
    assert_eq!(most_in_flight(&v), 1);
    let _ = &mut f;
}

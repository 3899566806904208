//! Software self-upgrade from central: a rollout in which every host ends on the new
//! binary, re-executed in place (same daemon pid) with every workload's pid, instance
//! and restart count unchanged; and broken binaries rolled back by the host itself —
//! one that exits at start (central up), one that never becomes healthy with central
//! SIGKILLed before the deadline. Each host runs a copy of roost of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::fed::{hold_for, mock_set, wait_for, Backend, Fleet, Seen, T};
use roost_tests::fed_test;
use serde_json::Value;
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fed_test!(rollout: sqlite_rollout, postgres_rollout);
fed_test!(broken_rolled_back: sqlite_broken_rolled_back, postgres_broken_rolled_back);
fed_test!(strategy_rolls_a_release: sqlite_strategy_rolls_a_release, postgres_strategy_rolls_a_release);

const BUILT_IN: &str = env!("CARGO_PKG_VERSION");

fn sha256_of(p: &Path) -> String {
    hex(&sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn with_suffix(p: &Path, s: &str) -> PathBuf {
    let mut o = p.as_os_str().to_owned();
    o.push(s);
    PathBuf::from(o)
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A fleet of `n` hosts in subcloud `s1` (group g1), each on its own copy of roost,
/// with `--upgrade-deadline deadline`, running mock set `web` (3 workloads).
async fn fleet(b: Backend, n: usize, deadline: &str) -> (Fleet, Vec<String>) {
    fleet_in(b, &vec!["s1"; n], deadline).await
}

/// As [`fleet`], host `hI` in subcloud `subclouds[I-1]` (all in group g1).
async fn fleet_in(b: Backend, subclouds: &[&str], deadline: &str) -> (Fleet, Vec<String>) {
    let mut f = Fleet::new(b, subclouds.len()).await;
    f.central.cli_ok(&["group", "add", "g1"]).await;
    let made: BTreeSet<&str> = subclouds.iter().copied().collect();
    for s in made {
        f.central
            .cli_ok(&["subcloud", "add", s, "--group", "g1"])
            .await;
    }
    let hosts: Vec<String> = f.hosts.iter().map(|h| h.name.clone()).collect();
    for (i, s) in subclouds.iter().enumerate() {
        f.hosts[i].own_copy();
        f.hosts[i].flags = vec!["--upgrade-deadline".into(), deadline.into()];
        f.enroll(i, s).await;
    }
    let hs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    f.wait_online(&hs).await;
    let web = names("web", 3);
    f.deploy(&mock_set("web", &web), "group/g1").await;
    let want: BTreeSet<String> = web.iter().cloned().collect();
    for h in &hosts {
        f.wait_running(h, &want, T).await;
    }
    f.wait_in_sync(&hs, T).await;
    (f, hosts)
}

/// A host's workloads exactly as recorded, each alive as the same mock.
async fn unchanged(f: &Fleet, host: &str, was: &BTreeMap<String, Seen>) -> Result<(), String> {
    let h = f.host(host);
    let now = h.owned().await?;
    if &now != was {
        return Err(format!("{host}: was {was:?}\nnow {now:?}"));
    }
    for (n, s) in &now {
        if s.phase != "running" || !h.is_mock_of(s.pid, n) {
            return Err(format!(
                "{host}: {n} is not running as pid {}: {s:?}",
                s.pid
            ));
        }
    }
    Ok(())
}

/// `release add FILE --version V -o json`.
async fn add_release(f: &Fleet, file: &Path, version: &str) -> Value {
    f.central
        .cli_json(&[
            "release",
            "add",
            file.to_str().unwrap(),
            "--version",
            version,
        ])
        .await
}

/// The host's `upgrade.json`.
fn record(f: &Fleet, host: &str) -> Option<Value> {
    let p = f.host(host).state_dir().join("central/upgrade.json");
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

async fn rollout(b: Backend) {
    let (f, hosts) = fleet(b, 2, "30s").await;
    let old_sha = sha256_of(&f.host("h1").bin.clone().unwrap());
    let mut before = BTreeMap::new();
    for h in &hosts {
        let host = f.host(h);
        let pid = host.daemon_pid().unwrap();
        assert_eq!(
            Some(pid),
            host.child_pid(),
            "{h}: the daemon is the harness's child"
        );
        before.insert(h.clone(), (pid, host.owned().await.unwrap()));
        assert_eq!(f.host_view(h).await.unwrap()["roostVersion"], BUILT_IN);
    }
    // The "new version": the same ELF with bytes appended (it runs the same, its
    // digest differs).
    let file = f.central.data_dir().join("../roost-t1");
    let mut bytes = std::fs::read(f.host("h1").bin.clone().unwrap()).unwrap();
    bytes.extend_from_slice(b"\nroost test release t1\n");
    std::fs::write(&file, &bytes).unwrap();
    let new_sha = hex(&sha2::Sha256::digest(&bytes));
    let r = add_release(&f, &file, "0.1.0+t1").await;
    assert_eq!(r["sha256"], new_sha.as_str(), "{r}");
    assert_eq!(r["size"], bytes.len() as u64, "{r}");
    // The same again changes nothing; another binary under that version is refused.
    let again = add_release(&f, &file, "0.1.0+t1").await;
    assert_eq!(again["addedMs"], r["addedMs"]);
    let other = f.central.data_dir().join("../other");
    std::fs::write(&other, b"#!/bin/sh\nexit 0\n").unwrap();
    let out = f
        .central
        .cli(&[
            "release",
            "add",
            other.to_str().unwrap(),
            "--version",
            "0.1.0+t1",
        ])
        .await;
    assert!(
        !out.ok() && out.stderr.contains("exists with another binary"),
        "{out}"
    );
    let bad = f
        .central
        .cli(&[
            "release",
            "add",
            other.to_str().unwrap(),
            "--version",
            "1/2",
        ])
        .await;
    assert!(!bad.ok() && bad.stderr.contains("version"), "{bad}");
    let unknown = f
        .central
        .cli(&["subcloud", "upgrade", "s1", "--version", "9.9.9"])
        .await;
    assert!(
        !unknown.ok() && unknown.stderr.contains("roost central release ls"),
        "{unknown}"
    );

    let t = Instant::now();
    f.central
        .cli_ok(&["subcloud", "upgrade", "s1", "--version", "0.1.0+t1"])
        .await;
    for h in &hosts {
        let h: &str = h;
        wait_for(T, &format!("{h} on 0.1.0+t1 at central"), || async {
            let v = f.host_view(h).await?;
            if v["roostVersion"] == "0.1.0+t1" && v["availability"] == "online" {
                Ok(())
            } else {
                Err(format!(
                    "{v}\n{}",
                    f.host(h)
                        .log()
                        .lines()
                        .rev()
                        .take(10)
                        .collect::<Vec<_>>()
                        .join("\n")
                ))
            }
        })
        .await;
    }
    f.record(
        "subcloud upgrade -> every host (2) reports the new version",
        t.elapsed(),
    );
    for h in &hosts {
        let host = f.host(h);
        let (pid, was) = &before[h];
        let bin = host.bin.clone().unwrap();
        assert_eq!(
            sha256_of(&bin),
            new_sha,
            "{h}: the binary on disk is the release"
        );
        assert_eq!(
            sha256_of(&with_suffix(&bin, ".prev")),
            old_sha,
            "{h}: .prev is the old one"
        );
        assert!(!with_suffix(&bin, ".new").exists());
        assert_eq!(host.daemon_pid(), Some(*pid), "{h}: re-executed in place");
        assert_eq!(host.child_pid(), Some(*pid));
        unchanged(&f, h, was).await.unwrap();
        let rec = record(&f, h).unwrap();
        assert_eq!(rec["state"], "healthy", "{rec}");
        assert_eq!(rec["version"], "0.1.0+t1", "{rec}");
        assert_eq!(rec["previous"], BUILT_IN, "{rec}");
        assert!(host.log().contains("re-executing into the new release"));
    }
    // Central: in sync, the subcloud says its release, no upgrade alarm.
    let hs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    f.wait_in_sync(&hs, T).await;
    let sc = f.central.get("/v1/subclouds/s1").await;
    assert_eq!(sc["release"], "0.1.0+t1", "{sc}");
    let alarms = f.central.get("/v1/alarms?active=true").await;
    assert_eq!(alarms, serde_json::json!([]), "{alarms}");
    // Not even raised and cleared: the re-exec (link down to link up) is shorter than
    // the two heartbeats that would make central raise `host.offline`.
    let all = f.central.get("/v1/alarms").await;
    assert_eq!(all, serde_json::json!([]), "{all}");
    // A wanted release cannot be removed; a cleared one can.
    let rm = f.central.cli(&["release", "rm", "0.1.0+t1"]).await;
    assert!(!rm.ok() && rm.stderr.contains("s1"), "{rm}");
    f.central
        .cli_ok(&["subcloud", "upgrade", "s1", "--clear"])
        .await;
    f.central.cli_ok(&["release", "rm", "0.1.0+t1"]).await;
    let ls = f.central.cli_json(&["release", "ls"]).await;
    assert_eq!(ls, serde_json::json!([]));
    assert!(!f
        .central
        .data_dir()
        .join("releases")
        .join(&new_sha)
        .exists());
    // Clearing moves nobody.
    for h in &hosts {
        assert_eq!(f.host(h).daemon_pid(), Some(before[h].0));
    }
}

async fn broken_rolled_back(b: Backend) {
    let (mut f, _) = fleet(b, 1, "4s").await;
    let bin = f.host("h1").bin.clone().unwrap();
    let old_sha = sha256_of(&bin);
    let was = f.host("h1").owned().await.unwrap();

    // 1. A binary that exits at start: rolled back at once, by the host.
    let file = f.central.data_dir().join("../exits");
    std::fs::write(&file, b"#!/bin/sh\nexit 1\n").unwrap();
    let r = add_release(&f, &file, "0.1.0+exits").await;
    let t = Instant::now();
    f.central
        .cli_ok(&["subcloud", "upgrade", "s1", "--version", "0.1.0+exits"])
        .await;
    let f_ = &f;
    wait_for(T, "h1 rolled back and serving again", || async move {
        let rec = record(f_, "h1").ok_or("no upgrade.json yet")?;
        let pid = f_.host("h1").daemon_pid();
        if rec["state"] == "rolled-back" && pid.is_some() {
            Ok(())
        } else {
            Err(format!("{rec} pid {pid:?}"))
        }
    })
    .await;
    f.record(
        "a binary that exits at start -> rolled back and serving",
        t.elapsed(),
    );
    let rec = record(&f, "h1").unwrap();
    assert_eq!(rec["sha256"], r["sha256"]);
    assert!(rec["reason"].as_str().unwrap().contains("exited"), "{rec}");
    assert_eq!(sha256_of(&bin), old_sha, "the old binary is back");
    assert!(!with_suffix(&bin, ".prev").exists());
    unchanged(&f, "h1", &was).await.unwrap();
    let alarm = wait_for(T, "upgrade.rolled-back at central", || async {
        let a = f.central.get("/v1/alarms?active=true&host=h1").await;
        a.as_array()
            .and_then(|v| {
                v.iter()
                    .find(|x| x["code"] == "upgrade.rolled-back")
                    .cloned()
            })
            .ok_or_else(|| a.to_string())
    })
    .await;
    assert_eq!(alarm["severity"], "major");
    assert!(
        alarm["reason"].as_str().unwrap().contains("0.1.0+exits"),
        "{alarm}"
    );
    assert_eq!(f.host_view("h1").await.unwrap()["roostVersion"], BUILT_IN);
    // Pushed again, the same binary is refused: nothing moves.
    let pid = f.host("h1").daemon_pid().unwrap();
    f.central.cli_ok(&["subcloud", "sync", "s1"]).await;
    hold_for(
        Duration::from_secs(2),
        "h1 refuses the rolled-back binary",
        || async {
            let rec = record(&f, "h1").ok_or("no record")?;
            if f.host("h1").daemon_pid() == Some(pid) && rec["state"] == "rolled-back" {
                Ok(())
            } else {
                Err(format!("{rec}"))
            }
        },
    )
    .await;
    assert_eq!(sha256_of(&bin), old_sha);

    // 2. A binary that never becomes healthy, with central SIGKILLed once the host
    // has swapped it in: the guard kills it at the deadline and rolls back alone.
    let file = f.central.data_dir().join("../hangs");
    std::fs::write(&file, b"#!/bin/sh\nexec sleep 600\n").unwrap();
    let r = add_release(&f, &file, "0.1.0+hangs").await;
    let hang_sha = r["sha256"].as_str().unwrap().to_string();
    let hang_sha = hang_sha.as_str();
    f.central
        .cli_ok(&["subcloud", "upgrade", "s1", "--version", "0.1.0+hangs"])
        .await;
    let f_ = &f;
    wait_for(T, "h1 swapped in the hanging binary", || async move {
        let rec = record(f_, "h1").ok_or("no record")?;
        if rec["state"] == "pending" && rec["sha256"] == hang_sha {
            Ok(())
        } else {
            Err(rec.to_string())
        }
    })
    .await;
    f.central.kill9();
    let killed = roost_tests::fed::now_ms();
    let t = Instant::now();
    let f_ = &f;
    wait_for(T, "h1 rolled back without central", || async move {
        let rec = record(f_, "h1").ok_or("no record")?;
        let pid = f_.host("h1").daemon_pid();
        if rec["state"] == "rolled-back" && rec["sha256"] == hang_sha && pid.is_some() {
            Ok(())
        } else {
            Err(format!("{rec} pid {pid:?}"))
        }
    })
    .await;
    f.record(
        "a binary never healthy (4 s deadline), central down -> rolled back and serving",
        t.elapsed(),
    );
    assert!(!f.central.running(), "central stayed down throughout");
    let rec = record(&f, "h1").unwrap();
    assert!(rec["changedMs"].as_u64().unwrap() > killed, "{rec}");
    assert!(
        rec["reason"].as_str().unwrap().contains("deadline"),
        "{rec}"
    );
    assert_eq!(sha256_of(&bin), old_sha, "the old binary is back");
    unchanged(&f, "h1", &was).await.unwrap();
    // Central back: the host reports the rollback, and runs the old version.
    f.central.start().await;
    let alarm = wait_for(
        T,
        "upgrade.rolled-back for 0.1.0+hangs at central",
        || async {
            let a = f.central.get("/v1/alarms?active=true&host=h1").await;
            a.as_array()
                .and_then(|v| {
                    v.iter()
                        .find(|x| {
                            x["code"] == "upgrade.rolled-back"
                                && x["reason"].as_str().unwrap_or("").contains("0.1.0+hangs")
                        })
                        .cloned()
                })
                .ok_or_else(|| a.to_string())
        },
    )
    .await;
    println!("alarm: {alarm}");
    let v = f.host_view("h1").await.unwrap();
    assert_eq!(v["roostVersion"], BUILT_IN, "{v}");
    unchanged(&f, "h1", &was).await.unwrap();
}

/// The lead's strategy engine rolls a release with this upgrader: a good one completes
/// on every subcloud (each host on it, re-executed in place, workloads untouched); a
/// binary that exits at start fails the first subcloud (its host rolls back by itself
/// and raises `upgrade.rolled-back`), the strategy stops there and puts that subcloud's
/// release back, and its host runs the good release again.
async fn strategy_rolls_a_release(b: Backend) {
    let (f, hosts) = fleet_in(b, &["s1", "s2"], "10s").await;
    let mut before = BTreeMap::new();
    for h in &hosts {
        let host = f.host(h);
        before.insert(
            h.clone(),
            (host.daemon_pid().unwrap(), host.owned().await.unwrap()),
        );
    }
    let good = f.central.data_dir().join("../roost-t2");
    let mut bytes = std::fs::read(f.host("h1").bin.clone().unwrap()).unwrap();
    bytes.extend_from_slice(b"\nroost test release t2\n");
    std::fs::write(&good, &bytes).unwrap();
    add_release(&f, &good, "0.1.0+t2").await;
    let t = Instant::now();
    f.central
        .cli_json(&[
            "strategy",
            "create",
            "up",
            "--release",
            "0.1.0+t2",
            "--group",
            "g1",
            "--serial",
            "--min-healthy",
            "1s",
            "--apply",
        ])
        .await;
    let v = wait_for(T, "strategy `up` complete", || async {
        let v = f.central.try_get("/v1/strategies/up").await?;
        match v["state"].as_str() {
            Some("complete") => Ok(v),
            Some("failed") | Some("aborted") => panic!("strategy `up` ended: {v}"),
            _ => Err(v.to_string()),
        }
    })
    .await;
    f.record(
        "release strategy, 2 subclouds serial, 1 s min-healthy -> complete",
        t.elapsed(),
    );
    for s in v["steps"].as_array().unwrap() {
        assert_eq!(s["state"], "complete", "{v}");
    }
    for h in &hosts {
        let host = f.host(h);
        assert_eq!(f.host_view(h).await.unwrap()["roostVersion"], "0.1.0+t2");
        assert_eq!(
            host.daemon_pid(),
            Some(before[h].0),
            "{h}: re-executed in place"
        );
        unchanged(&f, h, &before[h].1).await.unwrap();
    }

    // A broken release: the first subcloud fails and is rolled back; the second is
    // never touched.
    let bad = f.central.data_dir().join("../exits2");
    std::fs::write(&bad, b"#!/bin/sh\nexit 1\n").unwrap();
    add_release(&f, &bad, "0.1.0+exits").await;
    f.central
        .cli_json(&[
            "strategy",
            "create",
            "bad",
            "--release",
            "0.1.0+exits",
            "--subclouds",
            "s1,s2",
            "--serial",
            "--min-healthy",
            "1s",
            "--apply",
        ])
        .await;
    let v = wait_for(T, "strategy `bad` failed", || async {
        let v = f.central.try_get("/v1/strategies/bad").await?;
        match v["state"].as_str() {
            Some("failed") => Ok(v),
            Some("complete") => panic!("a broken release completed: {v}"),
            _ => Err(v.to_string()),
        }
    })
    .await;
    let steps: BTreeMap<String, String> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["subcloud"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(steps["s1"], "rolled-back", "{v}");
    assert_ne!(steps["s2"], "complete", "{v}");
    assert_eq!(
        f.central.get("/v1/subclouds/s1").await["release"],
        "0.1.0+t2"
    );
    // h1 went back to the good release by itself and runs it again, serving; h2 never
    // left it. Every workload is the same process.
    wait_for(T, "h1 on 0.1.0+t2 again at central", || async {
        let v = f.host_view("h1").await?;
        if v["roostVersion"] == "0.1.0+t2" && v["availability"] == "online" {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    let rec = record(&f, "h1").unwrap();
    assert_eq!(rec["state"], "rolled-back", "{rec}");
    assert_eq!(rec["previous"], "0.1.0+t2", "{rec}");
    assert_eq!(
        sha256_of(&f.host("h1").bin.clone().unwrap()),
        hex(&sha2::Sha256::digest(&bytes))
    );
    assert_eq!(f.host("h2").daemon_pid(), Some(before["h2"].0));
    for h in &hosts {
        unchanged(&f, h, &before[h].1).await.unwrap();
    }
}

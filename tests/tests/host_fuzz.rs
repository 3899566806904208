//! The OpenAPI document validates (a real validator), and 10,000 random and mutated
//! request bodies against the live daemon never get a 5xx nor crash it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::daemon::{mock_spec, Daemon};
use serde_json::{json, Map, Value};
use std::process::Command;

#[test]
fn openapi_document_validates() {
    let d = Daemon::start();
    let (s, doc) = d.api("GET", "/v1/openapi.json", None);
    assert_eq!(s, 200);
    // Every $ref resolves inside the document.
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &part[..part.find('"').unwrap()];
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
    // Every route the daemon serves is documented.
    for p in [
        "/v1/workloads",
        "/v1/workloads/{name}",
        "/v1/workloads/{name}/stop",
        "/v1/workloads/{name}/start",
        "/v1/workloads/{name}/logs",
        "/v1/apply",
        "/v1/images",
        "/v1/images/pull",
        "/v1/images/import",
        "/v1/images/prune",
        "/v1/images/{reference}",
        "/v1/events",
        "/v1/host",
        "/metrics",
        "/healthz",
        "/v1/openapi.json",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} is not documented");
    }
    let probe = Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        eprintln!("SKIPPED the external check: needs python3 with openapi-spec-validator (ci/deps.sh installs it)");
        return;
    }
    let f = d.dir.path().join("openapi.json");
    std::fs::write(&f, text).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// xorshift64*: deterministic, seed printed so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

fn random_value(r: &mut Rng, depth: u32) -> Value {
    match r.below(if depth > 2 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(r.below(2) == 1),
        2 => json!(r.next() as i64),
        3 => json!((r.next() as f64) / 7.0),
        4 => json!(r
            .pick(&[
                "",
                "mock",
                "vm",
                "container",
                "0m",
                "500m",
                "-1",
                "fifo",
                "always",
                "\u{0}",
                "ü",
                "../../etc"
            ])
            .to_string()),
        5 => json!("x".repeat(r.below(300) as usize)),
        6 => Value::Array(
            (0..r.below(4))
                .map(|_| random_value(r, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..r.below(4) {
                let k = r
                    .pick(&["name", "spec", "driver", "mock", "image", "cores", "zz", ""])
                    .to_string();
                m.insert(k, random_value(r, depth + 1));
            }
            Value::Object(m)
        }
    }
}

fn paths(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    if let Value::Object(m) = v {
        for (k, c) in m {
            let mut p = prefix.clone();
            p.push(k.clone());
            paths(c, p, out);
        }
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for k in path {
        cur = cur.get_mut(k.as_str())?;
    }
    Some(cur)
}

fn mutate(r: &mut Rng, base: &Value) -> Value {
    let mut v = base.clone();
    for _ in 0..=r.below(3) {
        let mut ps = Vec::new();
        paths(&v, Vec::new(), &mut ps);
        let p = r.pick(&ps).clone();
        match r.below(4) {
            0 if !p.is_empty() => {
                let (last, parent) = p.split_last().unwrap();
                if let Some(Value::Object(m)) = at(&mut v, parent) {
                    m.remove(last);
                }
            }
            1 => {
                if let Some(Value::Object(m)) = at(&mut v, &p) {
                    let k = r
                        .pick(&[
                            "extra",
                            "runSeconds",
                            "exitCode",
                            "cpu",
                            "cores",
                            "realtime",
                            "vcpus",
                        ])
                        .to_string();
                    m.insert(k, random_value(r, 1));
                }
            }
            _ => {
                let nv = random_value(r, 1);
                if let Some(slot) = at(&mut v, &p) {
                    *slot = nv;
                }
            }
        }
    }
    v
}

#[test]
fn ten_thousand_random_bodies_never_5xx() {
    let d = Daemon::start();
    let seed = std::env::var("ROOST_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fuzz seed {seed} (replay with ROOST_FUZZ_SEED={seed})");
    let mut r = Rng(seed);
    let base: Value = serde_json::from_str(&mock_spec(
        "fz",
        json!({"runSeconds": 1, "exitCode": 0}),
        json!({"resources": {"cpu": "100m", "memoryMiB": 16}, "restartPolicy": "never"}),
    ))
    .unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for i in 0..10_000 {
        let (method, path, body): (&str, String, Vec<u8>) = match r.below(10) {
            0..=5 => (
                "POST",
                "/v1/workloads".into(),
                mutate(&mut r, &base).to_string().into_bytes(),
            ),
            6 => (
                "POST",
                "/v1/workloads".into(),
                (0..r.below(200)).map(|_| r.next() as u8).collect(),
            ),
            7 => {
                let ws: Vec<Value> = (0..r.below(3)).map(|_| mutate(&mut r, &base)).collect();
                (
                    "POST",
                    "/v1/apply".into(),
                    json!({"workloads": ws, "prune": false})
                        .to_string()
                        .into_bytes(),
                )
            }
            8 => {
                let s = mutate(&mut r, &base).to_string();
                let cut = r.below(s.len() as u64) as usize;
                ("POST", "/v1/workloads".into(), s.as_bytes()[..cut].to_vec())
            }
            _ => {
                let p = r.pick(&[
                    "/v1/workloads/fz/logs?tail=",
                    "/v1/events?cursor=",
                    "/v1/workloads/",
                    "/v1/workloads/fz/stop?x=",
                    "/v1/host?",
                ]);
                let m = *r.pick(&["GET", "POST", "DELETE"]);
                (
                    m,
                    format!(
                        "{p}{}",
                        r.pick(&["1", "-5", "abc", "%00", "99999999999999999999", ""])
                    ),
                    Vec::new(),
                )
            }
        };
        let (s, b) = d.api_raw(
            method,
            &path,
            if body.is_empty() {
                None
            } else {
                Some(body.clone())
            },
        );
        assert!(
            s < 500,
            "request {i}: {method} {path} got {s}: {}\nbody sent: {}",
            String::from_utf8_lossy(&b),
            String::from_utf8_lossy(&body)
        );
        if s >= 400 && method != "GET" || s == 404 {
            let v: Value = serde_json::from_slice(&b).unwrap_or_else(|_| {
                panic!(
                    "request {i}: error without a JSON body: {}",
                    String::from_utf8_lossy(&b)
                )
            });
            assert!(v["error"].is_string() && v["details"].is_array(), "{v}");
        }
        *counts.entry(s).or_insert(0u32) += 1;
        // Accepted ones are removed again so nothing piles up.
        if s == 201 || (s == 200 && path == "/v1/apply") {
            let (_, list) = d.api("GET", "/v1/workloads", None);
            for w in list.as_array().unwrap() {
                let n = w["workload"]["metadata"]["name"].as_str().unwrap();
                d.api("DELETE", &format!("/v1/workloads/{n}"), None);
            }
        }
    }
    eprintln!("status counts: {counts:?}");
    // Still alive and answering.
    assert_eq!(d.api("GET", "/healthz", None).0, 200);
    assert!(
        counts.keys().any(|s| *s == 422),
        "no mutation was rejected? {counts:?}"
    );
}

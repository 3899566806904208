//! The OpenAPI document validates (a real validator), and 10,000 random and mutated
//! request bodies (proptest) against the live daemon never get a 5xx nor crash it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use roost_tests::daemon::{mock_spec, Daemon};
use serde_json::{json, Value};
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

/// Any JSON value: scalars the spec cares about, long strings, and nested lists and
/// mappings keyed by the spec's own field names.
fn random_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        proptest::sample::select(vec![
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
            "../../etc",
        ])
        .prop_map(Value::from),
        (0..300usize).prop_map(|n| json!("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let key = proptest::sample::select(vec![
            "name", "spec", "driver", "mock", "image", "cores", "zz", "",
        ]);
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..4).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
    .boxed()
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

/// One edit of a document: which path (an index into its paths), what to do there
/// (remove it, add a field, replace it), the field and the value.
type Edit = (Index, u8, &'static str, Value);

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    proptest::collection::vec(
        (
            any::<Index>(),
            0..4u8,
            proptest::sample::select(vec![
                "extra",
                "runSeconds",
                "exitCode",
                "cpu",
                "cores",
                "realtime",
                "vcpus",
            ]),
            random_value(),
        ),
        1..=3,
    )
}

fn mutate(base: &Value, edits: &[Edit]) -> Value {
    let mut v = base.clone();
    for (i, op, key, new) in edits {
        let mut ps = Vec::new();
        paths(&v, Vec::new(), &mut ps);
        let p = i.get(&ps).clone();
        match op {
            0 if !p.is_empty() => {
                let (last, parent) = p.split_last().unwrap();
                if let Some(Value::Object(m)) = at(&mut v, parent) {
                    m.remove(last);
                }
            }
            1 => {
                if let Some(Value::Object(m)) = at(&mut v, &p) {
                    m.insert(key.to_string(), new.clone());
                }
            }
            _ => {
                if let Some(slot) = at(&mut v, &p) {
                    *slot = new.clone();
                }
            }
        }
    }
    v
}

/// One request: method, path, body.
fn request(base: Value) -> BoxedStrategy<(&'static str, String, Vec<u8>)> {
    let b = base.clone();
    let create = edits().prop_map(move |e| {
        (
            "POST",
            "/v1/workloads".to_string(),
            mutate(&b, &e).to_string().into_bytes(),
        )
    });
    let bytes = proptest::collection::vec(any::<u8>(), 0..200)
        .prop_map(|b| ("POST", "/v1/workloads".to_string(), b));
    let b = base.clone();
    let apply = proptest::collection::vec(edits(), 0..3).prop_map(move |es| {
        let ws: Vec<Value> = es.iter().map(|e| mutate(&b, e)).collect();
        let body = json!({"workloads": ws, "prune": false}).to_string();
        ("POST", "/v1/apply".to_string(), body.into_bytes())
    });
    let b = base;
    let cut = (edits(), any::<Index>()).prop_map(move |(e, i)| {
        let s = mutate(&b, &e).to_string();
        let n = i.index(s.len().max(1));
        (
            "POST",
            "/v1/workloads".to_string(),
            s.as_bytes()[..n].to_vec(),
        )
    });
    let other = (
        proptest::sample::select(vec![
            "/v1/workloads/fz/logs?tail=",
            "/v1/events?cursor=",
            "/v1/workloads/",
            "/v1/workloads/fz/stop?x=",
            "/v1/host?",
        ]),
        proptest::sample::select(vec!["GET", "POST", "DELETE"]),
        proptest::sample::select(vec!["1", "-5", "abc", "%00", "99999999999999999999", ""]),
    )
        .prop_map(|(p, m, q)| (m, format!("{p}{q}"), Vec::new()));
    prop_oneof![6 => create, 1 => bytes, 1 => apply, 1 => cut, 1 => other].boxed()
}

#[test]
fn ten_thousand_random_bodies_never_5xx() {
    let d = Daemon::start();
    let base: Value = serde_json::from_str(&mock_spec(
        "fz",
        json!({"runSeconds": 1, "exitCode": 0}),
        json!({"resources": {"cpu": "100m", "memoryMiB": 16}, "restartPolicy": "never"}),
    ))
    .unwrap();
    let counts = std::cell::RefCell::new(std::collections::BTreeMap::new());
    // proptest: a failure is shrunk to a small request and printed; set
    // PROPTEST_RNG_SEED to replay a run.
    let mut runner = TestRunner::new(Config {
        cases: 10_000,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&request(base), |(method, path, body)| {
        let (s, b) = d.api_raw(
            method,
            &path,
            if body.is_empty() {
                None
            } else {
                Some(body.clone())
            },
        );
        prop_assert!(
            s < 500,
            "{method} {path} got {s}: {}\nbody sent: {}",
            String::from_utf8_lossy(&b),
            String::from_utf8_lossy(&body)
        );
        if s >= 400 && method != "GET" || s == 404 {
            let v: Value = serde_json::from_slice(&b).map_err(|_| {
                TestCaseError::fail(format!(
                    "error without a JSON body: {}",
                    String::from_utf8_lossy(&b)
                ))
            })?;
            prop_assert!(v["error"].is_string() && v["details"].is_array(), "{v}");
        }
        *counts.borrow_mut().entry(s).or_insert(0u32) += 1;
        // Accepted ones are removed again so nothing piles up.
        if s == 201 || (s == 200 && path == "/v1/apply") {
            for n in d.names() {
                d.api("DELETE", &format!("/v1/workloads/{n}"), None);
            }
        }
        Ok(())
    });
    let counts = counts.into_inner();
    eprintln!("status counts: {counts:?}");
    if let Err(e) = result {
        panic!("{e}");
    }
    // Still alive and answering.
    assert_eq!(d.api("GET", "/healthz", None).0, 200);
    assert!(
        counts.keys().any(|s| *s == 422),
        "no mutation was rejected? {counts:?}"
    );
}

//! The daemon keeps the contract its OpenAPI document states: requests generated
//! from the served document (proptest, valid and broken alike) never get a 5xx,
//! and every answer has a status the document lists for that operation, the
//! content type it lists, and a body that matches the documented schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use roost_tests::daemon::Daemon;
use serde_json::{json, Map, Value};

/// Follow a local `$ref`.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s.get("$ref").and_then(Value::as_str) {
        Some(r) => r
            .strip_prefix("#/")
            .map(|p| p.split('/').fold(doc, |v, k| &v[k]))
            .unwrap_or(s),
        None => s,
    }
}

/// Does `v` match OpenAPI 3.0 schema `s` (the subset schemars writes)?
fn conforms(doc: &Value, v: &Value, s: &Value, path: &str) -> Result<(), String> {
    let s = resolve(doc, s);
    let fail = |why: String| Err(format!("{path}: {why} (value {v}, schema {s})"));
    if v.is_null() && s["nullable"] == true {
        return Ok(());
    }
    if let Some(all) = s["allOf"].as_array() {
        for a in all {
            conforms(doc, v, a, path)?;
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s[key].as_array() {
            let ok = alts
                .iter()
                .filter(|a| conforms(doc, v, a, path).is_ok())
                .count();
            if ok == 0 || (key == "oneOf" && ok > 1) {
                return fail(format!("{ok} of the {key} alternatives match"));
            }
        }
    }
    if let Some(e) = s["enum"].as_array() {
        if !e.contains(v) {
            return fail("not one of the enum values".into());
        }
    }
    let ty = s["type"].as_str();
    let type_ok = match ty {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(_) => true,
    };
    if !type_ok {
        return fail(format!("not of type {ty:?}"));
    }
    if let Some(n) = v.as_f64() {
        if s["minimum"].as_f64().is_some_and(|m| n < m)
            || s["maximum"].as_f64().is_some_and(|m| n > m)
        {
            return fail("out of range".into());
        }
    }
    if let Some(t) = v.as_str() {
        let len = t.chars().count() as u64;
        if s["minLength"].as_u64().is_some_and(|m| len < m)
            || s["maxLength"].as_u64().is_some_and(|m| len > m)
        {
            return fail("length out of range".into());
        }
    }
    if let Value::Object(m) = v {
        for r in s["required"].as_array().into_iter().flatten() {
            if !m.contains_key(r.as_str().unwrap_or_default()) {
                return fail(format!("required {r} missing"));
            }
        }
        let props = s["properties"].as_object();
        for (k, val) in m {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => conforms(doc, val, ps, &format!("{path}.{k}"))?,
                None => match &s["additionalProperties"] {
                    Value::Bool(false) => return fail(format!("undocumented property {k}")),
                    extra @ Value::Object(_) => conforms(doc, val, extra, &format!("{path}.{k}"))?,
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(is)) = (v, s.get("items")) {
        for (i, it) in items.iter().enumerate() {
            conforms(doc, it, is, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

/// A value of any shape (for the broken cases).
fn junk() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({"zz": 1})),
    ]
    .boxed()
}

/// Values for schema `s`: mostly valid, sometimes just outside the rules, now and
/// then of the wrong shape altogether.
fn arb(doc: &Value, s: &Value, depth: u32) -> BoxedStrategy<Value> {
    let s = resolve(doc, s).clone();
    let valid = arb_valid(doc, &s, depth);
    if depth == 0 {
        return valid;
    }
    prop_oneof![40 => valid, 1 => junk()].boxed()
}

/// Strings for a property by its name: mostly what the server takes, sometimes not.
fn arb_named(key: &str) -> Option<BoxedStrategy<Value>> {
    let good: &[&str] = match key {
        "apiVersion" => &["roost.dev/v1"],
        "kind" => &["Workload"],
        "cpu" => &["500m", "2", "0.5"],
        "image" => &["busybox:latest"],
        "kernel" | "initrd" | "source" | "destination" | "workingDir" => &["/srv/x"],
        _ => return None,
    };
    let good: Vec<Value> = good.iter().map(|g| json!(g)).collect();
    Some(
        prop_oneof![
            9 => proptest::sample::select(good),
            1 => ".{0,12}".prop_map(Value::from),
        ]
        .boxed(),
    )
}

fn arb_valid(doc: &Value, s: &Value, depth: u32) -> BoxedStrategy<Value> {
    if let Some(one) = s["allOf"].as_array().and_then(|a| a.first()) {
        return arb(doc, one, depth + 1);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = s[key].as_array() {
            let alts: Vec<BoxedStrategy<Value>> =
                alts.iter().map(|a| arb(doc, a, depth + 1)).collect();
            return proptest::strategy::Union::new(alts).boxed();
        }
    }
    if let Some(e) = s["enum"].as_array() {
        return prop_oneof![
            15 => proptest::sample::select(e.clone()),
            1 => Just(json!("sometimes")),
        ]
        .boxed();
    }
    match s["type"].as_str() {
        Some("object") => {
            let props = s["properties"].as_object().cloned().unwrap_or_default();
            let required: Vec<String> = s["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect();
            let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = props
                .iter()
                .map(|(k, ps)| {
                    let k = k.clone();
                    // Required fields are nearly always there, others half the time.
                    let keep = if required.contains(&k) { 0.98 } else { 0.3 };
                    let value = match (ps["type"].as_str(), arb_named(&k)) {
                        (Some("string"), Some(named)) => named,
                        _ => arb(doc, ps, depth + 1),
                    };
                    (proptest::bool::weighted(keep), value)
                        .prop_map(move |(on, v)| on.then(|| (k.clone(), v)))
                        .boxed()
                })
                .collect();
            // Now and then a field the schema does not know.
            fields.push(
                (proptest::bool::weighted(0.05), junk())
                    .prop_map(|(on, v)| on.then(|| ("colour".to_string(), v)))
                    .boxed(),
            );
            fields
                .prop_map(|kv| Value::Object(kv.into_iter().flatten().collect::<Map<_, _>>()))
                .boxed()
        }
        Some("array") => {
            let item = s.get("items").cloned().unwrap_or(json!({}));
            proptest::collection::vec(arb(doc, &item, depth + 1), 0..3)
                .prop_map(Value::Array)
                .boxed()
        }
        Some("integer") => {
            let lo = s["minimum"].as_i64().unwrap_or(-5);
            let hi = s["maximum"].as_i64().unwrap_or(lo.saturating_add(100_000));
            prop_oneof![
                8 => (lo..=hi).prop_map(Value::from),
                1 => Just(json!(lo.saturating_sub(1))),
                1 => Just(json!(hi.saturating_add(1))),
            ]
            .boxed()
        }
        Some("number") => any::<f64>().prop_map(|f| json!(f)).boxed(),
        Some("boolean") => any::<bool>().prop_map(Value::from).boxed(),
        Some("string") => {
            if s["pattern"].is_string() {
                // The workload name's pattern, and its near misses.
                prop_oneof![
                    6 => "[a-z][a-z0-9-]{0,8}[a-z0-9]",
                    1 => "[A-Za-z0-9_.-]{0,70}",
                ]
                .prop_map(Value::from)
                .boxed()
            } else {
                prop_oneof![
                    Just(json!("roost.dev/v1")),
                    Just(json!("Workload")),
                    Just(json!("500m")),
                    Just(json!("/bin/sh")),
                    Just(json!("")),
                    ".{0,16}".prop_map(Value::from),
                ]
                .boxed()
            }
        }
        _ => junk(),
    }
}

/// One generated request.
#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: String,
    template: &'static str,
    body: Option<Vec<u8>>,
}

fn requests(doc: &Value) -> BoxedStrategy<Req> {
    let workload = json!({"$ref": "#/components/schemas/Workload"});
    // A stop waits out the grace period when the mock ignores the polite stop:
    // keep it at a second, or one case could hold the run for an hour.
    let spec = arb(doc, &workload, 0).prop_map(|mut v| {
        if let Some(g) = v.pointer_mut("/spec/stopGraceSeconds") {
            if g.as_u64().is_some_and(|g| g > 1) {
                *g = json!(1);
            }
        }
        v
    });
    let name = prop_oneof![
        4 => "[a-z][a-z0-9-]{0,6}",
        1 => "[A-Za-z0-9._~-]{1,20}",
    ];
    let create = spec.clone().prop_map(|v| Req {
        method: "POST",
        path: "/v1/workloads".into(),
        template: "/v1/workloads",
        body: Some(v.to_string().into_bytes()),
    });
    let cut = (spec.clone(), 0.0..1.0f64).prop_map(|(v, f)| {
        let s = v.to_string();
        let n = (s.len() as f64 * f) as usize;
        Req {
            method: "POST",
            path: "/v1/workloads".into(),
            template: "/v1/workloads",
            body: Some(s.as_bytes()[..n].to_vec()),
        }
    });
    let apply = (
        proptest::collection::vec(spec, 0..3),
        any::<bool>(),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(ws, prune, odd)| {
            let body = if odd {
                json!({"workloads": ws, "prune": "yes"})
            } else {
                json!({"workloads": ws, "prune": prune})
            };
            Req {
                method: "POST",
                path: "/v1/apply".into(),
                template: "/v1/apply",
                body: Some(body.to_string().into_bytes()),
            }
        });
    let by_name = (
        proptest::sample::select(vec![
            ("GET", ""),
            ("DELETE", ""),
            ("POST", "/stop"),
            ("POST", "/start"),
            ("GET", "/logs?tail=3"),
            ("GET", "/logs?tail=x"),
        ]),
        name,
    )
        .prop_map(|((m, suffix), n)| {
            let (base, query) = suffix.split_once('?').unwrap_or((suffix, ""));
            let template = match base {
                "" => "/v1/workloads/{name}",
                "/stop" => "/v1/workloads/{name}/stop",
                "/start" => "/v1/workloads/{name}/start",
                _ => "/v1/workloads/{name}/logs",
            };
            let q = if query.is_empty() {
                String::new()
            } else {
                format!("?{query}")
            };
            Req {
                method: m,
                path: format!("/v1/workloads/{n}{base}{q}"),
                template,
                body: None,
            }
        });
    let reads = proptest::sample::select(vec![
        ("/v1/workloads", "/v1/workloads"),
        ("/v1/host", "/v1/host"),
        ("/healthz", "/healthz"),
        ("/metrics", "/metrics"),
        ("/v1/openapi.json", "/v1/openapi.json"),
        ("/v1/events?cursor=0", "/v1/events"),
        ("/v1/events?cursor=-1", "/v1/events"),
    ])
    .prop_map(|(p, t)| Req {
        method: "GET",
        path: p.into(),
        template: t,
        body: None,
    });
    prop_oneof![5 => create, 1 => cut, 2 => apply, 3 => by_name, 1 => reads].boxed()
}

/// Check one answer against the operation's documented responses.
fn check(
    doc: &Value,
    req: &Req,
    status: u16,
    ctype: Option<&str>,
    body: &[u8],
) -> Result<(), String> {
    let what = format!(
        "{} {} -> {status} {}",
        req.method,
        req.path,
        String::from_utf8_lossy(body)
    );
    if status >= 500 {
        return Err(format!("a 5xx: {what}"));
    }
    let op = &doc["paths"][req.template][req.method.to_ascii_lowercase()];
    let resp = &op["responses"][status.to_string()];
    if resp.is_null() {
        return Err(format!("status {status} is not documented: {what}"));
    }
    let Some(content) = resp["content"].as_object() else {
        return Ok(());
    };
    let ctype = ctype.unwrap_or_default();
    let Some((_, media)) = content
        .iter()
        .find(|(k, _)| ctype.split(';').next() == Some(k.as_str()))
    else {
        return Err(format!(
            "content type {ctype:?} is not one of {:?}: {what}",
            content.keys().collect::<Vec<_>>()
        ));
    };
    if ctype.starts_with("application/json") {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("not JSON ({e}): {what}"))?;
        conforms(doc, &v, &media["schema"], "body").map_err(|e| format!("{e}\n{what}"))?;
    }
    Ok(())
}

#[test]
fn generated_requests_get_documented_answers() {
    let d = Daemon::start_with(&["--containerd-socket", "/nonexistent/c.sock"]);
    let (s, doc) = d.api("GET", "/v1/openapi.json", None);
    assert_eq!(s, 200);
    let cases: u32 = std::env::var("ROOST_CONTRACT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let counts = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let result = runner.run(&requests(&doc), |req| {
        let (status, ctype, body) = d.api_full(req.method, &req.path, req.body.clone());
        *counts.borrow_mut().entry(status).or_insert(0u32) += 1;
        let r = check(&doc, &req, status, ctype.as_deref(), &body);
        // Accepted workloads go again, so nothing piles up.
        if req.method == "POST" {
            for n in d.names() {
                d.api("DELETE", &format!("/v1/workloads/{n}"), None);
            }
        }
        r.map_err(TestCaseError::fail)
    });
    let counts = counts.into_inner();
    eprintln!("statuses over {cases} generated requests: {counts:?}");
    if let Err(e) = result {
        panic!("{e}\ndaemon log:\n{}", d.log());
    }
    assert!(
        counts.contains_key(&422) && counts.contains_key(&201),
        "{counts:?}"
    );
    assert_eq!(d.api("GET", "/healthz", None).0, 200);
}

/// The checker itself catches what it should (so the test above cannot pass by
/// checking nothing).
#[test]
fn the_checker_refuses_undocumented_answers() {
    let d = Daemon::start();
    let (_, doc) = d.api("GET", "/v1/openapi.json", None);
    let err = json!({"$ref": "#/components/schemas/ErrorBody"});
    assert!(conforms(&doc, &json!({"error": "x", "details": []}), &err, "b").is_ok());
    assert!(conforms(&doc, &json!({"error": 5, "details": []}), &err, "b").is_err());
    assert!(conforms(&doc, &json!({"details": []}), &err, "b").is_err());
    let req = Req {
        method: "POST",
        path: "/v1/workloads".into(),
        template: "/v1/workloads",
        body: None,
    };
    let body = br#"{"error": "x", "details": []}"#;
    assert!(check(&doc, &req, 422, Some("application/json"), body).is_ok());
    assert!(check(&doc, &req, 418, Some("application/json"), body).is_err());
    assert!(check(&doc, &req, 422, Some("text/plain"), body).is_err());
    assert!(check(&doc, &req, 500, Some("application/json"), body).is_err());
    assert!(check(&doc, &req, 201, Some("application/json"), body).is_err());
}

//! Strategies through central's API against a live `roost central` (no hosts: a
//! subcloud without hosts completes its step at once): every bad request is refused
//! with a 422 naming each bad field, the verbs refuse what their state forbids with a
//! 409 saying why, and 2,000 random and mutated strategy bodies never get a 5xx.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_host::client::Client;
use roost_tests::central::LoopbackCentral;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Api {
    c: LoopbackCentral,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Api {
    fn start() -> Self {
        let c = LoopbackCentral::start();
        let client = c.client();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Self { c, client, rt }
    }

    fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let m = hyper::Method::from_bytes(method.as_bytes()).unwrap();
        let r = self
            .rt
            .block_on(self.client.request(m, path, body))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.c.log()));
        let v = serde_json::from_slice(&r.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
        (r.status.as_u16(), v)
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body.to_string().into_bytes()))
    }
}

fn set(v: u64) -> Value {
    json!({"apiVersion": "roost.dev/v1", "kind": "WorkloadSet", "metadata": {"name": "web"},
           "spec": {"workloads": [{"apiVersion": "roost.dev/v1", "kind": "Workload",
             "metadata": {"name": "w"}, "spec": {"driver": "mock", "mock": {"runSeconds": v}}}]}})
}

/// The fields an error names.
fn fields(v: &Value) -> Vec<String> {
    v["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|x| x["field"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn setup(a: &Api) {
    assert_eq!(a.post("/v1/groups", json!({"name": "g1"})).0, 201);
    for s in ["s1", "s2", "s3"] {
        let (st, v) = a.post("/v1/subclouds", json!({"name": s, "group": "g1"}));
        assert_eq!(st, 201, "{v}");
    }
    let (st, v) = a.post("/v1/subclouds/s1/labels", json!({"set": {"tier": "edge"}}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["labels"]["tier"], "edge", "{v}");
}

#[test]
fn bad_strategies_name_every_field_and_verbs_say_why() {
    let a = Api::start();
    setup(&a);
    // Every problem at once, each by its field.
    let (s, v) = a.post(
        "/v1/strategies",
        json!({"name": "Bad_Name", "set": set(1), "release": "1.0", "applyType": "serial",
               "maxParallel": 3, "minHealthySeconds": -1, "offline": "wait"}),
    );
    assert_eq!(s, 422, "{v}");
    let f = fields(&v);
    for want in [
        "name",
        "set",
        "group",
        "maxParallel",
        "minHealthySeconds",
        "offline",
    ] {
        assert!(f.iter().any(|x| x == want), "{want} not named: {v}");
    }
    // A bad enum value is named by its field and hides nothing beside it.
    let (s, v) = a.post(
        "/v1/strategies",
        json!({"name": "x", "set": set(1), "group": "g1", "offline": "later",
               "applyType": "sometimes", "maxFailures": "many"}),
    );
    assert_eq!(s, 422, "{v}");
    assert_eq!(fields(&v), ["applyType", "maxFailures", "offline"], "{v}");
    // Targets that do not exist, or cover nothing.
    let cases = [
        (
            json!({"name": "x", "set": set(1), "group": "nope"}),
            "group",
        ),
        (
            json!({"name": "x", "set": set(1), "subclouds": ["s1", "zz"]}),
            "subclouds[1]",
        ),
        (
            json!({"name": "x", "set": set(1), "selector": "tier=core"}),
            "selector",
        ),
        (
            json!({"name": "x", "set": set(1), "selector": "=x"}),
            "selector",
        ),
        (
            json!({"name": "x", "release": "9.9", "group": "g1"}),
            "release",
        ),
        (
            json!({"name": "x", "set": set(1), "group": "g1", "maxParallel": 0}),
            "maxParallel",
        ),
        (
            json!({"name": "x", "set": set(1), "group": "g1", "maxFailures": "150%"}),
            "maxFailures",
        ),
        (
            json!({"name": "x", "set": {"kind": "Workload"}, "group": "g1"}),
            "set.apiVersion",
        ),
    ];
    for (body, field) in cases {
        let (s, v) = a.post("/v1/strategies", body.clone());
        assert_eq!(s, 422, "{body} -> {v}");
        assert!(
            fields(&v).iter().any(|x| x == field),
            "{body}: {field} not in {v}"
        );
    }
    // A body that is not JSON is a 400 with the position.
    let (s, v) = a.call("POST", "/v1/strategies", Some(b"{\"name\": ".to_vec()));
    assert_eq!(s, 400, "{v}");

    // The verbs, by state.
    let (s, v) = a.post(
        "/v1/strategies",
        json!({"name": "r1", "set": set(2), "group": "g1", "canary": 1}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["state"], "initial");
    assert_eq!(v["progress"]["total"], 3);
    let (s, v) = a.post("/v1/strategies/r1/approve", json!({}));
    assert_eq!(s, 409, "approve before apply: {v}");
    // Overlap with a strategy that has not ended (even initial) is refused by name.
    let (s, v) = a.post(
        "/v1/strategies",
        json!({"name": "r2", "set": set(3), "subclouds": ["s3"]}),
    );
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("r1"), "{v}");
    assert!(v["error"].as_str().unwrap().contains("s3"), "{v}");
    assert_eq!(a.post("/v1/strategies/r1/apply", json!({})).0, 200);
    let (s, v) = a.post("/v1/strategies/r1/apply", json!({}));
    assert_eq!(s, 409, "apply twice: {v}");
    // With no hosts each step completes at once: the canary pauses it.
    let t = Instant::now();
    let v = loop {
        let (_, v) = a.call("GET", "/v1/strategies/r1", None);
        if v["state"] == "paused" {
            break v;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never paused: {v}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(v["steps"][0]["state"], "complete", "{v}");
    assert_eq!(v["steps"][1]["state"], "pending", "{v}");
    let (s, v) = a.call("DELETE", "/v1/strategies/r1", None);
    assert_eq!(s, 409, "rm while paused: {v}");
    assert_eq!(a.post("/v1/strategies/r1/approve", json!({})).0, 200);
    let t = Instant::now();
    loop {
        let (_, v) = a.call("GET", "/v1/strategies/r1", None);
        if v["state"] == "complete" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "never complete: {v}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (s, v) = a.post("/v1/strategies/r1/abort", json!({}));
    assert_eq!(s, 409, "abort after the end: {v}");
    // An initial strategy aborted: its steps skipped.
    assert_eq!(
        a.post(
            "/v1/strategies",
            json!({"name": "r3", "set": set(4), "group": "g1"})
        )
        .0,
        201
    );
    let (s, v) = a.post("/v1/strategies/r3/abort", json!({}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "aborted", "{v}");
    assert_eq!(v["progress"]["skipped"], 3, "{v}");
    assert_eq!(a.call("DELETE", "/v1/strategies/r3", None).0, 200);
    assert_eq!(a.call("GET", "/v1/strategies/r3", None).0, 404);
    // Labels: a bad key or value names it.
    let (s, v) = a.post("/v1/subclouds/s1/labels", json!({"set": {"bad key": "x"}}));
    assert_eq!(s, 422, "{v}");
    let (s, _) = a.post("/v1/subclouds/nope/labels", json!({"set": {}}));
    assert_eq!(s, 404);
}

/// splitmix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

#[test]
fn random_strategy_bodies_never_get_a_5xx() {
    let a = Api::start();
    setup(&a);
    let mut r = Rng(0x57a7_e61e_0000_0001);
    let values = [
        json!(null),
        json!(true),
        json!(-1),
        json!(0),
        json!(1),
        json!(10_001),
        json!(1e308),
        json!(""),
        json!("g1"),
        json!("s1"),
        json!("wait:1s"),
        json!("wait:-5s"),
        json!("50%"),
        json!("tier=edge,x!=y"),
        json!("serial"),
        json!("parallel"),
        json!([]),
        json!(["s1", "s2"]),
        json!(["s1", "s1"]),
        json!({}),
        set(7),
    ];
    let keys = [
        "name",
        "set",
        "release",
        "group",
        "subclouds",
        "selector",
        "applyType",
        "maxParallel",
        "stopOnFailure",
        "maxFailures",
        "offline",
        "minHealthySeconds",
        "canary",
        "rollback",
        "stepTimeoutSeconds",
        "bogus",
    ];
    let mut created = 0;
    for i in 0..2000 {
        let mut body = json!({"name": format!("f{i}"), "set": set(i), "subclouds": ["s2"]});
        for _ in 0..(r.next() % 4) {
            let k = *r.pick(&keys);
            body[k] = r.pick(&values).clone();
        }
        let mut bytes = body.to_string().into_bytes();
        if r.next().is_multiple_of(5) && !bytes.is_empty() {
            let n = (r.next() % bytes.len() as u64) as usize;
            bytes[n] ^= 1 << (r.next() % 8);
        }
        let (s, v) = a.call("POST", "/v1/strategies", Some(bytes.clone()));
        assert!(
            s < 500,
            "request {i}: {} -> {s} {v}\nlog:\n{}",
            String::from_utf8_lossy(&bytes),
            a.c.log()
        );
        if s >= 400 {
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{i}: {v}"
            );
        } else {
            created += 1;
            // Apply, abort or remove it at random; nothing may 5xx.
            let name = v["name"].as_str().unwrap().to_string();
            let verb = *r.pick(&["apply", "abort", "approve"]);
            let (s, v) = a.post(&format!("/v1/strategies/{name}/{verb}"), json!({}));
            assert!(s < 500, "{verb} {name}: {s} {v}");
            let (s, v) = a.call("POST", &format!("/v1/strategies/{name}/abort"), None);
            assert!(s < 500, "abort {name}: {s} {v}");
            let t = Instant::now();
            loop {
                let (s, v) = a.call("DELETE", &format!("/v1/strategies/{name}"), None);
                assert!(s < 500, "rm {name}: {s} {v}");
                if s == 200 {
                    break;
                }
                assert!(t.elapsed() < Duration::from_secs(30), "rm {name}: {v}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    println!("{created} of 2000 random strategies were valid and went through their verbs");
    assert!(
        created > 0,
        "no valid strategy among the random ones: the test proves little"
    );
    let (s, v) = a.call("GET", "/v1/strategies", None);
    assert_eq!(s, 200, "{v}");
}

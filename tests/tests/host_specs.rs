//! At least 30 invalid specs sent to the live daemon, each rejected with 422 and the
//! right field path; and a spec with several problems reports all of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use roost_tests::daemon::Daemon;
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "apiVersion": "roost.dev/v1",
        "kind": "Workload",
        "metadata": {"name": "w"},
        "spec": {"driver": "mock"}
    })
}

fn with(path: &[&str], v: Value) -> Value {
    let mut doc = base();
    let mut cur = &mut doc;
    for p in &path[..path.len() - 1] {
        if cur.get(*p).is_none() {
            cur[*p] = json!({});
        }
        cur = cur.get_mut(*p).unwrap();
    }
    cur[path[path.len() - 1]] = v;
    doc
}

fn container(c: Value) -> Value {
    let mut d = base();
    d["spec"]["driver"] = json!("container");
    d["spec"]["container"] = c;
    d
}

fn vm(v: Value) -> Value {
    let mut d = base();
    d["spec"]["driver"] = json!("vm");
    d["spec"]["vm"] = v;
    d
}

#[test]
fn invalid_specs_name_their_field() {
    let d = Daemon::start();
    let cases: Vec<(Value, &str)> = vec![
        (with(&["apiVersion"], json!("roost.dev/v2")), "apiVersion"),
        (with(&["kind"], json!("Pod")), "kind"),
        (with(&["metadata", "name"], json!("Web")), "metadata.name"),
        (with(&["metadata", "name"], json!("1web")), "metadata.name"),
        (with(&["metadata", "name"], json!("")), "metadata.name"),
        (
            with(&["metadata", "name"], json!("a".repeat(64))),
            "metadata.name",
        ),
        (with(&["metadata", "name"], json!(42)), "metadata.name"),
        (
            with(&["metadata", "labels"], json!({"a b": "x"})),
            "metadata.labels.a b",
        ),
        (with(&["metadata", "owner"], json!("me")), "metadata.owner"),
        (with(&["spec", "driver"], json!("docker")), "spec.driver"),
        (with(&["spec", "colour"], json!("red")), "spec.colour"),
        (
            with(&["spec", "restartPolicy"], json!("sometimes")),
            "spec.restartPolicy",
        ),
        (
            with(&["spec", "stopGraceSeconds"], json!(7200)),
            "spec.stopGraceSeconds",
        ),
        (
            with(&["spec", "stopGraceSeconds"], json!(-1)),
            "spec.stopGraceSeconds",
        ),
        (
            with(&["spec", "mock", "exitCode"], json!(300)),
            "spec.mock.exitCode",
        ),
        (
            with(&["spec", "mock", "runSeconds"], json!("ten")),
            "spec.mock.runSeconds",
        ),
        (
            with(&["spec", "mock", "runSecond"], json!(1)),
            "spec.mock.runSecond",
        ),
        (
            with(&["spec", "mock", "failStart"], json!("yes")),
            "spec.mock.failStart",
        ),
        (
            with(&["spec", "resources", "cpu"], json!("lots")),
            "spec.resources.cpu",
        ),
        (
            with(&["spec", "resources", "cpu"], json!("0m")),
            "spec.resources.cpu",
        ),
        (
            with(&["spec", "resources", "cores"], json!(2)),
            "spec.resources.cores",
        ),
        (
            with(
                &["spec", "resources"],
                json!({"cpuPolicy": "dedicated", "cores": 0}),
            ),
            "spec.resources.cores",
        ),
        (
            with(
                &["spec", "resources"],
                json!({"cpuPolicy": "dedicated", "cpu": "500m"}),
            ),
            "spec.resources.cpu",
        ),
        (
            with(&["spec", "resources", "cpuPolicy"], json!("exclusive")),
            "spec.resources.cpuPolicy",
        ),
        (
            with(
                &["spec", "resources", "realtime"],
                json!({"policy": "fifo", "priority": 0}),
            ),
            "spec.resources.realtime.priority",
        ),
        (
            with(
                &["spec", "resources", "realtime"],
                json!({"policy": "fifo", "priority": 100}),
            ),
            "spec.resources.realtime.priority",
        ),
        (
            with(
                &["spec", "resources", "realtime"],
                json!({"policy": "deadline", "priority": 5}),
            ),
            "spec.resources.realtime.policy",
        ),
        (
            with(&["spec", "resources", "memoryMiB"], json!(0)),
            "spec.resources.memoryMiB",
        ),
        (
            with(&["spec", "resources", "memory"], json!(64)),
            "spec.resources.memory",
        ),
        (
            {
                let mut d = base();
                d["spec"]["driver"] = json!("container");
                d
            },
            "spec.container",
        ),
        (with(&["spec", "vm"], json!({"kernel": "/k"})), "spec.vm"),
        (container(json!({"image": ""})), "spec.container.image"),
        (
            container(json!({"image": "busybox", "workingDir": "tmp"})),
            "spec.container.workingDir",
        ),
        (
            container(json!({"image": "busybox", "env": {"A=B": "c"}})),
            "spec.container.env.A=B",
        ),
        (
            container(json!({"image": "busybox", "user": "a:b:c"})),
            "spec.container.user",
        ),
        (
            container(
                json!({"image": "busybox", "mounts": [{"source": "rel", "destination": "/d"}]}),
            ),
            "spec.container.mounts[0].source",
        ),
        (
            container(
                json!({"image": "busybox", "mounts": [{"source": "/s", "destination": "/d", "readonly": true}]}),
            ),
            "spec.container.mounts[0].readonly",
        ),
        (
            container(json!({"image": "busybox", "command": "sh"})),
            "spec.container.command",
        ),
        (vm(json!({"kernel": "vmlinux"})), "spec.vm.kernel"),
        (vm(json!({"kernel": "/k", "vcpus": 0})), "spec.vm.vcpus"),
        (vm(json!({"kernel": "/k", "vcpus": 65})), "spec.vm.vcpus"),
        (
            vm(json!({"kernel": "/k", "memoryMiB": 0})),
            "spec.vm.memoryMiB",
        ),
        (
            vm(json!({"kernel": "/k", "initrd": "initrd.img"})),
            "spec.vm.initrd",
        ),
        (vm(json!({"kernel": "/k", "nics": []})), "spec.vm.nics"),
        (
            vm(json!({"kernel": "/k", "disks": [{"path": "rel.img"}]})),
            "spec.vm.disks[0].path",
        ),
        (
            json!({"kind": "Workload", "metadata": {"name": "w"}, "spec": {"driver": "mock"}}),
            "apiVersion",
        ),
        (
            json!({"apiVersion": "roost.dev/v1", "kind": "Workload", "spec": {"driver": "mock"}}),
            "metadata",
        ),
        (
            json!({"apiVersion": "roost.dev/v1", "kind": "Workload", "metadata": {"name": "w"}, "spec": 5}),
            "spec",
        ),
    ];
    assert!(cases.len() >= 30);
    for (doc, field) in &cases {
        let (s, v) = d.api("POST", "/v1/workloads", Some(&doc.to_string()));
        assert_eq!(s, 422, "expected 422 for {field}: {v}");
        let details = v["details"]
            .as_array()
            .unwrap_or_else(|| panic!("no details for {field}: {v}"));
        assert!(
            details.iter().any(|e| e["field"] == *field),
            "expected field `{field}` in {v}"
        );
        for e in details {
            assert!(
                !e["message"].as_str().unwrap_or("").is_empty(),
                "empty message: {v}"
            );
        }
    }
    // Nothing was created by any of them.
    let (_, v) = d.api("GET", "/v1/workloads", None);
    assert_eq!(v.as_array().unwrap().len(), 0, "{v}");
}

#[test]
fn every_problem_at_once_in_yaml_too() {
    let d = Daemon::start();
    let yaml = "apiVersion: roost.dev/v1\nkind: Workload\nmetadata:\n  name: Bad_Name\n\
                spec:\n  driver: mock\n  restartPolicy: sometimes\n  resources:\n    \
                cpuPolicy: dedicated\n    cores: 0\n  mock:\n    exitCode: 999\n    extra: 1\n";
    let (s, v) = d.api("POST", "/v1/workloads", Some(yaml));
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    // The unknown enum value and the unknown field do not hide the rules broken
    // beside them: one answer lists every path.
    for f in [
        "spec.restartPolicy",
        "spec.mock.extra",
        "metadata.name",
        "spec.resources.cores",
        "spec.mock.exitCode",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    assert_eq!(fields.len(), 5, "each problem once: {fields:?}");
    let msg = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "spec.mock.extra")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("unknown field"), "{msg}");
    // Without the structural errors, the others still show together.
    let yaml = yaml
        .replace("  restartPolicy: sometimes\n", "")
        .replace("    extra: 1\n", "");
    let (s, v) = d.api("POST", "/v1/workloads", Some(&yaml));
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "metadata.name",
        "spec.resources.cores",
        "spec.mock.exitCode",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    // The CLI prints them all and exits 1.
    let f = roost_tests::daemon::write_file(d.dir.path(), "bad.yaml", &yaml);
    let out = d.cli(&["apply", "-f", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("spec.resources.cores: must be at least 1 when cpuPolicy is dedicated"),
        "{e}"
    );
}

/// Kubernetes' split: a body that is not a document at all is 400 and says where it
/// broke; a document that breaks the spec is 422 and lists every field.
#[test]
fn a_body_that_is_no_document_is_400_and_says_where() {
    let d = Daemon::start();
    let good = base().to_string();
    let cut = &good[..good.len() / 2];
    for (body, want) in [
        (cut.to_string(), "line 1, column"),
        (
            "{\n  \"apiVersion\": \"roost.dev/v1\",\n  \"kind\" \"Workload\"\n}".to_string(),
            "line 3, column",
        ),
        (
            "apiVersion: roost.dev/v1\nkind: Workload\nmetadata: {name: w\nspec: {}\n".to_string(),
            "line ",
        ),
        ("[1, 2]".to_string(), "is a list, not a workload spec"),
        (
            "\"a string\"".to_string(),
            "is a string, not a workload spec",
        ),
        ("just words".to_string(), "is a string, not a workload spec"),
        ("".to_string(), "is empty, not a workload spec"),
    ] {
        let (s, v) = d.api("POST", "/v1/workloads", Some(&body));
        assert_eq!(s, 400, "{body:?}: {v}");
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.contains(want), "{body:?}: `{want}` not in {e}");
        assert_eq!(v["details"][0]["field"], "(document)", "{v}");
    }
    // The same for a desired set; its envelope and every spec in it are checked
    // together once it parses.
    let (s, v) = d.api("POST", "/v1/apply", Some(r#"{"workloads": [{"apiVe"#));
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("line 1, column"),
        "{v}"
    );
    let (s, v) = d.api("POST", "/v1/apply", Some("[]"));
    assert_eq!(s, 400, "{v}");
    let mut bad = base();
    bad["spec"]["restartPolicy"] = json!("sometimes");
    bad["spec"]["resources"] = json!({"cpuPolicy": "dedicated", "cores": 0});
    let body = json!({"workloads": [base(), bad, base()], "prune": "yes", "extra": 1});
    let (s, v) = d.api("POST", "/v1/apply", Some(&body.to_string()));
    assert_eq!(s, 422, "{v}");
    let fields: Vec<&str> = v["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "extra",
        "prune",
        "workloads[1].spec.restartPolicy",
        "workloads[1].spec.resources.cores",
        "workloads[2].metadata.name",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    let (s, v) = d.api("POST", "/v1/apply", Some(r#"{"workloads": [[1]]}"#));
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["details"][0]["field"], "workloads[0]", "{v}");
    // Over the spec limit (256 KiB) but under the body limit: 413 with the sizes.
    let mut big = base();
    big["metadata"]["labels"] = json!({"pad": "x".repeat(300 * 1024)});
    let (s, v) = d.api("POST", "/v1/workloads", Some(&big.to_string()));
    assert_eq!(s, 413, "{v}");
    assert!(v["error"].as_str().unwrap().contains("262144"), "{v}");
    // Nothing was created.
    assert!(d.names().is_empty());
}

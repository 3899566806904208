//! Parsing and validating workload specs: every problem at once, each with its field
//! path and the fix.
//!
//! Two passes. The structural pass walks the document against the JSON schema that
//! schemars generates from the spec types (so unknown fields, wrong types and bad enum
//! values are all reported, not just the first). The semantic pass checks the typed
//! spec (ranges, combinations, names).

use crate::spec::{CpuPolicy, DriverKind, Workload, API_VERSION, KIND};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::OnceLock;

/// One problem with a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// Path of the offending field, e.g. `spec.resources.cores`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A spec that cannot be accepted; holds every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid workload spec: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ValidationError(pub Vec<FieldError>);

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Largest spec document accepted (bytes).
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

/// Parse a YAML or JSON document into a JSON value (no schema check yet).
pub fn parse_document(text: &str) -> Result<Value, ValidationError> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(ValidationError(vec![err(
            "(document)",
            format!(
                "is {} bytes; specs are limited to {MAX_SPEC_BYTES} bytes",
                text.len()
            ),
        )]));
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(|e| {
            ValidationError(vec![err(
                "(document)",
                format!("is not valid JSON: {e}; fix the syntax at that line and column"),
            )])
        })
    } else {
        serde_yaml::from_str::<Value>(text).map_err(|e| {
            ValidationError(vec![err(
                "(document)",
                format!("is not valid YAML or JSON: {e}; fix the syntax there"),
            )])
        })
    }
}

/// Parse and validate one workload from YAML or JSON text.
pub fn parse_workload(text: &str) -> Result<Workload, ValidationError> {
    validate_value(parse_document(text)?)
}

/// Validate a JSON value as a workload: every problem at once.
pub fn validate_value(mut doc: Value) -> Result<Workload, ValidationError> {
    let mut errors = Vec::new();
    let root = schema();
    check(&doc, root, root, "", &mut errors);
    if !errors.is_empty() {
        // Drop unknown fields so the semantic pass can still speak about the rest.
        for e in &errors {
            if e.message.starts_with("unknown field") {
                remove_path(&mut doc, &e.field);
            }
        }
    }
    match serde_json::from_value::<Workload>(doc) {
        Ok(w) => {
            semantic(&w, &mut errors);
            if errors.is_empty() {
                Ok(w)
            } else {
                Err(ValidationError(errors))
            }
        }
        Err(e) => {
            if errors.is_empty() {
                errors.push(err("(document)", format!("does not match the schema: {e}")));
            }
            Err(ValidationError(errors))
        }
    }
}

fn schema() -> &'static Value {
    static S: OnceLock<Value> = OnceLock::new();
    S.get_or_init(|| schemars::schema_for!(Workload).to_value())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn resolve<'a>(root: &'a Value, s: &'a Value) -> &'a Value {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        if let Some(name) = r.strip_prefix("#/$defs/") {
            if let Some(d) = root.get("$defs").and_then(|d| d.get(name)) {
                return d;
            }
        }
    }
    s
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => true,
    }
}

fn want(t: &str) -> &'static str {
    match t {
        "boolean" => "true or false",
        "integer" => "a whole number",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        _ => "something else",
    }
}

/// Walk `v` against schema `s`, pushing every mismatch.
fn check(v: &Value, s: &Value, root: &Value, path: &str, out: &mut Vec<FieldError>) {
    let s = resolve(root, s);
    let shown = if path.is_empty() { "(document)" } else { path };
    // oneOf/anyOf: enums of consts, or Option<T> as [T, null].
    if let Some(alts) = s
        .get("oneOf")
        .or_else(|| s.get("anyOf"))
        .and_then(Value::as_array)
    {
        let consts: Vec<&Value> = alts
            .iter()
            .filter_map(|a| resolve(root, a).get("const"))
            .collect();
        if consts.len() == alts.len() && !consts.is_empty() {
            if !consts.contains(&v) {
                not_one_of(shown, v, consts.iter().copied(), out);
            }
            return;
        }
        if v.is_null()
            && alts
                .iter()
                .any(|a| a.get("type") == Some(&Value::from("null")))
        {
            return;
        }
        // Check against the first non-null alternative (Option<T>).
        if let Some(a) = alts
            .iter()
            .find(|a| a.get("type") != Some(&Value::from("null")))
        {
            check(v, a, root, path, out);
        }
        return;
    }
    if let Some(c) = s.get("const") {
        if c != v {
            out.push(err(shown, format!("must be {c}, found {}", short(v))));
        }
        return;
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            not_one_of(shown, v, e.iter(), out);
        }
        return;
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, v)),
            _ => true,
        };
        if !ok {
            let expected = match t {
                Value::String(t) => want(t).to_string(),
                Value::Array(ts) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null")
                    .map(want)
                    .collect::<Vec<_>>()
                    .join(" or "),
                _ => String::new(),
            };
            out.push(err(
                shown,
                format!("must be {expected}, found {} {}", type_name(v), short(v)),
            ));
            return;
        }
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            if n < min {
                out.push(err(shown, format!("must be at least {min}, found {n}")));
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            if n > max {
                out.push(err(shown, format!("must be at most {max}, found {n}")));
            }
        }
        if let Some(f) = s.get("format").and_then(Value::as_str) {
            let limit = match f {
                "uint8" => Some(u8::MAX as f64),
                "uint16" => Some(u16::MAX as f64),
                "uint32" => Some(u32::MAX as f64),
                "int32" => Some(i32::MAX as f64),
                _ => None,
            };
            if let Some(l) = limit {
                if n > l {
                    out.push(err(shown, format!("{n} is too large (at most {l})")));
                }
            }
        }
    }
    match v {
        Value::Object(map) => check_object(map, s, root, path, out),
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item, item_schema, root, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn check_object(
    map: &Map<String, Value>,
    s: &Value,
    root: &Value,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let props = s.get("properties").and_then(Value::as_object);
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                out.push(err(join(path, r), "is required; add it"));
            }
        }
    }
    for (k, val) in map {
        let p = join(path, k);
        match props.and_then(|p| p.get(k)) {
            Some(ps) => check(val, ps, root, &p, out),
            None => match s.get("additionalProperties") {
                Some(Value::Bool(false)) => {
                    let mut known: Vec<&str> = props
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    known.sort_unstable();
                    let hint = closest(k, &known)
                        .map(|c| format!("; did you mean `{c}`?"))
                        .unwrap_or_default();
                    out.push(err(
                        p,
                        format!(
                            "unknown field; remove it{hint} (known fields: {})",
                            known.join(", ")
                        ),
                    ));
                }
                Some(extra @ Value::Object(_)) => check(val, extra, root, &p, out),
                _ => {}
            },
        }
    }
}

fn not_one_of<'a>(
    shown: &str,
    v: &Value,
    allowed: impl Iterator<Item = &'a Value>,
    out: &mut Vec<FieldError>,
) {
    let list: Vec<String> = allowed.map(|c| c.to_string()).collect();
    out.push(err(
        shown,
        format!(
            "{} is not allowed; use one of {}",
            short(v),
            list.join(", ")
        ),
    ));
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// The known name closest to `k` (case-insensitive edit distance ≤ 2).
fn closest<'a>(k: &str, known: &[&'a str]) -> Option<&'a str> {
    let k = k.to_ascii_lowercase();
    known
        .iter()
        .map(|c| (levenshtein(&k, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn remove_path(doc: &mut Value, path: &str) {
    // Paths of unknown fields are dotted keys with optional [i] indexes.
    let mut parts: Vec<String> = Vec::new();
    for seg in path.split('.') {
        let mut rest = seg;
        if let Some(i) = rest.find('[') {
            parts.push(rest[..i].to_string());
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                parts.push(rest[..=end].to_string());
                rest = &rest[end + 1..];
            }
        } else {
            parts.push(rest.to_string());
        }
    }
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = doc;
    for p in parents {
        let next = if let Some(idx) = p.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            idx.parse::<usize>().ok().and_then(|i| cur.get_mut(i))
        } else {
            cur.get_mut(p.as_str())
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(obj) = cur.as_object_mut() {
        obj.remove(last.as_str());
    }
}

/// `a-z0-9-`, starting with a letter, not ending with `-`, 1–63 chars.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 63
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && !n.ends_with('-')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn semantic(w: &Workload, out: &mut Vec<FieldError>) {
    if w.api_version != API_VERSION {
        out.push(err(
            "apiVersion",
            format!("`{}` is not supported; use `{API_VERSION}`", w.api_version),
        ));
    }
    if w.kind != KIND {
        out.push(err(
            "kind",
            format!("`{}` is not supported; use `{KIND}`", w.kind),
        ));
    }
    let name = &w.metadata.name;
    if !valid_name(name) {
        out.push(err(
            "metadata.name",
            format!(
                "`{name}` is not a valid name; use 1–63 characters of a-z, 0-9 and '-', \
                 starting with a letter and not ending with '-'"
            ),
        ));
    }
    for (k, v) in &w.metadata.labels {
        if k.is_empty() || k.len() > 63 || k.chars().any(|c| c.is_whitespace() || c == '=') {
            out.push(err(
                format!("metadata.labels.{k}"),
                "label keys must be 1–63 characters without spaces or '='",
            ));
        }
        if v.len() > 253 {
            out.push(err(
                format!("metadata.labels.{k}"),
                "label values must be at most 253 characters",
            ));
        }
    }
    let s = &w.spec;
    // Exactly the section that matches the driver.
    let sections = [
        (DriverKind::Container, s.container.is_some(), "container"),
        (DriverKind::Vm, s.vm.is_some(), "vm"),
        (DriverKind::Mock, s.mock.is_some(), "mock"),
    ];
    for (kind, present, key) in sections {
        if kind == s.driver && !present && kind != DriverKind::Mock {
            out.push(err(
                format!("spec.{key}"),
                format!("is required when driver is `{key}`; add a `{key}:` section"),
            ));
        }
        if kind != s.driver && present {
            out.push(err(
                format!("spec.{key}"),
                format!(
                    "is only for driver `{key}`, but driver is `{}`; remove the section \
                     or set `spec.driver: {key}`",
                    s.driver.as_str()
                ),
            ));
        }
    }
    if let Some(c) = &s.container {
        if c.image.trim().is_empty() {
            out.push(err(
                "spec.container.image",
                "must not be empty; name an image, e.g. `busybox:latest`",
            ));
        } else if c.image.chars().any(char::is_whitespace) {
            out.push(err(
                "spec.container.image",
                format!("`{}` contains whitespace; remove it", c.image),
            ));
        }
        for (i, a) in c.command.iter().enumerate() {
            if a.contains('\0') {
                out.push(err(
                    format!("spec.container.command[{i}]"),
                    "contains a NUL byte",
                ));
            }
        }
        if c.command.first().is_some_and(String::is_empty) {
            out.push(err(
                "spec.container.command[0]",
                "must not be empty; name the program to run",
            ));
        }
        for (i, a) in c.args.iter().enumerate() {
            if a.contains('\0') {
                out.push(err(
                    format!("spec.container.args[{i}]"),
                    "contains a NUL byte",
                ));
            }
        }
        for k in c.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                out.push(err(
                    format!("spec.container.env.{k}"),
                    "variable names must be non-empty and contain no '=' or NUL",
                ));
            }
        }
        if let Some(wd) = &c.working_dir {
            if !wd.starts_with('/') {
                out.push(err(
                    "spec.container.workingDir",
                    format!("`{wd}` must be an absolute path (start with '/')"),
                ));
            }
        }
        if let Some(u) = &c.user {
            let ok = !u.is_empty()
                && u.split(':').count() <= 2
                && u.split(':')
                    .all(|p| !p.is_empty() && !p.contains(char::is_whitespace));
            if !ok {
                out.push(err(
                    "spec.container.user",
                    format!("`{u}` is not a user; use `uid`, `uid:gid` or a user name"),
                ));
            }
        }
        let mut dests = std::collections::BTreeSet::new();
        for (i, m) in c.mounts.iter().enumerate() {
            if !m.source.starts_with('/') {
                out.push(err(
                    format!("spec.container.mounts[{i}].source"),
                    format!("`{}` must be an absolute host path", m.source),
                ));
            }
            if !m.destination.starts_with('/') {
                out.push(err(
                    format!("spec.container.mounts[{i}].destination"),
                    format!("`{}` must be an absolute path", m.destination),
                ));
            } else if !dests.insert(m.destination.as_str()) {
                out.push(err(
                    format!("spec.container.mounts[{i}].destination"),
                    format!("`{}` is mounted twice; keep one", m.destination),
                ));
            }
        }
    }
    if let Some(v) = &s.vm {
        if v.kernel.is_empty() || !v.kernel.starts_with('/') {
            out.push(err(
                "spec.vm.kernel",
                format!("`{}` must be an absolute path to a kernel image", v.kernel),
            ));
        }
        if let Some(i) = &v.initrd {
            if !i.starts_with('/') {
                out.push(err(
                    "spec.vm.initrd",
                    format!("`{i}` must be an absolute path"),
                ));
            }
        }
        if let Some(c) = &v.cmdline {
            if c.len() > 2048 || c.contains('\0') {
                out.push(err(
                    "spec.vm.cmdline",
                    "must be at most 2048 bytes without NUL bytes",
                ));
            }
        }
        if v.vcpus == 0 || v.vcpus > 64 {
            out.push(err(
                "spec.vm.vcpus",
                format!("{} is out of range; use 1 to 64", v.vcpus),
            ));
        }
        if v.memory_mib < 2 || v.memory_mib > 1024 * 1024 {
            out.push(err(
                "spec.vm.memoryMiB",
                format!("{} is out of range; use 2 to 1048576 MiB", v.memory_mib),
            ));
        }
        if let Some(m) = s.resources.memory_mib {
            if m < v.memory_mib {
                out.push(err(
                    "spec.resources.memoryMiB",
                    format!(
                        "{m} is less than the VM's memory ({} MiB); raise it or leave it out",
                        v.memory_mib
                    ),
                ));
            }
        }
    }
    if let Some(m) = &s.mock {
        if !(0..=255).contains(&m.exit_code) {
            out.push(err(
                "spec.mock.exitCode",
                format!("{} is out of range; use 0 to 255", m.exit_code),
            ));
        }
        if m.run_seconds.is_some_and(|r| r > 365 * 24 * 3600) {
            out.push(err(
                "spec.mock.runSeconds",
                "must be at most a year (31536000); leave it out to run until stopped",
            ));
        }
    }
    let r = &s.resources;
    let whole_cores = r.cpu_policy == CpuPolicy::Dedicated || r.realtime.is_some();
    if let Some(cpu) = &r.cpu {
        if whole_cores {
            out.push(err(
                "spec.resources.cpu",
                "is for shared workloads; dedicated and real-time workloads ask for whole \
                 `cores` instead",
            ));
        } else if crate::admission::parse_millicores(cpu).is_none() {
            out.push(err(
                "spec.resources.cpu",
                format!(
                    "`{cpu}` is not a CPU amount; use millicores like \"500m\" or cores like \"2\""
                ),
            ));
        }
    }
    match (r.cores, whole_cores) {
        (Some(0), true) => out.push(err(
            "spec.resources.cores",
            if r.cpu_policy == CpuPolicy::Dedicated {
                "must be at least 1 when cpuPolicy is dedicated"
            } else {
                "must be at least 1 for a real-time workload"
            },
        )),
        (Some(n), true) if n > 1024 => out.push(err(
            "spec.resources.cores",
            format!("{n} is out of range; use 1 to 1024"),
        )),
        (Some(_), false) => out.push(err(
            "spec.resources.cores",
            "is for dedicated or real-time workloads; set `cpuPolicy: dedicated`, or use \
             `cpu` for a share",
        )),
        _ => {}
    }
    if let Some(rt) = &r.realtime {
        if !(1..=99).contains(&rt.priority) {
            out.push(err(
                "spec.resources.realtime.priority",
                format!("{} is out of range; use 1 to 99", rt.priority),
            ));
        }
    }
    if r.memory_mib == Some(0) {
        out.push(err(
            "spec.resources.memoryMiB",
            "must be at least 1; leave it out for no limit",
        ));
    }
    if s.stop_grace_seconds.is_some_and(|g| g > 3600) {
        out.push(err("spec.stopGraceSeconds", "must be at most 3600 seconds"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: roost.dev/v1\nkind: Workload\nmetadata:\n  name: web\n\
                        spec:\n  driver: mock\n  mock:\n    runSeconds: 5\n";

    #[test]
    fn good_yaml_and_json_are_the_same() {
        let y = parse_workload(GOOD).unwrap();
        let j = parse_workload(&serde_json::to_string(&y).unwrap()).unwrap();
        assert_eq!(y, j);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "apiVersion: roost.dev/v2\nkind: Workload\nmetadata:\n  name: Web\n\
                    spec:\n  driver: mock\n  colour: red\n  resources:\n    cores: 0\n    \
                    cpuPolicy: dedicated\n    realtime: {policy: fifo, priority: 100}\n";
        let e = parse_workload(text).unwrap_err();
        let fields: Vec<&str> = e.0.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "apiVersion",
            "metadata.name",
            "spec.colour",
            "spec.resources.cores",
            "spec.resources.realtime.priority",
        ] {
            assert!(fields.contains(&f), "missing {f} in {fields:?}");
        }
        let cores =
            e.0.iter()
                .find(|e| e.field == "spec.resources.cores")
                .unwrap();
        assert_eq!(
            cores.message,
            "must be at least 1 when cpuPolicy is dedicated"
        );
    }

    #[test]
    fn unknown_field_suggests_the_right_one() {
        let text = GOOD.replace("runSeconds", "runSecond");
        let e = parse_workload(&text).unwrap_err();
        assert_eq!(e.0[0].field, "spec.mock.runSecond");
        assert!(e.0[0].message.contains("runSeconds"), "{}", e.0[0].message);
    }

    #[test]
    fn names() {
        assert!(valid_name("a"));
        assert!(valid_name("web-1"));
        assert!(!valid_name("1web"));
        assert!(!valid_name("web-"));
        assert!(!valid_name(&"a".repeat(64)));
        assert!(!valid_name("Web"));
    }
}

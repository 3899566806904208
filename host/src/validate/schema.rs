//! The structural pass: walk a document against the JSON schema schemars generates
//! from the spec types, reporting every unknown field, wrong type, bad enum value,
//! missing required field and out-of-range number or length, each with its path.
//! It also records where each bad value sits, so the rules pass can run on the
//! document without them.

use super::{err, FieldError};
use serde_json::{Map, Value};

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// What the structural pass found.
#[derive(Debug, Default)]
pub(super) struct Findings {
    /// Every problem, in document order.
    pub errors: Vec<FieldError>,
    /// Where each offending value sits (unknown fields and values of the wrong
    /// type, enum, range or length); missing required fields have none.
    pub bad: Vec<Vec<Step>>,
}

/// Walk `v` against the schema `root`.
pub(super) fn check_document(v: &Value, root: &Value) -> Findings {
    let mut w = Walk {
        root,
        path: Vec::new(),
        found: Findings::default(),
    };
    w.check(v, root);
    w.found
}

/// Remove the value at `path` from `doc` (a mapping entry is removed, a list item
/// is replaced by null so later indexes keep their meaning).
pub(super) fn remove_at(doc: &mut Value, path: &[Step]) {
    let Some((last, parents)) = path.split_last() else {
        *doc = Value::Null;
        return;
    };
    let mut cur = doc;
    for s in parents {
        let next = match s {
            Step::Key(k) => cur.get_mut(k.as_str()),
            Step::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur) {
        (Step::Key(k), Value::Object(m)) => {
            m.remove(k);
        }
        (Step::Index(i), Value::Array(a)) => {
            if let Some(slot) = a.get_mut(*i) {
                *slot = Value::Null;
            }
        }
        _ => {}
    }
}

/// The path as users write it: `spec.container.mounts[0].source`.
pub(super) fn show(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() {
        "(document)".into()
    } else {
        s
    }
}

struct Walk<'a> {
    root: &'a Value,
    path: Vec<Step>,
    found: Findings,
}

impl<'a> Walk<'a> {
    fn resolve(&self, s: &'a Value) -> &'a Value {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            if let Some(name) = r.strip_prefix("#/$defs/") {
                if let Some(d) = self.root.get("$defs").and_then(|d| d.get(name)) {
                    return d;
                }
            }
        }
        s
    }

    /// A problem with the value at the current path.
    fn bad(&mut self, message: String) {
        self.found.errors.push(err(show(&self.path), message));
        self.found.bad.push(self.path.clone());
    }

    fn check(&mut self, v: &Value, s: &'a Value) {
        let s = self.resolve(s);
        // oneOf/anyOf: enums of consts, or Option<T> as [T, null].
        if let Some(alts) = s
            .get("oneOf")
            .or_else(|| s.get("anyOf"))
            .and_then(Value::as_array)
        {
            let consts: Vec<&Value> = alts
                .iter()
                .filter_map(|a| self.resolve(a).get("const"))
                .collect();
            if consts.len() == alts.len() && !consts.is_empty() {
                if !consts.contains(&v) {
                    self.bad(not_one_of(v, consts.iter().copied()));
                }
                return;
            }
            let is_null = |a: &Value| a.get("type") == Some(&Value::from("null"));
            if v.is_null() && alts.iter().any(is_null) {
                return;
            }
            // Check against the first non-null alternative (Option<T>).
            if let Some(a) = alts.iter().find(|a| !is_null(a)) {
                self.check(v, a);
            }
            return;
        }
        if let Some(c) = s.get("const") {
            if c != v {
                self.bad(format!("must be {c}, found {}", short(v)));
            }
            return;
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(v) {
                self.bad(not_one_of(v, e.iter()));
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
                self.bad(format!(
                    "must be {expected}, found {} {}",
                    type_name(v),
                    short(v)
                ));
                return;
            }
        }
        if let Some(n) = v.as_f64() {
            if let Some(m) = range_problem(n, s) {
                self.bad(m);
            }
        }
        if let Some(text) = v.as_str() {
            let len = text.chars().count() as u64;
            let min = s.get("minLength").and_then(Value::as_u64);
            let max = s.get("maxLength").and_then(Value::as_u64);
            if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
                let want = match (min, max) {
                    (Some(a), Some(b)) => format!("{a} to {b} characters"),
                    (Some(a), None) => format!("at least {a} characters"),
                    (None, Some(b)) => format!("at most {b} characters"),
                    (None, None) => String::new(),
                };
                self.bad(format!("is {len} characters long; use {want}"));
            }
        }
        match v {
            Value::Object(map) => self.check_object(map, s),
            Value::Array(items) => {
                if let Some(item_schema) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.path.push(Step::Index(i));
                        self.check(item, item_schema);
                        self.path.pop();
                    }
                }
            }
            _ => {}
        }
    }

    fn check_object(&mut self, map: &Map<String, Value>, s: &'a Value) {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    self.path.push(Step::Key(r.to_string()));
                    self.found
                        .errors
                        .push(err(show(&self.path), "is required; add it"));
                    self.path.pop();
                }
            }
        }
        for (k, val) in map {
            self.path.push(Step::Key(k.clone()));
            match props.and_then(|p| p.get(k)) {
                Some(ps) => self.check(val, ps),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        let mut known: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        known.sort_unstable();
                        let hint = closest(k, &known)
                            .map(|c| format!("; did you mean `{c}`?"))
                            .unwrap_or_default();
                        self.bad(format!(
                            "unknown field; remove it{hint} (known fields: {})",
                            known.join(", ")
                        ));
                    }
                    Some(extra @ Value::Object(_)) => self.check(val, extra),
                    _ => {}
                },
            }
            self.path.pop();
        }
    }
}

/// A number outside the schema's `minimum`/`maximum` (or its integer format's
/// range), said with the range to use.
fn range_problem(n: f64, s: &Value) -> Option<String> {
    let format_max = match s.get("format").and_then(Value::as_str) {
        Some("uint8") => Some(f64::from(u8::MAX)),
        Some("uint16") => Some(f64::from(u16::MAX)),
        Some("uint32") => Some(f64::from(u32::MAX)),
        Some("int32") => Some(f64::from(i32::MAX)),
        Some("uint64" | "uint") => Some(u64::MAX as f64),
        _ => None,
    };
    let min = s.get("minimum").and_then(Value::as_f64);
    let max = match (s.get("maximum").and_then(Value::as_f64), format_max) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m) {
        return None;
    }
    Some(match (min, max) {
        (Some(a), Some(b)) => format!("{} is out of range; use {} to {}", num(n), num(a), num(b)),
        (Some(a), None) => format!("must be at least {}, found {}", num(a), num(n)),
        (None, Some(b)) => format!("must be at most {}, found {}", num(b), num(n)),
        (None, None) => return None,
    })
}

/// A number as users wrote it: whole numbers without a fraction.
fn num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e18 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
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

fn not_one_of<'v>(v: &Value, allowed: impl Iterator<Item = &'v Value>) -> String {
    let list: Vec<String> = allowed.map(|c| c.to_string()).collect();
    format!(
        "{} is not allowed; use one of {}",
        short(v),
        list.join(", ")
    )
}

/// A value shown in a message, cut at 40 characters.
pub(super) fn short(v: &Value) -> String {
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

//! `docs/spec.md`, the workload spec reference, generated from the schemas the API
//! serves (`GET /v1/openapi.json`), so the reference cannot drift from what the
//! daemon accepts: a test compares the checked-in file with [`render`].

use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;

fn ref_name(v: &Value) -> Option<&str> {
    v.get("$ref")?.as_str()?.rsplit('/').next()
}

/// A short type for a property schema, and the schemas it names.
fn type_of(v: &Value, named: &mut Vec<String>) -> String {
    if let Some(n) = ref_name(v) {
        named.push(n.to_string());
        return format!("[{n}](#{})", n.to_lowercase());
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = v.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = list
                .iter()
                .filter(|s| {
                    s.get("type").and_then(Value::as_str) != Some("null")
                        && !s
                            .get("enum")
                            .and_then(Value::as_array)
                            .is_some_and(|e| e.iter().all(Value::is_null))
                        && s.get("const").is_none_or(|c| !c.is_null())
                })
                .map(|s| type_of(s, named))
                .collect();
            if !parts.is_empty() {
                return parts.join(" or ");
            }
        }
    }
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        let vals: Vec<String> = e
            .iter()
            .map(|x| format!("`{}`", x.as_str().unwrap_or("?")))
            .collect();
        return vals.join(", ");
    }
    match v.get("type").and_then(Value::as_str) {
        Some("array") => format!(
            "list of {}",
            v.get("items").map_or("any".into(), |i| type_of(i, named))
        ),
        Some("object") => match v.get("additionalProperties") {
            Some(a) if a.is_object() => format!("map of {}", type_of(a, named)),
            _ => "object".into(),
        },
        Some(t) => t.to_string(),
        None => "any".into(),
    }
}

fn limits(v: &Value) -> String {
    let mut out = Vec::new();
    for (k, label) in [
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("pattern", "matches"),
    ] {
        if let Some(x) = v.get(k) {
            let x = x.as_str().map_or(x.to_string(), |s| format!("`{s}`"));
            out.push(format!("{label} {x}"));
        }
    }
    if let Some(d) = v.get("default") {
        out.push(format!("default `{d}`"));
    }
    out.join(", ")
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The reference, as markdown.
pub fn render() -> String {
    let doc = super::openapi::document();
    let schemas = &doc["components"]["schemas"];
    let mut out = String::from(
        "# Workload spec reference\n\n\
         Generated from the schemas the daemon serves (`GET /v1/openapi.json`) by\n\
         `host/src/api/specdoc.rs`; `cargo test -p roost-host spec_doc` fails when this file\n\
         is stale, and `ROOST_WRITE_SPEC_DOC=1 cargo test -p roost-host spec_doc` rewrites it.\n\
         Commented examples of every kind of workload are in `examples/`.\n\n\
         Rules a schema cannot say (a published port needs `network: bridge`, a mount\n\
         destination given twice, …) are checked too; every problem is reported at once,\n\
         each with its field path.\n",
    );
    let mut queue = vec!["Workload".to_string()];
    let mut seen = BTreeSet::new();
    while let Some(name) = queue.first().cloned() {
        queue.remove(0);
        if !seen.insert(name.clone()) {
            continue;
        }
        let s = &schemas[&name];
        let _ = write!(out, "\n## {name}\n\n");
        if let Some(d) = s.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}\n", one_line(d));
        }
        let mut named = Vec::new();
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            let required: BTreeSet<&str> = s
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.push_str(
                "| field | type | required | limits | description |\n|---|---|---|---|---|\n",
            );
            for (field, p) in props {
                let _ = writeln!(
                    out,
                    "| `{field}` | {} | {} | {} | {} |",
                    type_of(p, &mut named),
                    if required.contains(field.as_str()) {
                        "yes"
                    } else {
                        ""
                    },
                    limits(p),
                    one_line(p.get("description").and_then(Value::as_str).unwrap_or("")),
                );
            }
        } else {
            let mut variants = Vec::new();
            for key in ["oneOf", "anyOf"] {
                for v in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                    let val = v
                        .get("const")
                        .or_else(|| v.get("enum").and_then(|e| e.get(0)))
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    let d = one_line(v.get("description").and_then(Value::as_str).unwrap_or(""));
                    variants.push(format!("- `{val}`: {d}"));
                }
            }
            if let Some(e) = s.get("enum").and_then(Value::as_array) {
                for v in e {
                    variants.push(format!("- `{}`", v.as_str().unwrap_or("?")));
                }
            }
            if variants.is_empty() {
                let _ = writeln!(out, "Type: {}", type_of(s, &mut named));
            } else {
                out.push_str("One of:\n\n");
                out.push_str(&variants.join("\n"));
                out.push('\n');
            }
        }
        for n in named {
            if !seen.contains(&n) && !queue.contains(&n) {
                queue.push(n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// docs/spec.md is what the served schema says today.
    #[test]
    fn spec_doc_is_in_sync_with_the_served_schema() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/spec.md");
        let want = super::render();
        if std::env::var_os("ROOST_WRITE_SPEC_DOC").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/spec.md is stale: run `ROOST_WRITE_SPEC_DOC=1 cargo test -p roost-host spec_doc` and commit it"
        );
        for s in [
            "## Workload",
            "## ContainerSpec",
            "## VmSpec",
            "`hostPort`",
            "`restartPolicy`",
        ] {
            assert!(want.contains(s), "{s} missing from the reference");
        }
    }
}

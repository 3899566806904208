//! Parsing and validating workload specs: every problem at once, each with its field
//! path and the fix.
//!
//! A body that is not a document (bad syntax, cut short, a list or a string at the
//! top) is a [`DocumentError`]: the API answers 400 with the line and column. A
//! document that is one but breaks the spec is a [`ValidationError`] listing every
//! field (422). Two passes over a loosely typed parse (`serde_json::Value`), so no
//! problem hides another:
//! - `schema`: the document against the JSON schema schemars generates from the spec
//!   types (unknown fields, types, enums, required fields, ranges);
//! - `rules`: what a schema cannot say (combinations, names, paths), on the same
//!   document with the values the first pass refused taken out.
//!
//! Only a document with no problem at all is turned into the typed [`Workload`].

mod rules;
mod schema;

pub use rules::valid_name;

use crate::spec::Workload;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::OnceLock;

/// One problem with a spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// Path of the offending field, e.g. `spec.resources.cores`; `(document)` for
    /// the document as a whole.
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

/// A body that is not a spec document at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Larger than [`MAX_SPEC_BYTES`].
    #[error("the spec is {size} bytes; specs are limited to {limit} bytes; send a smaller one")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not valid JSON or YAML.
    #[error("the body is not valid {format}: {message}{}; fix the syntax there", at(*.line, *.column))]
    Syntax {
        /// `JSON` or `YAML`.
        format: &'static str,
        /// The parser's words, without its position.
        message: String,
        /// 1-based line of the problem, when the parser knows it.
        line: Option<u64>,
        /// 1-based column of the problem, when the parser knows it.
        column: Option<u64>,
    },
    /// Valid syntax, but not one mapping at the top.
    #[error("the body is {found}, not a {what}; send one mapping{hint}")]
    NotAMapping {
        /// What it is (`a list`, `empty`, …).
        found: &'static str,
        /// What was expected.
        what: &'static str,
        /// Which keys the mapping holds.
        hint: &'static str,
    },
}

fn at(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

/// Why a spec text was refused: not a document, or a document with problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Not a document (400).
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// A document with problems (422).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

pub(crate) fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// Largest spec document accepted (bytes).
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

/// Parse JSON text into a value, with the position of a syntax error.
pub fn parse_json(text: &str) -> Result<Value, DocumentError> {
    serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let message = match full.rsplit_once(" at line ") {
            Some((m, _)) => m.to_string(),
            None => full,
        };
        DocumentError::Syntax {
            format: "JSON",
            message: if e.is_eof() {
                format!("{message} (is it cut short?)")
            } else {
                message
            },
            line: Some(e.line() as u64),
            column: Some(e.column() as u64),
        }
    })
}

/// Parse one YAML document into a value, with the position of a syntax error.
///
/// serde-saphyr never panics on its input and limits aliases, depth and sizes by
/// its default budget, so a hostile document costs bounded work.
pub fn parse_yaml(text: &str) -> Result<Value, DocumentError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| {
        let loc = e.location().filter(|l| l.line() > 0);
        let full = e.to_string();
        // The position is reported apart; drop the parser's own copy of it.
        let message = match full.rsplit_once(" at line ") {
            Some((m, _)) => m.to_string(),
            None => full,
        };
        DocumentError::Syntax {
            format: "YAML",
            message,
            line: loc.map(|l| l.line()),
            column: loc.map(|l| l.column()),
        }
    })
}

/// What a value is, for "found …" messages.
pub fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Refuse anything but a mapping at the top.
pub fn expect_mapping(
    v: Value,
    what: &'static str,
    hint: &'static str,
) -> Result<serde_json::Map<String, Value>, DocumentError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(DocumentError::NotAMapping {
            found: describe(&other),
            what,
            hint,
        }),
    }
}

/// Parse a YAML or JSON spec document into a JSON value (no schema check yet):
/// refuses bad syntax and anything but a mapping at the top.
pub fn parse_document(text: &str) -> Result<Value, DocumentError> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(DocumentError::TooLarge {
            size: text.len(),
            limit: MAX_SPEC_BYTES,
        });
    }
    let trimmed = text.trim_start();
    let v = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        parse_json(text)?
    } else {
        parse_yaml(text)?
    };
    Ok(Value::Object(expect_mapping(
        v,
        "workload spec",
        " (`apiVersion`, `kind`, `metadata`, `spec`)",
    )?))
}

/// Parse and validate one workload from YAML or JSON text.
pub fn parse_workload(text: &str) -> Result<Workload, SpecError> {
    Ok(validate_value(parse_document(text)?)?)
}

/// Validate a JSON value as a workload: every problem at once.
pub fn validate_value(doc: Value) -> Result<Workload, ValidationError> {
    let found = schema::check_document(&doc, spec_schema());
    let mut errors = found.errors;
    if found.bad.is_empty() {
        rules::check(&doc, &mut errors);
    } else {
        // The rules read the document without the values already refused, so they
        // neither repeat those problems nor stop at them.
        let mut loose = doc.clone();
        for p in &found.bad {
            schema::remove_at(&mut loose, p);
        }
        rules::check(&loose, &mut errors);
    }
    if !errors.is_empty() {
        return Err(ValidationError(errors));
    }
    serde_json::from_value::<Workload>(doc).map_err(|e| {
        ValidationError(vec![err(
            "(document)",
            format!("does not match the schema: {e}"),
        )])
    })
}

/// The JSON schema of a workload spec (schemars, from `spec.rs`).
pub fn spec_schema() -> &'static Value {
    static S: OnceLock<Value> = OnceLock::new();
    S.get_or_init(|| schemars::schema_for!(Workload).to_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: roost.dev/v1\nkind: Workload\nmetadata:\n  name: web\n\
                        spec:\n  driver: mock\n  mock:\n    runSeconds: 5\n";

    fn invalid(text: &str) -> ValidationError {
        match parse_workload(text) {
            Err(SpecError::Invalid(e)) => e,
            other => panic!("expected field problems, got {other:?}"),
        }
    }

    fn fields(e: &ValidationError) -> Vec<&str> {
        e.0.iter().map(|e| e.field.as_str()).collect()
    }

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
        let e = invalid(text);
        let fields = fields(&e);
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
    fn a_bad_enum_does_not_hide_a_range_error_beside_it() {
        let text = "apiVersion: roost.dev/v1\nkind: Workload\nmetadata: {name: w}\n\
                    spec:\n  driver: mock\n  restartPolicy: sometimes\n  resources:\n    \
                    cpuPolicy: dedicated\n    cores: 0\n";
        let e = invalid(text);
        assert_eq!(
            fields(&e),
            ["spec.restartPolicy", "spec.resources.cores"],
            "{e}"
        );
    }

    #[test]
    fn wrong_types_do_not_hide_rules_elsewhere() {
        // A required field of the wrong type (image), a bad driver-independent
        // rule (workingDir) in the same section, and one in another (vcpus).
        let text = r#"{"apiVersion": "roost.dev/v1", "kind": "Workload",
            "metadata": {"name": 42, "labels": {"a b": "x"}},
            "spec": {"driver": "container", "stopGraceSeconds": 7200,
                     "container": {"image": 5, "workingDir": "tmp",
                                   "mounts": [{"source": 1, "destination": "rel"}]}}}"#;
        let e = invalid(text);
        let f = fields(&e);
        for want in [
            "metadata.name",
            "metadata.labels.a b",
            "spec.stopGraceSeconds",
            "spec.container.image",
            "spec.container.workingDir",
            "spec.container.mounts[0].source",
            "spec.container.mounts[0].destination",
        ] {
            assert!(f.contains(&want), "missing {want} in {f:?}");
        }
        // Each field once.
        let mut sorted = f.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), f.len(), "{f:?}");
    }

    #[test]
    fn unknown_field_suggests_the_right_one() {
        let text = GOOD.replace("runSeconds", "runSecond");
        let e = invalid(&text);
        assert_eq!(e.0[0].field, "spec.mock.runSecond");
        assert!(e.0[0].message.contains("runSeconds"), "{}", e.0[0].message);
    }

    #[test]
    fn a_body_that_is_no_document_says_where() {
        let cut = r#"{"apiVersion": "roost.dev/v1", "kind": "Work"#;
        match parse_workload(cut) {
            Err(SpecError::Document(DocumentError::Syntax {
                format: "JSON",
                line: Some(1),
                column: Some(c),
                ..
            })) => assert!(c > 30, "column {c}"),
            other => panic!("{other:?}"),
        }
        let bad_yaml = "apiVersion: roost.dev/v1\nkind: [Workload\nspec: {}\n";
        match parse_workload(bad_yaml) {
            Err(SpecError::Document(e @ DocumentError::Syntax { format: "YAML", .. })) => {
                assert!(e.to_string().contains("line "), "{e}")
            }
            other => panic!("{other:?}"),
        }
        for (text, found) in [
            ("[1, 2]", "a list"),
            ("just words", "a string"),
            ("", "empty"),
            ("42", "a number"),
        ] {
            match parse_workload(text) {
                Err(SpecError::Document(DocumentError::NotAMapping { found: f, .. })) => {
                    assert_eq!(f, found, "{text:?}")
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_disk_problem_is_reported_at_once() {
        let text = r#"{"apiVersion": "roost.dev/v1", "kind": "Workload", "metadata": {"name": "v"},
            "spec": {"driver": "vm", "vm": {"kernel": "/k", "disks": [
                {"path": "rel.img", "root": true},
                {"path": "/a.img", "root": true, "rateLimit": {"opsPerSec": 0}},
                {"path": "/a.img", "readOnly": "yes", "size": 3},
                {"readOnly": true}]}}}"#;
        let e = invalid(text);
        let f = fields(&e);
        for want in [
            "spec.vm.disks[0].path",
            "spec.vm.disks[1].root",
            "spec.vm.disks[1].rateLimit.opsPerSec",
            "spec.vm.disks[2].path",
            "spec.vm.disks[2].readOnly",
            "spec.vm.disks[2].size",
            "spec.vm.disks[3].path",
        ] {
            assert!(f.contains(&want), "missing {want} in {f:?}");
        }
        let good = r#"{"apiVersion": "roost.dev/v1", "kind": "Workload", "metadata": {"name": "v"},
            "spec": {"driver": "vm", "vm": {"kernel": "/k", "disks": [
                {"path": "/root.img", "root": true, "readOnly": true},
                {"path": "/data.img", "rateLimit": {"bytesPerSec": 1048576}}]}}}"#;
        let w = parse_workload(good).unwrap();
        let disks = &w.spec.vm.unwrap().disks;
        assert_eq!(disks.len(), 2);
        assert!(disks[0].root && disks[0].read_only);
        assert_eq!(disks[1].rate_limit.unwrap().bytes_per_sec, Some(1 << 20));
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

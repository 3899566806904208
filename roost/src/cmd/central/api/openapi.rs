//! The OpenAPI 3.0 document of central's operator API, built from the route table
//! ([`super::ROUTES`]) and the API's Rust types (schemars): every route, its
//! parameters, its request body, and every status it can answer with the body it
//! really sends.

use super::{Answer, ErrorBody, Route, ROUTES, UNAUTHORIZED};
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// The `{name}` parameters of a path.
pub fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

fn error(desc: &str) -> Value {
    json!({"description": desc,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

/// Every status `r` can answer, with its description (errors all carry ErrorBody).
pub fn statuses(r: &Route) -> BTreeMap<u16, String> {
    let mut out = BTreeMap::new();
    let code = match r.answer {
        Answer::Json(c, _) => c,
        Answer::Ndjson(_) | Answer::Text => 200,
    };
    out.insert(code, r.summary.to_string());
    let mut add = |c: u16, d: &str| {
        out.entry(c).or_insert_with(|| d.to_string());
    };
    for (c, d) in r.errors {
        add(*c, d);
    }
    if !r.open {
        add(401, UNAUTHORIZED);
    }
    if r.body.is_some() {
        add(
            400,
            "The body is empty or not valid JSON (the message gives the position)",
        );
        add(413, "The body is larger than 4 MiB");
        add(
            422,
            "A field is wrong or unknown; `details` names each by its path",
        );
    }
    if r.upload {
        add(413, "The binary is larger than 512 MiB");
        add(422, "The version is missing or wrong, or the body is empty");
    }
    if !path_params(r.path).is_empty() {
        add(400, "The path is not valid percent-encoded UTF-8");
    }
    if !r.query.is_empty() {
        add(400, "The query string is unreadable");
        add(
            422,
            "A query parameter is wrong or unknown; `details` names it",
        );
    }
    out
}

fn operation(r: &Route, g: &mut schemars::SchemaGenerator) -> Value {
    let mut params: Vec<Value> = path_params(r.path)
        .into_iter()
        .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    for q in r.query {
        let mut schema = json!({"type": q.kind});
        if !q.enumeration.is_empty() {
            schema["enum"] = json!(q.enumeration);
        }
        params.push(json!({"name": q.name, "in": "query", "required": false,
                           "description": q.description, "schema": schema}));
    }
    let mut responses = Map::new();
    for (code, desc) in statuses(r) {
        let body = if code >= 400 {
            error(&desc)
        } else {
            match r.answer {
                Answer::Json(_, s) => json!({"description": desc,
                    "content": {"application/json": {"schema": s(g).to_value()}}}),
                Answer::Ndjson(s) => {
                    json!({"description": format!("{desc} (one JSON object a line)"),
                    "content": {"application/x-ndjson": {"schema": s(g).to_value()}}})
                }
                Answer::Text => json!({"description": desc,
                    "content": {"text/plain": {"schema": {"type": "string"}}}}),
            }
        };
        responses.insert(code.to_string(), body);
    }
    let mut op = json!({
        "operationId": r.operation,
        "summary": r.summary,
        "responses": responses,
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(b) = r.body {
        op["requestBody"] = json!({"required": true,
            "content": {"application/json": {"schema": b(g).to_value()}}});
    }
    if r.upload {
        op["requestBody"] = json!({"required": true,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}});
    }
    if r.open {
        op["security"] = json!([]);
    }
    op
}

fn build() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let error = g.subschema_for::<ErrorBody>().to_value();
    let mut paths = Map::new();
    for r in ROUTES {
        let op = operation(r, &mut g);
        if let Some(item) = paths
            .entry(r.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            item.insert(r.verb.as_str().into(), op);
        }
    }
    let mut schemas = g.take_definitions(true);
    if !schemas.contains_key("ErrorBody") {
        schemas.insert("ErrorBody".into(), error);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Roost central operator API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Groups, subclouds, hosts, join tokens, deployments, alarms and events of a Roost fleet. \
                            Every route but /healthz needs `Authorization: Bearer <operator token>` \
                            (<data-dir>/operator.token). Every error is {error, details[]}; an unknown \
                            path answers 404 and a wrong method 405, both with that body."
        },
        "security": [{"operatorToken": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"operatorToken": {"type": "http", "scheme": "bearer"}}
        }
    })
}

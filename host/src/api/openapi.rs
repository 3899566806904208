//! The OpenAPI 3.0 document, generated from the API's Rust types (schemars) plus the
//! route table below.

use super::handlers::{ApplyRequest, ApplyResponse};
use super::ErrorBody;
use crate::model::{Event, WorkloadRecord};
use crate::spec::Workload;
use schemars::generate::SchemaSettings;
use serde_json::{json, Value};
use std::sync::OnceLock;

fn ok(schema: Value, desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

fn err(desc: &str) -> Value {
    json!({"description": desc, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

fn name_param() -> Value {
    json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}, "description": "Workload name"})
}

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let workload = g.subschema_for::<Workload>().to_value();
    let record = g.subschema_for::<WorkloadRecord>().to_value();
    let event = g.subschema_for::<Event>().to_value();
    let error = g.subschema_for::<ErrorBody>().to_value();
    let apply_req = g.subschema_for::<ApplyRequest>().to_value();
    let apply_res = g.subschema_for::<ApplyResponse>().to_value();
    let host = g
        .subschema_for::<crate::admission::HostCapacity>()
        .to_value();
    let image_list =
        json!({"type": "array", "items": g.subschema_for::<crate::images::ImageInfo>().to_value()});
    let image_names = g.subschema_for::<super::ImageNames>().to_value();
    let pull_req = g.subschema_for::<crate::images::PullRequest>().to_value();
    let mut schemas = g.take_definitions(true);
    schemas.insert(
        "ErrorBody".into(),
        schemas.get("ErrorBody").cloned().unwrap_or(error),
    );
    let record_list = json!({"type": "array", "items": record});
    let spec_body = json!({
        "required": true,
        "content": {
            "application/json": {"schema": workload},
            "application/yaml": {"schema": {"type": "string"}}
        }
    });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Roost host daemon API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Workloads (VMs, containers, mocks) on one Roost host. Every error is {error, details[]}."
        },
        "paths": {
            "/v1/workloads": {
                "get": {"operationId": "listWorkloads", "summary": "List workloads",
                        "responses": {"200": ok(record_list, "All workloads")}},
                "post": {"operationId": "createWorkload", "summary": "Create a workload",
                         "requestBody": spec_body,
                         "responses": {"201": ok(record.clone(), "Accepted"),
                                       "400": err("Unreadable body"),
                                       "409": err("The name is taken"),
                                       "413": err("Body too large"),
                                       "422": err("Invalid spec, not admitted, or its driver is unavailable here"),
                                       "503": err("The daemon is shutting down")}}
            },
            "/v1/workloads/{name}": {
                "parameters": [name_param()],
                "get": {"operationId": "getWorkload", "summary": "Inspect a workload",
                        "responses": {"200": ok(record.clone(), "The workload"), "404": err("No such workload")}},
                "delete": {"operationId": "deleteWorkload", "summary": "Stop and remove a workload",
                           "responses": {"200": ok(record.clone(), "Removed"), "404": err("No such workload")}}
            },
            "/v1/workloads/{name}/stop": {
                "parameters": [name_param()],
                "post": {"operationId": "stopWorkload", "summary": "Stop (polite, grace, kill)",
                         "responses": {"200": ok(record.clone(), "Stopped"), "404": err("No such workload")}}
            },
            "/v1/workloads/{name}/start": {
                "parameters": [name_param()],
                "post": {"operationId": "startWorkload", "summary": "Start a stopped or ended workload",
                         "responses": {"200": ok(record.clone(), "Started"), "404": err("No such workload")}}
            },
            "/v1/workloads/{name}/logs": {
                "parameters": [name_param(),
                    {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "tail", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
                "get": {"operationId": "workloadLogs", "summary": "Output of a workload (streamed with follow)",
                        "responses": {"200": {"description": "Log text", "content": {"text/plain": {"schema": {"type": "string"}}}},
                                      "400": err("Bad query"), "404": err("No such workload")}}
            },
            "/v1/apply": {
                "post": {"operationId": "applySet", "summary": "Make the host match a desired set (idempotent)",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": apply_req}}},
                         "responses": {"200": ok(apply_res.clone(), "Applied"),
                                       "400": err("Unreadable body"),
                                       "422": ok(apply_res, "Some workloads failed (see results)")}}
            },
            "/v1/images": {
                "get": {"operationId": "listImages", "summary": "Images in the containerd namespace the container driver uses, with the workloads using each",
                        "responses": {"200": ok(image_list, "All images"),
                                      "502": err("containerd failed"),
                                      "503": err("This daemon has no containerd")}}
            },
            "/v1/images/pull": {
                "post": {"operationId": "pullImage", "summary": "Pull an image from an OCI registry",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": pull_req}}},
                         "responses": {"200": ok(image_names.clone(), "Pulled"),
                                       "400": err("Unreadable body"),
                                       "413": err("Body too large"),
                                       "422": err("Bad reference or request, or the registry refused it"),
                                       "502": err("containerd or the registry failed"),
                                       "503": err("This daemon has no containerd")}}
            },
            "/v1/images/import": {
                "parameters": [{"name": "name", "in": "query", "schema": {"type": "string"}, "description": "Name for the image when the archive has none (or only a tag)"}],
                "post": {"operationId": "importImage", "summary": "Import an image archive (the body: a tarball of an OCI layout or a docker-archive, maybe gzipped)",
                         "requestBody": {"required": true, "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                                                                        "application/gzip": {"schema": {"type": "string", "format": "binary"}},
                                                                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                         "responses": {"200": ok(image_names.clone(), "Imported"),
                                       "400": err("Empty or broken upload"),
                                       "413": err("Archive too large"),
                                       "422": err("Not an image archive"),
                                       "502": err("containerd failed"),
                                       "503": err("This daemon has no containerd")}}
            },
            "/v1/images/prune": {
                "post": {"operationId": "pruneImages", "summary": "Remove every image no workload uses",
                         "responses": {"200": ok(image_names.clone(), "Removed"),
                                       "502": err("containerd failed"),
                                       "503": err("This daemon has no containerd")}}
            },
            "/v1/images/{reference}": {
                "parameters": [{"name": "reference", "in": "path", "required": true, "schema": {"type": "string"}, "description": "Image reference (may contain `/`)"}],
                "delete": {"operationId": "removeImage", "summary": "Remove an image no workload uses",
                           "responses": {"200": ok(image_names, "Removed"),
                                         "404": err("No such image"),
                                         "409": err("Workloads use it"),
                                         "422": err("Not an image reference"),
                                         "502": err("containerd failed"),
                                         "503": err("This daemon has no containerd")}}
            },
            "/v1/events": {
                "parameters": [
                    {"name": "cursor", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "workload", "in": "query", "schema": {"type": "string"}}],
                "get": {"operationId": "events", "summary": "Event log as NDJSON (one Event per line)",
                        "responses": {"200": {"description": "NDJSON stream", "content": {"application/x-ndjson": {"schema": event}}},
                                      "400": err("Bad query")}}
            },
            "/v1/host": {
                "get": {"operationId": "hostInfo", "summary": "Capacity, allocations, topology",
                        "responses": {"200": ok(json!({"type": "object", "properties": {
                            "version": {"type": "string"},
                            "uptimeSeconds": {"type": "integer"},
                            "workloads": {"type": "integer"},
                            "capacity": host}}), "Host")}}
            },
            "/v1/openapi.json": {
                "get": {"operationId": "openapi", "summary": "This document",
                        "responses": {"200": ok(json!({"type": "object"}), "OpenAPI 3 document")}}
            },
            "/metrics": {
                "get": {"operationId": "metrics", "summary": "Prometheus metrics",
                        "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}}}
            },
            "/healthz": {
                "get": {"operationId": "healthz", "summary": "Liveness",
                        "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}}}
            }
        },
        "components": {"schemas": schemas}
    })
}

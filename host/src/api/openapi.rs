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
    let exec_req = g.subschema_for::<crate::exec_proto::ExecBody>().to_value();
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
                                       "400": err("Not a document: bad JSON or YAML syntax (with line and column), or not one mapping"),
                                       "409": err("The name is taken"),
                                       "413": err("Body over 1 MiB, or spec over 256 KiB"),
                                       "422": err("Invalid spec (every problem in details), not admitted, or its driver is unavailable here"),
                                       "500": err("The store failed"),
                                       "503": err("The daemon is shutting down")}}
            },
            "/v1/workloads/{name}": {
                "parameters": [name_param()],
                "get": {"operationId": "getWorkload", "summary": "Inspect a workload",
                        "responses": {"200": ok(record.clone(), "The workload"), "404": err("No such workload")}},
                "delete": {"operationId": "deleteWorkload", "summary": "Stop and remove a workload",
                           "responses": {"200": ok(record.clone(), "Removed"), "404": err("No such workload"),
                                         "500": err("The store failed"), "503": err("The daemon is shutting down")}}
            },
            "/v1/workloads/{name}/stop": {
                "parameters": [name_param()],
                "post": {"operationId": "stopWorkload", "summary": "Stop (polite, grace, kill)",
                         "responses": {"200": ok(record.clone(), "Stopped"), "404": err("No such workload"),
                                       "500": err("The store failed"), "503": err("The daemon is shutting down")}}
            },
            "/v1/workloads/{name}/start": {
                "parameters": [name_param()],
                "post": {"operationId": "startWorkload", "summary": "Start a stopped or ended workload",
                         "responses": {"200": ok(record.clone(), "Started"), "404": err("No such workload"),
                                       "422": err("Not admitted, or its driver is unavailable here"),
                                       "500": err("The store failed"), "503": err("The daemon is shutting down")}}
            },
            "/v1/workloads/{name}/logs": {
                "parameters": [name_param(),
                    {"name": "follow", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "tail", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
                "get": {"operationId": "workloadLogs", "summary": "Output of a workload (streamed with follow)",
                        "responses": {"200": {"description": "Log text", "content": {"text/plain": {"schema": {"type": "string"}}}},
                                      "400": err("Bad query"), "404": err("No such workload")}}
            },
            "/v1/workloads/{name}/exec": {
                "parameters": [name_param(),
                    {"name": "Connection", "in": "header", "required": true, "schema": {"type": "string", "enum": ["Upgrade"]}},
                    {"name": "Upgrade", "in": "header", "required": true, "schema": {"type": "string", "enum": [crate::exec_proto::PROTOCOL]}}],
                "post": {"operationId": "execInWorkload",
                         "summary": "Run a command inside the workload's running instance (container workloads). The connection switches to the roost-exec.v1 frame protocol: [kind u8][length u32 BE][payload]; client→daemon 0 stdin, 3 stdin-eof, 4 resize (rows u16, cols u16); daemon→client 1 stdout, 2 stderr, then 5 exit (i32) or 6 error (text)",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": exec_req}}},
                         "responses": {"101": {"description": "Switching to the exec frame protocol"},
                                       "400": err("No upgrade headers, or a body that is not an exec request"),
                                       "404": err("No such workload"),
                                       "409": err("The workload has no running instance"),
                                       "413": err("Body over 1 MiB"),
                                       "422": err("A bad field (every problem in details), or its driver cannot exec"),
                                       "502": err("The driver failed to start the command"),
                                       "503": err("The driver's backend (containerd) is down, or the daemon is shutting down")}}
            },
            "/v1/apply": {
                "post": {"operationId": "applySet", "summary": "Make the host match a desired set (idempotent)",
                         "requestBody": {"required": true, "content": {"application/json": {"schema": apply_req}}},
                         "responses": {"200": ok(apply_res.clone(), "Applied"),
                                       "400": err("Not a document: bad JSON syntax (with line and column), or not one mapping"),
                                       "413": err("Body over 1 MiB"),
                                       "422": ok(apply_res, "The set has problems (every one in details, results empty), or some workloads failed (see results)"),
                                       "500": err("The set could not be applied"),
                                       "503": err("The daemon is shutting down")}}
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
                                       "422": err("Bad reference or request (credentials given half, an empty reference)"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules the server enforces that a schema can say are in the served
    /// document, so a generated client or a fuzzer sees them.
    #[test]
    fn validation_rules_are_in_the_schema() {
        let s = &document()["components"]["schemas"];
        let name = &s["Metadata"]["properties"]["name"];
        assert_eq!(name["pattern"], "^[a-z]([-a-z0-9]*[a-z0-9])?$", "{name}");
        assert_eq!(
            (name["minLength"].as_u64(), name["maxLength"].as_u64()),
            (Some(1), Some(63))
        );
        let disks = &s["VmSpec"]["properties"]["disks"];
        assert_eq!(disks["maxItems"].as_u64(), Some(11), "{disks}");
        let disk = &s["VmDisk"]["properties"];
        for f in ["path", "readOnly", "root", "rateLimit"] {
            assert!(disk.get(f).is_some(), "VmDisk.{f} documented: {disk}");
        }
        assert!(disk["readOnly"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
        let vcpus = &s["VmSpec"]["properties"]["vcpus"];
        assert_eq!(
            (vcpus["minimum"].as_u64(), vcpus["maximum"].as_u64()),
            (Some(1), Some(64)),
            "{vcpus}"
        );
        let prio = &s["Realtime"]["properties"]["priority"];
        assert_eq!(
            (prio["minimum"].as_u64(), prio["maximum"].as_u64()),
            (Some(1), Some(99)),
            "{prio}"
        );
        let exit = &s["MockSpec"]["properties"]["exitCode"];
        assert_eq!(
            (exit["minimum"].as_u64(), exit["maximum"].as_u64()),
            (Some(0), Some(255)),
            "{exit}"
        );
        assert_eq!(
            s["WorkloadSpec"]["properties"]["stopGraceSeconds"]["maximum"].as_u64(),
            Some(3600)
        );
        let policy = serde_json::to_string(&s["RestartPolicy"]).unwrap_or_default();
        for v in ["always", "on-failure", "never"] {
            assert!(policy.contains(v), "{policy}");
        }
        let required = &s["Workload"]["required"];
        for f in ["apiVersion", "kind", "metadata", "spec"] {
            assert!(
                required.as_array().is_some_and(|r| r.contains(&json!(f))),
                "{required}"
            );
        }
        // Every answer of the apply route has the shape it documents.
        let apply = &document()["paths"]["/v1/apply"]["post"]["responses"];
        assert_eq!(
            apply["422"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ApplyResponse"
        );
    }
}

//! Request handlers: parse, call the supervisor, render.

use super::{ApiError, ApiState};
use crate::model::{Desired, Phase, WorkloadRecord};
use crate::validate;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

type S = State<Arc<ApiState>>;

pub(super) fn body_text(body: Result<Bytes, BytesRejection>) -> Result<String, ApiError> {
    let b = body.map_err(|e| {
        let status = e.status();
        ApiError::new(
            status,
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "request body is larger than {} bytes; send a smaller spec",
                    super::MAX_BODY_BYTES
                )
            } else {
                format!("cannot read the request body: {e}")
            },
        )
    })?;
    String::from_utf8(b.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "request body is not UTF-8 text"))
}

/// `POST /v1/workloads`: create (201), 409 if the name exists, 422 if invalid or
/// not admitted.
pub async fn create(
    State(st): S,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let text = body_text(body)?;
    let w = validate::parse_workload(&text)?;
    let rec = st.sup.create(w).await?;
    Ok((StatusCode::CREATED, Json(rec)).into_response())
}

/// Body of `POST /v1/apply`: a whole desired set. This type describes the body in
/// the OpenAPI document; `parse_apply` reads it loosely, so that every problem in
/// it is reported at once.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ApplyRequest {
    /// The workloads that should exist (specs as JSON objects).
    pub workloads: Vec<serde_json::Value>,
    /// Remove every workload not in `workloads`.
    #[serde(default)]
    pub prune: bool,
}

/// What `POST /v1/apply` did to one workload.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ApplyResult {
    /// Workload name (or `workloads[i]` when the spec had no usable name).
    pub name: String,
    /// `created`, `updated`, `unchanged`, `deleted` or `error`.
    pub action: String,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<super::ErrorBody>,
}

/// Answer of `POST /v1/apply`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ApplyResponse {
    /// When some workloads failed: one line saying so (like every error body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When some workloads failed: one entry per failure, `workloads[i]`.
    #[serde(default)]
    pub details: Vec<validate::FieldError>,
    /// One result per workload, in request order, then deletions.
    pub results: Vec<ApplyResult>,
}

/// `POST /v1/apply`: make the host's workloads match a desired set (idempotent).
/// Every spec is validated before anything changes; then each is created, updated
/// or left alone.
pub async fn apply(
    State(st): S,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let text = body_text(body)?;
    let (specs, prune) = match parse_apply(&text) {
        Ok(v) => v,
        // A set with problems answers the apply shape too (an error body plus no
        // results), so a client reads one schema per status.
        Err(ApiError { status, body }) if status == StatusCode::UNPROCESSABLE_ENTITY => {
            let res = ApplyResponse {
                error: Some(body.error),
                details: body.details,
                results: Vec::new(),
            };
            return Ok((status, Json(res)).into_response());
        }
        Err(e) => return Err(e),
    };
    let seen: std::collections::HashSet<String> =
        specs.iter().map(|w| w.metadata.name.clone()).collect();
    // A set is applied to the end even if its client hangs up part way.
    let sup = Arc::clone(&st.sup);
    let (results, failed) = tokio::spawn(async move {
        let mut results = Vec::new();
        let mut failed = false;
        for w in specs {
            let name = w.metadata.name.clone();
            match sup.apply(w).await {
                Ok((_, action)) => results.push(ApplyResult {
                    name,
                    action: action.into(),
                    error: None,
                }),
                Err(e) => {
                    failed = true;
                    let ApiError { body, .. } = ApiError::from(e);
                    results.push(ApplyResult {
                        name,
                        action: "error".into(),
                        error: Some(body),
                    });
                }
            }
        }
        if prune && !failed {
            for rec in sup.list() {
                if !seen.contains(rec.name()) {
                    let name = rec.name().to_string();
                    let r = sup.set_desired(&name, Desired::Deleted).await;
                    results.push(ApplyResult {
                        name,
                        action: if r.is_ok() { "deleted" } else { "error" }.into(),
                        error: r.err().map(|e| ApiError::from(e).body),
                    });
                }
            }
        }
        (results, failed)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("applying the set failed: {e}"),
        )
    })?;
    let mut details = Vec::new();
    for (i, r) in results.iter().enumerate() {
        if let Some(e) = &r.error {
            details.push(validate::FieldError {
                field: format!("workloads[{i}]"),
                message: format!("{}: {}", r.name, e.error),
            });
            details.extend(e.details.iter().map(|d| validate::FieldError {
                field: format!("workloads[{i}].{}", d.field),
                message: d.message.clone(),
            }));
        }
    }
    let (status, error) = if failed {
        let n = results.iter().filter(|r| r.error.is_some()).count();
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(format!(
                "{n} of the set's workloads could not be applied; the others were; see details"
            )),
        )
    } else {
        (StatusCode::OK, None)
    };
    Ok((
        status,
        Json(ApplyResponse {
            error,
            details,
            results,
        }),
    )
        .into_response())
}

/// Read an apply body: bad syntax or no mapping at the top is 400; everything
/// else wrong with it (the envelope's fields, every spec in the set, a name twice)
/// comes back together as one 422.
fn parse_apply(text: &str) -> Result<(Vec<crate::spec::Workload>, bool), ApiError> {
    let mut body = validate::expect_mapping(
        validate::parse_json(text)?,
        "desired set",
        r#" ({"workloads": [...], "prune": false})"#,
    )?;
    let mut problems = Vec::new();
    let mut keys: Vec<&String> = body.keys().collect();
    keys.sort_unstable();
    for k in keys {
        if k != "workloads" && k != "prune" {
            problems.push(validate::FieldError {
                field: k.clone(),
                message: "unknown field; remove it (known fields: prune, workloads)".into(),
            });
        }
    }
    let prune = match body.remove("prune") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(other) => {
            problems.push(validate::FieldError {
                field: "prune".into(),
                message: format!("must be true or false, found {other}"),
            });
            false
        }
    };
    let items = match body.remove("workloads") {
        Some(serde_json::Value::Array(a)) => a,
        None => {
            problems.push(validate::FieldError {
                field: "workloads".into(),
                message: "is required; add the list of workload specs (may be empty)".into(),
            });
            Vec::new()
        }
        Some(other) => {
            problems.push(validate::FieldError {
                field: "workloads".into(),
                message: format!(
                    "must be a list of workload specs, found {}",
                    validate::describe(&other)
                ),
            });
            Vec::new()
        }
    };
    let mut specs = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, v) in items.into_iter().enumerate() {
        match validate::validate_value(v) {
            Ok(w) => {
                if let Some(first) = seen.insert(w.metadata.name.clone(), i) {
                    problems.push(validate::FieldError {
                        field: format!("workloads[{i}].metadata.name"),
                        message: format!(
                            "`{}` is also workloads[{first}]'s name; keep one",
                            w.metadata.name
                        ),
                    });
                }
                specs.push(w);
            }
            Err(e) => problems.extend(e.0.into_iter().map(|mut f| {
                f.field = if f.field == "(document)" {
                    format!("workloads[{i}]")
                } else {
                    format!("workloads[{i}].{}", f.field)
                };
                f
            })),
        }
    }
    if !problems.is_empty() {
        return Err(validate::ValidationError(problems).into());
    }
    Ok((specs, prune))
}

/// `GET /v1/workloads`.
pub async fn list(State(st): S) -> Json<Vec<WorkloadRecord>> {
    Json(st.sup.list())
}

/// `GET /v1/workloads/{name}`.
pub async fn inspect(
    State(st): S,
    Path(name): Path<String>,
) -> Result<Json<WorkloadRecord>, ApiError> {
    Ok(Json(st.sup.get(&name)?))
}

/// `POST /v1/workloads/{name}/stop`: returns once stopped.
pub async fn stop(
    State(st): S,
    Path(name): Path<String>,
) -> Result<Json<WorkloadRecord>, ApiError> {
    Ok(Json(st.sup.set_desired(&name, Desired::Stopped).await?))
}

/// `POST /v1/workloads/{name}/start`: returns once started (or failed to).
pub async fn start(
    State(st): S,
    Path(name): Path<String>,
) -> Result<Json<WorkloadRecord>, ApiError> {
    Ok(Json(st.sup.set_desired(&name, Desired::Running).await?))
}

/// `DELETE /v1/workloads/{name}`: stops it, frees its resources, forgets it.
pub async fn remove(
    State(st): S,
    Path(name): Path<String>,
) -> Result<Json<WorkloadRecord>, ApiError> {
    Ok(Json(st.sup.set_desired(&name, Desired::Deleted).await?))
}

/// `GET /v1/host`.
pub async fn host(State(st): S) -> Json<serde_json::Value> {
    let cap = st.sup.capacity();
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": crate::model::now_ms().saturating_sub(st.started_ms) / 1000,
        "workloads": st.sup.list().len(),
        "capacity": cap,
    }))
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Json<serde_json::Value> {
    Json(super::openapi::document().clone())
}

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(st): S) -> impl IntoResponse {
    let recs = st.sup.list();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP roost_workloads Workloads by phase.");
    let _ = writeln!(out, "# TYPE roost_workloads gauge");
    for p in Phase::ALL {
        let n = recs.iter().filter(|r| r.status.phase == p).count();
        let _ = writeln!(out, "roost_workloads{{phase=\"{}\"}} {n}", p.as_str());
    }
    let c = &st.sup.counters;
    for (name, help, v) in [
        (
            "roost_instance_starts_total",
            "Instances started.",
            &c.starts,
        ),
        (
            "roost_restarts_total",
            "Restarts after an exit.",
            &c.restarts,
        ),
        (
            "roost_start_failures_total",
            "Failed starts.",
            &c.start_failures,
        ),
        (
            "roost_adopted_total",
            "Instances re-adopted after a daemon restart.",
            &c.adopted,
        ),
        (
            "roost_duplicates_removed_total",
            "Extra copies removed at recovery.",
            &c.duplicates_removed,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP roost_events_total Events emitted since start.\n# TYPE roost_events_total counter\nroost_events_total {}",
        st.sup.events.emitted.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP roost_api_responses_total API responses by class."
    );
    let _ = writeln!(out, "# TYPE roost_api_responses_total counter");
    for (i, class) in ["2xx", "4xx", "5xx"].iter().enumerate() {
        let _ = writeln!(
            out,
            "roost_api_responses_total{{class=\"{class}\"}} {}",
            st.answered[i].load(Ordering::Relaxed)
        );
    }
    if let Some(rss) = rss_bytes() {
        let _ = writeln!(
            out,
            "# HELP roost_daemon_rss_bytes Resident memory of the daemon.\n# TYPE roost_daemon_rss_bytes gauge\nroost_daemon_rss_bytes {rss}"
        );
    }
    let mut h = HeaderMap::new();
    if let Ok(v) = "text/plain; version=0.0.4".parse() {
        h.insert(header::CONTENT_TYPE, v);
    }
    (h, out)
}

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; GET /v1/openapi.json lists them",
    )
}

/// Known path, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint; GET /v1/openapi.json lists the methods",
    )
}

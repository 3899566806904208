//! Central's operator API over HTTP/JSON: a thin front end over
//! [`roost_federation::central::Central`]. Each handler parses, calls central, renders.
//!
//! - Every route but `GET /healthz` needs `Authorization: Bearer <operator token>`.
//! - Every error is `{error, details[]}`: `details` names each bad field (`field` is
//!   the path in the request body or the query parameter).
//! - The routes live in one table, [`ROUTES`]: the router and the OpenAPI document
//!   ([`openapi`]) are both built from it, so they cannot drift apart.

mod fleet;
mod hostlogs;
mod openapi;
mod releases;
mod strategies;
mod stream;
mod table;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use roost_federation::central::{
    AlarmFilter, AuditResult, Central, CentralError, DeployResult, FieldProblem, FleetStatus,
    HostView, SubcloudView, TokenCreated,
};
use roost_federation::model::{Alarm, Deployment, Group, Severity, Target, WorkloadSet};
use roost_federation::strategy::{StrategyRequest, StrategyView};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (a workload set of many workloads fits).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// A join token's lifetime when the request does not say.
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The answer to a request without the operator token.
pub const UNAUTHORIZED: &str = "missing or wrong operator token: send Authorization: Bearer \
     <token> (the token is in <data-dir>/operator.token)";

/// What every handler sees.
pub struct ApiState {
    central: Arc<Central>,
    token: String,
}

type S = State<Arc<ApiState>>;

/// The operator API router (no listener: `serve` binds it behind TLS).
pub fn router(central: Arc<Central>, operator_token: String) -> Router {
    let st = Arc::new(ApiState {
        central,
        token: operator_token.trim().to_string(),
    });
    let mut r = Router::new();
    for route in ROUTES {
        r = r.route(route.path, (route.handler)());
    }
    r.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost: a request without the token is answered before its body is read.
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&st), auth))
        .with_state(st)
}

// ---------------------------------------------------------------------------------
// The route table.

/// An HTTP method of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    /// Lower-case, as OpenAPI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Post => "post",
            Self::Delete => "delete",
        }
    }
}

/// A schema of the OpenAPI document, made by the shared generator.
pub type SchemaFn = fn(&mut schemars::SchemaGenerator) -> schemars::Schema;

fn schema<T: JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

fn object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object"})
}

/// What a successful call answers.
#[derive(Clone, Copy)]
pub enum Answer {
    /// JSON with this status.
    Json(u16, SchemaFn),
    /// An NDJSON stream of this type, one a line.
    Ndjson(SchemaFn),
    /// Plain text.
    Text,
}

/// A query parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `boolean`.
    pub kind: &'static str,
    pub enumeration: &'static [&'static str],
    pub description: &'static str,
}

/// One route: how it is served and how it is documented.
pub struct Route {
    pub verb: Verb,
    /// axum path syntax (`{name}`), which is also OpenAPI's.
    pub path: &'static str,
    pub operation: &'static str,
    pub summary: &'static str,
    pub query: &'static [Param],
    pub body: Option<SchemaFn>,
    pub answer: Answer,
    /// Every error status the handler can answer (401 is added for every route but
    /// `/healthz`; 400 and 413 for every route with a body or a path parameter).
    pub errors: &'static [(u16, &'static str)],
    pub open: bool,
    /// The body is a binary upload (`application/octet-stream`), not JSON.
    pub upload: bool,
    handler: fn() -> MethodRouter<Arc<ApiState>>,
}

const NOT_FOUND: (u16, &str) = (
    404,
    "No such object (the message names it and how to list them)",
);
const CONFLICT: (u16, &str) = (
    409,
    "Conflicts with what exists (the message says what and the fix)",
);
const INVALID: (u16, &str) = (422, "A field is wrong; `details` names each");
const STORE: (u16, &str) = (500, "The store failed; nothing was changed");

const ALARM_PARAMS: &[Param] = &[
    Param {
        name: "subcloud",
        kind: "string",
        enumeration: &[],
        description: "Only this subcloud's alarms",
    },
    Param {
        name: "host",
        kind: "string",
        enumeration: &[],
        description: "Only this host's alarms",
    },
    Param {
        name: "severity",
        kind: "string",
        enumeration: &["critical", "major", "minor", "warning"],
        description: "Only this severity",
    },
    Param {
        name: "active",
        kind: "boolean",
        enumeration: &[],
        description: "Only alarms not cleared",
    },
    Param {
        name: "cleared",
        kind: "boolean",
        enumeration: &[],
        description: "Only cleared alarms",
    },
];

const EVENT_PARAMS: &[Param] = &[
    Param {
        name: "cursor",
        kind: "integer",
        enumeration: &[],
        description: "Only events after this seq (0 = from the oldest)",
    },
    Param {
        name: "follow",
        kind: "boolean",
        enumeration: &[],
        description: "Keep the stream open for new events (a newline every 15 s keeps it alive)",
    },
];

macro_rules! route {
    ($verb:ident $path:literal $op:literal $summary:literal, $mk:ident($h:path) $(, $k:ident: $v:expr)* $(,)?) => {
        Route {
            verb: Verb::$verb,
            path: $path,
            operation: $op,
            summary: $summary,
            handler: || $mk($h),
            $($k: $v,)*
            ..Route::DEFAULT
        }
    };
}

impl Route {
    const DEFAULT: Route = Route {
        verb: Verb::Get,
        path: "",
        operation: "",
        summary: "",
        query: &[],
        body: None,
        answer: Answer::Text,
        errors: &[],
        open: false,
        upload: false,
        handler: || get(not_found),
    };
}

/// Every route of the API.
pub static ROUTES: &[Route] = &[
    route!(Get "/healthz" "healthz" "Liveness (no token needed)", get(healthz), open: true),
    route!(Get "/metrics" "metrics" "Prometheus metrics", get(fleet::metrics)),
    route!(Get "/v1/openapi.json" "openapi" "This document", get(openapi_doc),
        answer: Answer::Json(200, object)),
    route!(Get "/v1/status" "status" "The fleet in numbers", get(status),
        answer: Answer::Json(200, schema::<FleetStatus>)),
    route!(Get "/v1/groups" "listGroups" "Every group", get(list_groups),
        answer: Answer::Json(200, schema::<Vec<Group>>)),
    route!(Post "/v1/groups" "addGroup" "Add a group", post(add_group),
        body: Some(schema::<AddGroup>),
        answer: Answer::Json(201, schema::<Group>),
        errors: &[CONFLICT, INVALID, STORE]),
    route!(Delete "/v1/groups/{name}" "removeGroup" "Remove an empty group", delete(rm_group),
        answer: Answer::Json(200, schema::<Removed>),
        errors: &[NOT_FOUND, CONFLICT, STORE]),
    route!(Get "/v1/subclouds" "listSubclouds" "Subclouds: filtered, sorted, paged (X-Total-Count: how many matched)",
        get(table::list_subclouds),
        query: table::SUBCLOUD_PARAMS,
        answer: Answer::Json(200, schema::<Vec<SubcloudView>>),
        errors: &[(422, "A query parameter is wrong; `details` names it")]),
    route!(Post "/v1/subclouds" "addSubcloud" "Add a subcloud (managed)", post(add_subcloud),
        body: Some(schema::<AddSubcloud>),
        answer: Answer::Json(201, schema::<SubcloudView>),
        errors: &[CONFLICT, INVALID, STORE]),
    route!(Get "/v1/subclouds/{name}" "getSubcloud" "One subcloud with its hosts", get(get_subcloud),
        answer: Answer::Json(200, schema::<SubcloudView>),
        errors: &[NOT_FOUND]),
    route!(Delete "/v1/subclouds/{name}" "removeSubcloud" "Remove a subcloud without hosts or deployments",
        delete(rm_subcloud),
        answer: Answer::Json(200, schema::<Removed>),
        errors: &[NOT_FOUND, CONFLICT, STORE]),
    route!(Post "/v1/subclouds/{name}/manage" "manageSubcloud" "Push desired state to it from now on",
        post(manage),
        answer: Answer::Json(200, schema::<SubcloudView>),
        errors: &[NOT_FOUND, STORE]),
    route!(Post "/v1/subclouds/{name}/unmanage" "unmanageSubcloud" "Only watch it from now on",
        post(unmanage),
        answer: Answer::Json(200, schema::<SubcloudView>),
        errors: &[NOT_FOUND, STORE]),
    route!(Post "/v1/subclouds/{name}/sync" "syncSubcloud" "Push its desired state to its online hosts now",
        post(sync),
        answer: Answer::Json(200, schema::<Synced>),
        errors: &[NOT_FOUND, (409, "The subcloud is unmanaged")]),
    route!(Post "/v1/subclouds/{name}/labels" "labelSubcloud" "Set and remove a subcloud's labels",
        post(strategies::label),
        body: Some(schema::<strategies::LabelRequest>),
        answer: Answer::Json(200, schema::<SubcloudView>),
        errors: &[NOT_FOUND, INVALID, STORE]),
    route!(Post "/v1/audit" "audit" "Audit the fleet's sync now: every linked host reports afresh",
        post(fleet::audit),
        query: fleet::AUDIT_PARAMS,
        answer: Answer::Json(200, schema::<AuditResult>),
        errors: &[(422, "`wait` is not a duration from 1s to 600s")]),
    route!(Get "/v1/hosts" "listHosts" "Every enrolled host", get(list_hosts),
        answer: Answer::Json(200, schema::<Vec<HostView>>)),
    route!(Get "/v1/hosts/{name}" "getHost" "One host with its workloads", get(get_host),
        answer: Answer::Json(200, schema::<HostView>),
        errors: &[NOT_FOUND]),
    route!(Get "/v1/hosts/{name}/workloads/{workload}/logs" "getWorkloadLogs"
        "Part of a central workload's log, read by its host over the link (follow with nextOffset)",
        get(hostlogs::logs),
        query: hostlogs::LOG_PARAMS,
        answer: Answer::Json(200, schema::<roost_federation::central::LogView>),
        errors: &[(404, "No such host, or the host runs no such workload of central's"),
            (422, "A query parameter is wrong; `details` names it"),
            (503, "The host is offline, too old to send logs, or could not read the log (the message says which)"),
            (504, "The host did not answer within 5 s")]),
    route!(Post "/v1/hosts/{name}/revoke" "revokeHost" "Cut a host off and refuse its certificate",
        post(revoke_host),
        answer: Answer::Json(200, schema::<HostView>),
        errors: &[NOT_FOUND, STORE]),
    route!(Post "/v1/tokens" "createToken" "Make a one-time join token for a subcloud",
        post(create_token),
        body: Some(schema::<CreateToken>),
        answer: Answer::Json(201, schema::<TokenCreated>),
        errors: &[INVALID, STORE]),
    route!(Get "/v1/deployments" "listDeployments" "Every set deployed, with its workloads",
        get(list_deployments),
        answer: Answer::Json(200, schema::<Vec<Deployment>>)),
    route!(Post "/v1/deploy" "deploy" "Deploy or update a workload set at a target", post(deploy),
        body: Some(schema::<DeployRequest>),
        answer: Answer::Json(200, schema::<DeployResult>),
        errors: &[(409, "Another set names the same workload for the same hosts"), INVALID, STORE]),
    route!(Post "/v1/undeploy" "undeploy" "Remove a set from a target", post(undeploy),
        body: Some(schema::<UndeployRequest>),
        answer: Answer::Json(200, schema::<DeployResult>),
        errors: &[(404, "The set is not deployed there"), INVALID, STORE]),
    route!(Get "/v1/strategies" "listStrategies" "Every strategy with its progress (no steps)",
        get(strategies::list),
        answer: Answer::Json(200, schema::<Vec<StrategyView>>)),
    route!(Post "/v1/strategies" "createStrategy" "Create a strategy (state initial)",
        post(strategies::create),
        body: Some(schema::<StrategyRequest>),
        answer: Answer::Json(201, schema::<StrategyView>),
        errors: &[(409, "The name is taken, or a running strategy covers some of the same subclouds (named)"), INVALID, STORE]),
    route!(Get "/v1/strategies/{name}" "getStrategy" "One strategy with every step",
        get(strategies::show),
        answer: Answer::Json(200, schema::<StrategyView>),
        errors: &[NOT_FOUND]),
    route!(Delete "/v1/strategies/{name}" "removeStrategy" "Remove a strategy that is not running",
        delete(strategies::remove),
        answer: Answer::Json(200, schema::<Removed>),
        errors: &[NOT_FOUND, (409, "The strategy is running: abort it first"), STORE]),
    route!(Post "/v1/strategies/{name}/apply" "applyStrategy" "Start an initial strategy",
        post(strategies::apply),
        answer: Answer::Json(200, schema::<StrategyView>),
        errors: &[NOT_FOUND, (409, "The strategy is not initial"), STORE]),
    route!(Post "/v1/strategies/{name}/approve" "approveStrategy" "Approve the canary and continue",
        post(strategies::approve),
        answer: Answer::Json(200, schema::<StrategyView>),
        errors: &[NOT_FOUND, (409, "Nothing to approve"), STORE]),
    route!(Post "/v1/strategies/{name}/abort" "abortStrategy" "Start no new steps; the ones in flight finish",
        post(strategies::abort),
        answer: Answer::Json(200, schema::<StrategyView>),
        errors: &[NOT_FOUND, (409, "The strategy has ended"), STORE]),
    route!(Post "/v1/subclouds/{name}/release" "setSubcloudRelease"
        "Set the Roost release its hosts should run (or clear it) and push it to them",
        post(releases::set_subcloud),
        body: Some(schema::<releases::SetRelease>),
        answer: Answer::Json(200, schema::<SubcloudView>),
        errors: &[NOT_FOUND, (422, "No such release, or neither/both of version and clear"), STORE]),
    route!(Get "/v1/releases" "listReleases" "Every Roost release central serves to hosts",
        get(releases::list),
        answer: Answer::Json(200, schema::<Vec<roost_federation::model::Release>>)),
    route!(Post "/v1/releases" "addRelease"
        "Add a Roost release: the binary is the body (at most 512 MiB), stored by its SHA-256",
        post(releases::add),
        query: releases::ADD_PARAMS,
        upload: true,
        answer: Answer::Json(201, schema::<roost_federation::model::Release>),
        errors: &[(200, "The same version with the same binary was already there"),
            (409, "The version exists with another binary"), INVALID,
            (500, "The store or the releases dir failed; nothing was added")]),
    route!(Delete "/v1/releases/{version}" "removeRelease" "Remove a release no subcloud wants",
        delete(releases::remove),
        answer: Answer::Json(200, schema::<Removed>),
        errors: &[NOT_FOUND, (409, "A subcloud still wants it (named)"), STORE]),
    route!(Get "/v1/alarms" "listAlarms" "Alarms, newest first", get(list_alarms),
        query: ALARM_PARAMS,
        answer: Answer::Json(200, schema::<Vec<Alarm>>),
        errors: &[(422, "A query parameter is wrong; `details` names it")]),
    route!(Get "/v1/events" "events" "The event log as NDJSON, resumable from a cursor",
        get(stream::events),
        query: EVENT_PARAMS,
        answer: Answer::Ndjson(schema::<roost_federation::model::Event>),
        errors: &[(422, "A query parameter is wrong; `details` names it"), STORE]),
];

// ---------------------------------------------------------------------------------
// Errors.

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// One line: what failed and what to do.
    pub error: String,
    /// Each bad field (path in the request body, or the query parameter).
    pub details: Vec<FieldProblem>,
}

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                details: Vec::new(),
            },
        }
    }

    /// 422 naming one field.
    fn field(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody {
                error: format!("{field}: {message}"),
                details: vec![FieldProblem {
                    field: field.into(),
                    message,
                }],
            },
        }
    }
}

impl From<CentralError> for ApiError {
    fn from(e: CentralError) -> Self {
        let status = match &e {
            CentralError::NotFound(_) => StatusCode::NOT_FOUND,
            CentralError::Conflict(_) => StatusCode::CONFLICT,
            CentralError::Invalid { message, details } => {
                return Self {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    body: ErrorBody {
                        error: message.clone(),
                        details: details.clone(),
                    },
                }
            }
            CentralError::Refused(_) => StatusCode::FORBIDDEN,
            CentralError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            CentralError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CentralError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            CentralError::Store(_) | CentralError::Pki(_) | CentralError::Io(_) => {
                tracing::error!(error = %e, "operator request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Put on a request by the console's session layer when the request carries a live
/// console session (and, for a state-changing method, its CSRF token): it stands for
/// the operator token.
#[derive(Debug, Clone, Copy)]
pub struct SessionOperator;

async fn auth(State(st): S, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" || req.extensions().get::<SessionOperator>().is_some() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = given.is_some_and(|t| {
        !st.token.is_empty()
            && roost_federation::pki::constant_time_eq(t.as_bytes(), st.token.as_bytes())
    });
    if ok {
        return next.run(req).await;
    }
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHORIZED).into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; GET /v1/openapi.json lists them",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint; GET /v1/openapi.json lists the methods of each",
    )
}

// ---------------------------------------------------------------------------------
// Parsing.

/// A `{name}` path segment (a bad percent-encoding is a 400 in JSON, like every error).
struct Name(String);

impl<St: Send + Sync> FromRequestParts<St> for Name {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| Name(p.0))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("bad path: {}", e.body_text()),
                )
            })
    }
}

/// Split serde_path_to_error's `path: message` (the path is `.` at the top level,
/// where nothing is prefixed).
fn split_path(text: &str) -> (String, String) {
    let (path, msg) = match text.split_once(": ") {
        Some((p, m)) if !p.is_empty() && !p.contains(char::is_whitespace) && !p.contains('`') => {
            (p.to_string(), m.to_string())
        }
        _ => (String::new(), text.to_string()),
    };
    // `missing field `x``: the field is the missing one, under the path.
    for prefix in ["missing field `", "unknown field `"] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((name, _)) = rest.split_once('`') {
                let ends = path == name || path.ends_with(&format!(".{name}"));
                if !ends {
                    let path = if path.is_empty() || path == "." {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    return (path, msg);
                }
            }
        }
    }
    if path.is_empty() || path == "." {
        return ("body".into(), msg);
    }
    (path, msg)
}

/// A JSON body as `T`: 400 for unreadable JSON (with its position), 413 for too large,
/// 422 naming the field for JSON of the wrong shape (unknown fields included).
fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                format!(
                    "the request body is larger than {MAX_BODY_BYTES} bytes; send a smaller one"
                ),
            )
        } else {
            ApiError::new(
                status,
                format!("cannot read the request body: {}", e.body_text()),
            )
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the request body is empty: send a JSON object {shape}"),
        ));
    }
    let inner = |e: &dyn std::error::Error| {
        e.source()
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string())
    };
    match Json::<T>::from_bytes(&bytes) {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::JsonDataError(e)) => {
            let (field, message) = split_path(&inner(&e));
            Err(ApiError::field(&field, message))
        }
        Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the request body is not valid JSON: {}; send a JSON object {shape}",
                inner(&e)
            ),
        )),
        Err(e) => Err(ApiError::new(e.status(), e.body_text())),
    }
}

/// Query parameters as (name, value) pairs; an empty value counts as not given.
fn query_pairs(
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    allowed: &[Param],
) -> Result<Vec<(String, String)>, ApiError> {
    let Query(pairs) = q.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad query string: {}", e.body_text()),
        )
    })?;
    let mut seen = Vec::new();
    for (k, v) in pairs {
        if !allowed.iter().any(|p| p.name == k) {
            let names: Vec<&str> = allowed.iter().map(|p| p.name).collect();
            return Err(ApiError::field(
                &k,
                format!(
                    "unknown query parameter; this endpoint takes {}",
                    names.join(", ")
                ),
            ));
        }
        if !v.is_empty() {
            seen.push((k, v));
        }
    }
    Ok(seen)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::field(
            name,
            format!("`{v}` is not a boolean: use true or false"),
        )),
    }
}

// ---------------------------------------------------------------------------------
// Bodies.

/// Body of `POST /v1/groups`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddGroup {
    /// DNS-label style name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// Body of `POST /v1/subclouds`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSubcloud {
    /// DNS-label style name.
    pub name: String,
    /// Its group (`default` when absent).
    #[serde(default)]
    pub group: Option<String>,
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// The subcloud a host joining with the token lands in.
    pub subcloud: String,
    /// Lifetime: a number with `ms`, `s`, `m`, `h` or `d` (default `1h`, at most `30d`).
    #[serde(default)]
    pub ttl: Option<String>,
}

/// Body of `POST /v1/deploy`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The set (`kind: WorkloadSet`).
    pub set: WorkloadSet,
    /// `group/NAME`, `subcloud/NAME` or `host/NAME`.
    #[schemars(with = "Target")]
    pub target: String,
}

/// Body of `POST /v1/undeploy`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UndeployRequest {
    /// The set's name.
    pub set: String,
    /// Where it is deployed.
    #[schemars(with = "Target")]
    pub target: String,
}

/// Answer of a removal.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Removed {
    /// What is gone: `group/NAME` or `subcloud/NAME`.
    pub removed: String,
}

/// Answer of `POST /v1/subclouds/{name}/sync`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Synced {
    /// The hosts its desired state was pushed to.
    pub hosts: Vec<String>,
}

fn target(s: &str) -> Result<Target, ApiError> {
    Target::from_str(s).map_err(|e| ApiError::field("target", e))
}

// ---------------------------------------------------------------------------------
// Handlers: parse, call central, render.

type Answered<T> = Result<Json<T>, ApiError>;

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn openapi_doc() -> Json<serde_json::Value> {
    Json(openapi::document().clone())
}

async fn status(State(st): S) -> Json<FleetStatus> {
    Json(st.central.status())
}

async fn list_groups(State(st): S) -> Json<Vec<Group>> {
    Json(st.central.groups())
}

async fn add_group(
    State(st): S,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: AddGroup = parse_body(body, "{\"name\": \"...\", \"description\": \"...\"}")?;
    Ok(created(
        st.central.add_group(&b.name, &b.description).await?,
    ))
}

async fn rm_group(State(st): S, Name(name): Name) -> Answered<Removed> {
    st.central.rm_group(&name).await?;
    Ok(Json(Removed {
        removed: format!("group/{name}"),
    }))
}

async fn add_subcloud(
    State(st): S,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: AddSubcloud = parse_body(body, "{\"name\": \"...\", \"group\": \"...\"}")?;
    Ok(created(
        st.central.add_subcloud(&b.name, b.group.as_deref()).await?,
    ))
}

async fn get_subcloud(State(st): S, Name(name): Name) -> Answered<SubcloudView> {
    Ok(Json(st.central.subcloud(&name)?))
}

async fn rm_subcloud(State(st): S, Name(name): Name) -> Answered<Removed> {
    st.central.rm_subcloud(&name).await?;
    Ok(Json(Removed {
        removed: format!("subcloud/{name}"),
    }))
}

async fn manage(State(st): S, Name(name): Name) -> Answered<SubcloudView> {
    Ok(Json(st.central.set_managed(&name, true).await?))
}

async fn unmanage(State(st): S, Name(name): Name) -> Answered<SubcloudView> {
    Ok(Json(st.central.set_managed(&name, false).await?))
}

async fn sync(State(st): S, Name(name): Name) -> Answered<Synced> {
    Ok(Json(Synced {
        hosts: st.central.sync_subcloud(&name).await?,
    }))
}

async fn list_hosts(State(st): S) -> Json<Vec<HostView>> {
    Json(st.central.hosts())
}

async fn get_host(State(st): S, Name(name): Name) -> Answered<HostView> {
    Ok(Json(st.central.host(&name)?))
}

async fn revoke_host(State(st): S, Name(name): Name) -> Answered<HostView> {
    Ok(Json(st.central.revoke_host(&name).await?))
}

async fn create_token(
    State(st): S,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let b: CreateToken = parse_body(body, "{\"subcloud\": \"...\", \"ttl\": \"1h\"}")?;
    let ttl = match b.ttl.as_deref() {
        None | Some("") => DEFAULT_TOKEN_TTL,
        Some(t) => roost_host::daemon::parse_duration(t).ok_or_else(|| {
            ApiError::field(
                "ttl",
                format!("`{t}` is not a duration: give a number with ms, s, m, h or d, e.g. 1h"),
            )
        })?,
    };
    Ok(created(st.central.create_token(&b.subcloud, ttl).await?))
}

async fn list_deployments(State(st): S) -> Json<Vec<Deployment>> {
    Json(st.central.deployments())
}

async fn deploy(State(st): S, body: Result<Bytes, BytesRejection>) -> Answered<DeployResult> {
    let b: DeployRequest =
        parse_body(body, "{\"set\": {WorkloadSet}, \"target\": \"group/NAME\"}")?;
    let t = target(&b.target)?;
    match st.central.deploy(b.set, t).await {
        Ok(r) => Ok(Json(r)),
        // The set's problems are named as central sees them (relative to the set):
        // here they are paths in the request body, under `set`.
        Err(CentralError::Invalid { message, details }) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody {
                error: message,
                details: details
                    .into_iter()
                    .map(|mut d| {
                        if d.field != "target" {
                            d.field = format!("set.{}", d.field);
                        }
                        d
                    })
                    .collect(),
            },
        }),
        Err(e) => Err(e.into()),
    }
}

async fn undeploy(State(st): S, body: Result<Bytes, BytesRejection>) -> Answered<DeployResult> {
    let b: UndeployRequest = parse_body(body, "{\"set\": \"NAME\", \"target\": \"group/NAME\"}")?;
    let t = target(&b.target)?;
    Ok(Json(st.central.undeploy(&b.set, t).await?))
}

async fn list_alarms(
    State(st): S,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Answered<Vec<Alarm>> {
    let mut f = AlarmFilter::default();
    for (k, v) in query_pairs(q, ALARM_PARAMS)? {
        match k.as_str() {
            "subcloud" => f.subcloud = Some(v),
            "host" => f.host = Some(v),
            "severity" => {
                f.severity =
                    Some(Severity::from_str(&v).map_err(|e| ApiError::field("severity", e))?)
            }
            "cleared" => f.cleared = parse_bool("cleared", &v)?,
            _ => f.active = parse_bool("active", &v)?,
        }
    }
    Ok(Json(st.central.alarms(&f)))
}

//! The daemon's HTTP/JSON API: a thin front end. Each handler parses, calls the
//! supervisor, and renders; every error is `{error, details[]}`.

mod exec;
mod handlers;
mod images;
pub use images::ImageNames;
pub mod openapi;
pub mod specdoc;
pub(crate) mod stream;

use crate::supervisor::{Supervisor, SupervisorError};
use crate::validate::{DocumentError, FieldError, SpecError, ValidationError};
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Shared state of the API.
#[derive(Debug)]
pub struct ApiState {
    /// The supervisor behind the API.
    pub sup: Arc<Supervisor>,
    /// Requests answered, by status class (2xx, 4xx, 5xx).
    pub answered: [AtomicU64; 3],
    /// Daemon start (Unix ms).
    pub started_ms: u64,
    /// The images of the containerd the container driver uses.
    pub images: crate::images::Images,
}

impl ApiState {
    /// State over a supervisor and an image service.
    pub fn new(sup: Arc<Supervisor>, images: crate::images::Images) -> Arc<Self> {
        Arc::new(Self {
            sup,
            answered: Default::default(),
            started_ms: crate::model::now_ms(),
            images,
        })
    }
}

/// The error body of every failed request.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// One line: what failed and what to do.
    pub error: String,
    /// Per-field problems (validation), possibly empty.
    pub details: Vec<FieldError>,
}

/// An API error: a status and a body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    /// An error with no field details.
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                details: Vec::new(),
            },
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        let n = e.0.len();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody {
                error: format!(
                    "invalid workload spec: {n} problem{}; fix the fields listed in details",
                    if n == 1 { "" } else { "s" }
                ),
                details: e.0,
            },
        }
    }
}

impl From<DocumentError> for ApiError {
    fn from(e: DocumentError) -> Self {
        let status = match e {
            DocumentError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            DocumentError::Syntax { .. } | DocumentError::NotAMapping { .. } => {
                StatusCode::BAD_REQUEST
            }
        };
        let message = e.to_string();
        Self {
            status,
            body: ErrorBody {
                error: message.clone(),
                details: vec![FieldError {
                    field: "(document)".into(),
                    message,
                }],
            },
        }
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Document(d) => d.into(),
            SpecError::Invalid(v) => v.into(),
        }
    }
}

impl From<SupervisorError> for ApiError {
    fn from(e: SupervisorError) -> Self {
        let status = match &e {
            SupervisorError::NotFound(_) => StatusCode::NOT_FOUND,
            SupervisorError::Conflict(_) => StatusCode::CONFLICT,
            SupervisorError::Invalid(d) => return ValidationError(d.clone()).into(),
            SupervisorError::NotAdmitted(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // The spec asks for a driver or backend this host cannot offer right
            // now: not admitted here (the message says what is missing and the fix).
            SupervisorError::Unavailable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SupervisorError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            SupervisorError::NotRunning { .. } => StatusCode::CONFLICT,
            SupervisorError::Driver(d) => match d {
                crate::driver::DriverError::Spec { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                crate::driver::DriverError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                crate::driver::DriverError::Op { .. } => StatusCode::BAD_GATEWAY,
            },
            SupervisorError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// The API router (no listener: the server module binds it to a socket).
pub fn router(state: Arc<ApiState>) -> Router {
    let counted = Arc::clone(&state);
    Router::new()
        .route("/v1/workloads", get(handlers::list).post(handlers::create))
        .route(
            "/v1/workloads/{name}",
            get(handlers::inspect).delete(handlers::remove),
        )
        .route("/v1/workloads/{name}/stop", post(handlers::stop))
        .route("/v1/workloads/{name}/start", post(handlers::start))
        .route("/v1/workloads/{name}/logs", get(stream::logs))
        .route("/v1/workloads/{name}/exec", post(exec::exec))
        .route("/v1/apply", post(handlers::apply))
        .route("/v1/images", get(images::list))
        .route("/v1/images/pull", post(images::pull))
        .route(
            "/v1/images/import",
            post(images::import).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/images/prune", post(images::prune))
        .route(
            "/v1/images/{*reference}",
            axum::routing::delete(images::remove),
        )
        .route("/v1/events", get(stream::events))
        .route("/v1/host", get(handlers::host))
        .route("/v1/openapi.json", get(handlers::openapi))
        .route("/metrics", get(handlers::metrics))
        .route("/healthz", get(handlers::healthz))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(move |res: Response| {
            let s = Arc::clone(&counted);
            async move {
                let class = match res.status().as_u16() {
                    200..=399 => 0,
                    400..=499 => 1,
                    _ => 2,
                };
                s.answered[class].fetch_add(1, Ordering::Relaxed);
                res
            }
        }))
        .with_state(state)
}

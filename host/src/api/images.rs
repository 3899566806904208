//! `/v1/images`: list, pull, import (the archive is the body), remove, prune.

use super::{ApiError, ApiState};
use crate::images::{ImageInfo, ImagesError, PullRequest};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use futures_util::StreamExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::Arc;

type S = State<Arc<ApiState>>;

/// Largest image archive accepted by `POST /v1/images/import`.
pub const MAX_IMPORT_BYTES: u64 = 8 * 1024 * 1024 * 1024;

impl From<ImagesError> for ApiError {
    fn from(e: ImagesError) -> Self {
        let status = match &e {
            ImagesError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ImagesError::NotFound(_) => StatusCode::NOT_FOUND,
            ImagesError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ImagesError::InUse { .. } => StatusCode::CONFLICT,
            ImagesError::Backend(_) => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, e.to_string())
    }
}

/// The (workload, image) pairs of every container workload.
fn specs(st: &ApiState) -> Vec<(String, String)> {
    st.sup
        .list()
        .into_iter()
        .filter_map(|r| {
            let image = r.workload.spec.container.as_ref()?.image.clone();
            Some((r.name().to_string(), image))
        })
        .collect()
}

/// Names an image request stored or removed.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ImageNames {
    /// Normalised image names.
    pub names: Vec<String>,
}

/// `GET /v1/images`.
pub async fn list(State(st): S) -> Result<Json<Vec<ImageInfo>>, ApiError> {
    let specs = specs(&st);
    Ok(Json(st.images.list(&specs).await?))
}

/// `POST /v1/images/pull`.
pub async fn pull(
    State(st): S,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<ImageNames>, ApiError> {
    let text = super::handlers::body_text(body)?;
    let v = crate::validate::parse_json(&text)?;
    let req: PullRequest = serde_json::from_value(v).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "a pull is {{\"reference\": \"REF\"}} with optional username and password, token, insecureRegistries: {e}"
            ),
        )
    })?;
    if req.reference.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`reference` is empty; name an image, e.g. registry.example/app:1.2",
        ));
    }
    let name = st.images.pull(req).await?;
    Ok(Json(ImageNames { names: vec![name] }))
}

/// Query of `POST /v1/images/import`.
#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    /// Name for the image (when the archive has none, or only a tag).
    pub name: Option<String>,
}

/// `POST /v1/images/import?name=N`: the body is the archive (a tarball of an OCI
/// layout or a docker-archive, maybe gzipped), staged to a file, then imported.
pub async fn import(
    State(st): S,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Json<ImageNames>, ApiError> {
    let staged = st.images.staging_file()?;
    let mut file = staged.as_file().try_clone().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot stage the upload: {e}"),
        )
    })?;
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the archive upload broke off: {e}"),
            )
        })?;
        size += chunk.len() as u64;
        if size > MAX_IMPORT_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the archive is larger than {MAX_IMPORT_BYTES} bytes"),
            ));
        }
        // Blocking writes of at most one chunk; the upload is local and bounded.
        file.write_all(&chunk).map_err(|e| {
            ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!("cannot stage the archive: {e}"),
            )
        })?;
    }
    if size == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is empty; send the image archive (a tarball of an OCI layout or a docker-archive)",
        ));
    }
    let names = st.images.import(staged.path(), q.name).await?;
    Ok(Json(ImageNames { names }))
}

/// `DELETE /v1/images/{reference}` (the reference may hold `/`).
pub async fn remove(
    State(st): S,
    Path(reference): Path<String>,
) -> Result<Json<ImageNames>, ApiError> {
    let specs = specs(&st);
    let name = st.images.remove(&reference, &specs).await?;
    Ok(Json(ImageNames { names: vec![name] }))
}

/// `POST /v1/images/prune`: remove every image no workload uses.
pub async fn prune(State(st): S) -> Result<Json<ImageNames>, ApiError> {
    let specs = specs(&st);
    Ok(Json(ImageNames {
        names: st.images.prune(&specs).await?,
    }))
}

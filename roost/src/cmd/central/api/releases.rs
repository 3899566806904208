//! Releases (Roost binaries central serves to hosts) and a subcloud's desired release:
//! `POST /v1/releases?version=V` (the binary is the body, streamed to disk),
//! `GET /v1/releases`, `DELETE /v1/releases/{version}`,
//! `POST /v1/subclouds/{name}/release`.

use super::{created, parse_body, query_pairs, Answered, ApiError, Name, Param, Removed, S};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use roost_federation::central::{SubcloudView, MAX_RELEASE_BYTES};
use roost_federation::model::Release;
use schemars::JsonSchema;
use serde::Deserialize;

/// The query of `POST /v1/releases`.
pub const ADD_PARAMS: &[Param] = &[Param {
    name: "version",
    kind: "string",
    enumeration: &[],
    description:
        "The version hosts report once they run this binary (required; 1-64 of 0-9 A-Z a-z . + -)",
}];

/// Body of `POST /v1/subclouds/{name}/release`: exactly one of the two.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRelease {
    /// The release its hosts should run (a version of `GET /v1/releases`).
    #[serde(default)]
    pub version: Option<String>,
    /// True: leave each host on what it runs.
    #[serde(default)]
    pub clear: bool,
}

pub async fn add(
    State(st): S,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let version = query_pairs(q, ADD_PARAMS)?
        .into_iter()
        .find(|(k, _)| k == "version")
        .map(|(_, v)| v)
        .ok_or_else(|| {
            ApiError::field(
                "version",
                "required: POST /v1/releases?version=V with the binary as the body",
            )
        })?;
    let r = st
        .central
        .add_release(&version, body.into_data_stream(), MAX_RELEASE_BYTES)
        .await?;
    Ok(if r.created {
        created(r.release)
    } else {
        (StatusCode::OK, Json(r.release)).into_response()
    })
}

pub async fn list(State(st): S) -> Json<Vec<Release>> {
    Json(st.central.releases())
}

pub async fn remove(State(st): S, Name(version): Name) -> Answered<Removed> {
    st.central.rm_release(&version).await?;
    Ok(Json(Removed {
        removed: format!("release/{version}"),
    }))
}

pub async fn set_subcloud(
    State(st): S,
    Name(name): Name,
    body: Result<Bytes, BytesRejection>,
) -> Answered<SubcloudView> {
    let b: SetRelease = parse_body(body, "{\"version\": \"V\"} or {\"clear\": true}")?;
    let version =
        match (b.version.as_deref(), b.clear) {
            (Some(v), false) => Some(v),
            (None, true) => None,
            _ => return Err(ApiError::field(
                "version",
                "give either `version` (the release to run) or `clear: true`, not both nor neither",
            )),
        };
    st.central.set_subcloud_release(&name, version).await?;
    Ok(Json(st.central.subcloud(&name)?))
}

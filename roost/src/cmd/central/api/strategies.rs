//! Strategy routes and subcloud labels: parse, call central, render.

use super::{parse_body, Answered, ApiError, ErrorBody, Name, Removed, S};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use roost_federation::central::{CentralError, SubcloudView};
use roost_federation::strategy::{StrategyRequest, StrategyView};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Labels to set and remove on a subcloud.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelRequest {
    /// Labels to set (`key: value`).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Label keys to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

pub(super) async fn list(State(st): S) -> Json<Vec<StrategyView>> {
    Json(st.central.strategies())
}

pub(super) async fn create(
    State(st): S,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: StrategyRequest = parse_body(
        body,
        "{\"name\": \"...\", \"set\": {WorkloadSet} or \"release\": \"VERSION\", \"group\": \
         \"NAME\" or \"subclouds\": [...] or \"selector\": \"k=v\"}",
    )?;
    match st.central.create_strategy(req).await {
        Ok(v) => Ok((StatusCode::CREATED, Json(v)).into_response()),
        // The set's own problems are named relative to the set: here they are under
        // `set` in the request body.
        Err(CentralError::Invalid { message, details }) => Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody {
                error: message,
                details: details
                    .into_iter()
                    .map(|mut d| {
                        let top = [
                            "name",
                            "set",
                            "release",
                            "group",
                            "subclouds",
                            "selector",
                            "applyType",
                            "maxParallel",
                            "stopOnFailure",
                            "maxFailures",
                            "offline",
                            "minHealthySeconds",
                            "canary",
                            "rollback",
                            "stepTimeoutSeconds",
                        ];
                        let head = d.field.split(['.', '[']).next().unwrap_or_default();
                        if !top.contains(&head) || d.field.starts_with("metadata") {
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

pub(super) async fn show(State(st): S, Name(name): Name) -> Answered<StrategyView> {
    Ok(Json(st.central.strategy(&name)?))
}

pub(super) async fn apply(State(st): S, Name(name): Name) -> Answered<StrategyView> {
    Ok(Json(st.central.apply_strategy(&name).await?))
}

pub(super) async fn approve(State(st): S, Name(name): Name) -> Answered<StrategyView> {
    Ok(Json(st.central.approve_strategy(&name).await?))
}

pub(super) async fn abort(State(st): S, Name(name): Name) -> Answered<StrategyView> {
    Ok(Json(st.central.abort_strategy(&name).await?))
}

pub(super) async fn remove(State(st): S, Name(name): Name) -> Answered<Removed> {
    st.central.rm_strategy(&name).await?;
    Ok(Json(Removed {
        removed: format!("strategy/{name}"),
    }))
}

pub(super) async fn label(
    State(st): S,
    Name(name): Name,
    body: Result<Bytes, BytesRejection>,
) -> Answered<SubcloudView> {
    let b: LabelRequest = parse_body(body, "{\"set\": {\"k\": \"v\"}, \"remove\": [\"k\"]}")?;
    Ok(Json(
        st.central.label_subcloud(&name, b.set, b.remove).await?,
    ))
}

//! `GET /v1/subclouds?…`: the subcloud table, filtered, sorted and paged by
//! [`roost_federation::central::SubcloudQuery`] (the console's table and the CLI's
//! list); how many rows matched is in `X-Total-Count`.

use super::{query_pairs, ApiError, Param, S};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use roost_federation::central::{SubcloudQuery, SyncState};

pub(super) const SUBCLOUD_PARAMS: &[Param] = &[
    Param {
        name: "q",
        kind: "string",
        enumeration: &[],
        description: "Only subclouds whose name or group contains this (any case)",
    },
    Param {
        name: "group",
        kind: "string",
        enumeration: &[],
        description: "Only this group's subclouds",
    },
    Param {
        name: "availability",
        kind: "string",
        enumeration: &["online", "degraded", "offline", "empty"],
        description: "Only this availability",
    },
    Param {
        name: "sync",
        kind: "string",
        enumeration: &["in-sync", "unknown", "out-of-sync"],
        description: "Only this sync status",
    },
    Param {
        name: "management",
        kind: "string",
        enumeration: &["managed", "unmanaged"],
        description: "Only managed or only unmanaged subclouds",
    },
    Param {
        name: "sort",
        kind: "string",
        enumeration: roost_federation::central::SubcloudSort::NAMES,
        description: "Sort key (ties by name; default name)",
    },
    Param {
        name: "order",
        kind: "string",
        enumeration: &["asc", "desc"],
        description: "Sort order (default asc)",
    },
    Param {
        name: "offset",
        kind: "integer",
        enumeration: &[],
        description: "Rows skipped (default 0)",
    },
    Param {
        name: "limit",
        kind: "integer",
        enumeration: &[],
        description:
            "Rows at most, 1 to 1000 (default all); the X-Total-Count header gives how many matched",
    },
];

fn parse_count(name: &str, v: &str) -> Result<usize, ApiError> {
    v.parse()
        .map_err(|_| ApiError::field(name, format!("`{v}` is not a count: give a whole number")))
}

pub(super) async fn list_subclouds(
    State(st): S,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut sq = SubcloudQuery::default();
    for (k, v) in query_pairs(q, SUBCLOUD_PARAMS)? {
        match k.as_str() {
            "q" => sq.text = Some(v),
            "group" => sq.group = Some(v),
            "availability" => sq.availability = Some(v),
            "management" => sq.management = Some(v),
            "sync" => {
                sq.sync = Some(match v.as_str() {
                    "in-sync" => SyncState::InSync,
                    "unknown" => SyncState::Unknown,
                    "out-of-sync" => SyncState::OutOfSync,
                    _ => {
                        return Err(ApiError::field(
                            "sync",
                            format!("`{v}` is not one of in-sync, unknown, out-of-sync"),
                        ))
                    }
                })
            }
            "sort" => sq.sort = v.parse().map_err(|e: String| ApiError::field("sort", e))?,
            "order" => {
                sq.descending = match v.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => {
                        return Err(ApiError::field(
                            "order",
                            format!("`{v}` is not one of asc, desc"),
                        ))
                    }
                }
            }
            "offset" => sq.offset = parse_count("offset", &v)?,
            _ => sq.limit = Some(parse_count("limit", &v)?),
        }
    }
    let page = st.central.subcloud_page(&sq)?;
    let mut res = Json(page.items).into_response();
    res.headers_mut()
        .insert("x-total-count", HeaderValue::from(page.matched));
    Ok(res)
}

//! `GET /v1/hosts/{name}/workloads/{workload}/logs?offset=&tail=&maxBytes=`: part of a
//! central workload's log, read by its host on request over the host link (the
//! console's live log tail polls it with the `nextOffset` it got).

use super::{query_pairs, ApiError, Param, S};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use roost_federation::central::{LogRead, LogView};

pub(super) const LOG_PARAMS: &[Param] = &[
    Param {
        name: "offset",
        kind: "integer",
        enumeration: &[],
        description: "Read from this byte offset (a previous answer's nextOffset); absent = the last `tail` lines",
    },
    Param {
        name: "tail",
        kind: "integer",
        enumeration: &[],
        description: "Lines of the tail when no offset is given, 1 to 10000 (default 200)",
    },
    Param {
        name: "maxBytes",
        kind: "integer",
        enumeration: &[],
        description: "Bytes at most, 1 to 65536 (default 65536)",
    },
];

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ApiError> {
    v.parse()
        .map_err(|_| ApiError::field(name, format!("`{v}` is not a whole number")))
}

pub(super) async fn logs(
    State(st): S,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<LogView>, ApiError> {
    let Path((host, workload)) = path.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad path: {}", e.body_text()),
        )
    })?;
    let mut read = LogRead::default();
    for (k, v) in query_pairs(q, LOG_PARAMS)? {
        match k.as_str() {
            "offset" => read.offset = Some(number("offset", &v)?),
            "tail" => read.tail_lines = Some(number("tail", &v)?),
            _ => read.max_bytes = Some(number("maxBytes", &v)?),
        }
    }
    Ok(Json(
        st.central.workload_logs(&host, &workload, read).await?,
    ))
}

//! Streaming endpoints: a workload's logs (tail, follow) and the event log (NDJSON,
//! resumable from a cursor).

use super::{ApiError, ApiState};
use crate::model::{Event, Phase};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::Deserialize;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// Query of the logs endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// Keep the stream open and send new output as it comes.
    #[serde(default)]
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("bad query string: {}", e.body_text()),
    )
}

/// Offset where the last `n` lines of `file` begin.
pub(crate) fn tail_offset(file: &mut std::fs::File, n: usize) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut pos = len;
    let mut newlines = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    // A trailing newline ends the last line; it does not start a new one.
    let mut skip_last = true;
    while pos > 0 {
        let step = (buf.len() as u64).min(pos);
        pos -= step;
        file.seek(SeekFrom::Start(pos))?;
        let chunk = &mut buf[..step as usize];
        file.read_exact(chunk)?;
        for i in (0..chunk.len()).rev() {
            if chunk[i] == b'\n' {
                if skip_last && pos + i as u64 == len - 1 {
                    skip_last = false;
                    continue;
                }
                newlines += 1;
                if newlines == n {
                    return Ok(pos + i as u64 + 1);
                }
            }
        }
        skip_last = false;
    }
    Ok(0)
}

struct LogCursor {
    st: Arc<ApiState>,
    name: String,
    path: std::path::PathBuf,
    offset: u64,
    follow: bool,
    idle_polls: u32,
}

/// `GET /v1/workloads/{name}/logs?follow=true&tail=N`.
pub async fn logs(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    q: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    st.sup.get(&name)?;
    let path = st.sup.log_path(&name);
    let offset = match std::fs::File::open(&path) {
        Ok(mut f) => match q.tail {
            Some(0) => f.seek(SeekFrom::End(0)).unwrap_or(0),
            Some(n) => tail_offset(&mut f, n).unwrap_or(0),
            None => 0,
        },
        Err(_) => 0,
    };
    let cur = LogCursor {
        st,
        name,
        path,
        offset,
        follow: q.follow,
        idle_polls: 0,
    };
    let body = stream::unfold(cur, |mut c| async move {
        loop {
            let chunk = read_from(&c.path, c.offset);
            if !chunk.is_empty() {
                c.offset += chunk.len() as u64;
                c.idle_polls = 0;
                return Some((Ok::<Bytes, std::io::Error>(Bytes::from(chunk)), c));
            }
            if !c.follow {
                return None;
            }
            // Follow ends when the workload is gone, or has ended for good and its
            // output has been quiet for a while.
            match c.st.sup.get(&c.name) {
                Err(_) => return None,
                Ok(r) => {
                    let done = matches!(
                        r.status.phase,
                        Phase::Exited | Phase::Failed | Phase::Stopped
                    );
                    if done {
                        c.idle_polls += 1;
                        if c.idle_polls > 5 {
                            return None;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}

fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    if f.seek(SeekFrom::Start(offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(256 * 1024).read_to_end(&mut buf);
    buf
}

/// Query of the events endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events after this seq (0 = from the oldest kept).
    #[serde(default)]
    pub cursor: u64,
    /// Keep the stream open for new events.
    #[serde(default)]
    pub follow: bool,
    /// Only events of this workload.
    pub workload: Option<String>,
}

fn line(e: &Event) -> Bytes {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// `GET /v1/events?cursor=N&follow=true`: NDJSON, one event a line; resume with the
/// last `seq` seen as the cursor.
pub async fn events(
    State(st): State<Arc<ApiState>>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let sub = st
        .sup
        .events
        .subscribe(q.cursor)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let filter = q.workload.clone();
    let keep = move |e: &Event| filter.as_ref().is_none_or(|w| &e.workload == w);
    let backlog: Vec<Bytes> = sub.backlog.iter().filter(|e| keep(e)).map(line).collect();
    let last = sub.backlog.last().map(|e| e.seq).unwrap_or(q.cursor);
    let head = stream::iter(backlog.into_iter().map(Ok::<Bytes, std::io::Error>));
    if !q.follow {
        return Ok(ndjson(Body::from_stream(head)));
    }
    let live = stream::unfold(
        (sub.live, last, st, keep),
        |(mut rx, mut last, st, keep)| async move {
            loop {
                match rx.recv().await {
                    Ok(e) if e.seq <= last => continue,
                    Ok(e) => {
                        last = e.seq;
                        if keep(&e) {
                            return Some((Ok(line(&e)), (rx, last, st, keep)));
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // Too slow: catch up from the log, then go on live.
                        let Ok(sub) = st.sup.events.subscribe(last) else {
                            return None;
                        };
                        rx = sub.live;
                        let mut out = Vec::new();
                        for e in sub.backlog {
                            last = last.max(e.seq);
                            if keep(&e) {
                                out.extend_from_slice(&line(&e));
                            }
                        }
                        if !out.is_empty() {
                            return Some((Ok(Bytes::from(out)), (rx, last, st, keep)));
                        }
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    use futures_util::StreamExt;
    Ok(ndjson(Body::from_stream(head.chain(live))))
}

fn ndjson(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

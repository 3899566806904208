//! `GET /v1/events`: central's event log as NDJSON (one Event a line), resumable from a
//! cursor; with `follow` the stream stays open: the log is read from the store page by
//! page up to now, then new events come from central's broadcast. A slow reader that
//! falls behind the broadcast re-reads from the store, so no event is skipped.

use super::{parse_bool, query_pairs, ApiError, Param, EVENT_PARAMS, S};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use roost_federation::central::Central;
use roost_federation::model::Event;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// Events read from the store at a time.
const PAGE: usize = 1000;
/// A newline this often keeps idle followers (and proxies) from timing out.
const HEARTBEAT: Duration = Duration::from_secs(15);

fn lines(events: &[Event]) -> Bytes {
    let mut out = Vec::new();
    for e in events {
        // An Event is plain data: serialising it cannot fail.
        if let Ok(mut v) = serde_json::to_vec(e) {
            v.push(b'\n');
            out.extend_from_slice(&v);
        }
    }
    Bytes::from(out)
}

struct Follow {
    central: Arc<Central>,
    /// The last seq sent.
    cursor: u64,
    /// Whether the store has been read up to the broadcast.
    caught_up: bool,
    rx: broadcast::Receiver<Event>,
    beat: tokio::time::Interval,
}

impl Follow {
    /// The next chunk of the stream, or `None` when it ends.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if !self.caught_up {
                let page = match self.central.events_after(self.cursor, PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, cursor = self.cursor, "event stream ends: the store failed");
                        return None;
                    }
                };
                self.caught_up = page.len() < PAGE;
                if let Some(last) = page.last() {
                    self.cursor = last.seq;
                    return Some(lines(&page));
                }
                continue;
            }
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(e) if e.seq <= self.cursor => continue,
                    Ok(e) if e.seq == self.cursor + 1 => {
                        self.cursor = e.seq;
                        self.beat.reset();
                        return Some(lines(std::slice::from_ref(&e)));
                    }
                    // A gap (or a lag): read what was missed from the store.
                    Ok(_) | Err(RecvError::Lagged(_)) => self.caught_up = false,
                    Err(RecvError::Closed) => return None,
                },
                _ = self.beat.tick() => return Some(Bytes::from_static(b"\n")),
            }
        }
    }
}

fn ndjson(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// `GET /v1/events?cursor=N&follow=true`.
pub(super) async fn events(
    State(st): S,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params: &[Param] = EVENT_PARAMS;
    let mut cursor = 0u64;
    let mut follow = false;
    for (k, v) in query_pairs(q, params)? {
        match k.as_str() {
            "cursor" => {
                cursor = v.parse().map_err(|_| {
                    ApiError::field(
                        "cursor",
                        format!("`{v}` is not an event seq: give a whole number (the last seq seen; 0 = from the oldest)"),
                    )
                })?
            }
            _ => follow = parse_bool("follow", &v)?,
        }
    }
    // Subscribe before the first read: nothing committed in between is lost.
    let rx = st.central.subscribe();
    let first = st.central.events_after(cursor, PAGE).await?;
    let caught_up = first.len() < PAGE;
    let last = first.last().map(|e| e.seq).unwrap_or(cursor);
    let head = lines(&first);
    if !follow && caught_up {
        return Ok(ndjson(Body::from(head)));
    }
    let state = Follow {
        central: Arc::clone(&st.central),
        cursor: last,
        caught_up,
        rx,
        beat: tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT),
    };
    let rest = futures_util::stream::unfold((state, follow), |(mut s, follow)| async move {
        loop {
            if !follow && s.caught_up {
                return None;
            }
            let chunk = s.next().await?;
            // Without follow the stream ends once the store is read to the end (no
            // heartbeats, no live events).
            if !follow && chunk.as_ref() == b"\n" {
                continue;
            }
            return Some((Ok::<Bytes, std::io::Error>(chunk), (s, follow)));
        }
    });
    use futures_util::StreamExt;
    let head = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(head) });
    Ok(ndjson(Body::from_stream(head.chain(rest))))
}

//! `GET /ui/events`: central's event log as server-sent events for the console. Each
//! event is `id: SEQ` + `data: {Event JSON}`; the browser's EventSource sends the last
//! id back as `Last-Event-ID` when it reconnects, so a dropped stream resumes where it
//! stopped (`?cursor=N` gives the first start). The log is read from the store up to
//! now, then new events come from central's broadcast; a gap or a lag re-reads the
//! store, so none is skipped.

use super::{refuse, SessionOf, S};
use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use roost_federation::central::Central;
use roost_federation::model::Event;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};

/// Events read from the store at a time.
const PAGE: usize = 500;
/// A comment this often keeps idle streams (and proxies) open.
const KEEPALIVE: Duration = Duration::from_secs(15);

fn frames(events: &[Event]) -> Bytes {
    let mut out = String::new();
    for e in events {
        // An Event is plain data: serialising it cannot fail; its JSON has no newline.
        if let Ok(json) = serde_json::to_string(e) {
            out.push_str(&format!("id: {}\ndata: {json}\n\n", e.seq));
        }
    }
    Bytes::from(out)
}

struct Tail {
    central: Arc<Central>,
    cursor: u64,
    caught_up: bool,
    rx: broadcast::Receiver<Event>,
    beat: tokio::time::Interval,
}

impl Tail {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if !self.caught_up {
                let page = match self.central.events_after(self.cursor, PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, cursor = self.cursor, "console event stream ends: the store failed");
                        return None;
                    }
                };
                self.caught_up = page.len() < PAGE;
                if let Some(last) = page.last() {
                    self.cursor = last.seq;
                    return Some(frames(&page));
                }
                continue;
            }
            tokio::select! {
                r = self.rx.recv() => match r {
                    Ok(e) if e.seq <= self.cursor => continue,
                    Ok(e) if e.seq == self.cursor + 1 => {
                        self.cursor = e.seq;
                        return Some(frames(std::slice::from_ref(&e)));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => self.caught_up = false,
                    Err(RecvError::Closed) => return None,
                },
                _ = self.beat.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
            }
        }
    }
}

fn seq(v: &str) -> Option<u64> {
    v.trim().parse().ok()
}

/// `GET /ui/events?cursor=N` (a session is needed).
pub(super) async fn events(
    axum::extract::State(c): S,
    session: Option<Extension<SessionOf>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if session.is_none() {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "no console session: log in at /login",
        );
    }
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(seq);
    let cursor = match (resume, q.get("cursor")) {
        (Some(n), _) => n,
        (None, Some(v)) => match seq(v) {
            Some(n) => n,
            None => {
                return refuse(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "cursor: give a whole number (the last event seq seen)",
                )
            }
        },
        (None, None) => c.central.last_event_seq(),
    };
    // Subscribe before the first read: nothing committed in between is lost.
    let rx = c.central.subscribe();
    let tail = Tail {
        central: Arc::clone(&c.central),
        cursor,
        caught_up: false,
        rx,
        beat: tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE),
    };
    // The first chunk tells the browser how soon to reconnect.
    let head = futures_util::stream::once(async {
        Ok::<Bytes, std::io::Error>(Bytes::from_static(b"retry: 1000\n\n"))
    });
    let rest = futures_util::stream::unfold(tail, |mut t| async move {
        let chunk = t.next().await?;
        Some((Ok::<Bytes, std::io::Error>(chunk), t))
    });
    use futures_util::StreamExt;
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(head.chain(rest)),
    )
        .into_response()
}

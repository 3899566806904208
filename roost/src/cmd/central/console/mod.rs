//! The central console: a web front end served by `roost central` itself at `/`, its
//! HTML, CSS and JavaScript embedded in the binary (no CDN, no build step).
//!
//! - Login with the operator token gives a session cookie (`__Host-roost-session`:
//!   HttpOnly, Secure, SameSite=Strict); sessions live in memory ([`session`]).
//! - Every page but `/login` needs a session; without one a page answers 303 to
//!   `/login` and an API call 401, as before.
//! - The page's scripts call the operator API (`/v1/…`) with the cookie: the session
//!   layer marks such a request [`SessionOperator`]. A state-changing request (any
//!   method but GET/HEAD/OPTIONS) must also carry the session's CSRF token in
//!   `X-CSRF-Token` (forms: a `csrf` field), or it is refused with 403. A request with
//!   a bearer token is judged by the token alone, as before.
//! - Live updates: `GET /ui/events` is central's event log as server-sent events,
//!   resuming from `?cursor=` or the browser's `Last-Event-ID` ([`sse`]).
//!
//! The scripts build every element with `textContent`, never `innerHTML`, so names a
//! host reports cannot inject markup; the one value the server puts into HTML (the CSRF
//! token) goes through [`escape`]. A Content-Security-Policy allows only this origin's
//! scripts and styles.

mod pages;
mod session;
mod sse;

use super::api::SessionOperator;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use roost_federation::central::Central;
use session::Sessions;
use std::sync::Arc;

/// The session cookie (the `__Host-` prefix: Secure, Path=/, no Domain).
pub const SESSION_COOKIE: &str = "__Host-roost-session";
/// The login form's CSRF cookie (double submit: the form's `csrf` must equal it).
pub const LOGIN_COOKIE: &str = "__Host-roost-login";
/// The header the page's scripts send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the console's handlers see.
pub struct Console {
    central: Arc<Central>,
    token: String,
    sessions: Sessions,
}

type S = State<Arc<Console>>;

/// Add the console to the operator API's router: its pages and the session layer
/// around both.
pub fn mount(api: Router, central: Arc<Central>, operator_token: &str) -> Router {
    let c = Arc::new(Console {
        central,
        token: operator_token.trim().to_string(),
        sessions: Sessions::new(session::IDLE, session::LIFETIME),
    });
    let pages = Router::new()
        .route("/", get(pages::page))
        .route("/alarms", get(pages::page))
        .route("/strategies", get(pages::page))
        .route("/strategies/{name}", get(pages::page))
        .route("/subclouds/{name}", get(pages::page))
        .route("/hosts/{name}", get(pages::page))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/assets/{file}", get(pages::asset))
        .route("/ui/events", get(sse::events))
        .with_state(Arc::clone(&c));
    api.merge(pages)
        .layer(axum::middleware::from_fn_with_state(c, session_layer))
}

/// `&` `<` `>` `"` `'` as entities: for anything put into HTML text or attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The value of cookie `name`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().to_string())
}

fn same(a: &str, b: &str) -> bool {
    !b.is_empty() && roost_federation::pki::constant_time_eq(a.as_bytes(), b.as_bytes())
}

fn safe_method(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The console's error answers are the API's shape: `{error, details}`.
fn refuse(status: StatusCode, error: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": error, "details": [] })),
    )
        .into_response()
}

/// A live session on a request.
#[derive(Debug, Clone)]
pub struct SessionOf(pub session::Live);

/// Around every route: a request with a live session cookie is marked
/// [`SessionOperator`] (the API lets it through) and carries [`SessionOf`] (the pages
/// read it) — for a state-changing method only with the session's CSRF token.
async fn session_layer(State(c): S, mut req: Request, next: Next) -> Response {
    let live = cookie(req.headers(), SESSION_COOKIE).and_then(|id| c.sessions.check(&id));
    if let Some(live) = live {
        let has_bearer = req.headers().contains_key(header::AUTHORIZATION);
        let csrf_ok = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| same(t, &live.csrf));
        if safe_method(req.method()) || csrf_ok {
            req.extensions_mut().insert(SessionOperator);
        } else if !has_bearer && req.uri().path().starts_with("/v1/") {
            return refuse(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token: a console request that changes something must send the session's token in X-CSRF-Token",
            );
        }
        req.extensions_mut().insert(SessionOf(live));
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<img src=x onerror="a('b')">&"#),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn finds_cookies() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b = 2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(cookie(&h, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&h, "c").as_deref(), Some("3"));
        assert_eq!(cookie(&h, "d"), None);
    }
}

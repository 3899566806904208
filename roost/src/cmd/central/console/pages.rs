//! The console's pages: login, logout, the page shell (the scripts draw each page from
//! the API) and the embedded assets.

use super::session::random_hex;
use super::{cookie, escape, same, SessionOf, LOGIN_COOKIE, S, SESSION_COOKIE};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

const SHELL: &str = include_str!("assets/shell.html");
const LOGIN: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const HOST_JS: &str = include_str!("assets/host.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Only this origin's scripts, styles and connections; no frames, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        body,
    )
        .into_response()
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

fn set_cookie(res: &mut Response, name: &str, value: &str, max_age_secs: u64) {
    let c = format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The shell of every page; the script reads the path and draws the page.
pub(super) async fn page(session: Option<Extension<SessionOf>>) -> Response {
    match session {
        Some(Extension(SessionOf(live))) => html(
            StatusCode::OK,
            SHELL.replace("{{csrf}}", &escape(&live.csrf)),
        ),
        None => see_other("/login"),
    }
}

fn login_page(status: StatusCode, error: &str) -> Response {
    let csrf = match random_hex() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "console login form");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                "<!doctype html><title>Roost central</title><p>Cannot make a login form: the system random number generator failed.</p>".into(),
            );
        }
    };
    let error = if error.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            escape(error)
        )
    };
    let body = LOGIN
        .replace("{{csrf}}", &escape(&csrf))
        .replace("{{error}}", &error);
    let mut res = html(status, body);
    set_cookie(&mut res, LOGIN_COOKIE, &csrf, 600);
    res
}

/// `GET /login`.
pub(super) async fn login_form(session: Option<Extension<SessionOf>>) -> Response {
    if session.is_some() {
        return see_other("/");
    }
    login_page(StatusCode::OK, "")
}

/// The login form.
#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /login`: the operator token for a session.
pub(super) async fn login(
    axum::extract::State(c): S,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return login_page(
            StatusCode::BAD_REQUEST,
            "The form could not be read; enter the operator token again.",
        );
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same(&f.csrf, &expected) {
        return login_page(
            StatusCode::FORBIDDEN,
            "The login form expired or came from elsewhere; enter the token again.",
        );
    }
    if !same(f.token.trim(), &c.token) {
        tracing::warn!("console login refused: wrong operator token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            "Wrong operator token. It is in <data-dir>/operator.token on central.",
        );
    }
    let (id, _) = match c.sessions.create() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "console login");
            return login_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
        }
    };
    let mut res = see_other("/");
    set_cookie(
        &mut res,
        SESSION_COOKIE,
        &id,
        super::session::LIFETIME.as_secs(),
    );
    set_cookie(&mut res, LOGIN_COOKIE, "", 0);
    res
}

/// The logout form.
#[derive(Debug, Deserialize)]
pub(super) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /logout` (with the session's CSRF token).
pub(super) async fn logout(
    axum::extract::State(c): S,
    headers: HeaderMap,
    session: Option<Extension<SessionOf>>,
    form: Result<Form<LogoutForm>, FormRejection>,
) -> Response {
    let Some(Extension(SessionOf(live))) = session else {
        return see_other("/login");
    };
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !same(&csrf, &live.csrf) {
        return (
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token: log out from the console's own button\n",
        )
            .into_response();
    }
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        c.sessions.remove(&id);
    }
    let mut res = see_other("/login");
    set_cookie(&mut res, SESSION_COOKIE, "", 0);
    res
}

/// `GET /assets/{file}`: the embedded script and style sheet (no secrets: served
/// without a session, so the login page is styled).
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "host.js" => (HOST_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names come from hosts: the script builds text nodes only, never parsed markup.
    #[test]
    fn the_script_never_parses_markup() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
            assert!(!HOST_JS.contains(sink), "host.js uses {sink}");
        }
    }

    #[test]
    fn the_shell_escapes_the_token_it_carries() {
        let page = SHELL.replace("{{csrf}}", &escape("\"><script>"));
        assert!(!page.contains("\"><script>"));
        assert!(
            !SHELL.contains("<script>"),
            "no inline script (the CSP forbids it)"
        );
    }
}

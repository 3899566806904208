//! `POST /v1/workloads/{name}/exec`: parse the body, start the command through the
//! supervisor, answer `101 Switching Protocols` and pump the session's frames
//! ([`crate::exec_proto`]) until the command ends or the client goes away.

use super::{ApiError, ApiState};
use crate::driver::{ExecControl, ExecReader, ExecRequest, ExecSession};
use crate::exec_proto::{read_frame, write_frame, ExecBody, Frame, PROTOCOL};
use crate::validate::ValidationError;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

fn wants_upgrade(h: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, PROTOCOL)
}

/// The handler.
pub async fn exec(
    State(st): State<Arc<ApiState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    if !wants_upgrade(&parts.headers) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "exec needs `Connection: Upgrade` and `Upgrade: {PROTOCOL}` (the session runs on the upgraded connection); `roost exec` sends them"
            ),
        ));
    }
    let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "this connection cannot be upgraded (HTTP/1.1 only)",
        ));
    };
    let bytes: Bytes = axum::body::to_bytes(body, super::MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}"),
            )
        })?;
    let b: ExecBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not an exec request: {e}; send {{\"command\": [\"sh\"], \"tty\": false, \"stdin\": false}}"),
        )
    })?;
    let problems = b.problems();
    if !problems.is_empty() {
        return Err(ValidationError(problems).into());
    }
    let req = ExecRequest {
        argv: b.command,
        tty: b.tty,
        stdin: b.stdin,
        size: b.rows.zip(b.cols),
    };
    let session = st.sup.exec(&name, &req).await?;
    tracing::info!(workload = %name, argv = ?req.argv, tty = req.tty, "exec started");
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => pump(TokioIo::new(up), session).await,
            // The client left before the switch: dropping the session kills the command.
            Err(e) => tracing::debug!(workload = %name, error = %e, "exec upgrade failed"),
        }
    });
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [(header::CONNECTION, "upgrade"), (header::UPGRADE, PROTOCOL)],
    )
        .into_response())
}

/// Copy one output pipe into frames until its end-of-file.
async fn pump_output(r: Option<ExecReader>, tx: mpsc::Sender<Frame>, frame: fn(Vec<u8>) -> Frame) {
    let Some(mut r) = r else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(frame(buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Run one session over the upgraded connection.
async fn pump<T>(io: T, session: ExecSession)
where
    T: tokio::io::AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let ExecSession {
        mut stdin,
        stdout,
        stderr,
        control,
    } = session;
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<Frame>(16);
    let writer = async move {
        while let Some(f) = rx.recv().await {
            if write_frame(&mut wr, &f).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    };
    let control: &dyn ExecControl = control.as_ref();
    let outputs = {
        let (a, b) = (tx.clone(), tx.clone());
        async move {
            tokio::join!(
                pump_output(stdout, a, Frame::Stdout),
                pump_output(stderr, b, Frame::Stderr)
            )
        }
    };
    let finish = async move {
        let (code, _) = tokio::join!(control.wait(), outputs);
        let last = match code {
            Ok(c) => Frame::Exit(c),
            Err(e) => Frame::Error(e.to_string()),
        };
        let _ = tx.send(last).await;
    };
    // Client → command: stdin and resizes, until the client closes (or breaks the
    // protocol): then the command is cut short.
    let input = async move {
        loop {
            match read_frame(&mut rd).await {
                Ok(Some(Frame::Stdin(b))) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&b).await.and(w.flush().await).is_err() {
                            stdin = None;
                        }
                    }
                }
                Ok(Some(Frame::StdinEof)) => {
                    if stdin.take().is_some() {
                        if let Err(e) = control.close_stdin().await {
                            tracing::debug!(error = %e, "exec close stdin failed");
                        }
                    }
                }
                Ok(Some(Frame::Resize(rows, cols))) => {
                    if let Err(e) = control.resize(rows, cols).await {
                        tracing::debug!(error = %e, "exec resize failed");
                    }
                }
                Ok(Some(_)) | Ok(None) | Err(_) => return,
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(writer, finish) } => {}
        _ = input => tracing::info!("exec client went away; ending its command"),
    }
}

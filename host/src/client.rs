//! A client for the daemon's API, over its Unix socket or, from another machine, over
//! its TCP listener (TLS, bearer token): what the CLI (and tests) use.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// An HTTP/1 connection over `io`, driven by its own task.
async fn handshake<T>(
    io: T,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// A response read whole.
async fn whole(res: hyper::Response<Incoming>) -> Result<Reply, ClientError> {
    let status = res.status();
    let content_type = res
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    Ok(Reply {
        status,
        body,
        content_type,
    })
}

/// Client errors say which socket and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("cannot reach the Roost daemon at {socket}: {reason}; is `roost host` running? (set --socket or ROOST_SOCKET)")]
    Connect {
        /// Socket path.
        socket: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TCP connection or its TLS handshake failed.
    #[error("cannot reach the Roost daemon at {addr}: {reason}")]
    Remote {
        /// `host:port`.
        addr: String,
        /// Why, and what to check.
        reason: String,
    },
    /// The remote settings are wrong (address, token, CA file).
    #[error("{0}")]
    Setup(String),
    /// The exchange failed midway.
    #[error("request to the daemon failed: {0}")]
    Http(String),
}

/// A response: status and whole body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Body bytes.
    pub body: Bytes,
    /// The `Content-Type` header, when sent.
    pub content_type: Option<String>,
}

impl Reply {
    /// Body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ClientError::Http(format!("the daemon's answer is not JSON: {e}")))
    }
}

/// A client bound to one daemon.
#[derive(Clone)]
pub struct Client {
    target: Target,
}

#[derive(Clone)]
enum Target {
    Unix(PathBuf),
    Tls(Arc<Remote>),
}

struct Remote {
    /// `host:port`, as given.
    addr: String,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    token: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.target {
            Target::Unix(p) => f.debug_struct("Client").field("socket", p).finish(),
            // Never the token.
            Target::Tls(r) => f.debug_struct("Client").field("addr", &r.addr).finish(),
        }
    }
}

impl Client {
    /// A client for the daemon at `socket`.
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Self {
            target: Target::Unix(socket.as_ref().to_path_buf()),
        }
    }

    /// A client for a daemon's TCP listener: `url` is `https://HOST:PORT`, `token` the
    /// bearer token, `ca_pem` the CA certificate(s) that signed the daemon's
    /// certificate (the system bundle when `None`).
    pub fn remote(url: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Self, ClientError> {
        use tokio_rustls::rustls;
        let bad = ClientError::Setup;
        let rest = url.strip_prefix("https://").ok_or_else(|| {
            bad(format!(
                "--addr `{url}` must start with https:// (the daemon's TCP listener only speaks TLS), e.g. https://10.0.0.5:7443"
            ))
        })?;
        let addr = rest.trim_end_matches('/');
        let host = match addr.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => h,
            _ => {
                return Err(bad(format!(
                    "--addr `{url}` needs a host and a port, e.g. https://10.0.0.5:7443"
                )))
            }
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(host.to_string()).map_err(|e| {
            bad(format!(
                "--addr `{url}`: `{host}` is not a host name or IP address: {e}"
            ))
        })?;
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(bad(
                "the token is empty; put the daemon's bearer token in the file given to --token-file".into(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        let from = match ca_pem {
            Some(pem) => {
                use rustls::pki_types::pem::PemObject;
                for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| bad(format!("bad PEM in the CA file: {e}")))?;
                    roots.add(cert).map_err(|e| {
                        bad(format!(
                            "a certificate in the CA file is not usable as a CA: {e}"
                        ))
                    })?;
                }
                "the CA file"
            }
            None => {
                // The platform's trust store (on Linux: the bundle the distribution
                // keeps, wherever it is, and SSL_CERT_FILE / SSL_CERT_DIR).
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    let why = found
                        .errors
                        .first()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default();
                    return Err(bad(format!(
                        "no --ca-file given and no usable certificate in the system's trust store{why}; pass --ca-file with the CA that signed the daemon's certificate"
                    )));
                }
                "the system's trust store"
            }
        };
        if roots.is_empty() {
            return Err(bad(format!("no certificate found in {from}")));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            target: Target::Tls(Arc::new(Remote {
                addr: addr.to_string(),
                server_name,
                connector: TlsConnector::from(Arc::new(cfg)),
                token,
            })),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        self.send_with(method, path, body, &[]).await
    }

    async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "roost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut sender = match &self.target {
            Target::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
                    ClientError::Connect {
                        socket: socket.clone(),
                        reason: e.to_string(),
                    }
                })?;
                handshake(stream).await?
            }
            Target::Tls(r) => {
                let remote = |reason: String| ClientError::Remote {
                    addr: r.addr.clone(),
                    reason,
                };
                let tcp = tokio::net::TcpStream::connect(&r.addr).await.map_err(|e| {
                    remote(format!(
                        "{e}; is `roost host --listen` running there and the port open?"
                    ))
                })?;
                let tls = r
                    .connector
                    .connect(r.server_name.clone(), tcp)
                    .await
                    .map_err(|e| {
                        remote(format!(
                            "TLS handshake failed: {e}; check --ca-file and that the certificate names this host"
                        ))
                    })?;
                req = req.header("authorization", format!("Bearer {}", r.token));
                handshake(tls).await?
            }
        };
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))
    }

    /// One request, whole body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, ClientError> {
        let res = self.send(method, path, body).await?;
        whole(res).await
    }

    /// A POST that asks to switch the connection to `protocol`: the upgraded
    /// connection on `101`, else the daemon's answer (an error body).
    pub async fn upgrade(
        &self,
        path: &str,
        body: Vec<u8>,
        protocol: &str,
    ) -> Result<Result<TokioIo<hyper::upgrade::Upgraded>, Reply>, ClientError> {
        let res = self
            .send_with(
                Method::POST,
                path,
                Some(body),
                &[("connection", "upgrade"), ("upgrade", protocol)],
            )
            .await?;
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Err(whole(res).await?));
        }
        let up = hyper::upgrade::on(res)
            .await
            .map_err(|e| ClientError::Http(format!("the connection did not switch: {e}")))?;
        Ok(Ok(TokioIo::new(up)))
    }

    /// A streamed GET: calls `chunk` for every piece of body as it arrives.
    pub async fn stream(
        &self,
        path: &str,
        mut chunk: impl FnMut(&[u8]),
    ) -> Result<StatusCode, ClientError> {
        let res = self.send(Method::GET, path, None).await?;
        let status = res.status();
        let mut body = res.into_body();
        if !status.is_success() {
            let b = body
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            chunk(&b);
            return Ok(status);
        }
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Http(e.to_string()))?;
            if let Some(d) = frame.data_ref() {
                chunk(d);
            }
        }
        Ok(status)
    }
}

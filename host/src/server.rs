//! Binding the API: a Unix socket (mode 0600) always; TCP only with TLS and a bearer
//! token, and the daemon refuses to start with one but not the others.

use axum::Router;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Errors binding the API.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another daemon answers on the socket.
    #[error(
        "another daemon is already listening on {0}; stop it, or use --socket for another path"
    )]
    InUse(PathBuf),
    /// The socket could not be bound.
    #[error("cannot listen on {path}: {reason}")]
    Bind {
        /// Socket path or address.
        path: String,
        /// Why.
        reason: String,
    },
    /// TLS material is missing or unreadable.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// Bind the Unix socket, replacing a stale one, with mode 0600.
pub async fn bind_unix(path: &Path) -> Result<UnixListener, ServerError> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::InUse(path.to_path_buf()));
        }
        let _ = std::fs::remove_file(path);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ServerError::Bind {
            path: path.display().to_string(),
            reason: format!("cannot create {}: {e}", dir.display()),
        })?;
    }
    let l = UnixListener::bind(path).map_err(|e| ServerError::Bind {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        ServerError::Bind {
            path: path.display().to_string(),
            reason: format!("chmod 0600: {e}"),
        }
    })?;
    Ok(l)
}

/// TLS settings for the TCP listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// File holding the bearer token clients must send.
    pub token_file: PathBuf,
}

/// Load the TLS acceptor and the token.
pub fn load_tls(files: &TlsFiles) -> Result<(TlsAcceptor, String), ServerError> {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let read = |p: &Path, what: &str| {
        std::fs::read(p)
            .map_err(|e| ServerError::Tls(format!("cannot read the {what} {}: {e}", p.display())))
    };
    let cert_pem = read(&files.cert, "certificate")?;
    let key_pem = read(&files.key, "key")?;
    let token = String::from_utf8(read(&files.token_file, "token file")?)
        .map_err(|_| ServerError::Tls("the token file is not UTF-8".into()))?
        .trim()
        .to_string();
    if token.len() < 16 {
        return Err(ServerError::Tls(format!(
            "the token in {} is shorter than 16 characters; use a long random token",
            files.token_file.display()
        )));
    }
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ServerError::Tls(format!("bad certificate PEM {}: {e}", files.cert.display()))
        })?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "no certificate found in {}",
            files.cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        tokio_rustls::rustls::pki_types::pem::Error::NoItemsFound => {
            ServerError::Tls(format!("no private key in {}", files.key.display()))
        }
        e => ServerError::Tls(format!("bad key PEM {}: {e}", files.key.display())),
    })?;
    let cfg = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(format!("certificate and key do not fit: {e}")))?;
    Ok((TlsAcceptor::from(Arc::new(cfg)), token))
}

/// A TCP listener that hands out TLS streams. Handshakes run in tasks of their own
/// (at most [`MAX_HANDSHAKES`] at once, each given 10 s), so a client that connects and
/// sends nothing delays nobody; failed handshakes are dropped.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
}

/// TLS handshakes in flight at once; more connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 128;

impl TlsListener {
    /// Bind `addr` and start accepting.
    pub async fn bind(
        addr: std::net::SocketAddr,
        acceptor: TlsAcceptor,
    ) -> Result<Self, ServerError> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Bind {
                path: addr.to_string(),
                reason: e.to_string(),
            })?;
        let local = tcp.local_addr().map_err(|e| ServerError::Bind {
            path: addr.to_string(),
            reason: e.to_string(),
        })?;
        let (tx, ready) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let (s, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let hs = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(s),
                    )
                    .await;
                    drop(permit);
                    match hs {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Wrap a router so every request must carry `Authorization: Bearer <token>`.
pub fn require_token(router: Router, token: String) -> Router {
    let token = Arc::new(token);
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let token = Arc::clone(&token);
            async move {
                let ok = req
                    .headers()
                    .get(axum::http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
                if ok {
                    next.run(req).await
                } else {
                    use axum::response::IntoResponse;
                    crate::api::ApiError::new(
                        axum::http::StatusCode::UNAUTHORIZED,
                        "missing or wrong bearer token; send `Authorization: Bearer <token>`",
                    )
                    .into_response()
                }
            }
        },
    ))
}

/// Equal, in time that does not depend on where they differ (`subtle`; a length
/// difference returns at once, which only says the lengths differ).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

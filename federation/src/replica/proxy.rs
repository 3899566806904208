//! A follower forwards each request to the leader: one HTTP/2 connection to the leader
//! per connection it accepted (a host's link keeps its own path, and one host's
//! stream limits are never another's), over mutual TLS with the replica certificate.
//! The host's verified client certificate and address travel in two headers that the
//! leader trusts only from a replica certificate ([`trusted_peer`]).

use crate::link::client::CentralAddr;
use crate::link::LinkPeer;
use crate::pki::{peer_identity, REPLICA_CN};
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;

/// The host's client certificate (DER, hex) as the follower verified it.
pub const FORWARDED_CERT: &str = "x-roost-forwarded-cert";
/// The host's address as the follower saw it.
pub const FORWARDED_FOR: &str = "x-roost-forwarded-for";

/// Whether a verified client certificate is a replica's.
pub fn is_replica(cert_der: &[u8]) -> bool {
    peer_identity(cert_der).is_ok_and(|id| id.cn == REPLICA_CN)
}

/// The peer of a request: from the forwarding headers when the connection is a
/// replica's, else the connection's own (and the headers are removed, so nobody else
/// can claim to forward).
pub fn trusted_peer<B>(conn: &LinkPeer, from_replica: bool, req: &mut Request<B>) -> LinkPeer {
    let h = req.headers_mut();
    let cert = h.remove(FORWARDED_CERT);
    let addr = h.remove(FORWARDED_FOR);
    if !from_replica {
        return conn.clone();
    }
    LinkPeer {
        client_cert: cert
            .and_then(|v| v.to_str().ok().and_then(|s| hex::decode(s).ok()))
            .filter(|c| !c.is_empty()),
        addr: addr.and_then(|v| v.to_str().ok().and_then(|s| s.parse().ok())),
    }
}

/// The upstream side of one accepted connection.
pub struct Upstream<B> {
    tls: Arc<rustls::ClientConfig>,
    conn: tokio::sync::Mutex<Option<(String, hyper::client::conn::http2::SendRequest<B>)>>,
}

impl<B> std::fmt::Debug for Upstream<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

impl<B> Upstream<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// Forwarding through `tls` (from `CentralPki::replica_client_config`).
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            tls,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn sender(
        &self,
        leader: &str,
    ) -> Result<hyper::client::conn::http2::SendRequest<B>, String> {
        let mut g = self.conn.lock().await;
        if let Some((url, s)) = g.as_ref() {
            if url == leader && !s.is_closed() {
                return Ok(s.clone());
            }
        }
        let addr = CentralAddr::parse(leader).map_err(|e| e.to_string())?;
        let tcp = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(&addr.authority),
        )
        .await
        .map_err(|_| format!("connecting to the leader {leader} timed out"))?
        .map_err(|e| format!("cannot connect to the leader {leader}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
            .connect(addr.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS to the leader {leader} failed: {e}"))?;
        let (sender, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(10))
                .handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP/2 to the leader {leader} failed: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection to the leader ended");
            }
        });
        *g = Some((leader.to_string(), sender.clone()));
        Ok(sender)
    }

    /// Forward `req` (from `peer`) to `leader` and return its answer as it streams.
    pub async fn forward(
        &self,
        leader: &str,
        mut req: Request<B>,
        peer: &LinkPeer,
    ) -> Result<Response<Incoming>, String> {
        let h = req.headers_mut();
        h.remove(FORWARDED_CERT);
        h.remove(FORWARDED_FOR);
        if let Some(c) = &peer.client_cert {
            if let Ok(v) = HeaderValue::from_str(&hex::encode(c)) {
                h.insert(FORWARDED_CERT, v);
            }
        }
        if let Some(a) = peer.addr {
            if let Ok(v) = HeaderValue::from_str(&a.to_string()) {
                h.insert(FORWARDED_FOR, v);
            }
        }
        // HTTP/2 wants an absolute URI (its :authority); HTTP/1's Host goes.
        let authority = leader.trim_start_matches("https://").trim_end_matches('/');
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        *req.uri_mut() = format!("https://{authority}{pq}")
            .parse()
            .map_err(|e| format!("bad leader URL {leader}: {e}"))?;
        *req.version_mut() = http::Version::HTTP_2;
        req.headers_mut().remove(http::header::HOST);
        req.headers_mut().remove(http::header::CONNECTION);
        let mut sender = self.sender(leader).await?;
        sender
            .ready()
            .await
            .map_err(|e| format!("the leader {leader} is not accepting requests: {e}"))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("forwarding to the leader {leader} failed: {e}"))
    }
}

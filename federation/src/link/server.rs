//! Central's side of the link: the tonic service. It authenticates the host from the
//! client certificate the TLS front end verified ([`LinkPeer`]), reads its Hello, and
//! hands every message to [`Central`].

use super::proto::host_link_server::HostLink;
use super::proto::{self, host_message::Body};
use super::{LinkPeer, MIN_PROTOCOL, PROTOCOL};
use crate::central::{Central, CentralError};
use futures_util::StreamExt;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

pub use super::proto::host_link_server::HostLinkServer;

/// How long a host has to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The size of one `ReleaseChunk`.
const RELEASE_CHUNK: usize = 1024 * 1024;

/// The link service over a central.
#[derive(Debug, Clone)]
pub struct LinkService {
    central: Arc<Central>,
}

impl LinkService {
    /// A service for `central`; wrap it in [`HostLinkServer::new`].
    pub fn new(central: Arc<Central>) -> Self {
        Self { central }
    }

    /// The tonic server, with message size limits.
    pub fn server(central: Arc<Central>) -> HostLinkServer<Self> {
        HostLinkServer::new(Self::new(central))
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024)
    }
}

fn status_of(e: CentralError) -> Status {
    match e {
        CentralError::Refused(m) => Status::permission_denied(m),
        CentralError::NotFound(m) => Status::not_found(m),
        CentralError::Conflict(m) => Status::already_exists(m),
        CentralError::Invalid { message, .. } => Status::invalid_argument(message),
        CentralError::Unavailable(m) => Status::unavailable(m),
        CentralError::Timeout(m) => Status::deadline_exceeded(m),
        e => Status::internal(e.to_string()),
    }
}

fn check_protocol(p: u32) -> Result<(), Status> {
    if p < MIN_PROTOCOL {
        return Err(Status::failed_precondition(format!(
            "link protocol {p} is too old: this central speaks {MIN_PROTOCOL}..={PROTOCOL}; upgrade the host's roost"
        )));
    }
    Ok(())
}

type OutStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<proto::CentralMessage, Status>> + Send>>;
type ChunkStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<proto::ReleaseChunk, Status>> + Send>>;

impl LinkService {
    /// The host a link request comes from, by its client certificate (refused:
    /// no certificate, not enrolled, revoked, superseded).
    fn host_of<T>(&self, req: &Request<T>) -> Result<String, Status> {
        let peer = req
            .extensions()
            .get::<LinkPeer>()
            .cloned()
            .unwrap_or_default();
        self.central
            .authenticate(peer.client_cert.as_deref())
            .map_err(|e| match e {
                CentralError::Refused(m) => Status::unauthenticated(m),
                e => status_of(e),
            })
    }
}

/// Stream `path` in chunks, the first one carrying the whole size.
async fn send_release(
    path: std::path::PathBuf,
    size: u64,
    tx: tokio::sync::mpsc::Sender<Result<proto::ReleaseChunk, Status>>,
) {
    use tokio::io::AsyncReadExt;
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "release file unreadable");
            let _ = tx
                .send(Err(Status::internal(format!(
                    "central cannot read the release file {}: {e}",
                    path.display()
                ))))
                .await;
            return;
        }
    };
    let mut first = true;
    loop {
        let mut buf = vec![0u8; RELEASE_CHUNK];
        let n = match f.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                let _ = tx
                    .send(Err(Status::internal(format!(
                        "central cannot read the release file {}: {e}",
                        path.display()
                    ))))
                    .await;
                return;
            }
        };
        buf.truncate(n);
        let chunk = proto::ReleaseChunk {
            data: buf,
            total_size: if first { size } else { 0 },
        };
        first = false;
        if tx.send(Ok(chunk)).await.is_err() {
            return; // the host hung up
        }
    }
}

#[tonic::async_trait]
impl HostLink for LinkService {
    type SessionStream = OutStream;
    type FetchReleaseStream = ChunkStream;

    async fn fetch_release(
        &self,
        req: Request<proto::FetchReleaseRequest>,
    ) -> Result<Response<Self::FetchReleaseStream>, Status> {
        let host = self.host_of(&req)?;
        let r = req.into_inner();
        check_protocol(r.protocol)?;
        let (release, path) = self.central.release_file(&r.version).map_err(status_of)?;
        tracing::info!(host, version = %release.version, size = release.size, "host fetches a release");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(send_release(path, release.size, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn session(
        &self,
        req: Request<Streaming<proto::HostMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = req
            .extensions()
            .get::<LinkPeer>()
            .cloned()
            .unwrap_or_default();
        let host = self.host_of(&req)?;
        let mut inbound = req.into_inner();
        let first = match tokio::time::timeout(HELLO_TIMEOUT, inbound.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(s))) => return Err(s),
            Ok(None) => {
                return Err(Status::cancelled(
                    "the host closed the stream before its Hello",
                ))
            }
            Err(_) => return Err(Status::deadline_exceeded("no Hello within 10 s")),
        };
        check_protocol(first.protocol)?;
        let Some(Body::Hello(hello)) = first.body else {
            return Err(Status::invalid_argument(
                "the first message on the link must be a Hello",
            ));
        };
        if hello.host != host {
            return Err(Status::permission_denied(format!(
                "the Hello says host `{}` but the certificate is host `{host}`'s",
                hello.host
            )));
        }
        let (session, rx) = self
            .central
            .connect(&host, &hello, peer.addr)
            .await
            .map_err(status_of)?;
        self.central.set_peer_protocol(&host, first.protocol);
        tracing::info!(host, session, protocol = first.protocol, addr = ?peer.addr, "host link up");
        let central = Arc::clone(&self.central);
        let h = host.clone();
        tokio::spawn(async move {
            while let Some(m) = inbound.next().await {
                match m {
                    Ok(m) if m.protocol >= MIN_PROTOCOL => central.on_message(&h, session, m).await,
                    Ok(m) => {
                        tracing::warn!(host = %h, protocol = m.protocol, "message with an unsupported protocol; ignored")
                    }
                    Err(e) => {
                        tracing::info!(host = %h, error = %e, "host link read ended");
                        break;
                    }
                }
            }
            central.disconnected(&h, session);
            tracing::info!(host = %h, session, "host link down");
        });
        let out = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
        Ok(Response::new(Box::pin(out)))
    }

    async fn enroll(
        &self,
        req: Request<proto::EnrollRequest>,
    ) -> Result<Response<proto::EnrollResponse>, Status> {
        let r = req.into_inner();
        check_protocol(r.protocol)?;
        let (cert_pem, ca_pem, subcloud) = self
            .central
            .enroll(&r.token_id, &r.token_secret, &r.host, &r.csr_pem)
            .await
            .map_err(status_of)?;
        tracing::info!(host = %r.host, subcloud, "host enrolled");
        Ok(Response::new(proto::EnrollResponse {
            cert_pem,
            ca_pem,
            subcloud,
        }))
    }
}

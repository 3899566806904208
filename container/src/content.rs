//! Blobs in containerd's content store: write (streamed, digest-checked, under a
//! lease, with GC labels), read, label.

use crate::client::{unique_suffix, Client, RpcError};
use containerd_client::services::v1::{
    AbortRequest, Info, InfoRequest, ReadContentRequest, UpdateRequest, WriteAction,
    WriteContentRequest,
};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

/// Largest chunk sent per Write message (containerd's gRPC limit is 16 MiB; NOTES: ≤1 MiB).
const CHUNK: usize = 1 << 20;
/// Largest blob read whole into memory (manifests, indexes, configs).
const MAX_SMALL_BLOB: i64 = 32 << 20;

/// Errors moving blobs.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// containerd refused.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A local file could not be read.
    #[error("cannot read blob file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bytes do not hash to the digest they claim.
    #[error("blob {expected} has digest {actual}: the source is corrupt or was tampered with")]
    DigestMismatch {
        /// The digest the manifest names.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// Reading the blob from its source failed (network, or the source's own digest check).
    #[error("blob {digest} from {source_name}: {reason}")]
    Transfer {
        /// The blob.
        digest: String,
        /// Where it came from (registry reference).
        source_name: String,
        /// What went wrong.
        reason: String,
    },
    /// A metadata blob is too large to hold in memory.
    #[error("blob {digest} is {size} bytes, more than the {max} allowed for a manifest or config")]
    TooLarge {
        /// The blob.
        digest: String,
        /// Its size.
        size: i64,
        /// The limit.
        max: i64,
    },
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

impl Client {
    /// Whether the content store holds `digest`.
    pub async fn content_info(&self, digest: &str) -> Result<Option<Info>, RpcError> {
        let req = self.req(InfoRequest {
            digest: digest.to_string(),
        });
        match self
            .call("Content.Info", digest, self.content().info(req))
            .await
        {
            Ok(r) => Ok(r.info),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read a small blob whole.
    pub async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ContentError> {
        if let Some(info) = self.content_info(digest).await? {
            if info.size > MAX_SMALL_BLOB {
                return Err(ContentError::TooLarge {
                    digest: digest.to_string(),
                    size: info.size,
                    max: MAX_SMALL_BLOB,
                });
            }
        }
        let req = self.req(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let mut stream = self
            .call("Content.Read", digest, self.content().read(req))
            .await?;
        let mut out = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(m)) => out.extend_from_slice(&m.data),
                Ok(None) => break,
                Err(s) => return Err(RpcError::status("Content.Read", digest, &s).into()),
            }
        }
        let actual = sha256_digest(&out);
        if actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(out)
    }

    /// Write bytes as a blob under `lease` with `labels`.
    pub async fn write_blob_bytes(
        &self,
        lease: &str,
        digest: &str,
        bytes: Vec<u8>,
        labels: HashMap<String, String>,
    ) -> Result<(), ContentError> {
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        let total = bytes.len() as i64;
        let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect();
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, ContentError>));
        self.write_blob_stream(lease, digest, total, stream, labels, |_| {})
            .await
    }

    /// Write a local file as a blob, checking its digest on the way.
    pub async fn write_blob_file(
        &self,
        lease: &str,
        digest: &str,
        path: &Path,
        labels: HashMap<String, String>,
    ) -> Result<(), ContentError> {
        let io = |source| ContentError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let total = file.metadata().await.map_err(io)?.len() as i64;
        let owned = path.to_path_buf();
        let stream = futures_util::stream::unfold(Some(file), move |f| {
            let owned = owned.clone();
            async move {
                let mut f = f?;
                let mut buf = vec![0u8; CHUNK];
                match f.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(buf), Some(f)))
                    }
                    Err(source) => Some((
                        Err(ContentError::Io {
                            path: owned,
                            source,
                        }),
                        None,
                    )),
                }
            }
        });
        self.write_blob_stream(lease, digest, total, stream, labels, |_| {})
            .await
    }

    /// Write a blob from a stream of chunks: the sha256 is checked before containerd
    /// commits, and an existing blob just gets the labels and the lease.
    pub async fn write_blob_stream<S>(
        &self,
        lease: &str,
        digest: &str,
        total: i64,
        chunks: S,
        labels: HashMap<String, String>,
        mut progress: impl FnMut(u64),
    ) -> Result<(), ContentError>
    where
        S: futures_util::Stream<Item = Result<Vec<u8>, ContentError>> + Send + 'static,
    {
        if self.content_info(digest).await?.is_some() {
            self.adopt_existing(lease, digest, labels).await?;
            return Ok(());
        }
        let reference = format!("roost-{}-{}", digest.replace(':', "-"), unique_suffix());
        // The hashing and framing happen in a task that feeds the gRPC stream, so a
        // digest mismatch is seen before the Commit message is ever sent.
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
        let (err_tx, mut err_rx) = tokio::sync::oneshot::channel::<ContentError>();
        let expected = digest.to_string();
        let r2 = reference.clone();
        let (prog_tx, mut prog_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let feeder = tokio::spawn(async move {
            let mut hasher = Sha256::new();
            let mut offset: i64 = 0;
            futures_util::pin_mut!(chunks);
            while let Some(chunk) = chunks.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = err_tx.send(e);
                        return;
                    }
                };
                hasher.update(&chunk);
                let n = chunk.len() as i64;
                let msg = WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: r2.clone(),
                    total,
                    expected: expected.clone(),
                    offset,
                    data: chunk,
                    labels: HashMap::new(),
                };
                offset += n;
                if tx.send(msg).await.is_err() {
                    return;
                }
                let _ = prog_tx.send(offset as u64);
            }
            let actual = format!("sha256:{}", hex(&hasher.finalize()));
            if actual != expected {
                let _ = err_tx.send(ContentError::DigestMismatch { expected, actual });
                return;
            }
            let _ = tx
                .send(WriteContentRequest {
                    action: WriteAction::Commit as i32,
                    r#ref: r2,
                    total: offset,
                    expected,
                    offset,
                    data: Vec::new(),
                    labels,
                })
                .await;
        });
        let req_stream = tokio_stream_from(rx);
        let req = self.req_leased(req_stream, lease);
        let result = async {
            let mut resp = self
                .call("Content.Write", digest, self.content().write(req))
                .await?;
            let mut committed = false;
            loop {
                tokio::select! {
                    m = resp.message() => match m {
                        Ok(Some(m)) => {
                            if m.action == WriteAction::Commit as i32 {
                                committed = true;
                            }
                        }
                        Ok(None) => break,
                        Err(s) if s.code() == containerd_client::tonic::Code::AlreadyExists => {
                            committed = true;
                            break;
                        }
                        Err(s) => return Err(RpcError::status("Content.Write", digest, &s).into()),
                    },
                    Some(p) = prog_rx.recv() => progress(p),
                }
            }
            if let Ok(e) = err_rx.try_recv() {
                return Err(e);
            }
            if !committed {
                // The feeder stopped early: its error is on the way.
                if let Ok(e) = err_rx.await {
                    return Err(e);
                }
                return Err(ContentError::Rpc(RpcError::Status {
                    op: "Content.Write",
                    subject: digest.to_string(),
                    code: containerd_client::tonic::Code::Aborted,
                    message: "stream ended before commit".into(),
                }));
            }
            Ok(())
        }
        .await;
        feeder.abort();
        if result.is_err() {
            let req = self.req(AbortRequest {
                r#ref: reference.clone(),
            });
            let _ = self.content().abort(req).await;
        }
        result
    }

    /// A blob already present: put our labels on it and hold it under the lease.
    async fn adopt_existing(
        &self,
        lease: &str,
        digest: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), RpcError> {
        use containerd_client::services::v1::{AddResourceRequest, Resource};
        let req = self.req(AddResourceRequest {
            id: lease.to_string(),
            resource: Some(Resource {
                id: digest.to_string(),
                r#type: "content".to_string(),
            }),
        });
        self.call(
            "Leases.AddResource",
            digest,
            self.leases().add_resource(req),
        )
        .await?;
        if !labels.is_empty() {
            let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
            let req = self.req(UpdateRequest {
                info: Some(Info {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            });
            self.call("Content.Update", digest, self.content().update(req))
                .await?;
        }
        Ok(())
    }
}

/// A `Stream` over an mpsc receiver (tokio-stream's wrapper, without the dependency).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

//! The one adapter over containerd's generated gRPC stubs: the socket, the namespace
//! header, the lease header and per-call timeouts live here and nowhere else.

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{CreateRequest, DeleteRequest};
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the system containerd listens.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// The containerd namespace every Roost object lives in.
pub const NAMESPACE: &str = "roost";
/// The snapshotter Roost unpacks into.
pub const SNAPSHOTTER: &str = "overlayfs";

/// Errors talking to containerd.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The socket does not answer.
    #[error(
        "containerd is not reachable at {socket}: {reason}; start containerd (system: \
         `systemctl start containerd`; private: `ci/containerd.sh start DIR`) or pass \
         --containerd-socket PATH / ROOST_CONTAINERD_SOCKET"
    )]
    Unreachable {
        /// The socket tried.
        socket: PathBuf,
        /// What the connect said.
        reason: String,
    },
    /// containerd answered with an error.
    #[error("containerd {op} {subject}: {code:?}: {message}")]
    Status {
        /// The RPC, e.g. `Tasks.Create`.
        op: &'static str,
        /// The object it was about (container id, digest, image name).
        subject: String,
        /// gRPC code.
        code: Code,
        /// containerd's message.
        message: String,
    },
    /// containerd did not answer in time.
    #[error("containerd {op} {subject} did not answer within {timeout:?} (socket {socket})")]
    Timeout {
        /// The RPC.
        op: &'static str,
        /// The object it was about.
        subject: String,
        /// The limit.
        timeout: Duration,
        /// The socket.
        socket: PathBuf,
    },
}

impl RpcError {
    /// The gRPC code when containerd answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether containerd said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    /// Whether containerd said the object exists already.
    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(Code::AlreadyExists)
    }

    pub(crate) fn status(op: &'static str, subject: impl Into<String>, s: &Status) -> Self {
        Self::Status {
            op,
            subject: subject.into(),
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// A connection to one containerd, scoped to one namespace. Cheap to clone: every clone
/// shares the one HTTP/2 connection.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    socket: PathBuf,
    namespace: String,
    timeout: Duration,
    /// Resolved images by name, keyed on the target digest they were resolved from
    /// (content is immutable by digest, so only a retag invalidates an entry).
    pub(crate) images: ImageCache,
    /// The `roost` binary the shim runs as the log copier ([`crate::logcopy`]); `None`
    /// falls back to containerd's `file://` logging, which can lose a short-lived
    /// container's last stderr lines.
    pub(crate) log_helper: Option<PathBuf>,
}

/// Shared cache of resolved images and their layer directories.
pub(crate) type ImageCache = std::sync::Arc<
    std::sync::Mutex<
        std::collections::HashMap<
            String,
            (
                String,
                crate::image::ResolvedImage,
                crate::image::ImageFiles,
            ),
        >,
    >,
>;

impl Client {
    /// Connect to containerd at `socket` in namespace [`NAMESPACE`] and check it answers.
    pub async fn connect(socket: &Path) -> Result<Self, RpcError> {
        Self::connect_in(socket, NAMESPACE).await
    }

    /// Connect in a given namespace (tests use their own).
    pub async fn connect_in(socket: &Path, namespace: &str) -> Result<Self, RpcError> {
        let unreachable = |reason: String| RpcError::Unreachable {
            socket: socket.to_path_buf(),
            reason,
        };
        if !socket.exists() {
            return Err(unreachable("no such socket".into()));
        }
        let channel =
            tokio::time::timeout(Duration::from_secs(5), containerd_client::connect(socket))
                .await
                .map_err(|_| unreachable("connect timed out after 5s".into()))?
                .map_err(|e| unreachable(error_chain(&e)))?;
        let client = Self {
            channel,
            socket: socket.to_path_buf(),
            namespace: namespace.to_string(),
            timeout: Duration::from_secs(30),
            images: ImageCache::default(),
            log_helper: None,
        };
        let mut v = VersionClient::new(client.channel.clone());
        let version = tokio::time::timeout(Duration::from_secs(5), v.version(()))
            .await
            .map_err(|_| unreachable("Version did not answer within 5s".into()))?
            .map_err(|s| unreachable(format!("Version: {}", s.message())))?;
        tracing::debug!(socket = %socket.display(), version = %version.get_ref().version, "connected to containerd");
        Ok(client)
    }

    /// A client that connects on first use (for callers without an async context at
    /// hand, like the daemon's driver table). Fails now only when the socket is absent;
    /// a daemon that does not answer fails each call with [`RpcError::Unreachable`]-style
    /// errors naming the socket.
    pub fn connect_lazy(socket: &Path, namespace: &str) -> Result<Self, RpcError> {
        let unreachable = |reason: String| RpcError::Unreachable {
            socket: socket.to_path_buf(),
            reason,
        };
        if !socket.exists() {
            return Err(unreachable("no such socket".into()));
        }
        // tonic dials `unix:` endpoints itself (no HTTP crate of ours in between).
        let uri = format!("unix://{}", socket.display());
        let channel = containerd_client::tonic::transport::Endpoint::from_shared(uri)
            .map_err(|e| unreachable(error_chain(&e)))?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Self {
            channel,
            socket: socket.to_path_buf(),
            namespace: namespace.to_string(),
            timeout: Duration::from_secs(30),
            images: ImageCache::default(),
            log_helper: None,
        })
    }

    /// Route container output through the log copier at `roost` (the `roost` binary;
    /// see [`crate::logcopy`]).
    pub fn with_log_helper(mut self, roost: impl Into<PathBuf>) -> Self {
        self.log_helper = Some(roost.into());
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The namespace this client works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A request carrying the namespace header.
    pub(crate) fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        if let Ok(v) = MetadataValue::try_from(self.namespace.as_str()) {
            r.metadata_mut().insert("containerd-namespace", v);
        }
        r
    }

    /// A request carrying the namespace and lease headers.
    pub(crate) fn req_leased<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut r = self.req(msg);
        if let Ok(v) = MetadataValue::try_from(lease) {
            r.metadata_mut().insert("containerd-lease", v);
        }
        r
    }

    /// Run one RPC future under the default timeout, mapping errors.
    pub(crate) async fn call<T>(
        &self,
        op: &'static str,
        subject: &str,
        fut: impl Future<Output = Result<tonic_response::Response<T>, Status>>,
    ) -> Result<T, RpcError> {
        self.call_within(op, subject, self.timeout, fut).await
    }

    /// Run one RPC future under `timeout`.
    pub(crate) async fn call_within<T>(
        &self,
        op: &'static str,
        subject: &str,
        timeout: Duration,
        fut: impl Future<Output = Result<tonic_response::Response<T>, Status>>,
    ) -> Result<T, RpcError> {
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(RpcError::Timeout {
                op,
                subject: subject.to_string(),
                timeout,
                socket: self.socket.clone(),
            }),
            Ok(Err(s)) => Err(RpcError::status(op, subject, &s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    pub(crate) fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
    pub(crate) fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    pub(crate) fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
    pub(crate) fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }
    pub(crate) fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }
    pub(crate) fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    pub(crate) fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    /// Create a lease that expires by itself after `expire` (so a crash mid-pull leaves
    /// nothing for long), returning its id.
    pub(crate) async fn lease_create(
        &self,
        purpose: &str,
        expire: Duration,
    ) -> Result<String, RpcError> {
        let id = format!("roost-{purpose}-{}", unique_suffix());
        let expire_at = std::time::SystemTime::now() + expire;
        let mut labels = std::collections::HashMap::new();
        labels.insert("containerd.io/gc.expire".to_string(), rfc3339(expire_at));
        let req = self.req(CreateRequest {
            id: id.clone(),
            labels,
        });
        self.call("Leases.Create", &id, self.leases().create(req))
            .await?;
        Ok(id)
    }

    /// Delete a lease; with `sync` containerd collects what only it held before answering.
    pub(crate) async fn lease_delete(&self, id: &str, sync: bool) -> Result<(), RpcError> {
        let req = self.req(DeleteRequest {
            id: id.to_string(),
            sync,
        });
        match self
            .call("Leases.Delete", id, self.leases().delete(req))
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

// tonic's Response type, named once so the signatures above stay short.
mod tonic_response {
    pub(crate) use containerd_client::tonic::Response;
}

/// A process-unique, time-based suffix for lease and view names.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// RFC 3339 UTC time (what containerd's gc.expire label parses).
/// `t` as an RFC 3339 UTC time to the second, e.g. `2024-02-29T12:34:56Z`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An error and its sources on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(0);
        assert_eq!(rfc3339(t), "1970-01-01T00:00:00Z");
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_709_210_096);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56Z");
    }

    #[tokio::test]
    async fn missing_socket_names_it_and_the_fix() {
        let e = Client::connect(Path::new("/nonexistent/roost.sock"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/roost.sock"), "{e}");
        assert!(e.contains("--containerd-socket"), "{e}");
    }
}

//! Roost's containerd driver core: images, containers and tasks through containerd's
//! gRPC API (never the `ctr` CLI). Front ends (the daemon's driver, `roost image`)
//! call this crate; it knows nothing of HTTP or command lines.
//!
//! - [`client`]: the one adapter over the generated stubs (socket, namespace, timeouts).
//! - [`content`]: blobs in the content store.
//! - [`image`]: import, pull, unpack, list, remove; reading files of an image.
//! - [`spec`]: the OCI runtime spec from a [`spec::RunSpec`].
//! - [`task`]: create, start, wait, stop, delete, recover.
//! - [`cni`]: a container's own network namespace on a bridge (CNI plugins).
//! - [`exec`]: a command inside a running container, stdio streamed (tty or not).
//! - [`logcopy`]: the log copier the shim runs (`roost container-log`).
//! - [`cgroup`]: the v1 cgroup files Roost reads and writes (rt budgets, OOM, cpuset).

pub mod cgroup;
pub mod client;
pub mod cni;
pub mod content;
pub mod exec;
pub mod image;
pub mod logcopy;
pub mod spec;
pub mod task;

pub use client::{Client, RpcError, DEFAULT_SOCKET, NAMESPACE};

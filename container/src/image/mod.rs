//! Images: the OCI documents Roost reads, name normalisation, listing, removal,
//! and the shared "store + unpack under a lease" step that import and pull end with.

mod import;
mod pull;
mod rootfs;
mod unpack;

pub use import::ImportOptions;
pub use pull::{PullAuth, PullOptions, PullProgress};
pub use rootfs::{ImageFiles, User};

use crate::client::{Client, RpcError};
use crate::content::{sha256_digest, ContentError};
use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    UpdateImageRequest,
};
use containerd_client::types::Descriptor as PbDescriptor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;

/// OCI and Docker media types Roost understands.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI layer, uncompressed.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI layer, gzip.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
}

/// Errors about images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// containerd refused.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Moving a blob failed.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// No image by that name in the namespace.
    #[error("image {name} is not in containerd (namespace {namespace}); import it with `roost image import FILE` or pull it with `roost image pull {name}`")]
    NotFound {
        /// Normalised name.
        name: String,
        /// The containerd namespace.
        namespace: String,
    },
    /// The reference does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    BadReference {
        /// As given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// A document is not what it claims.
    #[error("image {what}: {reason}")]
    Malformed {
        /// Which document (`manifest sha256:…`, `index.json`, …).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// No manifest for this host's platform.
    #[error("image {name} has no manifest for linux/{arch}")]
    NoPlatform {
        /// The image.
        name: String,
        /// This host's architecture.
        arch: String,
    },
    /// A local file problem during import.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Pulling from the registry failed.
    #[error("pull {reference}: {reason}")]
    Registry {
        /// The reference.
        reference: String,
        /// What the registry (or the transfer) said.
        reason: String,
    },
    /// A layer unpacked to a different diffID than the config claims.
    #[error("layer {layer} unpacks to {actual} but the image config says {expected}")]
    DiffIdMismatch {
        /// The layer digest.
        layer: String,
        /// From the config.
        expected: String,
        /// What Diff.Apply measured.
        actual: String,
    },
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Bytes.
    pub size: i64,
    /// For index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl Descriptor {
    fn to_pb(&self) -> PbDescriptor {
        PbDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: HashMap::new(),
        }
    }
}

/// An index entry's platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Platform {
    /// e.g. `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// e.g. `linux`.
    #[serde(default)]
    pub os: String,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    #[serde(default)]
    pub schema_version: u32,
    /// Media type, when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// The manifests.
    pub manifests: Vec<Descriptor>,
}

/// The parts of the image config Roost uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// Run defaults.
    #[serde(default)]
    pub config: Option<RunConfig>,
    /// The uncompressed layer digests.
    pub rootfs: RootFs,
}

/// Run defaults from the image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Cmd.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `K=V` environment.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Default user.
    #[serde(default)]
    pub user: Option<String>,
}

/// `rootfs` of the image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// Uncompressed layer digests, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One image as `roost image ls` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageSummary {
    /// Normalised name.
    pub name: String,
    /// Manifest (or index) digest.
    pub digest: String,
    /// Size of the target document plus what it references, when known.
    pub size: i64,
}

/// An image resolved down to one manifest for this host, with its config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Normalised name.
    pub name: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The manifest.
    pub manifest: Manifest,
    /// The config.
    pub config: ImageConfig,
    /// Snapshot name of the top layer.
    pub chain_id: String,
}

/// `docker.io/library/busybox:latest` from `busybox`, and so on.
pub fn normalize_reference(reference: &str) -> Result<String, ImageError> {
    let r: oci_client::Reference =
        reference
            .trim()
            .parse()
            .map_err(|e: oci_client::ParseError| ImageError::BadReference {
                reference: reference.to_string(),
                reason: e.to_string(),
            })?;
    Ok(r.whole())
}

/// chainID of a list of diffIDs: chain[0] = diff[0], chain[n] = sha256(chain[n-1] + " " + diff[n]).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The architecture name OCI uses for this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == media::OCI_INDEX || media_type == media::DOCKER_LIST
}

/// Pick this host's manifest from an index.
fn pick_platform(name: &str, index: &Index) -> Result<Descriptor, ImageError> {
    let arch = host_arch();
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_none_or(|p| p.os == "linux" && p.architecture == arch)
                && !is_index(&d.media_type)
        })
        .cloned()
        .ok_or_else(|| ImageError::NoPlatform {
            name: name.to_string(),
            arch: arch.to_string(),
        })
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Malformed {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// GC labels for a manifest that references `manifest`'s config and layers.
fn manifest_labels(manifest: &Manifest) -> HashMap<String, String> {
    let mut l = HashMap::new();
    l.insert(
        "containerd.io/gc.ref.content.config".to_string(),
        manifest.config.digest.clone(),
    );
    for (i, layer) in manifest.layers.iter().enumerate() {
        l.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.clone(),
        );
    }
    l
}

impl Client {
    /// All images in the namespace.
    pub async fn image_list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let req = self.req(ListImagesRequest { filters: vec![] });
        let resp = self
            .call("Images.List", "", self.images().list(req))
            .await?;
        let mut out = Vec::new();
        for img in resp.images {
            let target = img.target.unwrap_or_default();
            let mut size = target.size;
            if let Ok(bytes) = self.read_blob(&target.digest).await {
                if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                    size += m.config.size + m.layers.iter().map(|l| l.size).sum::<i64>();
                }
            }
            out.push(ImageSummary {
                name: img.name,
                digest: target.digest,
                size,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The image record, if present.
    pub async fn image_get(&self, name: &str) -> Result<Option<Image>, ImageError> {
        let name = normalize_reference(name)?;
        let req = self.req(GetImageRequest { name: name.clone() });
        match self.call("Images.Get", &name, self.images().get(req)).await {
            Ok(r) => Ok(r.image),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove an image; containerd's GC then frees its blobs and snapshots unless
    /// another image or a container still uses them.
    pub async fn image_remove(&self, name: &str) -> Result<(), ImageError> {
        let name = normalize_reference(name)?;
        if let Ok(mut cache) = self.images.lock() {
            cache.remove(&name);
        }
        let req = self.req(DeleteImageRequest {
            name: name.clone(),
            sync: true,
            target: None,
        });
        match self
            .call("Images.Delete", &name, self.images().delete(req))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(ImageError::NotFound {
                name,
                namespace: self.namespace().to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Resolve a stored image to this host's manifest and config.
    pub async fn image_resolve(&self, name: &str) -> Result<ResolvedImage, ImageError> {
        let normalized = normalize_reference(name)?;
        let img = self
            .image_get(&normalized)
            .await?
            .ok_or_else(|| ImageError::NotFound {
                name: normalized.clone(),
                namespace: self.namespace().to_string(),
            })?;
        let target = img.target.unwrap_or_default();
        let mut digest = target.digest.clone();
        let mut bytes = self.read_blob(&digest).await?;
        if is_index(&target.media_type) {
            let index: Index = parse(&format!("index {digest}"), &bytes)?;
            digest = pick_platform(&normalized, &index)?.digest;
            bytes = self.read_blob(&digest).await?;
        }
        let manifest: Manifest = parse(&format!("manifest {digest}"), &bytes)?;
        let config_bytes = self.read_blob(&manifest.config.digest).await?;
        let config: ImageConfig =
            parse(&format!("config {}", manifest.config.digest), &config_bytes)?;
        let chain_id =
            chain_ids(&config.rootfs.diff_ids)
                .pop()
                .ok_or_else(|| ImageError::Malformed {
                    what: format!("config {}", manifest.config.digest),
                    reason: "no layers (rootfs.diff_ids is empty)".into(),
                })?;
        Ok(ResolvedImage {
            name: normalized,
            manifest_digest: digest,
            manifest,
            config,
            chain_id,
        })
    }

    /// Create or repoint the image record `name` at `target`.
    async fn image_put(
        &self,
        lease: &str,
        name: &str,
        target: &Descriptor,
    ) -> Result<(), ImageError> {
        let image = Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(target.to_pb()),
            created_at: None,
            updated_at: None,
        };
        let req = self.req_leased(
            CreateImageRequest {
                image: Some(image.clone()),
                source_date_epoch: None,
            },
            lease,
        );
        match self
            .call("Images.Create", name, self.images().create(req))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_already_exists() => {
                let req = self.req_leased(
                    UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".into()],
                        }),
                        source_date_epoch: None,
                    },
                    lease,
                );
                self.call("Images.Update", name, self.images().update(req))
                    .await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Run `work` under a fresh lease; on failure the lease is dropped synchronously,
    /// so containerd's GC removes every blob and snapshot written under it, and the
    /// image records in `names` created by it are deleted.
    pub(crate) async fn under_lease<T, F, Fut>(
        &self,
        purpose: &str,
        work: F,
    ) -> Result<T, ImageError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = (Vec<String>, Result<T, ImageError>)>,
    {
        let lease = self
            .lease_create(purpose, Duration::from_secs(3600))
            .await?;
        let (created, result) = work(lease.clone()).await;
        if result.is_err() {
            for name in &created {
                let req = self.req(DeleteImageRequest {
                    name: name.clone(),
                    sync: false,
                    target: None,
                });
                let _ = self.images().delete(req).await;
            }
            tracing::debug!(lease = %lease, "failed: dropping lease and what it held");
        }
        self.lease_delete(&lease, result.is_err()).await?;
        result
    }

    /// Everything Roost has in the namespace, for leak checks: (kind, id) pairs.
    pub async fn inventory(&self) -> Result<Vec<(String, String)>, RpcError> {
        use containerd_client::services::v1::snapshots::ListSnapshotsRequest;
        use containerd_client::services::v1::{
            ListContainersRequest, ListContentRequest, ListRequest, ListTasksRequest,
        };
        let mut out = Vec::new();
        let r = self
            .call(
                "Containers.List",
                "",
                self.containers()
                    .list(self.req(ListContainersRequest { filters: vec![] })),
            )
            .await?;
        out.extend(
            r.containers
                .into_iter()
                .map(|c| ("container".to_string(), c.id)),
        );
        let r = self
            .call(
                "Tasks.List",
                "",
                self.tasks().list(self.req(ListTasksRequest {
                    filter: String::new(),
                })),
            )
            .await?;
        out.extend(r.tasks.into_iter().map(|t| ("task".to_string(), t.id)));
        let r = self
            .call(
                "Images.List",
                "",
                self.images()
                    .list(self.req(ListImagesRequest { filters: vec![] })),
            )
            .await?;
        out.extend(r.images.into_iter().map(|i| ("image".to_string(), i.name)));
        let r = self
            .call(
                "Leases.List",
                "",
                self.leases()
                    .list(self.req(ListRequest { filters: vec![] })),
            )
            .await?;
        out.extend(r.leases.into_iter().map(|l| ("lease".to_string(), l.id)));
        let mut s = self
            .call(
                "Content.List",
                "",
                self.content()
                    .list(self.req(ListContentRequest { filters: vec![] })),
            )
            .await?;
        while let Ok(Some(m)) = s.message().await {
            out.extend(
                m.info
                    .into_iter()
                    .map(|i| ("content".to_string(), i.digest)),
            );
        }
        let mut s = self
            .call(
                "Snapshots.List",
                "",
                self.snapshots().list(self.req(ListSnapshotsRequest {
                    snapshotter: crate::client::SNAPSHOTTER.into(),
                    filters: vec![],
                })),
            )
            .await?;
        while let Ok(Some(m)) = s.message().await {
            out.extend(m.info.into_iter().map(|i| ("snapshot".to_string(), i.name)));
        }
        Ok(out)
    }
}

/// Sniff gzip by its magic bytes.
pub(crate) fn layer_media_type(first_bytes: &[u8]) -> &'static str {
    if first_bytes.starts_with(&[0x1f, 0x8b]) {
        media::OCI_LAYER_GZIP
    } else {
        media::OCI_LAYER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], sha256_digest(b"sha256:aaaa sha256:bbbb"));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn references_are_normalised() {
        assert_eq!(
            normalize_reference("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_reference("127.0.0.1:5000/bb:v1").unwrap(),
            "127.0.0.1:5000/bb:v1"
        );
        assert!(normalize_reference("UPPER/Case").is_err());
    }

    #[test]
    fn platform_pick_prefers_this_host() {
        let idx = Index {
            manifests: vec![
                Descriptor {
                    digest: "sha256:other".into(),
                    platform: Some(Platform {
                        architecture: "s390x".into(),
                        os: "linux".into(),
                    }),
                    ..Default::default()
                },
                Descriptor {
                    digest: "sha256:mine".into(),
                    platform: Some(Platform {
                        architecture: host_arch().into(),
                        os: "linux".into(),
                    }),
                    ..Default::default()
                },
            ],
        };
        assert_eq!(pick_platform("x", &idx).unwrap().digest, "sha256:mine");
    }
}

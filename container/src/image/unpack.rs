//! Unpack an image's layers into overlayfs snapshots named by chainID, and the
//! writes that finish an import or a pull (config, manifest, image record).

use super::{chain_ids, manifest_labels, Descriptor, ImageConfig, ImageError, Manifest};
use crate::client::{unique_suffix, Client, RpcError, SNAPSHOTTER};
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::ApplyRequest;
use std::collections::HashMap;
use std::time::Duration;

/// Applying one layer may take a while for big images.
const APPLY_TIMEOUT: Duration = Duration::from_secs(600);

impl Client {
    /// Whether a snapshot exists.
    pub(crate) async fn snapshot_exists(&self, key: &str) -> Result<bool, RpcError> {
        let req = self.req(StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.to_string(),
        });
        match self
            .call("Snapshots.Stat", key, self.snapshots().stat(req))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Remove a snapshot; absent is fine.
    pub(crate) async fn snapshot_remove(&self, key: &str) -> Result<(), RpcError> {
        let req = self.req(RemoveSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.to_string(),
        });
        match self
            .call("Snapshots.Remove", key, self.snapshots().remove(req))
            .await
        {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }

    /// Unpack every layer not yet unpacked; returns the top chainID.
    pub(crate) async fn unpack(
        &self,
        lease: &str,
        manifest: &Manifest,
        config: &ImageConfig,
    ) -> Result<String, ImageError> {
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() || diff_ids.is_empty() {
            return Err(ImageError::Malformed {
                what: format!("config {}", manifest.config.digest),
                reason: format!(
                    "{} diff_ids for {} layers",
                    diff_ids.len(),
                    manifest.layers.len()
                ),
            });
        }
        let chains = chain_ids(diff_ids);
        for (i, layer) in manifest.layers.iter().enumerate() {
            let chain = &chains[i];
            if self.snapshot_exists(chain).await? {
                continue;
            }
            let parent = if i == 0 {
                String::new()
            } else {
                chains[i - 1].clone()
            };
            let key = format!("roost-extract-{}", unique_suffix());
            let req = self.req_leased(
                PrepareSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.clone(),
                    parent,
                    labels: HashMap::new(),
                },
                lease,
            );
            let mounts = self
                .call("Snapshots.Prepare", &key, self.snapshots().prepare(req))
                .await?
                .mounts;
            let applied = async {
                let req = self.req_leased(
                    ApplyRequest {
                        diff: Some(layer.to_pb()),
                        mounts,
                        payloads: HashMap::new(),
                        sync_fs: false,
                    },
                    lease,
                );
                let applied = self
                    .call_within(
                        "Diff.Apply",
                        &layer.digest,
                        APPLY_TIMEOUT,
                        self.diff().apply(req),
                    )
                    .await?
                    .applied
                    .unwrap_or_default();
                if applied.digest != diff_ids[i] {
                    return Err(ImageError::DiffIdMismatch {
                        layer: layer.digest.clone(),
                        expected: diff_ids[i].clone(),
                        actual: applied.digest,
                    });
                }
                let req = self.req_leased(
                    CommitSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        name: chain.clone(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    },
                    lease,
                );
                match self
                    .call("Snapshots.Commit", chain, self.snapshots().commit(req))
                    .await
                {
                    // Another unpack of the same layer won the race: theirs is as good.
                    Err(e) if e.is_already_exists() => Err(e.into()),
                    other => other.map(|_| ()).map_err(ImageError::from),
                }
            }
            .await;
            if let Err(e) = applied {
                let _ = self.snapshot_remove(&key).await;
                if let ImageError::Rpc(r) = &e {
                    if r.is_already_exists() {
                        continue;
                    }
                }
                return Err(e);
            }
            tracing::debug!(layer = %layer.digest, chain = %chain, "layer unpacked");
        }
        chains.last().cloned().ok_or_else(|| ImageError::Malformed {
            what: "config".into(),
            reason: "no layers".into(),
        })
    }

    /// The last steps of an import or pull, once the layers are in the store: write the
    /// config and manifest with their GC labels, point `name` at the manifest, unpack.
    pub(crate) async fn finish_image(
        &self,
        lease: &str,
        name: &str,
        manifest_desc: &Descriptor,
        manifest_bytes: Vec<u8>,
        manifest: &Manifest,
        config_bytes: Vec<u8>,
    ) -> Result<(), ImageError> {
        let config: ImageConfig =
            super::parse(&format!("config {}", manifest.config.digest), &config_bytes)?;
        let top =
            chain_ids(&config.rootfs.diff_ids)
                .pop()
                .ok_or_else(|| ImageError::Malformed {
                    what: format!("config {}", manifest.config.digest),
                    reason: "no layers (rootfs.diff_ids is empty)".into(),
                })?;
        let mut labels = HashMap::new();
        labels.insert(format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"), top);
        self.write_blob_bytes(lease, &manifest.config.digest, config_bytes, labels)
            .await?;
        self.write_blob_bytes(
            lease,
            &manifest_desc.digest,
            manifest_bytes,
            manifest_labels(manifest),
        )
        .await?;
        self.image_put(lease, name, manifest_desc).await?;
        self.unpack(lease, manifest, &config).await?;
        tracing::info!(image = %name, digest = %manifest_desc.digest, "image stored and unpacked");
        Ok(())
    }
}

/// Layer labels: the diffID containerd's unpacker and GC expect.
pub(crate) fn layer_labels(diff_id: &str) -> HashMap<String, String> {
    let mut l = HashMap::new();
    l.insert(
        "containerd.io/uncompressed".to_string(),
        diff_id.to_string(),
    );
    l
}

//! `roost image pull`: fetch from an OCI registry with `oci-client`, verify every
//! digest, and store + unpack under a lease (containerd 1.6 has no Transfer service).

use super::unpack::layer_labels;
use super::{
    is_index, media, normalize_reference, parse, pick_platform, Descriptor, ImageConfig,
    ImageError, Index, Manifest,
};
use crate::client::Client;
use crate::content::{sha256_digest, ContentError};
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use std::sync::Arc;
use std::time::Duration;

/// How to authenticate to the registry.
#[derive(Debug, Clone, Default)]
pub enum PullAuth {
    /// No credentials (the registry may still hand out an anonymous bearer token).
    #[default]
    Anonymous,
    /// User name and password (HTTP basic, or exchanged for a token).
    Basic {
        /// User.
        username: String,
        /// Password.
        password: String,
    },
    /// A ready bearer token.
    Bearer(String),
}

/// Progress of a pull, reported per blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// The blob.
    pub digest: String,
    /// Bytes of it received so far.
    pub done: u64,
    /// Its size.
    pub total: u64,
    /// Index of this layer and the number of layers.
    pub layer: (usize, usize),
}

/// Options for a pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Credentials.
    pub auth: PullAuth,
    /// Registries (`host:port`) spoken to over plain HTTP. Loopback registries always are.
    pub insecure_registries: Vec<String>,
    /// Called as bytes arrive.
    pub progress: Option<Arc<dyn Fn(PullProgress) + Send + Sync>>,
}

impl std::fmt::Debug for PullOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("auth", &self.auth)
            .field("insecure_registries", &self.insecure_registries)
            .finish_non_exhaustive()
    }
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host == "127.0.0.1" || host == "[::1]"
}

const ACCEPT: &[&str] = &[
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_LIST,
];

impl Client {
    /// Pull `reference` into containerd and unpack it; returns the stored name. A pull
    /// that fails (network, auth, a digest that does not match) leaves nothing behind.
    pub async fn image_pull(
        &self,
        reference: &str,
        opts: &PullOptions,
    ) -> Result<String, ImageError> {
        // Install ring as rustls's provider once (reqwest is built without one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let name = normalize_reference(reference)?;
        let r: Reference =
            name.parse()
                .map_err(|e: oci_client::ParseError| ImageError::BadReference {
                    reference: reference.to_string(),
                    reason: e.to_string(),
                })?;
        let registry = r.resolve_registry().to_string();
        let mut plain: Vec<String> = opts.insecure_registries.clone();
        if is_loopback(&registry) {
            plain.push(registry.clone());
        }
        let oci = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        });
        let auth = match &opts.auth {
            PullAuth::Anonymous => RegistryAuth::Anonymous,
            PullAuth::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            PullAuth::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        };
        let reg_err = |e: oci_client::errors::OciDistributionError| ImageError::Registry {
            reference: reference.to_string(),
            reason: crate::client::error_chain(&e),
        };
        // The manifest: oci-client checks it against a digest in the reference.
        let (bytes, digest) = oci
            .pull_manifest_raw(&r, &auth, ACCEPT)
            .await
            .map_err(reg_err)?;
        let mut bytes = bytes.to_vec();
        let mut digest = digest;
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
        let mut manifest_media = media_type.clone();
        if is_index(&media_type) {
            let index: Index = parse(&format!("index {digest}"), &bytes)?;
            let chosen = pick_platform(&name, &index)?;
            let by_digest = r.clone_with_digest(chosen.digest.clone());
            let (b, d) = oci
                .pull_manifest_raw(&by_digest, &auth, ACCEPT)
                .await
                .map_err(reg_err)?;
            bytes = b.to_vec();
            digest = d;
            manifest_media = if chosen.media_type.is_empty() {
                media::OCI_MANIFEST.into()
            } else {
                chosen.media_type
            };
        }
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(ContentError::DigestMismatch {
                expected: digest,
                actual,
            }
            .into());
        }
        let manifest: Manifest = parse(&format!("manifest {digest}"), &bytes)?;
        let mut config_bytes = Vec::new();
        oci.pull_blob(&r, &to_oci(&manifest.config), &mut config_bytes)
            .await
            .map_err(reg_err)?;
        let config: ImageConfig =
            parse(&format!("config {}", manifest.config.digest), &config_bytes)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Malformed {
                what: format!("manifest {digest}"),
                reason: format!(
                    "{} layers but the config lists {} diff_ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        let desc = Descriptor {
            media_type: manifest_media,
            digest: digest.clone(),
            size: bytes.len() as i64,
            ..Default::default()
        };
        let n_layers = manifest.layers.len();
        self.under_lease("pull", |lease| async move {
            let mut created = Vec::new();
            let r2 = async {
                for (i, (layer, diff_id)) in manifest
                    .layers
                    .iter()
                    .zip(&config.rootfs.diff_ids)
                    .enumerate()
                {
                    if self.content_info(&layer.digest).await?.is_none() {
                        let stream = oci
                            .pull_blob_stream(&r, &to_oci(layer))
                            .await
                            .map_err(reg_err)?;
                        let source_name = reference.to_string();
                        let digest = layer.digest.clone();
                        let chunks = stream.stream.map(move |c| {
                            c.map(|b| b.to_vec()).map_err(|e| {
                                let mut reason = crate::client::error_chain(&e);
                                if reason.to_lowercase().contains("digest") {
                                    reason.push_str(
                                        " (the registry sent data that does not match the manifest: corrupt or tampered; nothing was stored)",
                                    );
                                }
                                ContentError::Transfer {
                                    digest: digest.clone(),
                                    source_name: source_name.clone(),
                                    reason,
                                }
                            })
                        });
                        let total = layer.size.max(0) as u64;
                        let progress = opts.progress.clone();
                        let d = layer.digest.clone();
                        self.write_blob_stream(
                            &lease,
                            &layer.digest,
                            layer.size,
                            chunks,
                            layer_labels(diff_id),
                            move |done| {
                                if let Some(p) = &progress {
                                    p(PullProgress {
                                        digest: d.clone(),
                                        done,
                                        total,
                                        layer: (i, n_layers),
                                    });
                                }
                            },
                        )
                        .await?;
                    } else {
                        self.write_blob_stream(
                            &lease,
                            &layer.digest,
                            layer.size,
                            futures_util::stream::empty(),
                            layer_labels(diff_id),
                            |_| {},
                        )
                        .await?;
                    }
                    if let Some(p) = &opts.progress {
                        let total = layer.size.max(0) as u64;
                        p(PullProgress {
                            digest: layer.digest.clone(),
                            done: total,
                            total,
                            layer: (i, n_layers),
                        });
                    }
                }
                created.push(name.clone());
                self.finish_image(&lease, &name, &desc, bytes, &manifest, config_bytes)
                    .await
            }
            .await;
            (created, r2.map(|()| name.clone()))
        })
        .await
    }
}

fn to_oci(d: &Descriptor) -> OciDescriptor {
    OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        urls: None,
        annotations: None,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:443"));
        assert!(!is_loopback("registry.example:5000"));
    }
}

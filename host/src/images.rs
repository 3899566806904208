//! Images through the daemon: list, pull, import, remove and prune on the same
//! containerd (and namespace) the container driver runs from, so `roost image`
//! works on a private containerd, from a remote client and from central alike.
//! A front-end-neutral core: the API's handlers parse and call these.

use roost_container::image::{ImageError, ImportOptions, PullAuth, PullOptions};
use roost_container::{Client, RpcError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One image as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageInfo {
    /// Normalised name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Manifest (or index) digest.
    pub digest: String,
    /// Bytes of the manifest, its config and its layers (compressed), when known.
    pub size: i64,
    /// Names of the workloads whose spec uses it.
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// What to pull.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PullRequest {
    /// Image reference, e.g. `registry.example/app:1.2` or `…@sha256:…`.
    #[schemars(length(min = 1, max = 4096))]
    pub reference: String,
    /// User for basic auth (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for basic auth.
    #[serde(default)]
    pub password: Option<String>,
    /// A ready bearer token (instead of a user and password).
    #[serde(default)]
    pub token: Option<String>,
    /// Registries (`host:port`) to reach over plain HTTP (loopback ones always are).
    #[serde(default)]
    pub insecure_registries: Vec<String>,
}

/// Why an image request failed.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// This daemon has no containerd.
    #[error("images need containerd, which this daemon cannot use: {0}")]
    Unavailable(String),
    /// No such image.
    #[error("{0}")]
    NotFound(String),
    /// The request names something that cannot be an image (reference, archive).
    #[error("{0}")]
    Invalid(String),
    /// The image is used by workloads.
    #[error("image {name} is used by {}; remove or change those workloads first", .users.join(", "))]
    InUse {
        /// The image.
        name: String,
        /// Its users.
        users: Vec<String>,
    },
    /// containerd or the registry failed.
    #[error("{0}")]
    Backend(String),
}

impl From<ImageError> for ImagesError {
    fn from(e: ImageError) -> Self {
        match e {
            ImageError::NotFound { .. } => Self::NotFound(e.to_string()),
            ImageError::BadReference { .. }
            | ImageError::Malformed { .. }
            | ImageError::NoPlatform { .. }
            | ImageError::File { .. }
            | ImageError::DiffIdMismatch { .. } => Self::Invalid(e.to_string()),
            ImageError::Rpc(RpcError::Unreachable { .. }) => Self::Unavailable(e.to_string()),
            _ => Self::Backend(e.to_string()),
        }
    }
}

/// The image service of one daemon.
#[derive(Debug, Clone)]
pub struct Images {
    client: Result<Client, String>,
    staging: PathBuf,
}

impl Images {
    /// Over the container driver's client (`Err` says why there is none);
    /// uploaded archives are staged under `staging` while they are imported.
    pub fn new(client: Result<Client, String>, staging: &Path) -> Self {
        Self {
            client,
            staging: staging.to_path_buf(),
        }
    }

    fn client(&self) -> Result<&Client, ImagesError> {
        self.client
            .as_ref()
            .map_err(|e| ImagesError::Unavailable(e.clone()))
    }

    /// Where an upload is staged (the directory is made on demand).
    pub fn staging_file(&self) -> Result<tempfile::NamedTempFile, ImagesError> {
        std::fs::create_dir_all(&self.staging).map_err(|e| {
            ImagesError::Backend(format!("cannot create {}: {e}", self.staging.display()))
        })?;
        tempfile::Builder::new()
            .prefix("import-")
            .tempfile_in(&self.staging)
            .map_err(|e| {
                ImagesError::Backend(format!(
                    "cannot stage an upload in {}: {e}",
                    self.staging.display()
                ))
            })
    }

    /// Every image, with the workloads (from `specs`: name, image) that use it.
    pub async fn list(&self, specs: &[(String, String)]) -> Result<Vec<ImageInfo>, ImagesError> {
        let list = self.client()?.image_list().await?;
        Ok(list
            .into_iter()
            .map(|i| ImageInfo {
                used_by: users(&i.name, specs),
                name: i.name,
                digest: i.digest,
                size: i.size,
            })
            .collect())
    }

    /// Pull from a registry; returns the stored name.
    pub async fn pull(&self, req: PullRequest) -> Result<String, ImagesError> {
        let auth = match (req.username, req.password, req.token) {
            (Some(username), Some(password), None) => PullAuth::Basic { username, password },
            (None, None, Some(t)) => PullAuth::Bearer(t),
            (None, None, None) => PullAuth::Anonymous,
            _ => {
                return Err(ImagesError::Invalid(
                    "give `username` with `password`, or `token`, or neither".into(),
                ))
            }
        };
        Ok(self
            .client()?
            .image_pull(
                &req.reference,
                &PullOptions {
                    auth,
                    insecure_registries: req.insecure_registries,
                    progress: None,
                },
            )
            .await?)
    }

    /// Import an archive (OCI layout or docker-archive tarball, maybe gzipped).
    pub async fn import(
        &self,
        file: &Path,
        name: Option<String>,
    ) -> Result<Vec<String>, ImagesError> {
        Ok(self
            .client()?
            .image_import(file, &ImportOptions { name })
            .await?)
    }

    /// Remove one image, unless a workload uses it.
    pub async fn remove(
        &self,
        reference: &str,
        specs: &[(String, String)],
    ) -> Result<String, ImagesError> {
        let name = roost_container::image::normalize_reference(reference)?;
        let users = users(&name, specs);
        if !users.is_empty() {
            return Err(ImagesError::InUse { name, users });
        }
        self.client()?.image_remove(&name).await?;
        Ok(name)
    }

    /// Remove every image no workload uses; returns the names removed.
    pub async fn prune(&self, specs: &[(String, String)]) -> Result<Vec<String>, ImagesError> {
        let client = self.client()?;
        let used: BTreeSet<String> = specs
            .iter()
            .filter_map(|(_, image)| roost_container::image::normalize_reference(image).ok())
            .collect();
        let mut removed = Vec::new();
        for img in client.image_list().await? {
            if !used.contains(&img.name) {
                client.image_remove(&img.name).await?;
                removed.push(img.name);
            }
        }
        Ok(removed)
    }
}

/// The workloads among `specs` (name, image) whose image is `name` (normalised).
fn users(name: &str, specs: &[(String, String)]) -> Vec<String> {
    specs
        .iter()
        .filter(|(_, image)| {
            roost_container::image::normalize_reference(image).is_ok_and(|n| n == name)
        })
        .map(|(w, _)| w.clone())
        .collect()
}

//! Roost releases central serves to hosts (software self-upgrade), and the release
//! each subcloud's hosts should run.
//!
//! A release is a binary kept as `<releases-dir>/<sha256>` (written under a temporary
//! name, fsynced, renamed, the directory fsynced) plus a [`Release`] record in the
//! store. Hosts fetch it over the link (`FetchRelease`) and check the digest that
//! `Desired` pinned before they install anything.

use super::{Central, CentralError};
use crate::model::{check_version, now_ms, Release, Subcloud};
use crate::store::Change;
use futures_util::{Stream, StreamExt};
use sha2::Digest;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The largest release accepted by default (the API's limit).
pub const MAX_RELEASE_BYTES: u64 = 512 * 1024 * 1024;

/// What `add_release` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseAdded {
    /// The record.
    pub release: Release,
    /// False when the same version with the same digest was already there.
    pub created: bool,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CentralError {
    CentralError::Io(format!("{what} {}: {e}", path.display()))
}

fn version_field(v: &str) -> Result<(), CentralError> {
    check_version(v).map_err(|e| CentralError::field("version", e))
}

fn no_release(v: &str) -> CentralError {
    CentralError::NotFound(format!(
        "release `{v}` does not exist; `roost central release ls` lists them, \
         `roost central release add FILE --version {v}` adds it"
    ))
}

/// A random hex suffix for temporary names.
fn nonce() -> String {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        b = now_ms().to_le_bytes();
    }
    hex::encode(b)
}

impl Central {
    fn releases_dir(&self) -> Result<&Path, CentralError> {
        self.cfg.releases_dir.as_deref().ok_or_else(|| {
            CentralError::Conflict(
                "this central keeps no releases (it was started without a releases dir)".into(),
            )
        })
    }

    /// Every release, by version.
    pub fn releases(&self) -> Vec<Release> {
        self.lock().releases.values().cloned().collect()
    }

    /// One release and the file holding it.
    pub fn release_file(&self, version: &str) -> Result<(Release, PathBuf), CentralError> {
        let dir = self.releases_dir()?.to_path_buf();
        let r = self
            .lock()
            .releases
            .get(version)
            .cloned()
            .ok_or_else(|| no_release(version))?;
        let path = dir.join(&r.sha256);
        Ok((r, path))
    }

    /// Add a release: stream `body` to `<releases-dir>/<sha256>` (at most `max_size`
    /// bytes), then store its record. The same version again with the same digest
    /// changes nothing; with another digest it is a conflict.
    pub async fn add_release<S, B, E>(
        &self,
        version: &str,
        body: S,
        max_size: u64,
    ) -> Result<ReleaseAdded, CentralError>
    where
        S: Stream<Item = Result<B, E>> + Send,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        version_field(version)?;
        let dir = self.releases_dir()?.to_path_buf();
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| io_err("cannot create the releases dir", &dir, e))?;
        }
        let tmp = dir.join(format!(".upload-{}", nonce()));
        let res = self.receive(&tmp, body, max_size).await;
        let (sha256, size) = match res {
            Ok(x) => x,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let path = dir.join(&sha256);
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io_err("cannot move the upload to", &path, e));
        }
        if let Ok(d) = std::fs::File::open(&dir) {
            d.sync_all()
                .map_err(|e| io_err("cannot sync the releases dir", &dir, e))?;
        }
        let release = Release {
            version: version.into(),
            sha256: sha256.clone(),
            size,
            added_ms: now_ms(),
        };
        let res = self
            .write(|b| {
                if let Some(old) = b.st.releases.get(version) {
                    if old.sha256 == sha256 {
                        return Ok(ReleaseAdded {
                            release: old.clone(),
                            created: false,
                        });
                    }
                    return Err(CentralError::Conflict(format!(
                        "release `{version}` exists with another binary (sha256 {}, this one is {sha256}); \
                         give this one another --version, or `roost central release rm {version}` first",
                        old.sha256
                    )));
                }
                b.push(Change::PutRelease(release.clone()));
                b.event(
                    "release-added",
                    format!("release/{version}"),
                    format!("sha256 {sha256}, {size} bytes"),
                );
                Ok(ReleaseAdded {
                    release: release.clone(),
                    created: true,
                })
            })
            .await;
        if res.is_err() {
            self.drop_blob_if_unused(&sha256).await;
        }
        res
    }

    /// Write `body` to `tmp`, hashing it; (sha256, size). Synced before it returns.
    async fn receive<S, B, E>(
        &self,
        tmp: &Path,
        body: S,
        max_size: u64,
    ) -> Result<(String, u64), CentralError>
    where
        S: Stream<Item = Result<B, E>> + Send,
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true).mode(0o600);
            tokio::fs::File::from_std(o.open(tmp).map_err(|e| io_err("cannot create", tmp, e))?)
        };
        let mut h = sha2::Sha256::new();
        let mut size: u64 = 0;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                CentralError::field(
                    "body",
                    format!("the upload broke off after {size} bytes: {e}"),
                )
            })?;
            let c = chunk.as_ref();
            size = size.saturating_add(c.len() as u64);
            if size > max_size {
                return Err(CentralError::TooLarge(format!(
                    "the release is larger than {max_size} bytes; a Roost binary is far smaller: check the file"
                )));
            }
            h.update(c);
            f.write_all(c)
                .await
                .map_err(|e| io_err("cannot write", tmp, e))?;
        }
        if size == 0 {
            return Err(CentralError::field(
                "body",
                "empty: send the Roost binary as the request body",
            ));
        }
        f.flush()
            .await
            .map_err(|e| io_err("cannot write", tmp, e))?;
        f.sync_all()
            .await
            .map_err(|e| io_err("cannot sync", tmp, e))?;
        Ok((hex::encode(h.finalize()), size))
    }

    /// Remove `<releases-dir>/<sha256>` unless a release still names it.
    async fn drop_blob_if_unused(&self, sha256: &str) {
        let used = self.lock().releases.values().any(|r| r.sha256 == sha256);
        if used {
            return;
        }
        if let Ok(dir) = self.releases_dir() {
            let _ = tokio::fs::remove_file(dir.join(sha256)).await;
        }
    }

    /// Remove a release no subcloud wants.
    pub async fn rm_release(&self, version: &str) -> Result<Release, CentralError> {
        let r = self
            .write(|b| {
                let Some(r) = b.st.releases.get(version) else {
                    return Err(no_release(version));
                };
                let wanted: Vec<&str> = b
                    .st
                    .subclouds
                    .values()
                    .filter(|s| s.release.as_deref() == Some(version))
                    .map(|s| s.name.as_str())
                    .collect();
                if !wanted.is_empty() {
                    return Err(CentralError::Conflict(format!(
                        "release `{version}` is the one subcloud{} {} should run; \
                         `roost central subcloud upgrade NAME --version OTHER` (or --clear) them first",
                        if wanted.len() > 1 { "s" } else { "" },
                        wanted.join(", ")
                    )));
                }
                let r = r.clone();
                b.push(Change::DeleteRelease(version.into()));
                b.event("release-removed", format!("release/{version}"), "");
                Ok(r)
            })
            .await?;
        self.drop_blob_if_unused(&r.sha256).await;
        Ok(r)
    }

    /// Set the release a subcloud's hosts should run (`None`: leave each host on what
    /// it runs) and push it to its connected hosts. A host moves to it by downloading,
    /// verifying, swapping its binary and re-executing; it reports the version it runs
    /// as its `roost_version` once the new daemon is healthy.
    pub async fn set_subcloud_release(
        &self,
        subcloud: &str,
        version: Option<&str>,
    ) -> Result<Subcloud, CentralError> {
        if let Some(v) = version {
            version_field(v)?;
        }
        let (s, changed) = self
            .write(|b| {
                let Some(s) = b.st.subclouds.get(subcloud) else {
                    return Err(CentralError::NotFound(format!(
                        "subcloud `{subcloud}` does not exist; `roost central subcloud ls` lists them"
                    )));
                };
                if let Some(v) = version {
                    if !b.st.releases.contains_key(v) {
                        return Err(CentralError::field(
                            "version",
                            format!(
                                "release `{v}` does not exist; `roost central release ls` lists them, \
                                 `roost central release add FILE --version {v}` adds it"
                            ),
                        ));
                    }
                }
                if s.release.as_deref() == version {
                    return Ok((s.clone(), false));
                }
                let mut s = s.clone();
                let was = s.release.clone();
                s.release = version.map(str::to_string);
                b.push(Change::PutSubcloud(s.clone()));
                let msg = match (version, was) {
                    (Some(v), Some(w)) => format!("release {v} (was {w})"),
                    (Some(v), None) => format!("release {v}"),
                    (None, Some(w)) => format!("release cleared (was {w})"),
                    (None, None) => "release cleared".into(),
                };
                b.event("release-set", format!("subcloud/{subcloud}"), msg);
                Ok((s, true))
            })
            .await?;
        if changed {
            self.push_subcloud(subcloud, false);
        }
        Ok(s)
    }
}

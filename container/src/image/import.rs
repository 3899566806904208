//! `roost image import`: an OCI image layout or a docker-archive (`docker save`), as a
//! directory or a tarball (optionally gzipped), into containerd's content store.

use super::unpack::layer_labels;
use super::{
    is_index, layer_media_type, media, normalize_reference, parse, pick_platform, Descriptor,
    ImageConfig, ImageError, Index, Manifest,
};
use crate::client::Client;
use crate::content::{hex, sha256_digest};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Options for an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Name to give the image (needed when the archive names none, or names only a tag).
    pub name: Option<String>,
}

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> ImageError {
    ImageError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// `blobs/sha256/<hex>` for a digest, refusing anything that is not a sha256 digest
/// (a crafted index must not point outside the layout).
fn blob_path(root: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let hexpart = digest
        .strip_prefix("sha256:")
        .filter(|h| {
            h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        .ok_or_else(|| ImageError::Malformed {
            what: "index".into(),
            reason: format!("{digest:?} is not a sha256 digest"),
        })?;
    Ok(root.join("blobs").join("sha256").join(hexpart))
}

/// A path inside an archive, refusing `..` and absolute paths.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, ImageError> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(file_err(
            root,
            format!("archive entry {rel:?} points outside the archive"),
        ));
    }
    Ok(root.join(p))
}

fn read_small(path: &Path) -> Result<Vec<u8>, ImageError> {
    let meta = std::fs::metadata(path).map_err(|e| file_err(path, e))?;
    if meta.len() > 32 << 20 {
        return Err(file_err(
            path,
            "larger than 32 MiB; not a manifest or config",
        ));
    }
    std::fs::read(path).map_err(|e| file_err(path, e))
}

/// sha256 of a file and its first bytes (for gzip sniffing).
fn hash_file(path: &Path) -> Result<(String, i64, Vec<u8>), ImageError> {
    let mut f = std::fs::File::open(path).map_err(|e| file_err(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut head = Vec::new();
    let mut total: i64 = 0;
    loop {
        let n = f.read(&mut buf).map_err(|e| file_err(path, e))?;
        if n == 0 {
            break;
        }
        if head.len() < 4 {
            head.extend_from_slice(&buf[..n.min(4)]);
        }
        h.update(&buf[..n]);
        total += n as i64;
    }
    Ok((format!("sha256:{}", hex(&h.finalize())), total, head))
}

/// Unpack a (possibly gzipped) tarball into `dest`.
fn extract(archive: &Path, dest: &Path) -> Result<(), ImageError> {
    let mut f = std::fs::File::open(archive).map_err(|e| file_err(archive, e))?;
    let mut magic = [0u8; 2];
    let gz = f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let f = std::fs::File::open(archive).map_err(|e| file_err(archive, e))?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut ar = tar::Archive::new(reader);
    // Entries are confined to `dest` by `unpack_in` (it skips `..` and absolute paths).
    for entry in ar
        .entries()
        .map_err(|e| file_err(archive, format!("not a tar archive: {e}")))?
    {
        let mut entry = entry.map_err(|e| file_err(archive, format!("corrupt tar: {e}")))?;
        entry
            .unpack_in(dest)
            .map_err(|e| file_err(archive, format!("cannot extract: {e}")))?;
    }
    Ok(())
}

/// Name for an index entry: explicit option, else the annotations.
fn entry_name(
    desc: &Descriptor,
    explicit: Option<&str>,
    path: &Path,
) -> Result<String, ImageError> {
    if let Some(n) = explicit {
        return normalize_reference(n);
    }
    if let Some(n) = desc.annotations.get("io.containerd.image.name") {
        return normalize_reference(n);
    }
    match desc.annotations.get("org.opencontainers.image.ref.name") {
        Some(n) if n.contains('/') || n.contains(':') && !n.starts_with(':') => {
            normalize_reference(n)
        }
        Some(tag) => Err(file_err(
            path,
            format!("the image is tagged only {tag:?}; give it a full name with --name REPO:{tag}"),
        )),
        None => Err(file_err(
            path,
            "the image has no name; give it one with --name NAME",
        )),
    }
}

impl Client {
    /// Import every image in an OCI layout or docker-archive at `path` (directory or
    /// tarball). Returns the names stored. On any failure nothing is left behind.
    pub async fn image_import(
        &self,
        path: &Path,
        opts: &ImportOptions,
    ) -> Result<Vec<String>, ImageError> {
        let meta = std::fs::metadata(path).map_err(|e| file_err(path, e))?;
        let _tmp;
        let root = if meta.is_dir() {
            path.to_path_buf()
        } else {
            let tmp = tempfile::Builder::new()
                .prefix("roost-import-")
                .tempdir()
                .map_err(|e| file_err(path, format!("cannot make a temp dir: {e}")))?;
            let (a, d) = (path.to_path_buf(), tmp.path().to_path_buf());
            tokio::task::spawn_blocking(move || extract(&a, &d))
                .await
                .map_err(|e| file_err(path, e))??;
            let r = tmp.path().to_path_buf();
            _tmp = tmp;
            r
        };
        if root.join("index.json").is_file() {
            self.import_oci(path, &root, opts).await
        } else if root.join("manifest.json").is_file() {
            self.import_docker(path, &root, opts).await
        } else {
            Err(file_err(
                path,
                "neither an OCI image layout (index.json) nor a docker-archive (manifest.json)",
            ))
        }
    }

    async fn import_oci(
        &self,
        src: &Path,
        root: &Path,
        opts: &ImportOptions,
    ) -> Result<Vec<String>, ImageError> {
        let index: Index = parse("index.json", &read_small(&root.join("index.json"))?)?;
        if index.manifests.is_empty() {
            return Err(file_err(src, "index.json lists no images"));
        }
        if opts.name.is_some() && index.manifests.len() > 1 {
            return Err(file_err(
                src,
                "--name needs an archive with exactly one image",
            ));
        }
        self.under_lease("import", |lease| async move {
            let mut created = Vec::new();
            let r = async {
                for entry in &index.manifests {
                    let name = entry_name(entry, opts.name.as_deref(), src)?;
                    let mut desc = entry.clone();
                    desc.annotations.clear();
                    desc.platform = None;
                    if is_index(&desc.media_type) {
                        let bytes = read_verified(root, &desc.digest)?;
                        let inner: Index = parse(&format!("index {}", desc.digest), &bytes)?;
                        desc = pick_platform(&name, &inner)?;
                        desc.platform = None;
                        desc.annotations.clear();
                    }
                    let manifest_bytes = read_verified(root, &desc.digest)?;
                    let manifest: Manifest =
                        parse(&format!("manifest {}", desc.digest), &manifest_bytes)?;
                    let config_bytes = read_verified(root, &manifest.config.digest)?;
                    let config: ImageConfig =
                        parse(&format!("config {}", manifest.config.digest), &config_bytes)?;
                    check_layers(&manifest, &config)?;
                    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
                        let p = blob_path(root, &layer.digest)?;
                        self.write_blob_file(&lease, &layer.digest, &p, layer_labels(diff_id))
                            .await?;
                    }
                    created.push(name.clone());
                    self.finish_image(
                        &lease,
                        &name,
                        &desc,
                        manifest_bytes,
                        &manifest,
                        config_bytes,
                    )
                    .await?;
                }
                Ok::<_, ImageError>(())
            }
            .await;
            let names = created.clone();
            (created, r.map(|()| names))
        })
        .await
    }

    async fn import_docker(
        &self,
        src: &Path,
        root: &Path,
        opts: &ImportOptions,
    ) -> Result<Vec<String>, ImageError> {
        let entries: Vec<DockerEntry> =
            parse("manifest.json", &read_small(&root.join("manifest.json"))?)?;
        if entries.is_empty() {
            return Err(file_err(src, "manifest.json lists no images"));
        }
        if opts.name.is_some() && entries.len() > 1 {
            return Err(file_err(
                src,
                "--name needs an archive with exactly one image",
            ));
        }
        self.under_lease("import", |lease| async move {
            let mut created = Vec::new();
            let r = async {
                for entry in &entries {
                    let names: Vec<String> = match (&opts.name, &entry.repo_tags) {
                        (Some(n), _) => vec![normalize_reference(n)?],
                        (None, Some(tags)) if !tags.is_empty() => tags
                            .iter()
                            .map(|t| normalize_reference(t))
                            .collect::<Result<_, _>>()?,
                        _ => {
                            return Err(file_err(
                                src,
                                "the image has no RepoTags; give it a name with --name NAME",
                            ))
                        }
                    };
                    let config_path = inside(root, &entry.config)?;
                    let config_bytes = read_small(&config_path)?;
                    let config: ImageConfig =
                        parse(&format!("config {}", entry.config), &config_bytes)?;
                    let mut layers = Vec::new();
                    for (rel, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
                        let p = inside(root, rel)?;
                        let p2 = p.clone();
                        let (digest, size, head) =
                            tokio::task::spawn_blocking(move || hash_file(&p2))
                                .await
                                .map_err(|e| file_err(&p, e))??;
                        self.write_blob_file(&lease, &digest, &p, layer_labels(diff_id))
                            .await?;
                        layers.push(Descriptor {
                            media_type: layer_media_type(&head).to_string(),
                            digest,
                            size,
                            ..Default::default()
                        });
                    }
                    let manifest = Manifest {
                        schema_version: 2,
                        media_type: Some(media::OCI_MANIFEST.into()),
                        config: Descriptor {
                            media_type: media::OCI_CONFIG.into(),
                            digest: sha256_digest(&config_bytes),
                            size: config_bytes.len() as i64,
                            ..Default::default()
                        },
                        layers,
                    };
                    check_layers(&manifest, &config)?;
                    let manifest_bytes =
                        serde_json::to_vec(&manifest).map_err(|e| file_err(src, e))?;
                    let desc = Descriptor {
                        media_type: media::OCI_MANIFEST.into(),
                        digest: sha256_digest(&manifest_bytes),
                        size: manifest_bytes.len() as i64,
                        ..Default::default()
                    };
                    for name in names {
                        created.push(name.clone());
                        self.finish_image(
                            &lease,
                            &name,
                            &desc,
                            manifest_bytes.clone(),
                            &manifest,
                            config_bytes.clone(),
                        )
                        .await?;
                    }
                }
                Ok::<_, ImageError>(())
            }
            .await;
            let names = created.clone();
            (created, r.map(|()| names))
        })
        .await
    }
}

fn check_layers(manifest: &Manifest, config: &ImageConfig) -> Result<(), ImageError> {
    if manifest.layers.len() != config.rootfs.diff_ids.len() || manifest.layers.is_empty() {
        return Err(ImageError::Malformed {
            what: format!("config {}", manifest.config.digest),
            reason: format!(
                "{} layers but {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    Ok(())
}

/// Read a layout blob and check it hashes to its name.
fn read_verified(root: &Path, digest: &str) -> Result<Vec<u8>, ImageError> {
    let bytes = read_small(&blob_path(root, digest)?)?;
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(crate::content::ContentError::DigestMismatch {
            expected: digest.to_string(),
            actual,
        }
        .into());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_cannot_escape() {
        let root = Path::new("/x");
        assert!(blob_path(root, "sha256:../../etc/passwd").is_err());
        assert!(blob_path(root, &format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(inside(root, "../etc").is_err());
        assert!(inside(root, "/etc").is_err());
        assert!(inside(root, "abc/layer.tar").is_ok());
    }

    #[test]
    fn names_come_from_annotations_or_option() {
        let mut d = Descriptor::default();
        let p = Path::new("img.tar");
        assert!(entry_name(&d, None, p)
            .unwrap_err()
            .to_string()
            .contains("--name"));
        d.annotations
            .insert("org.opencontainers.image.ref.name".into(), "latest".into());
        assert!(entry_name(&d, None, p)
            .unwrap_err()
            .to_string()
            .contains("--name REPO:latest"));
        assert_eq!(
            entry_name(&d, Some("bb:1"), p).unwrap(),
            "docker.io/library/bb:1"
        );
        d.annotations
            .insert("io.containerd.image.name".into(), "roost.test/bb:2".into());
        assert_eq!(entry_name(&d, None, p).unwrap(), "roost.test/bb:2");
    }
}

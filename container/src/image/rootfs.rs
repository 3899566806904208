//! Read files of an unpacked image without mounting it: the layer directories of the
//! overlayfs snapshots, searched top-down. Used to check a spec before admission
//! (does the command exist, does the user exist) and to resolve user names.

use super::ImageError;
use crate::client::{unique_suffix, Client, SNAPSHOTTER};
use containerd_client::services::v1::snapshots::ViewSnapshotRequest;
use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// The layer directories of an image, top layer first.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    layers: Vec<PathBuf>,
}

/// A resolved user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

/// Errors resolving a user spec against the image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    /// No such user in the image's /etc/passwd.
    #[error("user {0:?} is not in the image's /etc/passwd; use a numeric uid[:gid] or a user the image has")]
    UnknownUser(String),
    /// No such group in the image's /etc/group.
    #[error(
        "group {0:?} is not in the image's /etc/group; use a numeric gid or a group the image has"
    )]
    UnknownGroup(String),
}

impl Client {
    /// The layer directories of the snapshot chain ending at `chain_id`.
    pub async fn image_files(&self, chain_id: &str) -> Result<ImageFiles, ImageError> {
        let key = format!("roost-view-{}", unique_suffix());
        let req = self.req(ViewSnapshotRequest {
            snapshotter: SNAPSHOTTER.into(),
            key: key.clone(),
            parent: chain_id.to_string(),
            labels: HashMap::new(),
        });
        let mounts = self
            .call("Snapshots.View", chain_id, self.snapshots().view(req))
            .await?
            .mounts;
        // The view only names committed layer directories; those outlive it.
        self.snapshot_remove(&key).await?;
        let mut layers = Vec::new();
        for m in mounts {
            if m.r#type == "bind" {
                layers.push(PathBuf::from(&m.source));
            } else if m.r#type == "overlay" {
                for o in &m.options {
                    if let Some(l) = o.strip_prefix("lowerdir=") {
                        layers.extend(l.split(':').map(PathBuf::from));
                    }
                }
            }
        }
        if layers.is_empty() {
            return Err(ImageError::Malformed {
                what: format!("snapshot {chain_id}"),
                reason: "the view has no layer directories".into(),
            });
        }
        Ok(ImageFiles { layers })
    }
}

impl ImageFiles {
    /// From layer directories, top first (tests and non-containerd callers).
    pub fn from_layers(layers: Vec<PathBuf>) -> Self {
        Self { layers }
    }

    /// The topmost entry for a relative path (no symlinks followed); None when absent
    /// or whited out.
    fn entry(&self, rel: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        for l in &self.layers {
            let p = l.join(rel);
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                // overlayfs whiteout: a 0/0 character device hides lower layers.
                if m.file_type().is_char_device() && m.rdev() == 0 {
                    return None;
                }
                return Some((p, m));
            }
        }
        None
    }

    /// Resolve an absolute path inside the image, following symlinks the way the
    /// kernel would inside the container's root. Returns the host path and metadata.
    pub fn resolve(&self, path: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        let mut todo: VecDeque<String> = path.split('/').map(str::to_string).collect();
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = todo.pop_front() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            cur.push(part);
            let (host, meta) = self.entry(&cur.join("/"))?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = std::fs::read_link(&host).ok()?;
                let target = target.to_string_lossy().to_string();
                cur.pop();
                if target.starts_with('/') {
                    cur.clear();
                }
                for (i, t) in target.split('/').enumerate() {
                    todo.insert(i, t.to_string());
                }
            }
        }
        if cur.is_empty() {
            return self
                .layers
                .first()
                .and_then(|l| std::fs::metadata(l).ok().map(|m| (l.clone(), m)));
        }
        self.entry(&cur.join("/"))
    }

    /// Read a small text file from the image.
    pub fn read_to_string(&self, path: &str) -> Option<String> {
        let (host, meta) = self.resolve(path)?;
        if !meta.is_file() || meta.len() > 4 << 20 {
            return None;
        }
        std::fs::read_to_string(host).ok()
    }

    /// Find an executable: an absolute path as is, a bare name along `path_env`.
    /// Returns the absolute path inside the image.
    pub fn find_executable(&self, cmd: &str, path_env: &str) -> Option<String> {
        let is_exec = |p: &str| {
            self.resolve(p)
                .is_some_and(|(_, m)| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if cmd.contains('/') {
            let abs = if cmd.starts_with('/') {
                cmd.to_string()
            } else {
                format!("/{cmd}")
            };
            return is_exec(&abs).then_some(abs);
        }
        path_env
            .split(':')
            .filter(|d| d.starts_with('/'))
            .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
            .find(|p| is_exec(p))
    }

    /// Resolve `user` (`uid`, `uid:gid`, `name`, `name:group`; empty = root).
    pub fn resolve_user(&self, user: &str) -> Result<User, UserError> {
        let passwd = self.read_to_string("/etc/passwd").unwrap_or_default();
        let group = self.read_to_string("/etc/group").unwrap_or_default();
        resolve_user(user, &passwd, &group)
    }
}

/// Resolve a user spec against passwd and group file contents.
pub fn resolve_user(user: &str, passwd: &str, group: &str) -> Result<User, UserError> {
    let user = user.trim();
    if user.is_empty() {
        return Ok(User { uid: 0, gid: 0 });
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    // name:x:uid:gid:...
    let entries = passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4).then(|| (f[0], f[2].parse::<u32>().ok(), f[3].parse::<u32>().ok()))
    });
    let (uid, mut gid) = if let Ok(uid) = u.parse::<u32>() {
        let gid = entries
            .clone()
            .find(|(_, eu, _)| *eu == Some(uid))
            .and_then(|(_, _, g)| g)
            .unwrap_or(0);
        (uid, gid)
    } else {
        let found = entries
            .clone()
            .find(|(name, _, _)| *name == u)
            .ok_or_else(|| UserError::UnknownUser(u.to_string()))?;
        match found {
            (_, Some(uid), Some(gid)) => (uid, gid),
            _ => return Err(UserError::UnknownUser(u.to_string())),
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g)
                        .then(|| f[2].parse::<u32>().ok())
                        .flatten()
                })
                .next()
                .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?,
        };
    }
    Ok(User { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

    #[test]
    fn users_resolve_by_name_and_number() {
        assert_eq!(resolve_user("", PASSWD, GROUP), Ok(User { uid: 0, gid: 0 }));
        assert_eq!(
            resolve_user("app", PASSWD, GROUP),
            Ok(User {
                uid: 1000,
                gid: 1001
            })
        );
        assert_eq!(
            resolve_user("1000", PASSWD, GROUP),
            Ok(User {
                uid: 1000,
                gid: 1001
            })
        );
        assert_eq!(
            resolve_user("42:7", PASSWD, GROUP),
            Ok(User { uid: 42, gid: 7 })
        );
        assert_eq!(
            resolve_user("app:staff", PASSWD, GROUP),
            Ok(User { uid: 1000, gid: 50 })
        );
        assert_eq!(
            resolve_user("nobody", PASSWD, GROUP),
            Err(UserError::UnknownUser("nobody".into()))
        );
        assert_eq!(
            resolve_user("app:wheel", PASSWD, GROUP),
            Err(UserError::UnknownGroup("wheel".into()))
        );
    }

    #[test]
    fn layers_are_searched_top_down_with_symlinks_and_whiteouts() {
        let top = tempfile::tempdir().unwrap();
        let low = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(low.path().join("usr/bin")).unwrap();
        std::fs::write(low.path().join("usr/bin/busybox"), b"x").unwrap();
        std::fs::set_permissions(
            low.path().join("usr/bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("usr/bin", low.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/busybox", low.path().join("usr/bin/sh")).unwrap();
        std::fs::write(low.path().join("usr/bin/gone"), b"x").unwrap();
        std::fs::create_dir_all(top.path().join("usr/bin")).unwrap();
        let files = ImageFiles::from_layers(vec![top.path().into(), low.path().into()]);
        assert_eq!(files.find_executable("sh", "/bin"), Some("/bin/sh".into()));
        assert_eq!(files.find_executable("/bin/sh", ""), Some("/bin/sh".into()));
        assert_eq!(files.find_executable("nope", "/bin:/usr/bin"), None);
        // Not executable.
        assert_eq!(files.find_executable("gone", "/usr/bin"), None);
    }
}

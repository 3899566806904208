//! `<state>/central/upgrade.json`: what the last software upgrade did, written
//! atomically (temporary file, fsync, rename, fsync of the directory) by the daemon
//! that installs a release, the daemon that comes up on it, and the guard.

use super::UpgradeError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The record's file name, in the link dir.
pub const UPGRADE_FILE: &str = "upgrade.json";

/// Where an upgrade stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeState {
    /// Swapped; the daemon re-executes and must report healthy by the deadline.
    Pending,
    /// The new daemon came up: it runs the release.
    Healthy,
    /// The previous binary is back (the guard, or the daemon when exec failed).
    RolledBack,
}

/// The last upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeRecord {
    /// The release installed.
    pub version: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The version that ran before (and runs again after a rollback).
    pub previous: String,
    /// Unix ms by which the new daemon must be healthy.
    pub deadline_ms: u64,
    /// Where it stands.
    pub state: UpgradeState,
    /// The daemon's pid (the same before and after its re-exec).
    pub pid: u32,
    /// The binary swapped.
    pub bin: PathBuf,
    /// Inode of the installed binary (so a binary replaced by hand later is not
    /// taken for the release).
    pub ino: u64,
    /// Inode of the previous binary (what runs after a rollback).
    pub previous_ino: u64,
    /// Why it was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Central has since asked for another release: the rolled-back one is no longer
    /// refused, and its alarm is cleared.
    #[serde(default)]
    pub lifted: bool,
    /// Unix ms of the last state change.
    #[serde(default)]
    pub changed_ms: u64,
}

/// The record in `dir`, if there is one. An unreadable one is an error naming it.
pub fn read(dir: &Path) -> Result<Option<UpgradeRecord>, UpgradeError> {
    let path = dir.join(UPGRADE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(UpgradeError::io(&path, "cannot read", &e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| UpgradeError::Io {
            path,
            what: "cannot parse",
            reason: format!("{e}; remove it to forget the last upgrade"),
        })
}

/// Write `rec` to `dir` atomically.
pub fn write(dir: &Path, rec: &UpgradeRecord) -> Result<(), UpgradeError> {
    let body = serde_json::to_vec_pretty(rec).map_err(|e| UpgradeError::Io {
        path: dir.join(UPGRADE_FILE),
        what: "cannot encode",
        reason: e.to_string(),
    })?;
    write_atomic(&dir.join(UPGRADE_FILE), &body)
}

/// Write `body` to `path` through a temporary file in the same directory, synced,
/// renamed, and the directory synced.
pub fn write_atomic(path: &Path, body: &[u8]) -> Result<(), UpgradeError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| UpgradeError::io(dir, "cannot create", &e))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| UpgradeError::io(&tmp, "cannot create", &e))?;
    f.write_all(body)
        .and_then(|()| f.sync_all())
        .map_err(|e| UpgradeError::io(&tmp, "cannot write", &e))?;
    std::fs::rename(&tmp, path).map_err(|e| UpgradeError::io(path, "cannot replace", &e))?;
    sync_dir(dir)
}

/// fsync a directory (makes a rename in it durable).
pub fn sync_dir(dir: &Path) -> Result<(), UpgradeError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| UpgradeError::io(dir, "cannot sync", &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> UpgradeRecord {
        UpgradeRecord {
            version: "0.2.0".into(),
            sha256: "ab".repeat(32),
            previous: "0.1.0".into(),
            deadline_ms: 10,
            state: UpgradeState::Pending,
            pid: 7,
            bin: "/usr/bin/roost".into(),
            ino: 1,
            previous_ino: 2,
            reason: None,
            lifted: false,
            changed_ms: 3,
        }
    }

    #[test]
    fn round_trips_atomically() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read(d.path()).unwrap(), None);
        write(d.path(), &rec()).unwrap();
        assert_eq!(read(d.path()).unwrap(), Some(rec()));
        let mut r = rec();
        r.state = UpgradeState::RolledBack;
        r.reason = Some("exited".into());
        write(d.path(), &r).unwrap();
        assert_eq!(read(d.path()).unwrap(), Some(r));
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [UPGRADE_FILE], "no temporary file left");
    }

    #[test]
    fn a_garbled_record_is_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(UPGRADE_FILE), b"{nope").unwrap();
        let e = read(d.path()).unwrap_err().to_string();
        assert!(e.contains(UPGRADE_FILE) && e.contains("remove it"), "{e}");
    }

    #[test]
    fn an_unwritable_dir_is_named() {
        let e = write(Path::new("/proc/roost-no-such"), &rec())
            .unwrap_err()
            .to_string();
        assert!(e.contains("/proc/roost-no-such"), "{e}");
    }
}

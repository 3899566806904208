//! Private files: created mode 0600, written through a temporary name and a rename.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::PkiError;

/// Create `dir` (and its parents) mode 0700 if it does not exist.
pub(super) fn ensure_dir(dir: &Path) -> Result<(), PkiError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PkiError::Io {
            path: dir.into(),
            op: "create the directory",
            reason: format!("{e}; check that the parent exists and is writable by this user"),
        })
}

/// Write `data` to `path` mode 0600 so that `path` holds either its old content or
/// all of `data`, never part of it, whatever happens.
pub(super) fn write_private(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let io = |op: &'static str, p: &Path, e: std::io::Error| PkiError::Io {
        path: p.into(),
        op,
        reason: format!(
            "{e}; check that the directory exists, is writable and the disk is not full"
        ),
    };
    // A leftover from a crash: remove it, so create_new below makes a fresh file whose
    // mode is ours (OpenOptions' mode only applies on creation).
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io("remove the stale", &tmp, e)),
        _ => {}
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create", &tmp, e))?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", &tmp, e));
    }
    rename(&tmp, path)
}

/// Rename `from` to `to` and make the rename durable.
pub(super) fn rename(from: &Path, to: &Path) -> Result<(), PkiError> {
    std::fs::rename(from, to).map_err(|e| PkiError::Io {
        path: to.into(),
        op: "rename into place",
        reason: format!(
            "{e} (from `{}`); check that the directory is writable",
            from.display()
        ),
    })?;
    sync_parent(to);
    Ok(())
}

/// fsync the directory holding `path` so a rename survives a power cut. Best effort:
/// some filesystems refuse to fsync a directory, and the rename itself already happened.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::debug!(dir = %dir.display(), error = %e, "cannot fsync the directory");
        }
    }
}

/// The file's content, or None if it does not exist.
pub(super) fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::Io {
            path: path.into(),
            op: "read",
            reason: format!("{e}; check the file's owner and permissions"),
        }),
    }
}

/// The file's content; `missing` says what to do when it does not exist.
pub(super) fn read(path: &Path, missing: &str) -> Result<String, PkiError> {
    read_opt(path)?.ok_or_else(|| PkiError::Io {
        path: path.into(),
        op: "read",
        reason: format!("it does not exist; {missing}"),
    })
}

/// Warn when a private file can be read by others (say, restored from a backup).
pub(super) fn warn_if_readable_by_others(path: &Path) {
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "a private key file is readable by group or others; run `chmod 600` on it"
            );
        }
    }
}

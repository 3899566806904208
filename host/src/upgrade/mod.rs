//! Software self-upgrade: central asks for a Roost release (version, SHA-256); this
//! host downloads it next to its own binary, verifies the digest, keeps the current
//! binary as `<bin>.prev`, swaps atomically, records the upgrade in
//! `<state>/central/upgrade.json`, arms a guard, and re-executes itself **in the same
//! process** (`execv`, same pid), so its workloads — its children, containerd's shims,
//! VM monitors — keep running and the new daemon re-adopts them through the usual
//! recovery path.
//!
//! The guard ([`guard`]) is the old binary, detached in a session of its own: if the
//! new daemon exits, or is not healthy (recovered and serving) by the deadline, it
//! kills it if alive, puts `<bin>.prev` back and starts the daemon again with the
//! original argv and environment — with central or without it. The daemon then raises
//! `upgrade.rolled-back` and refuses that binary until central asks for another.
//!
//! Only [`HostUpgrader`] (the link's [`Upgrader`]), [`reexec`] and the guard are
//! public; the daemon calls `confirm` once it serves and waits on `restart_requested`.

pub mod guard;
pub mod record;

use record::{UpgradeRecord, UpgradeState};
use roost_federation::link::{
    ReleaseRequest, ReleaseStream, RuntimeAlarm, UpgradeOutcome, Upgrader,
};
use sha2::Digest;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a new daemon has to become healthy unless `--upgrade-deadline` says.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);
/// The alarm for a release that could not be installed (nothing swapped).
pub const ALARM_FAILED: &str = "upgrade.failed";
/// The alarm for a release the host went back from.
pub const ALARM_ROLLED_BACK: &str = "upgrade.rolled-back";
/// The hidden subcommand words that run the guard (`roost host upgrade-guard`).
pub const GUARD_ARGS: [&str; 2] = ["host", "upgrade-guard"];

/// What failed, on which path or release, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// A file could not be read or written.
    #[error("{what} {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// Why, and the fix.
        reason: String,
    },
    /// The download broke off.
    #[error("release {version}: download failed: {reason}; nothing was installed")]
    Download {
        /// The release.
        version: String,
        /// Why.
        reason: String,
    },
    /// The download is not the binary central pinned.
    #[error(
        "release {version}: the download's SHA-256 is {got}, central pinned {want}; refused, nothing was installed"
    )]
    Digest {
        /// The release.
        version: String,
        /// Pinned by central.
        want: String,
        /// Computed.
        got: String,
    },
    /// The download has another size than central said.
    #[error("release {version}: {got} bytes arrived, central said {want}; refused, nothing was installed")]
    Size {
        /// The release.
        version: String,
        /// Said by central.
        want: u64,
        /// Received.
        got: u64,
    },
    /// The guard could not be started.
    #[error("cannot start the upgrade guard ({bin}): {reason}; nothing was installed")]
    Guard {
        /// The binary run as the guard.
        bin: PathBuf,
        /// Why.
        reason: String,
    },
}

impl UpgradeError {
    fn io(path: &Path, what: &'static str, e: &std::io::Error) -> Self {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                " (self-upgrade needs the daemon to write the directory of its binary and its state dir)"
            }
            _ => "",
        };
        Self::Io {
            path: path.to_path_buf(),
            what,
            reason: format!("{e}{hint}"),
        }
    }
}

/// The upgrader's settings.
#[derive(Debug, Clone)]
pub struct UpgradeConfig {
    /// `<state>/central`: where `upgrade.json` lives.
    pub link_dir: PathBuf,
    /// The daemon's own binary (`/proc/self/exe`, resolved at start).
    pub exe: PathBuf,
    /// The daemon's argv, to re-execute with.
    pub argv: Vec<OsString>,
    /// How long a new daemon has to become healthy.
    pub deadline: Duration,
    /// The version built in (`CARGO_PKG_VERSION`).
    pub builtin_version: String,
}

impl UpgradeConfig {
    /// This process's binary and argv.
    pub fn for_this_process(state_dir: &Path, deadline: Duration) -> Result<Self, UpgradeError> {
        let exe = std::env::current_exe()
            .map_err(|e| UpgradeError::io(Path::new("/proc/self/exe"), "cannot resolve", &e))?;
        Ok(Self {
            link_dir: crate::uplink::link_dir(state_dir),
            exe: strip_deleted(exe),
            argv: std::env::args_os().collect(),
            deadline,
            builtin_version: env!("CARGO_PKG_VERSION").into(),
        })
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        let mut s = self.exe.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    }

    /// `<bin>.new`: where a download goes.
    pub fn new_path(&self) -> PathBuf {
        self.with_suffix(".new")
    }

    /// `<bin>.prev`: the binary kept for a rollback.
    pub fn prev_path(&self) -> PathBuf {
        self.with_suffix(".prev")
    }
}

/// `/proc/self/exe` of a binary replaced under a running process reads `… (deleted)`.
fn strip_deleted(p: PathBuf) -> PathBuf {
    match p.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => p,
    }
}

/// The inode of a file (0 if it cannot be read).
fn ino(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| m.ino()).unwrap_or(0)
}

#[derive(Debug, Default)]
struct Inner {
    /// A download or install is under way (or done: the daemon re-executes).
    installing: bool,
    /// The record on disk.
    record: Option<UpgradeRecord>,
    /// The last failure: (sha256 asked for, alarm).
    failed: Option<(String, RuntimeAlarm)>,
    /// `host/NAME`, once the link knows the name.
    entity: String,
}

/// The host's [`Upgrader`].
#[derive(Debug)]
pub struct HostUpgrader {
    cfg: UpgradeConfig,
    running_version: String,
    running_sha256: Option<String>,
    inner: Mutex<Inner>,
    restart: tokio::sync::watch::Sender<bool>,
}

impl HostUpgrader {
    /// Read what the last upgrade left and work out what this daemon runs.
    pub fn open(cfg: UpgradeConfig) -> Arc<Self> {
        let rec = match record::read(&cfg.link_dir) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "upgrade record unreadable; ignored");
                None
            }
        };
        let me = ino(&cfg.exe);
        let (running_version, running_sha256) = match &rec {
            Some(r) if r.state != UpgradeState::RolledBack && r.ino == me => {
                (r.version.clone(), Some(r.sha256.clone()))
            }
            Some(r) if r.state == UpgradeState::RolledBack && r.previous_ino == me => {
                (r.previous.clone(), None)
            }
            _ => (cfg.builtin_version.clone(), None),
        };
        let (restart, _) = tokio::sync::watch::channel(false);
        Arc::new(Self {
            cfg,
            running_version,
            running_sha256,
            inner: Mutex::new(Inner {
                record: rec,
                ..Inner::default()
            }),
            restart,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The version this daemon runs: the release's once it is healthy, else the
    /// built-in one.
    pub fn running_version(&self) -> &str {
        &self.running_version
    }

    /// Name the host for alarms (`host/NAME`).
    pub fn set_host(&self, name: &str) {
        self.lock().entity = format!("host/{name}");
    }

    /// The daemon serves (recovered, socket bound): a pending upgrade is healthy.
    pub fn confirm(&self) {
        let mut g = self.lock();
        let Some(rec) = g.record.as_mut() else { return };
        if rec.state != UpgradeState::Pending || rec.ino != ino(&self.cfg.exe) {
            return;
        }
        rec.state = UpgradeState::Healthy;
        rec.changed_ms = crate::model::now_ms();
        match record::write(&self.cfg.link_dir, rec) {
            Ok(()) => {
                tracing::info!(version = %rec.version, "upgrade healthy: this daemon runs the new release")
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot mark the upgrade healthy; the guard will roll it back")
            }
        }
    }

    /// Resolves once an installed release wants the daemon to re-execute.
    pub async fn restart_requested(&self) {
        let mut rx = self.restart.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// The configuration (for [`reexec`]).
    pub fn config(&self) -> &UpgradeConfig {
        &self.cfg
    }

    /// Download, verify and swap in `req`, arm the guard. Ok = the daemon re-executes.
    async fn install_release(
        &self,
        req: &ReleaseRequest,
        mut data: ReleaseStream,
    ) -> Result<(), UpgradeError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let new = self.cfg.new_path();
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create(true).truncate(true).mode(0o755);
            tokio::fs::File::from_std(
                o.open(&new)
                    .map_err(|e| UpgradeError::io(&new, "cannot create", &e))?,
            )
        };
        let res: Result<(), UpgradeError> = async {
            let mut h = sha2::Sha256::new();
            let mut got: u64 = 0;
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(|reason| UpgradeError::Download {
                    version: req.version.clone(),
                    reason,
                })?;
                got = got.saturating_add(chunk.len() as u64);
                if req.size > 0 && got > req.size {
                    return Err(UpgradeError::Size {
                        version: req.version.clone(),
                        want: req.size,
                        got,
                    });
                }
                h.update(&chunk);
                f.write_all(&chunk)
                    .await
                    .map_err(|e| UpgradeError::io(&new, "cannot write", &e))?;
            }
            if req.size > 0 && got != req.size {
                return Err(UpgradeError::Size {
                    version: req.version.clone(),
                    want: req.size,
                    got,
                });
            }
            let digest = hex::encode(h.finalize());
            if !digest.eq_ignore_ascii_case(&req.sha256) {
                return Err(UpgradeError::Digest {
                    version: req.version.clone(),
                    want: req.sha256.clone(),
                    got: digest,
                });
            }
            f.sync_all()
                .await
                .map_err(|e| UpgradeError::io(&new, "cannot sync", &e))?;
            Ok(())
        }
        .await;
        drop(f);
        if let Err(e) = res {
            let _ = std::fs::remove_file(&new);
            return Err(e);
        }
        let cfg = self.cfg.clone();
        let req = req.clone();
        let previous = self.running_version.clone();
        let rec = tokio::task::spawn_blocking(move || swap(&cfg, &req, previous))
            .await
            .map_err(|e| UpgradeError::Io {
                path: self.cfg.exe.clone(),
                what: "cannot swap",
                reason: format!("the install task ended abnormally: {e}"),
            })??;
        self.lock().record = Some(rec);
        Ok(())
    }
}

/// Keep the current binary as `<bin>.prev`, record the upgrade as pending, arm the
/// guard, and rename `<bin>.new` over `<bin>`. On any failure nothing is swapped.
fn swap(
    cfg: &UpgradeConfig,
    req: &ReleaseRequest,
    previous: String,
) -> Result<UpgradeRecord, UpgradeError> {
    let (bin, new, prev) = (&cfg.exe, cfg.new_path(), cfg.prev_path());
    let dir = bin.parent().unwrap_or(Path::new("/"));
    let undo = |e: UpgradeError| {
        let _ = std::fs::remove_file(&new);
        e
    };
    // `.prev` is the very file that runs now (a hard link; a copy where links fail).
    let mut tmp = prev.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(bin, &tmp).is_err() {
        std::fs::copy(bin, &tmp).map_err(|e| {
            undo(UpgradeError::io(
                &tmp,
                "cannot keep the current binary as",
                &e,
            ))
        })?;
    }
    std::fs::rename(&tmp, &prev).map_err(|e| {
        undo(UpgradeError::io(
            &prev,
            "cannot keep the current binary as",
            &e,
        ))
    })?;
    let now = crate::model::now_ms();
    let rec = UpgradeRecord {
        version: req.version.clone(),
        sha256: req.sha256.to_ascii_lowercase(),
        previous,
        deadline_ms: now + cfg.deadline.as_millis() as u64,
        state: UpgradeState::Pending,
        pid: std::process::id(),
        bin: bin.clone(),
        ino: ino(&new),
        previous_ino: ino(bin),
        reason: None,
        lifted: false,
        changed_ms: now,
    };
    record::write(&cfg.link_dir, &rec).map_err(undo)?;
    let forget = |e: UpgradeError| {
        let _ = std::fs::remove_file(cfg.link_dir.join(record::UPGRADE_FILE));
        undo(e)
    };
    guard::arm(cfg, &prev, &rec).map_err(forget)?;
    if let Err(e) = std::fs::rename(&new, bin) {
        // Stand the guard down: it only acts on a pending record.
        let mut r = rec.clone();
        r.state = UpgradeState::RolledBack;
        r.reason = Some(format!("cannot move the new binary into place: {e}"));
        r.lifted = true;
        let _ = record::write(&cfg.link_dir, &r);
        return Err(undo(UpgradeError::io(bin, "cannot replace", &e)));
    }
    // Swapped: from here on only the guard undoes it.
    if let Err(e) = record::sync_dir(dir) {
        tracing::warn!(error = %e, "the swap may not be durable yet");
    }
    tracing::info!(version = %rec.version, bin = %bin.display(), deadline_ms = cfg.deadline.as_millis() as u64, "release swapped in; re-executing");
    Ok(rec)
}

#[async_trait::async_trait]
impl Upgrader for HostUpgrader {
    fn wants(&self, req: Option<&ReleaseRequest>) -> bool {
        let mut g = self.lock();
        // A rolled-back binary stays refused until central asks for another one.
        let refused = g
            .record
            .as_ref()
            .filter(|r| r.state == UpgradeState::RolledBack && !r.lifted)
            .map(|r| r.sha256.clone());
        if let Some(sha) = refused {
            if req.is_some_and(|q| q.sha256.eq_ignore_ascii_case(&sha)) {
                return false;
            }
            if let Some(r) = g.record.as_mut() {
                r.lifted = true;
                if let Err(e) = record::write(&self.cfg.link_dir, r) {
                    tracing::warn!(error = %e, "cannot record that the rolled-back release is no longer refused");
                }
            }
        }
        let Some(req) = req else {
            g.failed = None;
            return false;
        };
        if g.failed.as_ref().is_some_and(|(sha, _)| *sha != req.sha256) {
            g.failed = None;
        }
        let runs_it = req.version == self.running_version
            && self
                .running_sha256
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&req.sha256));
        if runs_it {
            g.failed = None;
            return false;
        }
        if g.installing {
            return false;
        }
        g.installing = true;
        true
    }

    async fn install(&self, req: ReleaseRequest, data: ReleaseStream) -> UpgradeOutcome {
        match self.install_release(&req, data).await {
            Ok(()) => {
                self.lock().failed = None;
                let _ = self.restart.send(true);
                UpgradeOutcome::Restarting
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "release not installed");
                let mut g = self.lock();
                g.installing = false;
                let entity = g.entity.clone();
                g.failed = Some((
                    req.sha256.clone(),
                    RuntimeAlarm {
                        code: ALARM_FAILED.into(),
                        severity: "major".into(),
                        entity,
                        reason: reason.clone(),
                        raised_ms: crate::model::now_ms(),
                    },
                ));
                UpgradeOutcome::Failed(reason)
            }
        }
    }

    fn alarms(&self) -> Vec<RuntimeAlarm> {
        let g = self.lock();
        let mut v = Vec::new();
        if let Some(r) = g
            .record
            .as_ref()
            .filter(|r| r.state == UpgradeState::RolledBack && !r.lifted)
        {
            v.push(RuntimeAlarm {
                code: ALARM_ROLLED_BACK.into(),
                severity: "major".into(),
                entity: g.entity.clone(),
                reason: format!(
                    "release {} (sha256 {}) rolled back to {}: {}; it is refused until central asks for another release",
                    r.version,
                    r.sha256,
                    r.previous,
                    r.reason.as_deref().unwrap_or("no reason recorded")
                ),
                raised_ms: r.changed_ms,
            });
        }
        if let Some((_, a)) = &g.failed {
            let mut a = a.clone();
            a.entity = g.entity.clone();
            v.push(a);
        }
        v
    }
}

/// Replace this process with `path` and `argv` (same pid, same environment).
/// Returns only on failure.
pub fn execv(path: &Path, argv: &[OsString]) -> std::io::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return std::io::Error::new(std::io::ErrorKind::InvalidInput, "a NUL byte in the path");
    };
    let args: Result<Vec<CString>, _> = argv.iter().map(|a| CString::new(a.as_bytes())).collect();
    let Ok(args) = args else {
        return std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a NUL byte in an argument",
        );
    };
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: `p` and every element of `ptrs` point into CStrings that outlive the
    // call; `ptrs` is NULL-terminated as execv(3) requires. On success it does not
    // return; on failure it changes nothing of ours.
    unsafe {
        libc::execv(p.as_ptr(), ptrs.as_ptr());
    }
    std::io::Error::last_os_error()
}

/// Re-execute the daemon into the swapped binary. If that fails, put `<bin>.prev`
/// back, record the rollback and re-execute the previous binary. Returns only if
/// both fail.
pub fn reexec(cfg: &UpgradeConfig) -> UpgradeError {
    tracing::info!(bin = %cfg.exe.display(), "re-executing into the new release");
    let e = execv(&cfg.exe, &cfg.argv);
    let reason = format!("cannot execute the new binary {}: {e}", cfg.exe.display());
    tracing::error!(error = %reason, "rolling back");
    if let Err(e) = guard::restore(cfg, &reason) {
        tracing::error!(error = %e, "cannot roll back");
    }
    let e = execv(&cfg.exe, &cfg.argv);
    UpgradeError::Io {
        path: cfg.exe.clone(),
        what: "cannot execute",
        reason: format!("{e} (after rolling back: {reason}); start the daemon again by hand"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn sha(b: &[u8]) -> String {
        hex::encode(sha2::Sha256::digest(b))
    }

    /// A "binary" (a shell script exiting `code`) in a temp dir, and an upgrader for it.
    fn setup(code: i32) -> (tempfile::TempDir, Arc<HostUpgrader>) {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("roost");
        std::fs::write(&bin, format!("#!/bin/sh\nexit {code}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let u = HostUpgrader::open(UpgradeConfig {
            link_dir: d.path().join("central"),
            exe: bin,
            argv: vec!["roost".into(), "host".into()],
            deadline: Duration::from_secs(5),
            builtin_version: "0.1.0".into(),
        });
        u.set_host("h1");
        (d, u)
    }

    fn req(body: &[u8]) -> ReleaseRequest {
        ReleaseRequest {
            version: "0.2.0".into(),
            sha256: sha(body),
            size: body.len() as u64,
        }
    }

    fn data(parts: Vec<Result<Vec<u8>, String>>) -> ReleaseStream {
        Box::pin(stream::iter(parts))
    }

    /// Nothing swapped: the binary, no `.new`, no `.prev`, no record.
    fn untouched(d: &Path) {
        assert_eq!(
            std::fs::read_to_string(d.join("roost")).unwrap(),
            "#!/bin/sh\nexit 3\n"
        );
        assert!(!d.join("roost.new").exists());
        assert!(!d.join("central").join(record::UPGRADE_FILE).exists());
    }

    async fn fails(u: &HostUpgrader, r: ReleaseRequest, s: ReleaseStream, want: &str) {
        assert!(u.wants(Some(&r)));
        match u.install(r, s).await {
            UpgradeOutcome::Failed(e) => assert!(e.contains(want), "{e}"),
            o => panic!("{o:?}"),
        }
        let a = u.alarms();
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(
            (
                a[0].code.as_str(),
                a[0].severity.as_str(),
                a[0].entity.as_str()
            ),
            (ALARM_FAILED, "major", "host/h1")
        );
        assert!(a[0].reason.contains(want), "{a:?}");
    }

    #[tokio::test]
    async fn a_wrong_digest_is_refused_and_nothing_is_swapped() {
        let (d, u) = setup(3);
        let mut r = req(b"new binary");
        r.sha256 = sha(b"another");
        fails(
            &u,
            r.clone(),
            data(vec![Ok(b"new binary".to_vec())]),
            "SHA-256",
        )
        .await;
        untouched(d.path());
        assert!(!u.restart.borrow().to_owned());
        // Central asks for something else: the failure's alarm goes.
        assert!(u.wants(Some(&req(b"x"))));
        assert!(u.alarms().is_empty());
    }

    #[tokio::test]
    async fn a_truncated_or_broken_download_is_named() {
        let (d, u) = setup(3);
        let body = b"0123456789";
        fails(
            &u,
            req(body),
            data(vec![Ok(b"0123".to_vec())]),
            "4 bytes arrived, central said 10",
        )
        .await;
        untouched(d.path());
        fails(
            &u,
            req(body),
            data(vec![
                Ok(b"01".to_vec()),
                Err("the download broke off after 2 bytes".into()),
            ]),
            "broke off after 2 bytes",
        )
        .await;
        untouched(d.path());
    }

    #[tokio::test]
    async fn an_unwritable_binary_dir_is_named() {
        let (_d, _) = setup(3);
        let u = HostUpgrader::open(UpgradeConfig {
            link_dir: PathBuf::from("/proc/roost-none/central"),
            exe: PathBuf::from("/proc/roost-none/roost"),
            argv: vec![],
            deadline: Duration::from_secs(5),
            builtin_version: "0.1.0".into(),
        });
        u.set_host("h1");
        fails(
            &u,
            req(b"x"),
            data(vec![Ok(b"x".to_vec())]),
            "/proc/roost-none/roost.new",
        )
        .await;
    }

    #[tokio::test]
    async fn a_guard_that_cannot_start_leaves_nothing_swapped() {
        // The "previous binary" run as the guard is the script: it exits 3.
        let (d, u) = setup(3);
        let body = b"#!/bin/sh\nexit 0\n";
        fails(
            &u,
            req(body),
            data(vec![Ok(body.to_vec())]),
            "upgrade guard",
        )
        .await;
        untouched(d.path());
    }

    #[test]
    fn what_runs_follows_the_record_and_the_binary() {
        let (d, u) = setup(3);
        assert_eq!(u.running_version(), "0.1.0");
        let bin = d.path().join("roost");
        let mut rec = UpgradeRecord {
            version: "0.2.0".into(),
            sha256: sha(b"b"),
            previous: "0.1.5".into(),
            deadline_ms: 0,
            state: UpgradeState::Pending,
            pid: 1,
            bin: bin.clone(),
            ino: ino(&bin),
            previous_ino: 0,
            reason: None,
            lifted: false,
            changed_ms: 1,
        };
        let dir = d.path().join("central");
        record::write(&dir, &rec).unwrap();
        let open = || HostUpgrader::open(u.config().clone());
        // Pending on this very binary: it is the new one; confirm makes it healthy.
        let n = open();
        assert_eq!(n.running_version(), "0.2.0");
        n.confirm();
        assert_eq!(
            record::read(&dir).unwrap().unwrap().state,
            UpgradeState::Healthy
        );
        assert_eq!(open().running_version(), "0.2.0");
        // Another binary than the one installed: the built-in version.
        rec.ino += 1;
        record::write(&dir, &rec).unwrap();
        assert_eq!(open().running_version(), "0.1.0");
        // Rolled back to this binary: the previous version, and that release refused
        // (with an alarm) until central asks for another.
        rec.state = UpgradeState::RolledBack;
        rec.previous_ino = ino(&bin);
        rec.reason = Some("exited".into());
        record::write(&dir, &rec).unwrap();
        let n = open();
        n.set_host("h1");
        assert_eq!(n.running_version(), "0.1.5");
        let refused = ReleaseRequest {
            version: "0.2.0".into(),
            sha256: rec.sha256.clone(),
            size: 1,
        };
        assert!(!n.wants(Some(&refused)));
        let a = n.alarms();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].code, ALARM_ROLLED_BACK);
        assert!(
            a[0].reason.contains("0.2.0") && a[0].reason.contains("exited"),
            "{a:?}"
        );
        assert!(!n.wants(None));
        assert!(
            n.alarms().is_empty(),
            "lifted once central asks for no release"
        );
        assert!(record::read(&dir).unwrap().unwrap().lifted);
        // A release it runs already is not fetched.
        let same = ReleaseRequest {
            version: "0.1.5".into(),
            sha256: sha(b"x"),
            size: 1,
        };
        assert!(!n.wants(Some(&same)));
        // One install at a time.
        assert!(n.wants(Some(&req(b"y"))));
        assert!(!n.wants(Some(&req(b"y"))));
    }

    #[test]
    fn deleted_suffix_is_stripped() {
        assert_eq!(
            strip_deleted(PathBuf::from("/usr/bin/roost (deleted)")),
            PathBuf::from("/usr/bin/roost")
        );
        assert_eq!(strip_deleted(PathBuf::from("/a/b")), PathBuf::from("/a/b"));
    }
}

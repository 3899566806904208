//! The software-upgrade seam of the host's side of the link. Central's `Desired` may
//! name a Roost release (version, SHA-256, size); the link client asks an optional
//! [`Upgrader`] whether to fetch it, downloads it over the same mutual-TLS channel
//! (`FetchRelease`) and hands the stream over. Installing (verify, swap, re-exec, roll
//! back) is the host daemon's concern; an in-memory runtime or a fleet simulator
//! simply has no upgrader.

use super::RuntimeAlarm;
use std::pin::Pin;

/// A release central asks this host to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// The version the host reports once it runs it.
    pub version: String,
    /// SHA-256 (hex) the download must have.
    pub sha256: String,
    /// Size in bytes (0 = not said).
    pub size: u64,
}

impl ReleaseRequest {
    /// The request a `Desired` carries (`None` = no request: keep what runs).
    pub fn of(d: &super::proto::Desired) -> Option<Self> {
        (!d.release_version.is_empty() && !d.release_sha256.is_empty()).then(|| Self {
            version: d.release_version.clone(),
            sha256: d.release_sha256.clone(),
            size: d.release_size,
        })
    }
}

/// A release download, chunk by chunk; an `Err` names what broke (a cut stream
/// included) and ends it.
pub type ReleaseStream = Pin<Box<dyn futures_util::Stream<Item = Result<Vec<u8>, String>> + Send>>;

/// What became of a release request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeOutcome {
    /// Installed: the daemon re-executes into it now (the link ends with it).
    Restarting,
    /// Refused or failed, nothing swapped; an alarm says why.
    Failed(String),
}

/// Installs releases on this host.
#[async_trait::async_trait]
pub trait Upgrader: Send + Sync + std::fmt::Debug + 'static {
    /// Central asks for `req` (`None`: for no release). True if it should be fetched
    /// and installed now; false if the host runs it already, is installing one, or
    /// refuses it (it rolled that very binary back). A request for another release
    /// than a refused one lifts the refusal.
    fn wants(&self, req: Option<&ReleaseRequest>) -> bool;
    /// Verify and install a download of `req`.
    async fn install(&self, req: ReleaseRequest, data: ReleaseStream) -> UpgradeOutcome;
    /// The upgrade alarms active now (`upgrade.failed`, `upgrade.rolled-back`).
    fn alarms(&self) -> Vec<RuntimeAlarm>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_desired_without_a_release_asks_for_none() {
        let mut d = crate::link::proto::Desired::default();
        assert_eq!(ReleaseRequest::of(&d), None);
        d.release_version = "0.2.0".into();
        assert_eq!(ReleaseRequest::of(&d), None, "a version without a digest");
        d.release_sha256 = "ab".repeat(32);
        d.release_size = 7;
        assert_eq!(
            ReleaseRequest::of(&d),
            Some(ReleaseRequest {
                version: "0.2.0".into(),
                sha256: "ab".repeat(32),
                size: 7
            })
        );
    }
}

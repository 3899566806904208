//! CPU wake-up latency while real-time workloads run. Deep CPU idle states add
//! tens to hundreds of microseconds to a wake-up; a PM QoS request of 0 µs on
//! `/dev/cpu_dma_latency` keeps CPUs out of them for as long as the file stays open
//! (what cyclictest and tuned's realtime profiles do). Roost holds it exactly while
//! at least one real-time workload is admitted, so a container (which cannot open
//! the device) still gets it.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

/// The held (or not) PM QoS request.
#[derive(Debug)]
pub struct PmQos {
    path: PathBuf,
    held: Option<File>,
}

impl PmQos {
    /// Requests go to `path` (`/dev/cpu_dma_latency`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            held: None,
        }
    }

    /// Whether the request is held now.
    pub fn held(&self) -> bool {
        self.held.is_some()
    }

    /// Hold the 0 µs request when `want`, drop it otherwise. Idempotent.
    pub fn set(&mut self, want: bool) -> std::io::Result<()> {
        match (want, self.held.is_some()) {
            (true, false) => {
                let mut f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
                // The device takes a binary s32 (µs).
                f.write_all(&0i32.to_ne_bytes())?;
                self.held = Some(f);
                tracing::info!(path = %self.path.display(), "CPU wake-up latency held at 0 µs for real-time workloads");
            }
            (false, true) => {
                self.held = None;
                tracing::info!(path = %self.path.display(), "CPU wake-up latency request released");
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_while_wanted_and_writes_zero() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("qos");
        std::fs::write(&p, b"").unwrap();
        let mut q = PmQos::new(&p);
        q.set(true).unwrap();
        q.set(true).unwrap();
        assert!(q.held());
        assert_eq!(std::fs::read(&p).unwrap(), 0i32.to_ne_bytes());
        q.set(false).unwrap();
        assert!(!q.held());
    }

    #[test]
    fn a_missing_device_is_an_error_not_a_panic() {
        let mut q = PmQos::new("/nonexistent/cpu_dma_latency");
        assert!(q.set(true).is_err());
        assert!(!q.held());
    }
}

//! virtio-blk over a raw file or block device: read, write, flush, get-id; read-only
//! disks; an optional rate limit (bytes/s and ops/s).

pub mod request;

use super::rate_limiter::{RateLimit, RateLimiter};
use super::VirtioDevice;
use request::{Disk, Request};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use virtio_bindings::virtio_blk::{VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::timerfd::TimerFd;

/// The request queue's size.
pub const QUEUE_SIZE: u16 = 256;

/// One disk of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskConfig {
    /// A raw image file or a block device.
    pub path: PathBuf,
    /// Refuse the guest's writes (VIRTIO_BLK_F_RO; writes answer IOERR).
    #[serde(default)]
    pub read_only: bool,
    /// The root disk: first on the bus (`/dev/vda`), with `root=/dev/vda` on the
    /// command line.
    #[serde(default)]
    pub root: bool,
    /// Open with `O_DIRECT` (no host page cache).
    #[serde(default)]
    pub direct: bool,
    /// The ID the guest reads (at most 20 bytes); default `roost-diskN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An I/O rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl DiskConfig {
    /// A read-write disk over `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            read_only: false,
            root: false,
            direct: false,
            id: None,
            rate_limit: None,
        }
    }
}

/// A disk that cannot be opened as asked.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Open failed.
    #[error("disk {path}: cannot open it {mode}; give an existing image file or block device this user may {mode_verb}")]
    Open {
        /// The path.
        path: PathBuf,
        /// `read-only` or `read-write`.
        mode: &'static str,
        /// `read` or `read and write`.
        mode_verb: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its size could not be read or is under one sector.
    #[error("disk {path}: {reason}")]
    Size {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The timer for the rate limit.
    #[error("disk {path}: cannot create its rate-limit timer")]
    Timer {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Open a disk as `cfg` says; returns the file and its size in bytes.
pub fn open_disk(cfg: &DiskConfig) -> Result<(File, u64), BlockError> {
    let mut o = OpenOptions::new();
    o.read(true).write(!cfg.read_only);
    if cfg.direct {
        o.custom_flags(libc::O_DIRECT);
    }
    let (mode, mode_verb) = if cfg.read_only {
        ("read-only", "read")
    } else {
        ("read-write", "read and write")
    };
    let mut f = o.open(&cfg.path).map_err(|source| BlockError::Open {
        path: cfg.path.clone(),
        mode,
        mode_verb,
        source,
    })?;
    let size = f.seek(SeekFrom::End(0)).map_err(|e| BlockError::Size {
        path: cfg.path.clone(),
        reason: format!("cannot read its size: {e}"),
    })?;
    if size < request::SECTOR {
        return Err(BlockError::Size {
            path: cfg.path.clone(),
            reason: format!("{size} bytes is less than one 512-byte sector; give a bigger image"),
        });
    }
    Ok((f, size))
}

/// Counters a test or the metrics endpoint reads.
#[derive(Debug, Default)]
pub struct BlockMetrics {
    /// Requests completed.
    pub requests: AtomicU64,
    /// Data bytes read or written.
    pub bytes: AtomicU64,
    /// Requests answered with an error status.
    pub errors: AtomicU64,
    /// Chains that were no request at all.
    pub bad_chains: AtomicU64,
    /// Times the rate limit held the queue.
    pub throttled: AtomicU64,
}

/// The virtio-blk device.
pub struct Block {
    disk: Disk,
    limiter: Option<RateLimiter>,
    timer: TimerFd,
    throttled: bool,
    queue: Option<Queue>,
    metrics: Arc<BlockMetrics>,
    path: PathBuf,
}

impl Block {
    /// A device over `cfg`, the `index`-th disk of its VM.
    pub fn new(cfg: &DiskConfig, index: usize) -> Result<Self, BlockError> {
        let (file, size) = open_disk(cfg)?;
        let id = cfg
            .id
            .clone()
            .unwrap_or_else(|| format!("roost-disk{index}"));
        Self::with_file(
            file,
            size,
            cfg.read_only,
            &id,
            cfg.rate_limit.as_ref(),
            &cfg.path,
        )
    }

    /// A device over an open file (tests and fuzzing use this).
    pub fn with_file(
        file: File,
        size: u64,
        read_only: bool,
        id: &str,
        limit: Option<&RateLimit>,
        path: &Path,
    ) -> Result<Self, BlockError> {
        let timer = TimerFd::new().map_err(|source| BlockError::Timer {
            path: path.to_path_buf(),
            source: source.into(),
        })?;
        Ok(Self {
            disk: Disk::new(file, size, read_only, id),
            limiter: limit.and_then(RateLimiter::new),
            timer,
            throttled: false,
            queue: None,
            metrics: Arc::default(),
            path: path.to_path_buf(),
        })
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<BlockMetrics> {
        self.metrics.clone()
    }

    /// Process the request queue; returns whether the guest must be interrupted.
    pub fn process(&mut self, mem: &GuestMemoryMmap) -> bool {
        if self.throttled {
            return false;
        }
        let Some(q) = self.queue.as_mut() else {
            return false;
        };
        let m = &self.metrics;
        let mut used = false;
        // Bounded: a used ring laid over the avail ring lets a hostile guest feed the
        // loop from our own writes. A real driver kicks after every batch, and a kick
        // that came in meanwhile wakes us again, so stopping here loses nothing.
        let budget = usize::from(q.size()) * 2;
        let mut n = 0;
        while let Some(chain) = q.pop_descriptor_chain(mem) {
            n += 1;
            if n > budget {
                q.go_to_previous_position();
                break;
            }
            let head = chain.head_index();
            let len = match Request::parse(chain, mem) {
                Ok(req) => {
                    if let Some(rl) = self.limiter.as_mut() {
                        if let Err(wait) = rl.admit(req.data_len()) {
                            q.go_to_previous_position();
                            self.throttled = true;
                            m.throttled.fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = self.timer.reset(wait, None) {
                                tracing::warn!(disk = %self.path.display(), error = %e, "cannot arm the rate-limit timer");
                                self.throttled = false;
                            }
                            break;
                        }
                    }
                    let done = req.execute(&mut self.disk);
                    m.requests.fetch_add(1, Ordering::Relaxed);
                    m.bytes.fetch_add(done.bytes, Ordering::Relaxed);
                    if done.status != 0 {
                        m.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    done.used
                }
                Err(e) => {
                    m.bad_chains.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(disk = %self.path.display(), error = %e, "unusable request chain");
                    0
                }
            };
            // Return the chain even when it was unusable, so the guest gets it back.
            if let Err(e) = q.add_used(mem, head, len) {
                tracing::debug!(disk = %self.path.display(), error = %e, "cannot add to the used ring");
                break;
            }
            used = true;
        }
        used && q.needs_notification(mem).unwrap_or(true)
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }
    fn features(&self) -> u64 {
        let mut f = 1u64 << VIRTIO_BLK_F_FLUSH;
        if self.disk.read_only {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }
    fn config_space(&self) -> Vec<u8> {
        // struct virtio_blk_config: capacity (sectors) first; nothing else offered.
        (self.disk.size / request::SECTOR).to_le_bytes().to_vec()
    }
    fn activate(&mut self, mut queues: Vec<Queue>, _features: u64) {
        self.queue = queues.pop();
    }
    fn reset(&mut self) {
        self.queue = None;
        self.throttled = false;
        let _ = self.timer.clear();
    }
    fn process_queue(&mut self, mem: &GuestMemoryMmap, _index: usize) -> bool {
        self.process(mem)
    }
    fn extra_fds(&self) -> Vec<RawFd> {
        if self.limiter.is_some() {
            vec![self.timer.as_raw_fd()]
        } else {
            Vec::new()
        }
    }
    fn on_fd(&mut self, mem: &GuestMemoryMmap, fd: RawFd) -> bool {
        if fd == self.timer.as_raw_fd() {
            let _ = self.timer.wait();
            self.throttled = false;
            return self.process(mem);
        }
        false
    }
    fn block_metrics(&self) -> Option<Arc<BlockMetrics>> {
        Some(self.metrics.clone())
    }
    fn kind(&self) -> &'static str {
        "blk"
    }
}

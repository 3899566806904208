//! What a VM is made of, and the checks that run before any KVM object exists.
//!
//! Every input a user controls is validated here, so a bad kernel path, a vCPU count of
//! 0 or a CPU the host lacks is one clear error and not a half-built VM.

use crate::virtio::block::DiskConfig;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Fewest and most vCPUs a VM may have.
pub const MIN_VCPUS: u32 = 1;
/// Most vCPUs a VM may have.
pub const MAX_VCPUS: u32 = 64;
/// Smallest guest memory we boot (the boot structures and a tiny kernel fit).
pub const MIN_MEMORY_MIB: u64 = 8;
/// Longest kernel command line we pass (Linux's x86 COMMAND_LINE_SIZE).
pub const MAX_CMDLINE_LEN: usize = 2047;

/// Scheduling policy of real-time vCPU threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RtPolicy {
    /// SCHED_FIFO.
    #[default]
    Fifo,
    /// SCHED_RR.
    Rr,
}

/// Which entry point the kernel is started at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BootProtocol {
    /// PVH when the ELF has a PVH note, otherwise the 64-bit Linux boot protocol.
    #[default]
    Auto,
    /// Always the 64-bit Linux boot protocol (`boot_params` in %rsi).
    Linux,
}

/// Everything needed to build one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// ELF vmlinux (with or without a PVH note) or bzImage.
    pub kernel: PathBuf,
    /// Optional initrd, loaded at the top of low memory.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Number of vCPUs (1–64).
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Host CPUs for the vCPUs: vCPU i runs on `cpus[i % len]`; empty = anywhere.
    pub cpus: Vec<u32>,
    /// Real-time priority (1–99) for the vCPU threads; `None` = normal scheduling.
    pub rt_priority: Option<u32>,
    /// Real-time policy when `rt_priority` is set.
    pub rt_policy: RtPolicy,
    /// Entry point choice.
    pub boot: BootProtocol,
    /// virtio-blk disks.
    #[serde(default)]
    pub disks: Vec<DiskConfig>,
    /// Install a seccomp filter on each vCPU and device thread before the guest runs
    /// (`roost vmm` turns this on; the API threads are the caller's to filter).
    #[serde(default)]
    pub seccomp: bool,
}

impl VmConfig {
    /// A config with defaults: 1 vCPU, 128 MiB, no initrd, empty command line.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            initrd: None,
            cmdline: String::new(),
            vcpus: 1,
            memory_mib: 128,
            cpus: Vec::new(),
            rt_priority: None,
            rt_policy: RtPolicy::Fifo,
            boot: BootProtocol::Auto,
            disks: Vec::new(),
            seccomp: false,
        }
    }
}

/// The kinds of kernel image we load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelFormat {
    /// An ELF executable (vmlinux or a test guest).
    Elf,
    /// A bzImage (the Linux boot protocol's `HdrS` header).
    BzImage,
}

/// What the host offers, read once; injectable so the checks are unit-testable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Total memory of the host in MiB (`MemTotal`).
    pub mem_total_mib: u64,
    /// CPUs this process may run on.
    pub cpus: Vec<u32>,
}

impl HostInfo {
    /// Read `/proc/meminfo` and this process's CPU affinity.
    pub fn probe() -> Result<Self, ConfigError> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| ConfigError::Host {
            what: "read /proc/meminfo".into(),
            source: e,
        })?;
        let mem_total_mib = parse_mem_total_kib(&meminfo)
            .map(|k| k / 1024)
            .ok_or_else(|| ConfigError::Host {
                what: "find MemTotal in /proc/meminfo".into(),
                source: std::io::Error::other("no MemTotal line"),
            })?;
        let cpus = crate::rt::allowed_cpus().map_err(|e| ConfigError::Host {
            what: "read this process's CPU affinity".into(),
            source: e,
        })?;
        Ok(Self {
            mem_total_mib,
            cpus,
        })
    }
}

fn parse_mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A config that cannot run on this host as written. Each names the value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The kernel file cannot be opened.
    #[error("kernel {path}: cannot open it; give the path of an ELF vmlinux or bzImage that exists and is readable")]
    KernelOpen {
        /// The path given.
        path: PathBuf,
        /// Why open failed.
        #[source]
        source: std::io::Error,
    },
    /// The kernel is neither ELF nor bzImage.
    #[error("kernel {path}: not an ELF executable nor a bzImage (no \\x7fELF magic, no HdrS header); give a vmlinux, a bzImage or a guest built with a PVH note")]
    KernelFormat {
        /// The path given.
        path: PathBuf,
    },
    /// The initrd cannot be opened.
    #[error("initrd {path}: cannot open it; give the path of a readable initrd or leave it out")]
    InitrdOpen {
        /// The path given.
        path: PathBuf,
        /// Why open failed.
        #[source]
        source: std::io::Error,
    },
    /// The vCPU count is out of range.
    #[error("vcpus {value}: must be between {MIN_VCPUS} and {MAX_VCPUS}")]
    Vcpus {
        /// The value given.
        value: u32,
    },
    /// Too little memory.
    #[error("memory {value} MiB: too small; give at least {MIN_MEMORY_MIB} MiB")]
    MemoryTooSmall {
        /// The value given.
        value: u64,
    },
    /// More memory than the host has.
    #[error("memory {value} MiB: larger than this host's {host_mib} MiB of RAM; give at most {host_mib} MiB")]
    MemoryTooLarge {
        /// The value given.
        value: u64,
        /// The host's total.
        host_mib: u64,
    },
    /// A pinning target the host lacks.
    #[error("cpus: host CPU {cpu} is not available here (this process may use CPUs {available}); pin to CPUs from that list")]
    CpuMissing {
        /// The CPU asked for.
        cpu: u32,
        /// What is available, as a list.
        available: String,
    },
    /// A CPU list that does not parse.
    #[error("cpus {value:?}: not a CPU list; write it like `0,2-3`")]
    CpuList {
        /// The text given.
        value: String,
    },
    /// Real-time priority out of range.
    #[error("rt priority {value}: must be between 1 and 99")]
    RtPriority {
        /// The value given.
        value: u32,
    },
    /// Command line too long or with characters Linux does not accept.
    #[error("cmdline: {reason}")]
    Cmdline {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A disk list that cannot be.
    #[error("disks: {reason}")]
    Disks {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Something about the host could not be read.
    #[error("cannot {what}")]
    Host {
        /// What was attempted.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// Check everything in `cfg` against `host`; returns the kernel's format.
pub fn validate(cfg: &VmConfig, host: &HostInfo) -> Result<KernelFormat, ConfigError> {
    validate_machine(cfg.vcpus, cfg.memory_mib, host)?;
    validate_pinning(&cfg.cpus, cfg.rt_priority, host)?;
    validate_disks(&cfg.disks)?;
    validate_boot(&cfg.kernel, cfg.initrd.as_deref(), &cfg.cmdline)
}

/// vCPU count and memory size.
pub fn validate_machine(vcpus: u32, memory_mib: u64, host: &HostInfo) -> Result<(), ConfigError> {
    if !(MIN_VCPUS..=MAX_VCPUS).contains(&vcpus) {
        return Err(ConfigError::Vcpus { value: vcpus });
    }
    if memory_mib < MIN_MEMORY_MIB {
        return Err(ConfigError::MemoryTooSmall { value: memory_mib });
    }
    if memory_mib > host.mem_total_mib {
        return Err(ConfigError::MemoryTooLarge {
            value: memory_mib,
            host_mib: host.mem_total_mib,
        });
    }
    Ok(())
}

/// Pinning targets and real-time priority.
pub fn validate_pinning(
    cpus: &[u32],
    rt_priority: Option<u32>,
    host: &HostInfo,
) -> Result<(), ConfigError> {
    for &cpu in cpus {
        if !host.cpus.contains(&cpu) {
            return Err(ConfigError::CpuMissing {
                cpu,
                available: format_cpu_list(&host.cpus),
            });
        }
    }
    if let Some(p) = rt_priority {
        if !(1..=99).contains(&p) {
            return Err(ConfigError::RtPriority { value: p });
        }
    }
    Ok(())
}

/// The disk list: how many, one root at most, IDs that fit. (Each disk is opened when
/// the VM is built; an error there names the path.)
pub fn validate_disks(disks: &[DiskConfig]) -> Result<(), ConfigError> {
    let max = crate::virtio::MAX_DEVICES;
    if disks.len() > max {
        return Err(ConfigError::Disks {
            reason: format!(
                "{} disks; a VM has room for {max} virtio devices",
                disks.len()
            ),
        });
    }
    if disks.iter().filter(|d| d.root).count() > 1 {
        return Err(ConfigError::Disks {
            reason: "more than one disk has `root`; mark one disk as the root".into(),
        });
    }
    for d in disks {
        if let Some(id) = &d.id {
            if id.len() > 20 || !id.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::Disks {
                    reason: format!("id {id:?}: give at most 20 printable ASCII characters"),
                });
            }
        }
        if d.path.as_os_str().is_empty() {
            return Err(ConfigError::Disks {
                reason: "a disk has an empty path; give an image file or block device".into(),
            });
        }
    }
    Ok(())
}

/// Kernel, initrd and command line; returns the kernel's format.
pub fn validate_boot(
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
) -> Result<KernelFormat, ConfigError> {
    validate_cmdline(cmdline)?;
    let format = kernel_format(kernel)?;
    if let Some(initrd) = initrd {
        File::open(initrd).map_err(|e| ConfigError::InitrdOpen {
            path: initrd.to_path_buf(),
            source: e,
        })?;
    }
    Ok(format)
}

fn validate_cmdline(s: &str) -> Result<(), ConfigError> {
    if s.len() > MAX_CMDLINE_LEN {
        return Err(ConfigError::Cmdline {
            reason: format!(
                "{} bytes is longer than {MAX_CMDLINE_LEN}; shorten it",
                s.len()
            ),
        });
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(ConfigError::Cmdline {
            reason: format!("character {c:?} is not printable ASCII; remove it"),
        });
    }
    Ok(())
}

/// Look at the first bytes of `path`: ELF or bzImage.
pub fn kernel_format(path: &Path) -> Result<KernelFormat, ConfigError> {
    let mut f = File::open(path).map_err(|e| ConfigError::KernelOpen {
        path: path.to_path_buf(),
        source: e,
    })?;
    if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(ConfigError::KernelOpen {
            path: path.to_path_buf(),
            source: std::io::Error::other("it is a directory"),
        });
    }
    let mut head = Vec::with_capacity(0x210);
    f.by_ref()
        .take(0x210)
        .read_to_end(&mut head)
        .map_err(|e| ConfigError::KernelOpen {
            path: path.to_path_buf(),
            source: e,
        })?;
    format_of(&head).ok_or_else(|| ConfigError::KernelFormat {
        path: path.to_path_buf(),
    })
}

fn format_of(head: &[u8]) -> Option<KernelFormat> {
    // ELF64, little-endian, x86_64.
    if head.len() >= 20 && head[..4] == *b"\x7fELF" && head[4] == 2 && head[18] == 62 {
        return Some(KernelFormat::Elf);
    }
    if head.len() >= 0x206 && head[0x1fe..0x200] == [0x55, 0xaa] && head[0x202..0x206] == *b"HdrS" {
        return Some(KernelFormat::BzImage);
    }
    None
}

/// Parse `0,2-3` into `[0, 2, 3]` (sorted, no duplicates kept out: order is the user's).
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, ConfigError> {
    let bad = || ConfigError::CpuList {
        value: s.to_string(),
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.trim().parse().map_err(|_| bad())?;
                let b: u32 = b.trim().parse().map_err(|_| bad())?;
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// `[0,1,2,5]` → `0-2,5`.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut v = cpus.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn host() -> HostInfo {
        HostInfo {
            mem_total_mib: 1024,
            cpus: vec![0, 1],
        }
    }

    fn elf_file() -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[18] = 62;
        f.write_all(&h).unwrap();
        f
    }

    #[test]
    fn cpu_lists_parse_and_format() {
        assert_eq!(parse_cpu_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("").is_err());
        assert_eq!(format_cpu_list(&[0, 1, 2, 5]), "0-2,5");
        assert_eq!(format_cpu_list(&[]), "none");
    }

    #[test]
    fn formats_are_recognised_by_magic() {
        let mut bz = vec![0u8; 0x210];
        bz[0x1fe] = 0x55;
        bz[0x1ff] = 0xaa;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(format_of(&bz), Some(KernelFormat::BzImage));
        assert_eq!(format_of(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn each_bad_value_is_named() {
        let k = elf_file();
        let mut c = VmConfig::new(k.path());
        assert_eq!(validate(&c, &host()).unwrap(), KernelFormat::Elf);
        c.vcpus = 0;
        assert!(validate(&c, &host())
            .unwrap_err()
            .to_string()
            .contains("vcpus 0"));
        c.vcpus = 65;
        assert!(validate(&c, &host())
            .unwrap_err()
            .to_string()
            .contains("vcpus 65"));
        c.vcpus = 1;
        c.memory_mib = 4096;
        let e = validate(&c, &host()).unwrap_err().to_string();
        assert!(e.contains("4096") && e.contains("1024"), "{e}");
        c.memory_mib = 64;
        c.cpus = vec![7];
        let e = validate(&c, &host()).unwrap_err().to_string();
        assert!(e.contains("CPU 7") && e.contains("0-1"), "{e}");
        c.cpus = vec![1];
        c.rt_priority = Some(100);
        assert!(validate(&c, &host()).is_err());
        c.rt_priority = Some(10);
        c.cmdline = "a\nb".into();
        assert!(validate(&c, &host()).is_err());
        c.cmdline = "console=ttyS0".into();
        c.kernel = "/nonexistent/vmlinux".into();
        assert!(validate(&c, &host())
            .unwrap_err()
            .to_string()
            .contains("/nonexistent/vmlinux"));
    }

    #[test]
    fn meminfo_parses() {
        assert_eq!(
            parse_mem_total_kib("MemTotal:       24000000 kB\nMemFree: 1 kB\n"),
            Some(24_000_000)
        );
        assert_eq!(parse_mem_total_kib("nothing"), None);
    }
}

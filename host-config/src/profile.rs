//! The host profile an operator writes (TOML). Everything is optional; what is left
//! out is derived from the topology (see [`crate::plan`]).
//!
//! ```toml
//! [cpu]
//! platform = "0"          # daemon, containerd, shims, VM monitor helper threads
//! shared = "2-3"          # millicores for shared workloads; whole cores for dedicated
//! isolated = "1"          # real-time workloads only (should match isolcpus=)
//! share_platform = false  # small hosts: let shared workloads use platform cores too
//! full_physical_cores = false  # dedicated/real-time get whole SMT cores only
//!
//! [memory]
//! reserved_mib = 1024     # kept back for the host
//!
//! [hugepages]
//! "2M" = 512              # pages per size, taken out of workload memory
//!
//! [realtime]
//! period_us = 1000000
//! budget_us = 900000            # cpu.rt_runtime_us for Roost's whole rt tree
//! workload_budget_us = 900000   # default per real-time workload
//!
//! [limits]
//! max_workloads = 256
//! ```

use crate::cpuset::CpuSet;
use crate::plan::Problem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A profile that cannot be read, parsed or used on this host.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read host profile {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML did not parse or has fields of the wrong shape.
    #[error("host profile {origin}: {message}")]
    Parse {
        /// File name or `<string>`.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The profile parses but cannot work on this host.
    #[error("host profile {origin} is not usable here: {}", join(problems))]
    Invalid {
        /// File name or `built-in default`.
        origin: String,
        /// Every problem found, each naming its field.
        problems: Vec<Problem>,
    },
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The whole profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The CPU partition.
    #[serde(default)]
    pub cpu: CpuSection,
    /// Memory kept back for the host.
    #[serde(default)]
    pub memory: MemorySection,
    /// Hugepages per page size (`"2M"`, `"1G"`, `"2048kB"`) → pages.
    #[serde(default)]
    pub hugepages: BTreeMap<String, u64>,
    /// Real-time budgets.
    #[serde(default)]
    pub realtime: RealtimeSection,
    /// Limits.
    #[serde(default)]
    pub limits: LimitsSection,
}

/// `[cpu]`: which CPUs belong to which pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSection {
    /// Platform CPUs: the daemon, containerd, shims, VM monitor helper threads.
    pub platform: Option<CpuSet>,
    /// Shared application CPUs (dedicated workloads take whole cores out of these).
    pub shared: Option<CpuSet>,
    /// Isolated CPUs for real-time workloads.
    pub isolated: Option<CpuSet>,
    /// Let shared workloads also run on the platform CPUs (hosts with few cores).
    #[serde(default)]
    pub share_platform: bool,
    /// Dedicated and real-time workloads get whole physical cores (all SMT threads).
    #[serde(default)]
    pub full_physical_cores: bool,
}

/// `[memory]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySection {
    /// MiB kept back for the host (default: an eighth of memory, at most 1024).
    pub reserved_mib: Option<u64>,
}

/// `[realtime]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeSection {
    /// `cpu.rt_period_us` of Roost's cgroups (default: the kernel's).
    pub period_us: Option<u64>,
    /// `cpu.rt_runtime_us` of Roost's whole tree, shared by all real-time workloads.
    pub budget_us: Option<u64>,
    /// Default budget of one real-time workload.
    pub workload_budget_us: Option<u64>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Most workloads admitted at once (default 1024).
    pub max_workloads: Option<u32>,
}

impl Profile {
    /// Parse TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ProfileError> {
        toml::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_string(),
            message: {
                // The first line says where ("TOML parse error at line 2, column 12"),
                // the offending line names the field, `message()` says what.
                let full = e.to_string();
                let at = full.lines().next().unwrap_or("TOML parse error");
                let line = e
                    .span()
                    .and_then(|sp| {
                        let start = text.get(..sp.start)?.rfind('\n').map_or(0, |i| i + 1);
                        let end = text
                            .get(sp.start..)?
                            .find('\n')
                            .map_or(text.len(), |i| sp.start + i);
                        text.get(start..end)
                    })
                    .map(|l| format!(" (`{}`)", l.trim()))
                    .unwrap_or_default();
                format!("{at}{line}: {}", e.message().trim())
            },
        })
    }

    /// Read and parse a file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }
}

/// `"2M"`, `"2MiB"`, `"1G"`, `"2048kB"`, `"2048"` (KiB) → KiB.
pub fn parse_page_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower
        .strip_suffix("gib")
        .or_else(|| lower.strip_suffix("gb"))
        .or_else(|| lower.strip_suffix('g'))
    {
        (n, 1024 * 1024)
    } else if let Some(n) = lower
        .strip_suffix("mib")
        .or_else(|| lower.strip_suffix("mb"))
        .or_else(|| lower.strip_suffix('m'))
    {
        (n, 1024)
    } else if let Some(n) = lower
        .strip_suffix("kib")
        .or_else(|| lower.strip_suffix("kb"))
        .or_else(|| lower.strip_suffix('k'))
    {
        (n, 1)
    } else {
        (lower.as_str(), 1)
    };
    let v: u64 = num.trim().parse().ok()?;
    v.checked_mul(mult).filter(|k| *k > 0)
}

/// KiB → `2M` / `1G` / `64K`.
pub fn page_size_name(kib: u64) -> String {
    if kib.is_multiple_of(1024 * 1024) {
        format!("{}G", kib / (1024 * 1024))
    } else if kib.is_multiple_of(1024) {
        format!("{}M", kib / 1024)
    } else {
        format!("{kib}K")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_profile() {
        let p = Profile::parse(
            r#"
            [cpu]
            platform = "0"
            shared = "2-3"
            isolated = "1"
            full_physical_cores = true
            [memory]
            reserved_mib = 512
            [hugepages]
            "2M" = 64
            [realtime]
            budget_us = 800000
            [limits]
            max_workloads = 10
            "#,
            "test",
        )
        .unwrap();
        assert_eq!(p.cpu.platform.unwrap().to_string(), "0");
        assert_eq!(p.cpu.shared.unwrap().to_string(), "2-3");
        assert!(p.cpu.full_physical_cores);
        assert_eq!(p.memory.reserved_mib, Some(512));
        assert_eq!(p.hugepages.get("2M"), Some(&64));
        assert_eq!(p.realtime.budget_us, Some(800_000));
        assert_eq!(p.limits.max_workloads, Some(10));
    }

    #[test]
    fn empty_profile_is_all_defaults() {
        assert_eq!(Profile::parse("", "x").unwrap(), Profile::default());
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let e = Profile::parse("[cpu]\nplatform = \"0-x\"\n", "p.toml").unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("p.toml") && s.contains("`0-x`") && s.contains("platform"),
            "{s}"
        );
        let e = Profile::parse("[cpu]\nisolate = \"1\"\n", "p.toml").unwrap_err();
        assert!(e.to_string().contains("isolate"), "{e}");
        let e = Profile::parse("[memory]\nreserved_mib = -1\n", "p.toml").unwrap_err();
        assert!(e.to_string().contains("reserved_mib"), "{e}");
    }

    #[test]
    fn load_names_a_missing_file() {
        let e = Profile::load(Path::new("/nonexistent/roost.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/roost.toml"), "{e}");
    }

    #[test]
    fn page_sizes() {
        assert_eq!(parse_page_size("2M"), Some(2048));
        assert_eq!(parse_page_size("2MiB"), Some(2048));
        assert_eq!(parse_page_size("1G"), Some(1_048_576));
        assert_eq!(parse_page_size("2048kB"), Some(2048));
        assert_eq!(parse_page_size("huge"), None);
        assert_eq!(parse_page_size("0M"), None);
        assert_eq!(page_size_name(2048), "2M");
        assert_eq!(page_size_name(1_048_576), "1G");
    }
}

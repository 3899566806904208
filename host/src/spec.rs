//! The workload spec: what a user submits (`apiVersion: roost.dev/v1`, `kind: Workload`).
//!
//! YAML and JSON share one schema. Parsing and validation live in `validate.rs`; the
//! types here only describe the shape (and generate the JSON schema for OpenAPI).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The only API version this daemon understands.
pub const API_VERSION: &str = "roost.dev/v1";
/// The only kind this daemon understands.
pub const KIND: &str = "Workload";

/// A workload as submitted: a VM, a container or a mock process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// Must be `roost.dev/v1`.
    pub api_version: String,
    /// Must be `Workload`.
    pub kind: String,
    /// Name and labels.
    pub metadata: Metadata,
    /// What to run and how.
    pub spec: WorkloadSpec,
}

/// Name and labels of a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// DNS-label style: 1–63 chars of `a-z`, `0-9` and `-`, starting with a letter
    /// and not ending with `-`.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Free-form key/value labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Which driver runs the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// A KVM microVM run by `roost vmm`.
    Vm,
    /// A container run by containerd.
    Container,
    /// A plain host process that sleeps, logs and exits as told (for tests and demos).
    Mock,
}

impl DriverKind {
    /// The name used in the spec and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vm => "vm",
            Self::Container => "container",
            Self::Mock => "mock",
        }
    }
}

/// What to run and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSpec {
    /// `vm`, `container` or `mock`; the matching section must be present.
    pub driver: DriverKind,
    /// Container settings (driver `container`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerSpec>,
    /// VM settings (driver `vm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmSpec>,
    /// Mock behaviour (driver `mock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockSpec>,
    /// CPU, memory and real-time requests.
    #[serde(default)]
    pub resources: Resources,
    /// What to do when the workload exits.
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Seconds between the polite stop and the forced kill (default 10, at most 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 3600))]
    pub stop_grace_seconds: Option<u32>,
}

/// A container to run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    /// Image reference, e.g. `docker.io/library/busybox:latest` or a digest.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Replaces the image's entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Replaces the image's cmd.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory inside the container (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `uid`, `uid:gid`, or a user name from the image's /etc/passwd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Bind mounts from the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// `host` (the host's network, the default) or `bridge` (a network namespace of
    /// its own on the host's bridge, through the CNI plugins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkMode>,
    /// Ports published on the host (needs `network: bridge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
}

/// A container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The host's network namespace.
    #[default]
    Host,
    /// Its own namespace on Roost's bridge (an address from host-local IPAM).
    Bridge,
}

/// A published port: connections to `hostPort` on the host reach `containerPort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSpec {
    /// Port on the host (1-65535).
    #[schemars(range(min = 1, max = 65535))]
    pub host_port: u16,
    /// Port inside the container (1-65535).
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: u16,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A bind mount from the host into a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    /// Absolute host path; must exist.
    pub source: String,
    /// Absolute path inside the container.
    pub destination: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A microVM to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmSpec {
    /// Absolute path of the kernel (ELF vmlinux with or without a PVH note, or bzImage).
    pub kernel: String,
    /// Absolute path of an initrd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// Kernel command line (at most 2048 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub cmdline: Option<String>,
    /// Number of vCPUs, 1–64 (default 1).
    #[serde(default = "default_vcpus")]
    #[schemars(range(min = 1, max = 64))]
    pub vcpus: u32,
    /// Guest memory in MiB, 2–1048576 (default 128).
    #[serde(default = "default_vm_memory", rename = "memoryMiB")]
    #[schemars(range(min = 2, max = 1_048_576))]
    pub memory_mib: u64,
    /// virtio-blk disks, at most 11. The root disk (at most one) is the guest's
    /// `/dev/vda`, and the command line gets `root=/dev/vda`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 11))]
    pub disks: Vec<VmDisk>,
}

/// One disk of a VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmDisk {
    /// Absolute path of a raw image file or block device on the host.
    #[schemars(length(min = 1))]
    pub path: String,
    /// The guest may only read it (its writes fail with an I/O error).
    #[serde(default)]
    pub read_only: bool,
    /// The guest's root disk.
    #[serde(default)]
    pub root: bool,
    /// An I/O rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<DiskRateLimit>,
}

/// A disk's I/O rate limit (token buckets holding a tenth of a second's worth).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskRateLimit {
    /// Bytes per second (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub bytes_per_sec: Option<u64>,
    /// Requests per second (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub ops_per_sec: Option<u64>,
}

fn default_vcpus() -> u32 {
    1
}
/// Guest memory of a VM whose spec does not say (MiB).
pub const DEFAULT_VM_MEMORY_MIB: u64 = 128;

fn default_vm_memory() -> u64 {
    DEFAULT_VM_MEMORY_MIB
}

/// How the mock driver behaves: a host process that logs ticks (1 s apart, 5 s after
/// the first five), exits as told, and can ignore the polite stop.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MockSpec {
    /// Exit after this many seconds, at most a year (absent = run until stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 31_536_000))]
    pub run_seconds: Option<u64>,
    /// Exit code when `runSeconds` elapse (0–255).
    #[serde(default)]
    #[schemars(range(min = 0, max = 255))]
    pub exit_code: i32,
    /// Make `start` fail (to test restart policies).
    #[serde(default)]
    pub fail_start: bool,
    /// Ignore the polite stop, so only the forced kill ends it.
    #[serde(default)]
    pub ignore_stop: bool,
}

/// CPU policy of a workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CpuPolicy {
    /// Millicores from the shared pool.
    #[default]
    Shared,
    /// Whole cores, exclusively.
    Dedicated,
}

/// Real-time scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RtPolicy {
    /// SCHED_FIFO.
    Fifo,
    /// SCHED_RR.
    Rr,
}

/// A real-time request: runs on isolated cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Realtime {
    /// `fifo` or `rr`.
    pub policy: RtPolicy,
    /// 1–99.
    #[schemars(range(min = 1, max = 99))]
    pub priority: u32,
}

/// Resource requests.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Shared CPU as millicores (`"500m"`) or cores (`"2"`, `"0.5"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Whole cores (dedicated or real-time workloads: at least 1), at most 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1024))]
    pub cores: Option<u32>,
    /// `shared` (default) or `dedicated`.
    #[serde(default)]
    pub cpu_policy: CpuPolicy,
    /// Real-time policy and priority; implies isolated cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realtime: Option<Realtime>,
    /// Memory limit in MiB (at least 1; absent = no limit).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "memoryMiB")]
    #[schemars(range(min = 1))]
    pub memory_mib: Option<u64>,
}

/// What to do when a workload exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whatever the exit status (with backoff).
    #[default]
    Always,
    /// Restart only after a non-zero exit or a crash.
    OnFailure,
    /// Never restart.
    Never,
}

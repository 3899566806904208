//! The OCI runtime spec for one container, built from Roost's run request and the
//! image's defaults. Pure functions: no I/O, unit-tested.

use crate::image::{ImageConfig, User};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The default PATH when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// CFS period used for quotas.
pub const CFS_PERIOD_US: u64 = 100_000;
/// rt period Roost uses (the kernel default).
pub const RT_PERIOD_US: u64 = 1_000_000;

/// A bind mount from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Host path.
    pub source: String,
    /// Path in the container.
    pub destination: String,
    /// Read-only.
    pub read_only: bool,
}

/// Real-time policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtPolicy {
    /// SCHED_FIFO.
    Fifo,
    /// SCHED_RR.
    Rr,
}

/// Resources the scheduler granted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// cpuset cpus (empty = any).
    pub cpus: Vec<u32>,
    /// cpuset mems (empty = any).
    pub mems: Vec<u32>,
    /// Shared-pool millicores (→ shares and a CFS quota).
    pub millicores: Option<u32>,
    /// Memory limit, bytes.
    pub memory_bytes: Option<i64>,
    /// pids limit.
    pub pids: Option<i64>,
    /// Real-time policy and priority, set on the processes after start.
    pub realtime: Option<(RtPolicy, u32)>,
    /// `cpu.rt_runtime_us` for the container's cgroup.
    pub rt_runtime_us: Option<u64>,
}

/// What to run: the container-neutral request the driver builds from a workload.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// Container id (`name-N`).
    pub id: String,
    /// Image reference.
    pub image: String,
    /// Replaces the image's entrypoint.
    pub command: Vec<String>,
    /// Replaces the image's cmd.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// User spec.
    pub user: Option<String>,
    /// Bind mounts.
    pub mounts: Vec<BindMount>,
    /// Granted resources.
    pub resources: Resources,
    /// cgroup path relative to each controller root (absolute form, `/roost/...`).
    pub cgroup_path: String,
    /// File that gets stdout and stderr.
    pub log_path: PathBuf,
    /// Labels put on the containerd container (Roost finds its own by them).
    pub labels: BTreeMap<String, String>,
    /// A network namespace to join (made by [`crate::cni`]); none = the host's network.
    pub netns: Option<PathBuf>,
}

/// pid, ipc, uts and mount namespaces of its own; the network namespace at `netns`
/// when given (its own network), else none (the host's network).
fn namespaces(netns: Option<&std::path::Path>) -> serde_json::Value {
    let mut ns = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if let Some(p) = netns {
        ns.push(json!({"type": "network", "path": p}));
    }
    serde_json::Value::Array(ns)
}

/// The process argv: Docker's rule — a given command replaces the entrypoint and drops
/// the image's cmd; given args replace the cmd.
pub fn argv(run: &RunSpec, image: &ImageConfig) -> Vec<String> {
    let rc = image.config.clone().unwrap_or_default();
    let entry = if run.command.is_empty() {
        rc.entrypoint.unwrap_or_default()
    } else {
        run.command.clone()
    };
    let cmd = if !run.args.is_empty() {
        run.args.clone()
    } else if run.command.is_empty() {
        rc.cmd.unwrap_or_default()
    } else {
        Vec::new()
    };
    entry.into_iter().chain(cmd).collect()
}

/// The environment: the image's, then a default PATH, then the workload's.
pub fn env(run: &RunSpec, image: &ImageConfig) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    fn set(out: &mut Vec<(String, String)>, k: &str, v: &str) {
        if let Some(e) = out.iter_mut().find(|(ek, _)| ek == k) {
            e.1 = v.to_string();
        } else {
            out.push((k.to_string(), v.to_string()));
        }
    }
    for kv in image
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default()
    {
        if let Some((k, v)) = kv.split_once('=') {
            set(&mut out, k, v);
        }
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        set(&mut out, "PATH", DEFAULT_PATH);
    }
    for (k, v) in &run.env {
        set(&mut out, k, v);
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The PATH the process will see.
pub fn path_env(env: &[String]) -> String {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string()
}

fn list(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The linux.resources section.
pub fn resources(r: &Resources) -> Value {
    let mut cpu = serde_json::Map::new();
    if let Some(m) = r.millicores {
        // 1024 shares per core, and a hard quota at the granted share.
        cpu.insert("shares".into(), json!(u64::from(m).max(2) * 1024 / 1000));
        cpu.insert("quota".into(), json!(u64::from(m) * CFS_PERIOD_US / 1000));
        cpu.insert("period".into(), json!(CFS_PERIOD_US));
    }
    if !r.cpus.is_empty() {
        cpu.insert("cpus".into(), json!(list(&r.cpus)));
    }
    if !r.mems.is_empty() {
        cpu.insert("mems".into(), json!(list(&r.mems)));
    }
    if let Some(rt) = r.rt_runtime_us {
        cpu.insert("realtimeRuntime".into(), json!(rt));
        cpu.insert("realtimePeriod".into(), json!(RT_PERIOD_US));
    }
    let mut res = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "cpu": cpu,
    });
    if let Some(m) = r.memory_bytes {
        // swap = limit: no swap beyond the memory limit, so an overrun is an OOM kill.
        res["memory"] = json!({"limit": m, "swap": m});
    }
    res["pids"] = json!({"limit": r.pids.unwrap_or(4096)});
    res
}

/// The whole runtime spec.
pub fn runtime_spec(
    run: &RunSpec,
    image: &ImageConfig,
    user: User,
    args: Vec<String>,
    env: Vec<String>,
) -> Value {
    let cwd = run
        .working_dir
        .clone()
        .or_else(|| image.config.as_ref().and_then(|c| c.working_dir.clone()))
        .filter(|w| w.starts_with('/'))
        .unwrap_or_else(|| "/".into());
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for m in &run.mounts {
        let mut opts = vec!["rbind", "rprivate"];
        opts.push(if m.read_only { "ro" } else { "rw" });
        mounts.push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": opts}));
    }
    // Real-time containers may lock their memory (a control loop that page-faults
    // misses deadlines): CAP_IPC_LOCK, which lifts RLIMIT_MEMLOCK (raising that
    // rlimit instead is refused: runc's hard limit is containerd's). Their memory
    // limit still bounds what they can lock.
    let mut caps: Vec<&str> = CAPS.to_vec();
    if run.resources.realtime.is_some() {
        caps.push("CAP_IPC_LOCK");
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": user.uid, "gid": user.gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": run.id,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": run.cgroup_path,
            "resources": resources(&run.resources),
            "namespaces": namespaces(run.netns.as_deref()),
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::RunConfig;

    fn image() -> ImageConfig {
        ImageConfig {
            config: Some(RunConfig {
                entrypoint: Some(vec!["/bin/ep".into()]),
                cmd: Some(vec!["default".into()]),
                env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
                working_dir: Some("/work".into()),
                user: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn argv_follows_docker_rules() {
        let mut r = RunSpec::default();
        assert_eq!(argv(&r, &image()), vec!["/bin/ep", "default"]);
        r.args = vec!["x".into()];
        assert_eq!(argv(&r, &image()), vec!["/bin/ep", "x"]);
        r.args.clear();
        r.command = vec!["sh".into(), "-c".into()];
        assert_eq!(argv(&r, &image()), vec!["sh", "-c"]);
    }

    #[test]
    fn env_merges_image_then_workload() {
        let mut r = RunSpec::default();
        r.env.insert("A".into(), "2".into());
        r.env.insert("B".into(), "3".into());
        assert_eq!(env(&r, &image()), vec!["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(
            env(&RunSpec::default(), &ImageConfig::default())[0],
            format!("PATH={DEFAULT_PATH}")
        );
    }

    #[test]
    fn resources_carry_the_placement() {
        let r = Resources {
            cpus: vec![1, 3],
            mems: vec![0],
            millicores: Some(500),
            memory_bytes: Some(64 << 20),
            pids: Some(100),
            realtime: None,
            rt_runtime_us: Some(50_000),
        };
        let v = resources(&r);
        assert_eq!(v["cpu"]["cpus"], "1,3");
        assert_eq!(v["cpu"]["mems"], "0");
        assert_eq!(v["cpu"]["quota"], 50_000);
        assert_eq!(v["cpu"]["shares"], 512);
        assert_eq!(v["cpu"]["realtimeRuntime"], 50_000);
        assert_eq!(v["memory"]["limit"], 64 << 20);
        assert_eq!(v["pids"]["limit"], 100);
    }

    #[test]
    fn spec_has_user_cwd_cgroup_and_mounts() {
        let r = RunSpec {
            id: "web-1".into(),
            cgroup_path: "/roost/containers/web-1".into(),
            mounts: vec![BindMount {
                source: "/srv".into(),
                destination: "/data".into(),
                read_only: true,
            }],
            ..Default::default()
        };
        let s = runtime_spec(
            &r,
            &image(),
            User {
                uid: 1000,
                gid: 1001,
            },
            vec!["a".into()],
            vec![],
        );
        assert_eq!(s["process"]["user"]["uid"], 1000);
        assert_eq!(s["process"]["cwd"], "/work");
        assert_eq!(s["linux"]["cgroupsPath"], "/roost/containers/web-1");
        let last = s["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["destination"], "/data");
        assert!(last["options"].as_array().unwrap().contains(&json!("ro")));
    }

    #[test]
    fn only_realtime_containers_may_lock_memory() {
        let user = User { uid: 0, gid: 0 };
        let plain = runtime_spec(&RunSpec::default(), &image(), user, vec![], vec![]);
        let caps = |s: &Value| s["process"]["capabilities"]["effective"].clone();
        assert!(!caps(&plain)
            .as_array()
            .unwrap()
            .contains(&json!("CAP_IPC_LOCK")));
        let mut r = RunSpec::default();
        r.resources.realtime = Some((RtPolicy::Fifo, 80));
        let rt = runtime_spec(&r, &image(), user, vec![], vec![]);
        assert!(caps(&rt)
            .as_array()
            .unwrap()
            .contains(&json!("CAP_IPC_LOCK")));
    }
}

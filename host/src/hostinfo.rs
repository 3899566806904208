//! What the host tells central about itself beyond its workloads (link protocol 2):
//! the CPU partition with who holds each CPU, a slice of a workload's log, and the
//! figures of a light latency probe the daemon runs now and then.

use crate::admission::HostCapacity;
use roost_federation::link::{CpuCore, CpuPartition, LatencySample, LogSlice};
use roost_host_config::CpuSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The host's CPUs, each with its role and the workloads placed on it, from
/// admission's view. Roles: `platform` and `isolated` as the profile says; a CPU of
/// the shared pool held whole by a non-real-time workload is `dedicated`; the rest of
/// the pool `shared`; a CPU in no pool `unassigned`.
pub fn cpu_partition(cap: &HostCapacity) -> CpuPartition {
    let t = &cap.topology;
    let set = |k: &str| {
        t.get(k)
            .and_then(|v| v.as_str())
            .and_then(|s| CpuSet::parse(s).ok())
    };
    let scheduler = t.get("backend").and_then(|v| v.as_str()) == Some("roost-scheduler");
    let online: Vec<u32> = match set("online") {
        Some(s) => s.iter().collect(),
        None => (0..cap.cpus).collect(),
    };
    let platform = set("platform").unwrap_or_default();
    let isolated = set("isolated").unwrap_or_default();
    // Without the scheduler (the stand-in admission) every CPU is shared.
    let shared = if scheduler {
        set("shared").unwrap_or_default()
    } else {
        online.iter().copied().collect()
    };
    let mut cores: Vec<CpuCore> = online
        .iter()
        .map(|&cpu| CpuCore {
            cpu,
            role: if platform.contains(cpu) {
                "platform"
            } else if isolated.contains(cpu) {
                "isolated"
            } else if shared.contains(cpu) {
                "shared"
            } else {
                "unassigned"
            }
            .to_string(),
            workloads: Vec::new(),
        })
        .collect();
    for (name, p) in &cap.allocations {
        for c in cores.iter_mut() {
            let on = if p.cpus.is_empty() {
                // Not pinned: it floats over the shared pool.
                !p.exclusive && c.role == "shared"
            } else {
                p.cpus.contains(&c.cpu)
            };
            if !on {
                continue;
            }
            if p.exclusive && p.realtime.is_none() && c.role == "shared" {
                c.role = "dedicated".into();
            }
            c.workloads.push(name.clone());
        }
    }
    // A dedicated CPU is its holder's alone, whatever a shared workload's stale
    // placement says.
    for c in cores.iter_mut().filter(|c| c.role == "dedicated") {
        c.workloads
            .retain(|w| cap.allocations.get(w).is_some_and(|p| p.exclusive));
    }
    CpuPartition {
        cores,
        enforcing: t
            .get("enforcing")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        profile: t
            .get("profile")
            .and_then(|v| v.as_str())
            .unwrap_or(if scheduler { "default" } else { "none" })
            .to_string(),
    }
}

/// A placement's class as central shows it.
pub fn placement_class(p: &crate::driver::Placement) -> &'static str {
    if p.realtime.is_some() {
        "realtime"
    } else if p.exclusive {
        "dedicated"
    } else if p.millicores.is_some() {
        "shared"
    } else {
        ""
    }
}

/// Kernel list syntax of CPU ids (`0-2,5`).
pub fn cpu_list(cpus: &[u32]) -> String {
    cpus.iter().copied().collect::<CpuSet>().to_string()
}

/// Read part of the log at `path`: from `offset`, or (`None`) its last `tail_lines`
/// lines; at most `max_bytes`, cut at a line end when one fits. A log shorter than
/// `offset` (cut or replaced) is read from its start. A missing log is empty.
pub fn read_log(
    path: &Path,
    offset: Option<u64>,
    tail_lines: u32,
    max_bytes: u32,
) -> std::io::Result<LogSlice> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LogSlice::default()),
        Err(e) => return Err(e),
    };
    let size = f.seek(SeekFrom::End(0))?;
    let max = u64::from(max_bytes.max(1));
    let start = match offset {
        Some(o) if o <= size => o,
        Some(_) => 0,
        None => {
            let t = crate::api::stream::tail_offset(&mut f, tail_lines.max(1) as usize)?;
            if size - t > max {
                // Too long a tail: the last `max` bytes, from the first whole line.
                let from = size - max;
                f.seek(SeekFrom::Start(from))?;
                let mut probe = vec![0u8; max as usize];
                f.read_exact(&mut probe)?;
                match probe.iter().position(|b| *b == b'\n') {
                    Some(i) if (i as u64) + 1 < max => from + i as u64 + 1,
                    _ => from,
                }
            } else {
                t
            }
        }
    };
    f.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    (&mut f).take(max).read_to_end(&mut buf)?;
    // End on a whole line when the read was cut short and a line end is in it.
    if start + (buf.len() as u64) < size {
        if let Some(i) = buf.iter().rposition(|b| *b == b'\n') {
            buf.truncate(i + 1);
        }
    }
    let next = start + buf.len() as u64;
    Ok(LogSlice {
        text: String::from_utf8_lossy(&buf).into_owned(),
        offset: start,
        next_offset: next,
        size,
    })
}

/// A light latency probe: every `every`, half a second of a 1 kHz timer loop
/// (SCHED_OTHER, on the CPUs the daemon runs on: the platform cores when enforcing),
/// on a thread of its own. It measures how late a timer wakes a thread on this host
/// now; it is not a real-time workload's latency.
#[derive(Debug, Default)]
pub struct LatencyProbe {
    latest: Mutex<Option<LatencySample>>,
}

/// How long each probe run lasts.
pub const PROBE_RUN: Duration = Duration::from_millis(500);

impl LatencyProbe {
    /// Start the probe thread; it ends when the returned probe is dropped.
    pub fn start(every: Duration) -> std::io::Result<Arc<Self>> {
        let me = Arc::new(Self::default());
        let weak = Arc::downgrade(&me);
        std::thread::Builder::new()
            .name("roost-probe".into())
            .spawn(move || loop {
                std::thread::sleep(every.saturating_sub(PROBE_RUN));
                let Some(p) = weak.upgrade() else { return };
                match Self::run_once() {
                    Ok(s) => {
                        let mut g = match p.latest.lock() {
                            Ok(g) => g,
                            Err(e) => e.into_inner(),
                        };
                        *g = Some(s);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "latency probe failed; it stops");
                        return;
                    }
                }
            })?;
        Ok(me)
    }

    fn run_once() -> Result<LatencySample, roost_scheduler::probe::ProbeError> {
        let cfg = roost_scheduler::probe::ProbeConfig {
            seconds: PROBE_RUN.as_secs_f64(),
            period_us: 1000,
            pm_qos: false,
            lock_memory: false,
            ..Default::default()
        };
        let r = roost_scheduler::probe::run(&cfg)?;
        let ns = |us: f64| (us * 1000.0).round().max(0.0) as u64;
        Ok(LatencySample {
            time_ms: crate::model::now_ms(),
            p50_ns: ns(r.wakeup.p50),
            p99_ns: ns(r.wakeup.p99),
            max_ns: ns(r.wakeup.max),
            samples: r.activations,
            missed: r.missed,
            period_us: cfg.period_us,
            placement: format!("cpus {}, {}", r.cpus, r.policy),
        })
    }

    /// The newest run.
    pub fn latest(&self) -> Option<LatencySample> {
        match self.latest.lock() {
            Ok(g) => g.clone(),
            Err(e) => e.into_inner().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Placement;
    use std::io::Write;

    fn cap(alloc: &[(&str, Placement)]) -> HostCapacity {
        HostCapacity {
            cpus: 4,
            allocations: alloc
                .iter()
                .map(|(n, p)| (n.to_string(), p.clone()))
                .collect(),
            topology: serde_json::json!({"backend": "roost-scheduler", "enforcing": false,
                "online": "0-3", "platform": "0", "shared": "1-2", "isolated": "3"}),
            ..Default::default()
        }
    }

    #[test]
    fn every_cpu_gets_its_role_and_holders() {
        let shared = Placement {
            cpus: vec![1, 2],
            millicores: Some(500),
            ..Default::default()
        };
        let dedicated = Placement {
            cpus: vec![2],
            exclusive: true,
            ..Default::default()
        };
        let rt = Placement {
            cpus: vec![3],
            exclusive: true,
            realtime: Some(crate::spec::Realtime {
                policy: crate::spec::RtPolicy::Fifo,
                priority: 80,
            }),
            ..Default::default()
        };
        let p = cpu_partition(&cap(&[("web", shared), ("db", dedicated), ("ctl", rt)]));
        let got: Vec<(u32, &str, Vec<&str>)> = p
            .cores
            .iter()
            .map(|c| {
                (
                    c.cpu,
                    c.role.as_str(),
                    c.workloads.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, "platform", vec![]),
                (1, "shared", vec!["web"]),
                (2, "dedicated", vec!["db"]),
                (3, "isolated", vec!["ctl"]),
            ]
        );
        assert_eq!(p.profile, "default");
    }

    #[test]
    fn without_the_scheduler_every_cpu_is_shared() {
        let c = HostCapacity {
            cpus: 2,
            topology: serde_json::json!({"backend": "capacity-check", "cpus": 2}),
            ..Default::default()
        };
        let p = cpu_partition(&c);
        assert_eq!(p.cores.len(), 2);
        assert!(p.cores.iter().all(|c| c.role == "shared"));
    }

    #[test]
    fn logs_are_read_as_a_tail_then_followed() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("w.log");
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..10 {
            writeln!(f, "line {i}").unwrap();
        }
        let s = read_log(&path, None, 3, 65536).unwrap();
        assert_eq!(s.text, "line 7\nline 8\nline 9\n");
        assert_eq!(s.next_offset, s.size);
        writeln!(f, "line 10").unwrap();
        let s2 = read_log(&path, Some(s.next_offset), 3, 65536).unwrap();
        assert_eq!(s2.text, "line 10\n");
        // Bounded: whole lines within the limit.
        let s3 = read_log(&path, Some(0), 3, 10).unwrap();
        assert_eq!(s3.text, "line 0\n");
        // A tail longer than the limit starts at a whole line.
        let s4 = read_log(&path, None, 100, 17).unwrap();
        assert_eq!(s4.text, "line 9\nline 10\n");
        // An offset past the end (the log was cut) reads from the start.
        let s5 = read_log(&path, Some(1_000_000), 3, 8).unwrap();
        assert_eq!(s5.offset, 0);
        // No log yet: empty.
        assert_eq!(
            read_log(&d.path().join("none.log"), None, 3, 100).unwrap(),
            LogSlice::default()
        );
    }
}

//! The latency probe: a cyclictest-style loop on absolute deadlines
//! (`clock_nanosleep(TIMER_ABSTIME)`), optionally computing for a fixed amount of CPU
//! time each period like a real control loop. It measures wake-up latency (how late
//! the thread runs after its timer) and response time (period start to work done), and
//! counts missed deadlines (work not done by the end of its period; periods skipped
//! because the loop fell behind count as missed too).

use crate::request::RtPolicy;
use crate::rt::{self, Policy, RtError};
use roost_host_config::CpuSet;
use serde::Serialize;

/// A probe that cannot run as asked.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A setting is out of range.
    #[error("--{flag}: {message}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong and the range.
        message: String,
    },
    /// Pinning or the real-time policy failed.
    #[error(transparent)]
    Rt(#[from] RtError),
}

/// What to measure.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeConfig {
    /// Pin to this CPU.
    pub cpu: Option<u32>,
    /// Real-time priority (1–99); `None` keeps SCHED_OTHER.
    pub priority: Option<u32>,
    /// Policy used with `priority`.
    pub policy: RtPolicy,
    /// How long, seconds (1–3600: the loop is always bounded).
    pub seconds: f64,
    /// Period, µs.
    pub period_us: u64,
    /// CPU time to compute each period, µs (0 = wake and sleep, like cyclictest).
    pub work_us: u64,
    /// Hold `/dev/cpu_dma_latency` at 0 during the run (as cyclictest does), so idle
    /// CPUs do not sleep in states that are slow to leave.
    pub pm_qos: bool,
    /// Lock the process's memory (`mlockall`) so page faults do not show as latency;
    /// off for a probe inside a daemon, whose memory it would pin for good.
    pub lock_memory: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            cpu: None,
            priority: None,
            policy: RtPolicy::Fifo,
            seconds: 10.0,
            period_us: 1000,
            work_us: 0,
            pm_qos: true,
            lock_memory: true,
        }
    }
}

impl ProbeConfig {
    /// Check ranges before anything is changed.
    pub fn validate(&self) -> Result<(), ProbeError> {
        let flag = |flag, message: String| Err(ProbeError::Flag { flag, message });
        if !(self.seconds.is_finite() && (0.1..=3600.0).contains(&self.seconds)) {
            return flag(
                "seconds",
                format!("{} is out of range; use 0.1 to 3600", self.seconds),
            );
        }
        if !(50..=1_000_000).contains(&self.period_us) {
            return flag(
                "period-us",
                format!("{} is out of range; use 50 to 1000000", self.period_us),
            );
        }
        if self.work_us >= self.period_us {
            return flag(
                "work-us",
                format!(
                    "{} must be less than the period ({} µs)",
                    self.work_us, self.period_us
                ),
            );
        }
        if let Some(p) = self.priority {
            if !(1..=99).contains(&p) {
                return flag("priority", format!("{p} is out of range; use 1 to 99"));
            }
        }
        Ok(())
    }
}

/// Distribution of one measure, µs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Smallest.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Stats {
    /// From samples in ns (sorted in place).
    pub fn from_ns(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64 / 1000.0
        };
        Self {
            min: samples[0] as f64 / 1000.0,
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[samples.len() - 1] as f64 / 1000.0,
        }
    }
}

/// What the probe saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    /// As asked.
    pub config: ProbeConfig,
    /// The policy the loop ran under.
    pub policy: String,
    /// CPUs it was allowed on.
    pub cpus: String,
    /// Periods in the run (activations run plus those skipped).
    pub periods: u64,
    /// Activations that ran.
    pub activations: u64,
    /// Deadlines missed.
    pub missed: u64,
    /// Missed / periods.
    pub miss_ratio: f64,
    /// Timer expiry to running, µs.
    pub wakeup: Stats,
    /// Period start to work done, µs.
    pub response: Stats,
    /// Whether `/dev/cpu_dma_latency` was held at 0.
    pub pm_qos_held: bool,
}

impl ProbeReport {
    /// Lines for a terminal.
    pub fn text(&self) -> String {
        let c = &self.config;
        let row = |name: &str, s: &Stats| {
            format!(
                "{name:<18} min {:>8.1}  p50 {:>8.1}  p99 {:>8.1}  p99.9 {:>8.1}  max {:>9.1}\n",
                s.min, s.p50, s.p99, s.p999, s.max
            )
        };
        let mut s = format!(
            "probe: {} on CPU {}, period {} µs, work {} µs, {} s{}\n",
            self.policy,
            self.cpus,
            c.period_us,
            c.work_us,
            c.seconds,
            if self.pm_qos_held {
                ", cpu_dma_latency 0"
            } else {
                ""
            }
        );
        s.push_str(&format!(
            "periods {}, ran {}, missed deadlines {} ({:.3} %)\n",
            self.periods,
            self.activations,
            self.missed,
            self.miss_ratio * 100.0
        ));
        s.push_str(&row("wake-up (µs)", &self.wakeup));
        s.push_str(&row("response (µs)", &self.response));
        s
    }
}

fn now_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the call writes into; the clocks used
    // (MONOTONIC, THREAD_CPUTIME_ID) always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid absolute time; the remainder pointer may be null
        // with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

/// Compute until this thread has used `work_ns` more CPU time.
fn burn(work_ns: u64) {
    let start = now_ns(libc::CLOCK_THREAD_CPUTIME_ID);
    let mut x: u64 = 1;
    while now_ns(libc::CLOCK_THREAD_CPUTIME_ID).saturating_sub(start) < work_ns {
        for _ in 0..64 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
}

/// Ask for zero exit latency from idle states while the returned file stays open (the
/// kernel's PM QoS interface); `None` when the device is missing or not writable.
fn hold_pm_qos() -> Option<std::fs::File> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/cpu_dma_latency")
        .ok()?;
    f.write_all(&0i32.to_ne_bytes()).ok()?;
    Some(f)
}

/// Run the probe on the calling thread. The thread's policy is put back to
/// SCHED_OTHER afterwards.
pub fn run(cfg: &ProbeConfig) -> Result<ProbeReport, ProbeError> {
    cfg.validate()?;
    if let Some(cpu) = cfg.cpu {
        rt::set_affinity(0, &CpuSet::from_iter([cpu]))?;
    }
    // Page faults in the loop would show up as latency.
    // SAFETY: mlockall takes flags only; failure (no privilege) is harmless.
    if cfg.lock_memory && unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        tracing::debug!("mlockall failed; page faults may add latency");
    }
    let qos = if cfg.pm_qos { hold_pm_qos() } else { None };
    if cfg.pm_qos && qos.is_none() {
        tracing::debug!("cannot hold /dev/cpu_dma_latency; idle exits may add latency");
    }
    let period = cfg.period_us * 1000;
    let work = cfg.work_us * 1000;
    let total = (cfg.seconds * 1e9) as u64;
    let expected = (total / period) as usize + 1;
    let mut wake = Vec::with_capacity(expected);
    let mut resp = Vec::with_capacity(expected);
    if let Some(p) = cfg.priority {
        rt::set_policy(0, Policy::Rt(cfg.policy), p)?;
    }
    let me = rt::read_thread(
        std::path::Path::new("/proc"),
        std::process::id(),
        rt::gettid() as u32,
    )
    .ok();

    let start = now_ns(libc::CLOCK_MONOTONIC);
    let end = start + total;
    let mut next = start + period;
    let (mut periods, mut missed) = (0u64, 0u64);
    while next < end {
        sleep_until(next);
        let woke = now_ns(libc::CLOCK_MONOTONIC);
        if work > 0 {
            burn(work);
        }
        let done = now_ns(libc::CLOCK_MONOTONIC);
        periods += 1;
        wake.push(woke.saturating_sub(next));
        resp.push(done.saturating_sub(next));
        if done > next + period {
            missed += 1;
        }
        next += period;
        // Fell behind: the activations whose start already passed never happen, and
        // their deadlines are missed.
        if done > next {
            let skipped =
                ((done - next) / period + 1).min((end.saturating_sub(next)).div_ceil(period));
            periods += skipped;
            missed += skipped;
            next += skipped * period;
            if skipped == 0 {
                next += period;
            }
        }
    }
    if cfg.priority.is_some() {
        rt::set_policy(0, Policy::Other, 0)?;
    }
    let pm_qos_held = qos.is_some();
    drop(qos);
    let activations = wake.len() as u64;
    Ok(ProbeReport {
        config: cfg.clone(),
        policy: match cfg.priority {
            Some(p) => format!(
                "{} {p}",
                if cfg.policy == RtPolicy::Fifo {
                    "SCHED_FIFO"
                } else {
                    "SCHED_RR"
                }
            ),
            None => me
                .as_ref()
                .map_or("SCHED_OTHER", |m| m.policy_name())
                .to_string(),
        },
        cpus: me.map_or_else(|| "?".to_string(), |m| m.cpus_allowed.to_string()),
        periods,
        activations,
        missed,
        miss_ratio: if periods == 0 {
            0.0
        } else {
            missed as f64 / periods as f64
        },
        wakeup: Stats::from_ns(&mut wake),
        response: Stats::from_ns(&mut resp),
        pm_qos_held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        let s = Stats::from_ns(&mut v);
        assert_eq!(
            (s.min, s.p50, s.p99, s.p999, s.max),
            (1.0, 500.0, 990.0, 999.0, 1000.0)
        );
        assert_eq!(Stats::from_ns(&mut []), Stats::default());
    }

    #[test]
    fn validation_names_the_flag() {
        let c = ProbeConfig {
            work_us: 2000,
            ..ProbeConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.starts_with("--work-us: 2000 must be less than the period"),
            "{e}"
        );
        let c = ProbeConfig {
            seconds: 0.0,
            ..ProbeConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--seconds"));
        let c = ProbeConfig {
            priority: Some(100),
            ..ProbeConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("--priority"));
    }

    #[test]
    fn a_short_unprivileged_run_measures_every_period() {
        let c = ProbeConfig {
            seconds: 0.2,
            period_us: 2000,
            work_us: 200,
            ..ProbeConfig::default()
        };
        let r = run(&c).unwrap();
        // 0.2 s at 2 ms: 99 periods (the first starts one period in).
        assert_eq!(r.periods, 99, "{r:?}");
        assert!(r.activations <= r.periods && r.activations > 0);
        assert!(r.missed <= r.periods);
        // Each activation computed at least 200 µs of CPU after its period began.
        assert!(r.response.min >= 200.0, "{:?}", r.response);
        assert!(r.wakeup.min <= r.wakeup.max);
    }
}

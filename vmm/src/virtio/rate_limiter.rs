//! Token buckets for I/O rate limits (bytes/s and operations/s), as Firecracker's
//! rate limiter: a request passes when each bucket holds enough for it, and then takes
//! its cost, so the long-run rate is the configured one whatever the request sizes.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// A rate limit; `None` in a field means no limit on that dimension.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    /// Operations (requests) per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops_per_sec: Option<u64>,
}

/// How much a bucket holds: a tenth of a second's worth (so a burst is short), and at
/// least one token.
const BURST: f64 = 0.1;

#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(per_sec: u64, now: Instant) -> Self {
        let rate = per_sec as f64;
        let capacity = (rate * BURST).max(1.0);
        Self {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
    }

    /// How long until `cost` may pass (zero = now). A cost above the capacity passes
    /// once the bucket is full, and leaves it in debt.
    fn wait(&self, cost: u64) -> Duration {
        let need = (cost as f64).min(self.capacity);
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / self.rate)
        }
    }
}

/// Both buckets of one device.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    bytes: Option<Bucket>,
    ops: Option<Bucket>,
}

impl RateLimiter {
    /// A limiter for `limit`; `None` when it limits nothing.
    pub fn new(limit: &RateLimit) -> Option<Self> {
        let now = Instant::now();
        let b = |r: Option<u64>| r.filter(|r| *r > 0).map(|r| Bucket::new(r, now));
        let l = Self {
            bytes: b(limit.bytes_per_sec),
            ops: b(limit.ops_per_sec),
        };
        (l.bytes.is_some() || l.ops.is_some()).then_some(l)
    }

    /// Admit one operation of `bytes` now, or say how long to wait before trying again.
    pub fn admit(&mut self, bytes: u64) -> Result<(), Duration> {
        self.admit_at(bytes, Instant::now())
    }

    fn admit_at(&mut self, bytes: u64, now: Instant) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        for (b, cost) in [(&mut self.bytes, bytes), (&mut self.ops, 1)] {
            if let Some(b) = b {
                b.refill(now);
                wait = wait.max(b.wait(cost));
            }
        }
        if !wait.is_zero() {
            // At least a millisecond: timers shorter than that only spin.
            return Err(wait.max(Duration::from_millis(1)));
        }
        for (b, cost) in [(&mut self.bytes, bytes), (&mut self.ops, 1)] {
            if let Some(b) = b {
                b.tokens -= cost as f64;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulated time: how long N operations of a size take under a limit.
    fn simulate(limit: RateLimit, n: u32, size: u64) -> Duration {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(&limit).unwrap();
        let mut now = t0;
        for _ in 0..n {
            loop {
                match rl.admit_at(size, now) {
                    Ok(()) => break,
                    Err(w) => now += w,
                }
            }
        }
        now - t0
    }

    #[test]
    fn long_run_rates_match_the_limits() {
        // 10 MiB at 1 MiB/s in 64 KiB requests: 10 s less the initial burst.
        let t = simulate(
            RateLimit {
                bytes_per_sec: Some(1 << 20),
                ops_per_sec: None,
            },
            160,
            64 << 10,
        );
        assert!((9.8..10.0).contains(&t.as_secs_f64()), "{t:?}");
        // 1000 ops at 200/s.
        let t = simulate(
            RateLimit {
                bytes_per_sec: None,
                ops_per_sec: Some(200),
            },
            1000,
            4096,
        );
        assert!((4.8..5.0).contains(&t.as_secs_f64()), "{t:?}");
        // A request larger than the bucket still passes, then pays its debt.
        let t = simulate(
            RateLimit {
                bytes_per_sec: Some(1000),
                ops_per_sec: None,
            },
            3,
            10_000,
        );
        assert!((19.0..20.1).contains(&t.as_secs_f64()), "{t:?}");
        assert!(RateLimiter::new(&RateLimit::default()).is_none());
    }
}

//! Rate limits of the agent API, per cluster identity (never per address: many clusters may
//! share one NAT address, and one cluster may move). A token bucket per cluster. Pure but for
//! its lock: callers pass the time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// How many requests a cluster may make: `burst` at once, `per_second` sustained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for Rate {
    fn default() -> Self {
        Self {
            per_second: 5.0,
            burst: 30.0,
        }
    }
}

/// Token buckets by cluster name.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Takes one token for `cluster`; false when its bucket is empty.
    pub fn allow(&self, cluster: &str, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = buckets
            .entry(cluster.to_owned())
            .or_insert((self.rate.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate.per_second).min(self.rate.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_refills_per_cluster() {
        let limiter = Limiter::new(Rate {
            per_second: 2.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow("east", t0)));
        assert!(!limiter.allow("east", t0), "the burst is spent");
        assert!(
            limiter.allow("west", t0),
            "another cluster has its own bucket"
        );
        assert!(limiter.allow("east", t0 + Duration::from_millis(500)));
        assert!(!limiter.allow("east", t0 + Duration::from_millis(500)));
        assert!(
            (0..3).all(|_| limiter.allow("east", t0 + Duration::from_secs(60))),
            "refills up to the burst, not beyond"
        );
        assert!(!limiter.allow("east", t0 + Duration::from_secs(60)));
    }
}

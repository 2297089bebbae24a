//! How long the agent waits before trying the hub again: exponential backoff with jitter, so
//! that a hub restart does not bring every agent back at the same instant (DESIGN.md
//! "Transport and identity"). Pure apart from drawing random numbers.

use std::time::Duration;

use rand_core::{OsRng, RngCore as _};

/// Exponential backoff: the n-th consecutive failure waits a random time in the upper half
/// of `min(cap, initial · 2ⁿ)` ("equal jitter": never less than half the step, so a herd
/// spreads out without anyone retrying at once). Success resets it.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub const fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            cap,
            failures: 0,
        }
    }

    /// For requests to the agent API: from 1 s up to a minute.
    pub const fn hub() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// For registration, which may wait on an administrator: from 1 s up to 5 minutes.
    pub const fn registration() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(300))
    }

    /// The step (before jitter) of the next failure.
    pub fn step(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure and says how long to wait before the next try.
    pub fn fail(&mut self) -> Duration {
        let step = self.step();
        self.failures = self.failures.saturating_add(1);
        jitter(step, OsRng.next_u64())
    }

    /// Records a success: the next failure starts from the initial step again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A time in `[step / 2, step]`, placed by `random`.
pub fn jitter(step: Duration, random: u64) -> Duration {
    let half = step / 2;
    let span = u64::try_from((step - half).as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(random % span.saturating_add(1))
}

/// `step` with jitter from the operating system's random numbers.
pub fn jittered(step: Duration) -> Duration {
    jitter(step, OsRng.next_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn steps_double_from_one_second_up_to_the_cap() {
        let mut backoff = Backoff::hub();
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(backoff.step().as_secs());
            backoff.fail();
        }
        assert_eq!(steps, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        backoff.reset();
        assert_eq!(backoff.step(), secs(1));
    }

    #[test]
    fn registration_waits_up_to_five_minutes() {
        let mut backoff = Backoff::registration();
        for _ in 0..100 {
            backoff.fail();
        }
        assert_eq!(backoff.step(), secs(300));
        assert_eq!(backoff.failures(), 100);
    }

    #[test]
    fn every_delay_lies_in_the_upper_half_of_its_step() {
        let mut backoff = Backoff::hub();
        for _ in 0..40 {
            let step = backoff.step();
            let delay = backoff.fail();
            assert!(delay >= step / 2 && delay <= step, "{delay:?} of {step:?}");
        }
    }

    #[test]
    fn jitter_spans_the_upper_half() {
        assert_eq!(jitter(secs(10), 0), secs(5));
        assert_eq!(jitter(secs(10), 5_000_000_000), secs(10));
        assert_eq!(jitter(secs(10), 5_000_000_001), secs(5));
        assert!(jitter(secs(10), u64::MAX) <= secs(10));
        assert_eq!(jitter(Duration::ZERO, 12345), Duration::ZERO);
        // A herd of agents failing at once spreads over the half step.
        let delays: std::collections::BTreeSet<Duration> =
            (0..100).map(|_| jittered(secs(60))).collect();
        assert!(delays.len() > 90, "{} distinct delays", delays.len());
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let mut backoff = Backoff::new(secs(1), Duration::MAX);
        for _ in 0..200 {
            backoff.fail();
        }
        assert_eq!(backoff.step(), secs(1 << 31));
    }
}

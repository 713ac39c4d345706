//! When a node acts: how long it waits before reconnecting, and when it
//! renews its certificate. Pure functions of their inputs (time and
//! randomness are parameters), so the node's timing is tested without
//! sleeping.

use std::time::{Duration, SystemTime};

use rand::{Rng, RngExt};

use crate::ca::CLOCK_SKEW_ALLOWANCE;

/// Jittered exponential backoff ("full jitter"): before the `n`th retry
/// in a row (from 0) the node waits a uniformly drawn time between zero
/// and `min(max, initial × 2ⁿ)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first ceiling.
    pub initial: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Default for Backoff {
    /// 0.5 s, doubling up to 30 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The longest wait before retry number `attempt` (from 0).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max)
    }

    /// The wait before retry number `attempt`: uniform in
    /// `0..=ceiling(attempt)`.
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        jitter(self.ceiling(attempt), rng)
    }
}

/// How long a node waits before reconnecting, from how the last
/// connection ended: the backoff grows with each attempt that did not
/// get as far as a successful `Register`, and starts over after one; a
/// gateway that shut down is given a short jittered pause instead.
#[derive(Debug, Clone)]
pub struct Reconnect {
    backoff: Backoff,
    shutdown_pause: Duration,
    failures: u32,
}

/// How a connection (or an attempt at one) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// It got as far as a successful `Register`.
    pub registered: bool,
    /// The gateway closed it because it shuts down.
    pub shutdown: bool,
}

impl Reconnect {
    /// Waits by `backoff`, or up to `shutdown_pause` after a shutdown.
    pub fn new(backoff: Backoff, shutdown_pause: Duration) -> Self {
        Self {
            backoff,
            shutdown_pause,
            failures: 0,
        }
    }

    /// The longest wait the next loss would bring, were it not
    /// registered first.
    pub fn ceiling(&self) -> Duration {
        self.backoff.ceiling(self.failures)
    }

    /// The wait before reconnecting after a connection that `ended` so.
    pub fn delay<R: Rng + ?Sized>(&mut self, ended: Ended, rng: &mut R) -> Duration {
        if ended.registered {
            self.failures = 0;
        }
        if ended.shutdown {
            return jitter(self.shutdown_pause, rng);
        }
        let delay = self.backoff.delay(self.failures, rng);
        self.failures = self.failures.saturating_add(1);
        delay
    }
}

/// A duration drawn uniformly from `0..=max` (millisecond steps).
pub fn jitter<R: Rng + ?Sized>(max: Duration, rng: &mut R) -> Duration {
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=millis))
}

/// When a certificate valid `not_before..=not_after` is renewed: once
/// two thirds of its validity have passed. Keygate's CA dates `notBefore`
/// back by [`CLOCK_SKEW_ALLOWANCE`] for clocks that run behind; the
/// validity counts from the issue time, `not_before` plus that allowance
/// (but never past `not_after`).
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let issued = (not_before + CLOCK_SKEW_ALLOWANCE).min(not_after);
    let validity = not_after.duration_since(issued).unwrap_or_default();
    issued + validity * 2 / 3
}

/// How long to wait before trying a renewal again, at `now`, for a
/// certificate that ends at `not_after`: a tenth of what is left, between
/// 1 s and 5 min. Also the least time between two renewals, so a
/// certificate that is already due when it arrives is not renewed in a
/// loop.
pub fn renewal_retry(now: SystemTime, not_after: SystemTime) -> Duration {
    let left = not_after.duration_since(now).unwrap_or_default();
    (left / 10).clamp(Duration::from_secs(1), Duration::from_secs(300))
}

/// When to renew the certificate just received at `now`: at its
/// [`renewal_time`], but not sooner than [`renewal_retry`] from now.
pub fn next_renewal(now: SystemTime, not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    renewal_time(not_before, not_after).max(now + renewal_retry(now, not_after))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_backoff_ceiling_doubles_from_half_a_second_to_thirty_seconds() {
        let b = Backoff::default();
        let ceilings: Vec<u128> = (0..9).map(|n| b.ceiling(n).as_millis()).collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        // Far out, nothing overflows.
        assert_eq!(b.ceiling(31), Duration::from_secs(30));
        assert_eq!(b.ceiling(32), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn backoff_delays_are_spread_over_the_whole_range_and_never_exceed_the_ceiling() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in [0, 1, 3, 10] {
            let ceiling = b.ceiling(attempt);
            let delays: Vec<Duration> = (0..2000).map(|_| b.delay(attempt, &mut rng)).collect();
            assert!(delays.iter().all(|d| *d <= ceiling), "attempt {attempt}");
            // Full jitter: some waits in the lowest and the highest tenth.
            assert!(
                delays.iter().any(|d| *d < ceiling / 10),
                "attempt {attempt}"
            );
            assert!(
                delays.iter().any(|d| *d > ceiling * 9 / 10),
                "attempt {attempt}"
            );
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(
                distinct.len() > 100,
                "attempt {attempt}: {}",
                distinct.len()
            );
        }
        assert_eq!(jitter(Duration::ZERO, &mut rng), Duration::ZERO);
        assert!(jitter(3 * MS, &mut rng) <= 3 * MS);
    }

    #[test]
    fn reconnection_backs_off_until_a_register_succeeds_and_pauses_briefly_after_a_shutdown() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut r = Reconnect::new(Backoff::default(), Duration::from_secs(2));
        let lost = Ended {
            registered: false,
            shutdown: false,
        };
        for ceiling in [500, 1000, 2000, 4000] {
            assert_eq!(r.ceiling(), ceiling * MS);
            assert!(r.delay(lost, &mut rng) <= ceiling * MS);
        }
        assert_eq!(r.ceiling(), 8000 * MS);
        // A shutdown pause is short whatever came before, and counts no
        // failure.
        for _ in 0..100 {
            let pause = r.delay(
                Ended {
                    registered: false,
                    shutdown: true,
                },
                &mut rng,
            );
            assert!(pause <= Duration::from_secs(2));
        }
        assert_eq!(r.ceiling(), 8000 * MS);
        // A connection that registered starts the backoff over.
        let delay = r.delay(
            Ended {
                registered: true,
                shutdown: false,
            },
            &mut rng,
        );
        assert!(delay <= 500 * MS, "{delay:?}");
        assert_eq!(r.ceiling(), 1000 * MS);
        r.delay(
            Ended {
                registered: true,
                shutdown: true,
            },
            &mut rng,
        );
        assert_eq!(r.ceiling(), 500 * MS);
    }

    #[test]
    fn a_certificate_is_renewed_after_two_thirds_of_its_validity_counted_from_its_issue() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let not_before = issued - CLOCK_SKEW_ALLOWANCE;
        // 24 h: renewed 16 h after issue.
        let day = Duration::from_secs(86_400);
        assert_eq!(
            renewal_time(not_before, issued + day),
            issued + Duration::from_secs(16 * 3600)
        );
        // 21 s: renewed after 14 s, not at once.
        assert_eq!(
            renewal_time(not_before, issued + Duration::from_secs(21)),
            issued + Duration::from_secs(14)
        );
        // A validity shorter than the allowance ends where it ends.
        let short = not_before + Duration::from_secs(60);
        assert_eq!(renewal_time(not_before, short), short);
        // Inverted windows do not panic.
        assert_eq!(renewal_time(issued, not_before), not_before);
    }

    #[test]
    fn renewal_retries_wait_a_tenth_of_what_is_left_within_bounds_and_never_loop() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        assert_eq!(renewal_retry(now, now + s(100)), s(10));
        assert_eq!(renewal_retry(now, now + s(5)), s(1));
        assert_eq!(renewal_retry(now, now - s(5)), s(1), "already expired");
        assert_eq!(renewal_retry(now, now + s(86_400)), s(300));
        // A certificate already past its renewal time on arrival is
        // renewed again only after the retry delay.
        let not_before = now - s(3600);
        let not_after = now + s(60);
        assert_eq!(next_renewal(now, not_before, not_after), now + s(6));
        // A fresh one waits for its renewal time.
        let fresh_before = now - CLOCK_SKEW_ALLOWANCE;
        assert_eq!(next_renewal(now, fresh_before, now + s(30)), now + s(20));
    }
}

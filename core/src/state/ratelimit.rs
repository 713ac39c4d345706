//! Failed pairing attempts counted per source address, on top of each
//! code's own attempt limit.
//!
//! A code allows a few failed attempts before it burns; this limit slows
//! down whoever fails, whichever code they try. It counts failures per
//! source: the IP address for IPv4, the /64 network for IPv6 (one host
//! usually holds a whole /64). Many devices behind one NAT share an
//! address, so it never locks anyone out: past `free_failures` recent
//! failures each attempt must wait a delay that doubles with every further
//! failure, capped at `max_delay`, and the refusal says how long. Failures
//! older than `window` are forgotten.
//!
//! The counts are records in the store (`identity/ratelimit/<source>`), so
//! they survive a restart and every gateway on a shared store sees them.
//! `prune_rate_limits` deletes the ones nothing remembers any more.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::IdentityError;
use super::manager::{IdentityManager, Write};
use crate::time::unix_secs;

/// Prefix of the per-source failure counts.
pub const RATE_LIMIT_PREFIX: &str = "identity/ratelimit/";

/// How failed attempts are limited per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Recent failures allowed without delay.
    pub free_failures: u32,
    /// The delay after the first failure past the free ones; doubled for
    /// each further one.
    pub base_delay: Duration,
    /// The longest delay ever asked for.
    pub max_delay: Duration,
    /// How long a failure is remembered after the last one.
    pub window: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            free_failures: 3,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// What one source has failed lately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailureCount {
    /// The source, as keyed.
    source: String,
    /// Failures since the count last started.
    failures: u32,
    /// Unix seconds of the last failure.
    last_failure: u64,
    /// Unix seconds before which the next attempt is refused.
    wait_until: u64,
}

/// The source an address counts under: the IP for IPv4, the /64 for IPv6
/// (an IPv4-mapped IPv6 address counts as its IPv4 address).
pub fn rate_limit_source(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}-{:x}-{:x}-{:x}--64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

fn record_key(source: &str) -> String {
    format!("{RATE_LIMIT_PREFIX}{source}")
}

fn json(key: &str, count: &FailureCount) -> Result<Vec<u8>, IdentityError> {
    serde_json::to_vec(count).map_err(|e| IdentityError::corrupt(key, e))
}

/// For `keygate state check`: whether `bytes` decode as the failure count
/// of `source`.
pub(super) fn names_source(bytes: &[u8], source: &str) -> Result<bool, String> {
    let count: FailureCount = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(count.source == source)
}

impl RateLimitSettings {
    /// The wait after `failures` recent failures.
    fn delay_after(&self, failures: u32) -> Duration {
        let Some(past) = failures.checked_sub(self.free_failures).filter(|p| *p > 0) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(past - 1).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

impl IdentityManager {
    /// How long `addr` must wait before its next pairing attempt; `None`
    /// when it may try now. Reads only.
    pub fn rate_limit_wait(
        &self,
        addr: SocketAddr,
        now: SystemTime,
    ) -> Result<Option<Duration>, IdentityError> {
        let key = record_key(&rate_limit_source(addr));
        let Some((count, _)) = self.get_record::<FailureCount>(&key)? else {
            return Ok(None);
        };
        let now = unix_secs(now);
        Ok((now < count.wait_until).then(|| Duration::from_secs(count.wait_until - now)))
    }

    /// Counts one failed attempt from `addr`; returns how long it must now
    /// wait before the next (zero while its failures are free).
    pub fn record_failed_pairing(
        &self,
        addr: SocketAddr,
        settings: &RateLimitSettings,
        now: SystemTime,
    ) -> Result<Duration, IdentityError> {
        let source = rate_limit_source(addr);
        let key = record_key(&source);
        let now = unix_secs(now);
        self.mutate("pairing rate limit", |m| {
            let found = m.get_record::<FailureCount>(&key)?;
            let (previous, version) = match found {
                Some((count, version))
                    if now < count.last_failure.saturating_add(settings.window.as_secs()) =>
                {
                    (count.failures, Some(version))
                }
                Some((_, version)) => (0, Some(version)),
                None => (0, None),
            };
            let failures = previous.saturating_add(1);
            let delay = settings.delay_after(failures);
            let count = FailureCount {
                source: source.clone(),
                failures,
                last_failure: now,
                wait_until: now.saturating_add(delay.as_secs()),
            };
            Ok((
                vec![Write::put(key.clone(), json(&key, &count)?, version)],
                delay,
            ))
        })
    }

    /// Deletes the counts whose failures are all older than the window;
    /// returns how many.
    pub fn prune_rate_limits(
        &self,
        settings: &RateLimitSettings,
        now: SystemTime,
    ) -> Result<usize, IdentityError> {
        let now = unix_secs(now);
        self.mutate("pairing rate limit prune", |m| {
            let listing = m.all(RATE_LIMIT_PREFIX, |source, c: &FailureCount| {
                c.source == source
            })?;
            let mut writes = Vec::new();
            for count in listing.records {
                if now >= count.last_failure.saturating_add(settings.window.as_secs())
                    && now >= count.wait_until
                {
                    let key = record_key(&count.source);
                    if let Some((_, version)) = m.get_record::<FailureCount>(&key)? {
                        writes.push(Write::delete(key, version));
                    }
                }
            }
            let pruned = writes.len();
            Ok((writes, pruned))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn manager(dir: &std::path::Path) -> IdentityManager {
        let store = Arc::new(keygate_store_memory::MemoryStore::new());
        IdentityManager::open(store, dir, Default::default(), SystemTime::now()).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn sources_are_addresses_for_ipv4_and_networks_for_ipv6() {
        assert_eq!(rate_limit_source(addr("192.0.2.7:4000")), "192.0.2.7");
        assert_eq!(
            rate_limit_source(addr("192.0.2.7:4000")),
            rate_limit_source(addr("192.0.2.7:5000")),
            "the port does not matter"
        );
        assert_eq!(
            rate_limit_source(addr("[2001:db8:1:2:aaaa::1]:4000")),
            rate_limit_source(addr("[2001:db8:1:2:bbbb::9]:4000")),
            "one /64"
        );
        assert_ne!(
            rate_limit_source(addr("[2001:db8:1:2::1]:4000")),
            rate_limit_source(addr("[2001:db8:1:3::1]:4000"))
        );
        assert_eq!(rate_limit_source(addr("[::ffff:192.0.2.7]:1")), "192.0.2.7");
    }

    #[test]
    fn delays_start_after_the_free_failures_double_and_stop_at_the_cap() {
        let s = RateLimitSettings::default();
        let delays: Vec<u64> = (1..=12).map(|n| s.delay_after(n).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(s.delay_after(u32::MAX), s.max_delay);
    }

    #[test]
    fn a_failing_source_waits_longer_each_time_others_are_untouched_and_it_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let s = RateLimitSettings::default();
        let t0 = SystemTime::now();
        let bad = addr("198.51.100.1:1000");
        for _ in 0..3 {
            assert_eq!(
                m.record_failed_pairing(bad, &s, t0).unwrap(),
                Duration::ZERO
            );
        }
        assert_eq!(m.rate_limit_wait(bad, t0).unwrap(), None);
        assert_eq!(m.record_failed_pairing(bad, &s, t0).unwrap(), 2 * SEC);
        assert_eq!(m.rate_limit_wait(bad, t0).unwrap(), Some(2 * SEC));
        assert_eq!(m.rate_limit_wait(bad, t0 + SEC).unwrap(), Some(SEC));
        assert_eq!(m.rate_limit_wait(bad, t0 + 2 * SEC).unwrap(), None);
        assert_eq!(
            m.record_failed_pairing(bad, &s, t0 + 2 * SEC).unwrap(),
            4 * SEC
        );
        // Another address is not slowed down.
        assert_eq!(
            m.rate_limit_wait(addr("198.51.100.2:1000"), t0).unwrap(),
            None
        );

        // A window after its last failure the source starts afresh, and
        // pruning removes what nothing remembers.
        let later = t0 + 2 * SEC + s.window;
        assert_eq!(
            m.record_failed_pairing(addr("203.0.113.9:1"), &s, t0)
                .unwrap(),
            Duration::ZERO
        );
        assert_eq!(m.prune_rate_limits(&s, later).unwrap(), 2);
        assert_eq!(m.rate_limit_wait(bad, later).unwrap(), None);
        assert_eq!(
            m.record_failed_pairing(bad, &s, later).unwrap(),
            Duration::ZERO
        );
    }

    #[test]
    fn state_check_reads_failure_counts_as_healthy_records() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        m.record_failed_pairing(addr("[2001:db8::1]:1"), &RateLimitSettings::default(), now)
            .unwrap();
        let report = m.check().unwrap();
        assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
        assert!(super::super::check::check_record("identity/ratelimit/x", b"{}").is_err());
    }

    #[test]
    fn counts_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(keygate_store_memory::MemoryStore::new());
        let open = || {
            IdentityManager::open(
                store.clone(),
                dir.path(),
                Default::default(),
                SystemTime::now(),
            )
            .unwrap()
        };
        let s = RateLimitSettings::default();
        let now = SystemTime::now();
        let a = addr("198.51.100.1:1");
        {
            let first = open();
            for _ in 0..4 {
                first.record_failed_pairing(a, &s, now).unwrap();
            }
        }
        let second = open();
        assert_eq!(second.rate_limit_wait(a, now).unwrap(), Some(2 * SEC));
        assert_eq!(second.record_failed_pairing(a, &s, now).unwrap(), 4 * SEC);
    }
}

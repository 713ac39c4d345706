//! Time as Keygate keeps and shows it, in one place: records hold unix
//! seconds (or milliseconds), people read RFC 3339 in UTC.
//!
//! Nothing here reads the clock: callers pass the time in, so expiry and
//! rate limits are tested without waiting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Whole unix seconds of `t`; 0 for a time before 1970.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix milliseconds of `t`; 0 for a time before 1970.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The last instant Keygate represents: 9999-12-31T23:59:59.999Z, the end
/// of the calendar RFC 3339 can write. Every platform's `SystemTime` holds
/// it, so turning a number read from a record into a time never overflows.
pub const LATEST_UNIX_MS: u64 = 253_402_300_799_999;

/// The instant `secs` unix seconds name, clamped to [`LATEST_UNIX_MS`]
/// (a number past year 9999 in a record is garbage, not a panic).
pub fn from_unix_secs(secs: u64) -> SystemTime {
    from_unix_ms(secs.saturating_mul(1000))
}

/// The instant `ms` unix milliseconds name, clamped to [`LATEST_UNIX_MS`].
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.min(LATEST_UNIX_MS))
}

/// Unix seconds as RFC 3339 UTC (`2026-11-22T08:00:00Z`); a number the
/// calendar cannot hold is shown as `unix time N`.
pub fn rfc3339_secs(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("unix time {secs}"))
}

/// `t` as RFC 3339 UTC, whole seconds (`2026-11-22T08:00:00Z`); a time
/// before 1970 is named as such.
pub fn rfc3339(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => match i64::try_from(d.as_secs()) {
            Ok(secs) => rfc3339_secs(secs),
            Err(_) => format!("unix time {}", d.as_secs()),
        },
        Err(e) => format!("{:?} before 1970-01-01", e.duration()),
    }
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-11-22T08:00:00.123Z`).
pub fn rfc3339_ms(t: SystemTime) -> String {
    let ms = unix_ms(t);
    let whole = rfc3339_secs(i64::try_from(ms / 1000).unwrap_or(i64::MAX));
    match whole.strip_suffix('Z') {
        Some(date_time) => format!("{date_time}.{:03}Z", ms % 1000),
        None => whole,
    }
}

/// A short duration for messages: `500ms`, `2s`, `1.5s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Parses a duration as people write it in config and on the command
/// line (`90s`, `10m`, `1h30m`): the SDK's parser, so the host and plugins
/// read durations alike.
pub use keygate_sdk::config::parse_duration;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_past_the_calendar_clamp_to_its_last_instant() {
        for ms in [LATEST_UNIX_MS + 1, 1_795_334_334_400_000, u64::MAX] {
            assert_eq!(rfc3339_ms(from_unix_ms(ms)), "9999-12-31T23:59:59.999Z");
        }
        assert_eq!(rfc3339(from_unix_secs(u64::MAX)), "9999-12-31T23:59:59Z");
        assert_eq!(unix_ms(from_unix_ms(LATEST_UNIX_MS)), LATEST_UNIX_MS);
    }

    #[test]
    fn known_instants_format_in_utc() {
        let t = from_unix_ms(1_795_334_400_123);
        assert_eq!(rfc3339(t), "2026-11-22T08:00:00Z");
        assert_eq!(rfc3339_ms(t), "2026-11-22T08:00:00.123Z");
        assert_eq!(
            rfc3339_ms(from_unix_ms(1_795_334_400_000)),
            "2026-11-22T08:00:00.000Z"
        );
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(from_unix_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_secs(i64::MAX), format!("unix time {}", i64::MAX));
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1s before 1970-01-01"
        );
    }

    #[test]
    fn unix_numbers_round_trip_and_clamp_before_1970() {
        let t = from_unix_ms(1_795_334_400_123);
        assert_eq!(unix_ms(t), 1_795_334_400_123);
        assert_eq!(unix_secs(t), 1_795_334_400);
        assert_eq!(
            from_unix_secs(unix_secs(t)),
            from_unix_ms(1_795_334_400_000)
        );
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(human_duration(Duration::from_secs(2)), "2s");
        assert_eq!(human_duration(Duration::from_millis(1500)), "1.5s");
    }
}

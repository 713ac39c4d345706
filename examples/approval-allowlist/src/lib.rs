//! # `allowlist`: an example external Keygate approval policy
//!
//! An [`ApprovalPolicy`] that approves a pairing request only when the
//! device id is on a configured list and, if approval hours are configured,
//! the request was made inside them. Everything else is denied with a
//! reason the device and the operator both see. It never answers
//! [`Decision::Pending`]: a request is decided at once.
//!
//! ```toml
//! [plugins.approval]
//! library = "target/release/libkeygate_example_approval_allowlist.so"
//! [plugins.approval.config]
//! devices = ["kgd1...", "kgd1..."]   # required, at least one device id
//! hours = "08:00-18:00"              # optional; start inclusive, end exclusive
//! utc_offset_minutes = 60            # optional; the hours are in UTC+01:00
//! ```
//!
//! Device ids are read as [`DeviceId`]s when the policy is built (prefix,
//! length, alphabet and bech32m checksum), so an entry that is not a
//! well-formed id stops the gateway at start-up with the entry and what is
//! wrong with it, instead of silently denying that device forever.
//!
//! The time of a request comes from [`ApprovalRequest::unix_time_secs`],
//! never from a clock, so every edge of the window is unit-tested.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::fmt;

use keygate_sdk::{
    ApprovalPlugin, ApprovalPolicy, ApprovalRequest, Decision, DeviceId, PluginContext, PluginError,
};
use serde::Deserialize;

const SECS_PER_DAY: i128 = 86_400;
const MINUTES_PER_DAY: u32 = 24 * 60;

/// The largest `utc_offset_minutes` accepted either way: ±18:00, the range
/// ISO 8601 tools accept (real zones span −12:00 to +14:00).
pub const MAX_UTC_OFFSET_MINUTES: i32 = 18 * 60;

/// The policy's config table, as the operator writes it under
/// `[plugins.approval.config]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistConfig {
    /// The device ids that may be approved. Required, not empty; each
    /// must be a well-formed device id (upper or lower case).
    pub devices: Vec<DeviceId>,
    /// The daily approval window, `"HH:MM-HH:MM"` (24-hour clock, start
    /// inclusive, end exclusive; `"22:00-06:00"` wraps midnight, `24:00` may
    /// end a window). Absent: any time of day.
    pub hours: Option<String>,
    /// The offset from UTC, in minutes, that `hours` is written in
    /// (`120` for UTC+02:00, `-300` for UTC−05:00). Absent: UTC.
    pub utc_offset_minutes: Option<i32>,
}

impl AllowlistConfig {
    /// Parses a config table given as TOML text. Errors are
    /// [`ErrorKind::Invalid`](keygate_sdk::ErrorKind::Invalid) and name the
    /// field and its line (see [`keygate_sdk::config`]).
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        keygate_sdk::config::parse(text)
    }
}

/// A daily window of approval hours in a fixed offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalHours {
    /// Minute of the day the window opens (inclusive), `0..1440`.
    start: u32,
    /// Minute of the day the window closes (exclusive), `1..=1440`.
    end: u32,
    /// Minutes east of UTC.
    utc_offset_minutes: i32,
}

impl ApprovalHours {
    /// Parses `"HH:MM-HH:MM"` in the given offset. The error names the
    /// `hours` field.
    pub fn parse(text: &str, utc_offset_minutes: i32) -> Result<Self, PluginError> {
        let bad = |why: &str| {
            PluginError::invalid(format!(
                "field \"hours\": {text:?}: {why}; write \"HH:MM-HH:MM\" on a 24-hour clock, \
                 e.g. \"08:00-18:00\" or \"22:00-06:00\""
            ))
        };
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| bad("no '-' between start and end"))?;
        let start = parse_hhmm(start).ok_or_else(|| bad("the start is not a time HH:MM"))?;
        let end = parse_hhmm(end).ok_or_else(|| bad("the end is not a time HH:MM"))?;
        if start == MINUTES_PER_DAY {
            return Err(bad("24:00 may only end a window"));
        }
        let end_of_day = if end == MINUTES_PER_DAY { 0 } else { end };
        if start == end_of_day {
            return Err(bad(
                "start and end are the same time; leave `hours` out to approve at any time",
            ));
        }
        if utc_offset_minutes.abs() > MAX_UTC_OFFSET_MINUTES {
            return Err(PluginError::invalid(format!(
                "field \"utc_offset_minutes\": {utc_offset_minutes} is outside \
                 -{MAX_UTC_OFFSET_MINUTES}..={MAX_UTC_OFFSET_MINUTES}"
            )));
        }
        Ok(Self {
            start,
            end,
            utc_offset_minutes,
        })
    }

    /// Whether the instant `unix_time_secs` falls inside the window.
    pub fn contains(&self, unix_time_secs: u64) -> bool {
        // i128: no overflow for any u64 time and any offset.
        let local = i128::from(unix_time_secs) + i128::from(self.utc_offset_minutes) * 60;
        let second_of_day = local.rem_euclid(SECS_PER_DAY);
        let start = i128::from(self.start) * 60;
        let end = i128::from(self.end) * 60;
        if start < end {
            start <= second_of_day && second_of_day < end
        } else {
            // Wraps midnight: from start to the end of the day, and from
            // the start of the day to end.
            second_of_day >= start || second_of_day < end
        }
    }
}

/// `08:00-18:00 UTC`, or `22:00-06:00 UTC+05:30`.
impl fmt::Display for ApprovalHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hhmm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{} UTC", hhmm(self.start), hhmm(self.end))?;
        let offset = self.utc_offset_minutes;
        if offset != 0 {
            let sign = if offset < 0 { '-' } else { '+' };
            write!(f, "{sign}{}", hhmm(offset.unsigned_abs()))?;
        }
        Ok(())
    }
}

/// `"HH:MM"` as a minute of the day, `0..=1440` (only `24:00` reaches 1440).
fn parse_hhmm(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let two_digits = |s: &str| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let (h, m) = (two_digits(h)?, two_digits(m)?);
    match (h, m) {
        (24, 0) => Some(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// The `allowlist` approval policy.
#[derive(Debug, Clone)]
pub struct AllowlistPolicy {
    devices: BTreeSet<DeviceId>,
    hours: Option<ApprovalHours>,
}

impl AllowlistPolicy {
    /// Builds the policy from a parsed config, checking what the types alone
    /// cannot: a non-empty list, the format of `hours`, the offset's range.
    pub fn new(config: AllowlistConfig) -> Result<Self, PluginError> {
        if config.devices.is_empty() {
            return Err(PluginError::invalid(
                "field \"devices\": the list is empty: list at least one device id",
            ));
        }
        let hours = match (&config.hours, config.utc_offset_minutes) {
            (Some(hours), offset) => Some(ApprovalHours::parse(hours, offset.unwrap_or(0))?),
            (None, Some(_)) => {
                return Err(PluginError::invalid(
                    "field \"utc_offset_minutes\": has no effect without \"hours\": set \
                     \"hours\" or remove it",
                ));
            }
            (None, None) => None,
        };
        Ok(Self {
            devices: config.devices.into_iter().collect(),
            hours,
        })
    }

    /// The approval window, if any.
    pub fn hours(&self) -> Option<ApprovalHours> {
        self.hours
    }

    /// How many distinct device ids are on the list.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }
}

impl ApprovalPolicy for AllowlistPolicy {
    fn evaluate(&self, request: &ApprovalRequest) -> Result<Decision, PluginError> {
        let device = request.device_id();
        if !self.devices.contains(&device) {
            return Ok(Decision::deny(format!(
                "device {device} is not on the allowlist"
            )));
        }
        if let Some(hours) = self.hours
            && !hours.contains(request.unix_time_secs())
        {
            return Ok(Decision::deny(format!("outside approval hours {hours}")));
        }
        Ok(Decision::Approve)
    }
}

impl ApprovalPlugin for AllowlistPolicy {
    const NAME: &'static str = "allowlist";
    const DESCRIPTION: &'static str =
        "Example policy: approves listed device ids, optionally only during set hours";

    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError> {
        let policy = Self::new(AllowlistConfig::parse(config)?)?;
        let when = match policy.hours {
            Some(hours) => format!("during {hours}"),
            None => "at any time".to_owned(),
        };
        ctx.info(&format!(
            "approving {} listed device(s) {when}; denying all others",
            policy.device_count()
        ));
        Ok(policy)
    }
}

keygate_sdk::export_plugins! {
    approvals: [AllowlistPolicy],
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_sdk::{ErrorKind, PairingMethod};

    const ALICE: &str = "kgd190vqdjtlpcq27xslcveglfmr4ynfwg7gwpkq0k";
    const BOB: &str = "kgd1sxmr0k8u6trd5c6eu6trzyapzux7090ylx66zk";
    /// The device id of the bytes 0..20, from the SDK's own tests.
    const ZERO_TO_19: &str = "kgd1qqqsyqcyq5rqwzqfpg9scrgwpugpzysndvldwu";
    /// Midnight UTC of some day (2024-10-31).
    const DAY: u64 = 20_027 * 86_400;

    fn at(h: u64, m: u64, s: u64) -> u64 {
        DAY + h * 3600 + m * 60 + s
    }

    fn id(text: &str) -> DeviceId {
        DeviceId::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn policy(config: &str) -> AllowlistPolicy {
        AllowlistConfig::parse(config)
            .and_then(AllowlistPolicy::new)
            .unwrap_or_else(|e| panic!("{config:?}: {e}"))
    }

    fn refused(config: &str) -> PluginError {
        let err = AllowlistConfig::parse(config)
            .and_then(AllowlistPolicy::new)
            .expect_err(config);
        assert_eq!(err.kind(), ErrorKind::Invalid, "{config:?}: {err}");
        assert!(!err.message().contains('\n'), "one line: {err}");
        err
    }

    fn decide(policy: &AllowlistPolicy, device: &str, time: u64) -> Decision {
        let request = ApprovalRequest::new(
            id(device),
            "laptop",
            PairingMethod::Pin,
            "192.0.2.7:4433",
            &["shell"],
            time,
        );
        policy.evaluate(&request).expect("evaluate never fails")
    }

    fn office() -> AllowlistPolicy {
        policy(&format!("devices = [{ALICE:?}]\nhours = \"08:00-18:00\""))
    }

    fn outside(hours: &str) -> Decision {
        Decision::deny(format!("outside approval hours {hours}"))
    }

    #[test]
    fn listed_device_inside_the_hours_is_approved() {
        assert_eq!(decide(&office(), ALICE, at(12, 0, 0)), Decision::Approve);
    }

    #[test]
    fn listed_device_without_hours_is_approved_at_any_time() {
        let p = policy(&format!("devices = [{ALICE:?}, {BOB:?}]"));
        for t in [0, at(0, 0, 0), at(3, 33, 33), at(23, 59, 59), u64::MAX] {
            assert_eq!(decide(&p, BOB, t), Decision::Approve, "at {t}");
        }
    }

    #[test]
    fn unlisted_device_is_denied_naming_it() {
        assert_eq!(
            decide(&office(), BOB, at(12, 0, 0)),
            Decision::deny(format!("device {BOB} is not on the allowlist"))
        );
    }

    #[test]
    fn only_listed_device_ids_are_approved() {
        let p = office();
        for other in [BOB, ZERO_TO_19] {
            assert_eq!(
                decide(&p, other, at(12, 0, 0)),
                Decision::deny(format!("device {other} is not on the allowlist")),
                "{other:?}"
            );
        }
    }

    #[test]
    fn ids_listed_in_upper_case_match_the_device() {
        let p = policy(&format!(
            "devices = [{:?}]",
            ZERO_TO_19.to_ascii_uppercase()
        ));
        assert_eq!(decide(&p, ZERO_TO_19, at(12, 0, 0)), Decision::Approve);
    }

    #[test]
    fn listed_device_outside_the_hours_is_denied_with_the_window() {
        assert_eq!(
            decide(&office(), ALICE, at(20, 0, 0)),
            outside("08:00-18:00 UTC")
        );
    }

    #[test]
    fn window_start_is_inclusive() {
        let p = office();
        assert_eq!(decide(&p, ALICE, at(8, 0, 0)), Decision::Approve);
        assert_eq!(decide(&p, ALICE, at(7, 59, 59)), outside("08:00-18:00 UTC"));
    }

    #[test]
    fn window_end_is_exclusive() {
        let p = office();
        assert_eq!(decide(&p, ALICE, at(17, 59, 59)), Decision::Approve);
        assert_eq!(decide(&p, ALICE, at(18, 0, 0)), outside("08:00-18:00 UTC"));
    }

    #[test]
    fn window_wrapping_midnight_covers_both_sides() {
        let p = policy(&format!("devices = [{ALICE:?}]\nhours = \"22:00-06:00\""));
        for (h, m, s) in [(22, 0, 0), (23, 59, 59), (0, 0, 0), (3, 0, 0), (5, 59, 59)] {
            assert_eq!(
                decide(&p, ALICE, at(h, m, s)),
                Decision::Approve,
                "{h}:{m}:{s}"
            );
        }
        for (h, m, s) in [(6, 0, 0), (12, 0, 0), (21, 59, 59)] {
            assert_eq!(
                decide(&p, ALICE, at(h, m, s)),
                outside("22:00-06:00 UTC"),
                "{h}:{m}:{s}"
            );
        }
    }

    #[test]
    fn window_may_end_at_24_00() {
        let p = policy(&format!("devices = [{ALICE:?}]\nhours = \"18:00-24:00\""));
        assert_eq!(decide(&p, ALICE, at(23, 59, 59)), Decision::Approve);
        assert_eq!(decide(&p, ALICE, at(0, 0, 0)), outside("18:00-24:00 UTC"));
        assert_eq!(
            decide(&p, ALICE, at(17, 59, 59)),
            outside("18:00-24:00 UTC")
        );
    }

    #[test]
    fn utc_offset_shifts_the_window() {
        // 08:00-18:00 in UTC+02:00 is 06:00-16:00 UTC.
        let p = policy(&format!(
            "devices = [{ALICE:?}]\nhours = \"08:00-18:00\"\nutc_offset_minutes = 120"
        ));
        assert_eq!(decide(&p, ALICE, at(6, 0, 0)), Decision::Approve);
        assert_eq!(decide(&p, ALICE, at(15, 59, 59)), Decision::Approve);
        assert_eq!(
            decide(&p, ALICE, at(5, 59, 59)),
            outside("08:00-18:00 UTC+02:00")
        );
        assert_eq!(
            decide(&p, ALICE, at(16, 0, 0)),
            outside("08:00-18:00 UTC+02:00")
        );
    }

    #[test]
    fn negative_offset_can_move_the_window_across_utc_midnight() {
        // 20:00-23:00 in UTC-05:30 is 01:30-04:30 UTC the next day.
        let p = policy(&format!(
            "devices = [{ALICE:?}]\nhours = \"20:00-23:00\"\nutc_offset_minutes = -330"
        ));
        assert_eq!(decide(&p, ALICE, at(1, 30, 0)), Decision::Approve);
        assert_eq!(decide(&p, ALICE, at(4, 29, 59)), Decision::Approve);
        assert_eq!(
            decide(&p, ALICE, at(1, 29, 59)),
            outside("20:00-23:00 UTC-05:30")
        );
        assert_eq!(
            decide(&p, ALICE, at(21, 0, 0)),
            outside("20:00-23:00 UTC-05:30")
        );
    }

    #[test]
    fn times_at_the_ends_of_the_u64_range_do_not_panic() {
        let p = policy(&format!(
            "devices = [{ALICE:?}]\nhours = \"00:00-23:00\"\nutc_offset_minutes = -60"
        ));
        // The epoch is 23:00 of the day before in UTC-01:00: outside.
        assert_eq!(decide(&p, ALICE, 0), outside("00:00-23:00 UTC-01:00"));
        assert_eq!(decide(&p, ALICE, 3600), Decision::Approve);
        let _ = decide(&p, ALICE, u64::MAX);
    }

    #[test]
    fn unlisted_device_is_denied_for_the_list_even_outside_hours() {
        assert_eq!(
            decide(&office(), BOB, at(3, 0, 0)),
            Decision::deny(format!("device {BOB} is not on the allowlist"))
        );
    }

    #[test]
    fn unknown_config_key_is_refused_naming_it_and_its_line() {
        let err = refused(&format!("devices = [{ALICE:?}]\nhour = \"08:00-18:00\""));
        assert!(
            err.message()
                .starts_with("line 2: field \"hour\": unknown field `hour`"),
            "{err}"
        );
    }

    #[test]
    fn missing_or_empty_device_list_is_refused_naming_devices() {
        assert_eq!(
            refused("").message(),
            "field \"devices\": missing field `devices`"
        );
        assert!(
            refused("hours = \"08:00-18:00\"")
                .message()
                .contains("field \"devices\": missing field `devices`")
        );
        assert_eq!(
            refused("devices = []").message(),
            "field \"devices\": the list is empty: list at least one device id"
        );
    }

    #[test]
    fn malformed_device_ids_are_refused_with_the_entry_and_the_reason() {
        // ALICE with one character changed: the checksum catches it.
        let typo = ALICE.replacen("90vq", "90vp", 1);
        let mixed = format!("KGD1{}", &ALICE[4..]);
        let cases = [
            ("kgd1alice", "has 9 characters, a device id has 42"),
            (typo.as_str(), "bad checksum"),
            (
                "kgd190vqdjtlpcq27xslcveglfmr4ynfwg7gwpkq0o",
                "not in the device id alphabet",
            ),
            (mixed.as_str(), "mixes upper- and lower-case letters"),
            (
                "kgx1qqqsyqcyq5rqwzqfpg9scrgwpugpzysndvldwu",
                "does not start with \"kgd1\"",
            ),
            ("dev-a", "does not start with \"kgd1\""),
            (" kgd1x", "does not start with \"kgd1\""),
            ("", "device id is empty"),
        ];
        for (entry, why) in cases {
            let err = refused(&format!("devices = [\n  {ALICE:?},\n  {entry:?},\n]"));
            let message = err.message();
            assert!(
                message.starts_with("line 3: field \"devices\": "),
                "{entry:?}: {message}"
            );
            assert!(message.contains(why), "{entry:?}: {message}");
            if !entry.is_empty() {
                assert!(
                    message.contains(&format!("{entry:?}")),
                    "{entry:?}: {message}"
                );
            }
        }
    }

    #[test]
    fn the_sdk_test_vector_is_accepted() {
        let p = policy(&format!("devices = [{ZERO_TO_19:?}]"));
        assert_eq!(p.device_count(), 1);
        assert_eq!(decide(&p, ZERO_TO_19, at(12, 0, 0)), Decision::Approve);
    }

    #[test]
    fn long_garbage_in_the_list_is_shortened_in_messages() {
        let err = refused(&format!("devices = [{:?}]", "x".repeat(10_000)));
        assert!(err.message().len() < 300, "{err}");
    }

    #[test]
    fn wrong_types_are_refused_naming_the_field() {
        for (config, field) in [
            (format!("devices = {ALICE:?}"), "field \"devices\""),
            ("devices = [1]".to_owned(), "field \"devices\""),
            (
                format!("devices = [{ALICE:?}]\nhours = 8"),
                "line 2: field \"hours\"",
            ),
            (
                format!(
                    "devices = [{ALICE:?}]\nhours = \"08:00-18:00\"\nutc_offset_minutes = \"+2\""
                ),
                "line 3: field \"utc_offset_minutes\"",
            ),
        ] {
            let err = refused(&config);
            assert!(err.message().contains(field), "{config:?}: {err}");
        }
    }

    #[test]
    fn malformed_hours_are_refused_naming_hours() {
        for hours in [
            "",
            "08:00",
            "8:00-18:00",
            "08:00-18",
            "0800-1800",
            "08:00 - 18:00",
            "08:60-18:00",
            "25:00-26:00",
            "24:00-06:00",
            "08:00-18:00-20:00",
            "+8:00-18:00",
            "08:00-08:00",
            "00:00-24:00",
            "٠٨:٠٠-١٨:٠٠",
        ] {
            let err = refused(&format!("devices = [{ALICE:?}]\nhours = {hours:?}"));
            assert!(
                err.message().starts_with("field \"hours\": "),
                "{hours:?}: {err}"
            );
        }
    }

    #[test]
    fn offset_out_of_range_is_refused_naming_it() {
        for offset in [-1081, 1081, 100_000] {
            let err = refused(&format!(
                "devices = [{ALICE:?}]\nhours = \"08:00-18:00\"\nutc_offset_minutes = {offset}"
            ));
            assert!(
                err.message().starts_with("field \"utc_offset_minutes\": "),
                "{offset}: {err}"
            );
        }
    }

    #[test]
    fn offset_without_hours_is_refused() {
        let err = refused(&format!("devices = [{ALICE:?}]\nutc_offset_minutes = 60"));
        assert!(
            err.message().starts_with("field \"utc_offset_minutes\": "),
            "{err}"
        );
        assert!(err.message().contains("\"hours\""), "{err}");
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let err = refused(&format!("devices = [{ALICE:?}]\nhours = "));
        assert!(err.message().starts_with("line 2: "), "{err}");
    }

    #[test]
    fn hours_display_with_their_offset() {
        let show = |h: &str, o: i32| ApprovalHours::parse(h, o).expect(h).to_string();
        assert_eq!(show("08:00-18:00", 0), "08:00-18:00 UTC");
        assert_eq!(show("22:00-06:00", 330), "22:00-06:00 UTC+05:30");
        assert_eq!(show("22:00-06:00", -600), "22:00-06:00 UTC-10:00");
    }
}

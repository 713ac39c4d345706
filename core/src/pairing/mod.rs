//! Pairing codes as an operator mints them: PINs, the `keygate://` URI a QR
//! code carries, and the QR code's renderings.
//!
//! - [`pin`]: drawing a PIN uniformly, never a trivial one.
//! - [`uri`]: the pairing URI, written by the gateway and read by devices.
//! - [`render`]: a QR code for a terminal, a PNG or an SVG file.
//!
//! A minted code lives in a pairing session ([`crate::state::pairing`]),
//! inside the encrypted store only. Everything here is pure: no clock, no
//! file, no log.
//!
//! The settings of the `[pairing]` config table are [`PairingSettings`];
//! see `docs/pairing.md` for the operator's view.

pub mod gateway;
pub mod mint;
pub mod pin;
pub mod render;
pub mod uri;

use std::time::Duration;

pub use pin::{DEFAULT_PIN_DIGITS, MAX_PIN_DIGITS, MIN_PIN_DIGITS};
pub use render::QrMatrix;
pub use uri::{GatewayAddr, Host, PairingUri, UriError};

/// The shortest life a code may be given.
pub const MIN_CODE_TTL: Duration = Duration::from_secs(30);
/// The longest life a code may be given.
pub const MAX_CODE_TTL: Duration = Duration::from_secs(24 * 3600);
/// A code's life unless the config or `--ttl` says otherwise.
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// The most failed attempts a code may allow.
pub const MAX_ATTEMPTS: u32 = 20;
/// Failed attempts a code allows unless the config says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// The shortest time a request may wait for a decision.
pub const MIN_REQUEST_TTL: Duration = Duration::from_secs(60);
/// The longest time a request may wait for a decision.
pub const MAX_REQUEST_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long a request waits for a decision unless the config says otherwise.
pub const DEFAULT_REQUEST_TTL: Duration = Duration::from_secs(30 * 60);

/// `[pairing]`: how codes are minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingSettings {
    /// Digits of a PIN, [`MIN_PIN_DIGITS`]`..=`[`MAX_PIN_DIGITS`].
    pub pin_digits: usize,
    /// How long a code lives, [`MIN_CODE_TTL`]`..=`[`MAX_CODE_TTL`].
    pub code_ttl: Duration,
    /// Failed attempts before a code is burned, `1..=`[`MAX_ATTEMPTS`].
    pub max_attempts: u32,
    /// How long a device's request waits for a decision,
    /// [`MIN_REQUEST_TTL`]`..=`[`MAX_REQUEST_TTL`].
    pub request_ttl: Duration,
    /// How failed attempts are limited per source address.
    pub rate_limit: crate::state::ratelimit::RateLimitSettings,
}

impl Default for PairingSettings {
    fn default() -> Self {
        Self {
            pin_digits: DEFAULT_PIN_DIGITS,
            code_ttl: DEFAULT_CODE_TTL,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            request_ttl: DEFAULT_REQUEST_TTL,
            rate_limit: Default::default(),
        }
    }
}

/// Checks a code's life against [`MIN_CODE_TTL`]`..=`[`MAX_CODE_TTL`].
///
/// # Errors
/// A message saying the bounds.
pub fn check_code_ttl(ttl: Duration) -> Result<Duration, String> {
    if (MIN_CODE_TTL..=MAX_CODE_TTL).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(format!(
            "must be between 30s and 24h, not {}",
            crate::time::human_duration(ttl)
        ))
    }
}

/// Checks a request's life against
/// [`MIN_REQUEST_TTL`]`..=`[`MAX_REQUEST_TTL`].
///
/// # Errors
/// A message saying the bounds.
pub fn check_request_ttl(ttl: Duration) -> Result<Duration, String> {
    if (MIN_REQUEST_TTL..=MAX_REQUEST_TTL).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(format!(
            "must be between 1m and 7d, not {}",
            crate::time::human_duration(ttl)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_ttl_bounds() {
        assert!(check_code_ttl(Duration::from_secs(30)).is_ok());
        assert!(check_code_ttl(Duration::from_secs(86_400)).is_ok());
        assert_eq!(
            check_code_ttl(Duration::from_secs(29)).unwrap_err(),
            "must be between 30s and 24h, not 29s"
        );
        assert!(check_code_ttl(Duration::from_secs(86_401)).is_err());
    }
}

//! [`CertFingerprint`]: SHA-256 of a certificate's DER encoding.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// The length of a fingerprint in bytes.
const LEN: usize = 32;

/// The SHA-256 digest of a certificate's DER encoding: how a certificate is
/// named in revocations, connection events and the state.
///
/// Displayed and serialized as 64 lower-case hex digits; parsed from 64 hex
/// digits of either case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertFingerprint([u8; LEN]);

impl CertFingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// A fingerprint from its 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; LEN] {
        &self.0
    }

    /// Parses 64 hex digits (either case).
    ///
    /// # Errors
    /// [`FingerprintError`] naming the input and what is wrong with it.
    pub fn parse(input: &str) -> Result<Self, FingerprintError> {
        let shown = || input.chars().take(80).collect::<String>();
        let found = input.chars().count();
        if found != 2 * LEN {
            return Err(FingerprintError::WrongLength {
                input: shown(),
                found,
            });
        }
        if let Some((position, character)) = input
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_hexdigit())
        {
            return Err(FingerprintError::InvalidCharacter {
                input: shown(),
                character,
                position,
            });
        }
        let mut bytes = [0u8; LEN];
        hex::decode_to_slice(input, &mut bytes).map_err(|_| {
            FingerprintError::InvalidCharacter {
                input: shown(),
                character: '?',
                position: 0,
            }
        })?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertFingerprint({self})")
    }
}

impl FromStr for CertFingerprint {
    type Err = FingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for CertFingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for CertFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = CertFingerprint;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a certificate fingerprint: SHA-256 as 64 hex digits")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CertFingerprint, E> {
                CertFingerprint::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Why a string is not a certificate fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// Not 64 characters.
    #[error(
        "certificate fingerprint {input:?} has {found} characters, a SHA-256 fingerprint has 64 hex digits"
    )]
    WrongLength {
        /// The refused input (at most 80 characters of it).
        input: String,
        /// Its length in characters.
        found: usize,
    },
    /// A character that is not a hex digit.
    #[error(
        "certificate fingerprint {input:?} has {character:?} at position {position}, which is not a hex digit"
    )]
    InvalidCharacter {
        /// The refused input (at most 80 characters of it).
        input: String,
        /// The offending character.
        character: char,
        /// Its position, counted in characters from 0.
        position: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_hex_and_parses_back() {
        let fp = CertFingerprint::of_der(b"not really a certificate");
        let text = fp.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_ascii_lowercase());
        assert_eq!(CertFingerprint::parse(&text).unwrap(), fp);
        assert_eq!(
            CertFingerprint::parse(&text.to_ascii_uppercase()).unwrap(),
            fp
        );
    }

    #[test]
    fn bad_input_is_named() {
        let err = CertFingerprint::parse("abc").unwrap_err();
        assert!(matches!(
            err,
            FingerprintError::WrongLength { found: 3, .. }
        ));
        let mut s = "0".repeat(64);
        s.replace_range(10..11, "g");
        let err = CertFingerprint::parse(&s).unwrap_err();
        assert!(matches!(
            err,
            FingerprintError::InvalidCharacter {
                character: 'g',
                position: 10,
                ..
            }
        ));
    }
}

//! [`DeviceId`]: the checksummed, typeable name of a device's public key.
//!
//! # Format
//!
//! A device id is the [bech32m] (BIP-350) encoding of the first 20 bytes of
//! the SHA-256 digest of the device's raw 32-byte Ed25519 public key, with
//! the human-readable part `kgd` ("Keygate device"):
//!
//! ```text
//! digest    = SHA-256(public_key)            public_key: the 32-byte RFC 8032 encoding
//! data      = digest[0..20]                   160 bits
//! device_id = bech32m_encode("kgd", data)     lower case
//! ```
//!
//! It is always 42 characters: `kgd1`, 32 data characters and a
//! 6-character checksum. The checksum detects every error that changes up
//! to 4 characters, and the fixed length refuses every insertion or
//! deletion, so a mistyped id is refused ([`DeviceIdError`]) instead of
//! naming another device. Displayed in lower case; [`DeviceId::parse`] also
//! accepts all upper case and refuses mixed case, as bech32 requires.
//!
//! Test vector: the public key of RFC 8032's first Ed25519 test vector has
//! the device id `kgd1y8lrrhap2j3xzcntlp2qgm7jyudhhm2tkyepru`:
//!
//! ```
//! use keygate_sdk::DeviceId;
//! let mut key = [0u8; 32];
//! for (i, b) in key.iter_mut().enumerate() {
//!     let hex = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
//!     *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
//! }
//! let id = DeviceId::from_public_key(&key);
//! assert_eq!(id.to_string(), "kgd1y8lrrhap2j3xzcntlp2qgm7jyudhhm2tkyepru");
//! assert_eq!("kgd1y8lrrhap2j3xzcntlp2qgm7jyudhhm2tkyepru".parse::<DeviceId>(), Ok(id));
//! assert!(DeviceId::parse("kgd1y8lrrhap2j3xzcntlp2qgm7jyudhhm2tkyeprv").is_err());
//! ```
//!
//! [bech32m]: https://github.com/bitcoin/bips/blob/master/bip-0350.mediawiki

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32m, Hrp};
use sha2::{Digest, Sha256};

/// A raw 32-byte Ed25519 public key (RFC 8032 encoding), the input of
/// [`DeviceId::from_public_key`]. Implemented for `[u8; 32]`; a host's own
/// key type implements it too.
pub trait Ed25519PublicKey {
    /// The 32 bytes.
    fn ed25519_bytes(&self) -> &[u8; 32];
}

impl Ed25519PublicKey for [u8; 32] {
    fn ed25519_bytes(&self) -> &[u8; 32] {
        self
    }
}

/// The human-readable part of every device id (`kgd`, "Keygate device").
pub const DEVICE_ID_HRP: &str = "kgd";

/// The length of a device id in characters: `kgd1`, 32 data characters and
/// a 6-character checksum.
pub const DEVICE_ID_LEN: usize = DEVICE_ID_HRP.len() + 1 + DATA_CHARS + CHECKSUM_CHARS;

/// How many bytes of SHA-256(public key) a device id carries.
pub(crate) const ID_BYTES: usize = 20;
/// `ID_BYTES` as 5-bit characters (160 / 5, no padding).
const DATA_CHARS: usize = ID_BYTES * 8 / 5;
/// The length of a bech32m checksum.
const CHECKSUM_CHARS: usize = 6;
/// The bech32 alphabet, in value order.
const ALPHABET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
/// How much of a refused input an error message repeats.
const MAX_ECHO: usize = 80;

const HRP: Hrp = Hrp::parse_unchecked(DEVICE_ID_HRP);
/// The human-readable part and the separator.
const PREFIX: &str = "kgd1";

/// A device id: the first 20 bytes of SHA-256 of the device's Ed25519
/// public key, written as bech32m with the human-readable part `kgd`.
///
/// The format is documented in [the module docs](self). It is
/// displayed (and serialized) in lower case; [`DeviceId::parse`] (also used
/// by [`FromStr`] and deserialization) refuses any string that is not a
/// well-formed device id with a valid checksum.
///
/// The value is just the 20 bytes (cheap to copy, hash and keep in large
/// sets); the text form is encoded when displayed. `Ord` orders by those
/// bytes, which is not the alphabetical order of the text form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId {
    bytes: [u8; ID_BYTES],
}

impl DeviceId {
    /// The device id of `public_key`.
    pub fn from_public_key(public_key: &(impl Ed25519PublicKey + ?Sized)) -> Self {
        Self::from_id_bytes(id_bytes(public_key))
    }

    pub(crate) fn from_id_bytes(bytes: [u8; ID_BYTES]) -> Self {
        Self { bytes }
    }

    /// Parses a device id, refusing anything but a well-formed `kgd1…`
    /// bech32m string of the right length with a valid checksum.
    ///
    /// Lower case and all-upper case are accepted; mixed case is refused.
    /// Surrounding whitespace is not trimmed (trim user input first).
    ///
    /// # Errors
    /// A [`DeviceIdError`] naming what is wrong and the (possibly shortened)
    /// input.
    pub fn parse(input: &str) -> Result<Self, DeviceIdError> {
        if input.is_empty() {
            return Err(DeviceIdError::Empty);
        }
        let has_lower = input.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = input.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper {
            return Err(DeviceIdError::MixedCase { input: echo(input) });
        }
        let lower = input.to_ascii_lowercase();

        if !lower.starts_with(PREFIX) {
            let found = match lower.rfind('1') {
                Some(pos) => echo(&lower[..pos]),
                None => String::new(),
            };
            return Err(DeviceIdError::WrongPrefix {
                input: echo(input),
                found,
            });
        }
        let found_len = input.chars().count();
        if found_len != DEVICE_ID_LEN {
            return Err(DeviceIdError::WrongLength {
                input: echo(input),
                expected: DEVICE_ID_LEN,
                found: found_len,
            });
        }
        // Positions are counted in characters: a non-ASCII character is
        // several bytes but one position for the person reading the error.
        for (position, character) in input.chars().enumerate().skip(PREFIX.len()) {
            if !ALPHABET.contains(character.to_ascii_lowercase()) {
                return Err(DeviceIdError::InvalidCharacter {
                    input: echo(input),
                    character,
                    position,
                });
            }
        }

        let checked = CheckedHrpstring::new::<Bech32m>(&lower)
            .map_err(|_| DeviceIdError::BadChecksum { input: echo(input) })?;
        let mut bytes = [0u8; ID_BYTES];
        let mut count = 0usize;
        for (slot, byte) in bytes.iter_mut().zip(checked.byte_iter()) {
            *slot = byte;
            count += 1;
        }
        if count != ID_BYTES {
            // Unreachable with the length checked above; refuse rather than
            // build a short id.
            return Err(DeviceIdError::WrongLength {
                input: echo(input),
                expected: DEVICE_ID_LEN,
                found: found_len,
            });
        }
        Ok(Self::from_id_bytes(bytes))
    }

    /// The 20 bytes the id encodes: SHA-256(public key)\[0..20\].
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.bytes
    }

    /// Whether this is the id of `public_key`.
    pub fn matches(&self, public_key: &(impl Ed25519PublicKey + ?Sized)) -> bool {
        // Compares the digests: no need to encode the key's id.
        self.bytes == id_bytes(public_key)
    }
}

/// SHA-256(public key)\[0..20\].
fn id_bytes(public_key: &(impl Ed25519PublicKey + ?Sized)) -> [u8; ID_BYTES] {
    let digest = Sha256::digest(public_key.ed25519_bytes());
    let mut bytes = [0u8; ID_BYTES];
    bytes.copy_from_slice(&digest[..ID_BYTES]);
    bytes
}

/// The input as it may appear in an error message: at most `MAX_ECHO`
/// characters, so a megabyte of garbage does not end up in a log line.
fn echo(input: &str) -> String {
    match input.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // 20 bytes under a valid 3-character hrp are far below bech32's
        // length limit, so the only error left is the formatter's own.
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, HRP, &self.bytes).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for DeviceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DeviceId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a Keygate device id ({DEVICE_ID_HRP}1…, {DEVICE_ID_LEN} characters)"
                )
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DeviceId, E> {
                DeviceId::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Why a string is not a device id.
///
/// Every variant that concerns an input repeats it (shortened to 80
/// characters), so the operator sees what was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceIdError {
    /// The string is empty.
    #[error("device id is empty")]
    Empty,
    /// Upper- and lower-case letters are mixed (bech32 refuses that).
    #[error("device id {input:?} mixes upper- and lower-case letters")]
    MixedCase {
        /// The refused input.
        input: String,
    },
    /// The string does not start with `kgd1`.
    #[error(
        "device id {input:?} does not start with \"kgd1\"{}",
        if found.is_empty() { String::new() } else { format!(" (its prefix is {found:?}: not a device id)") }
    )]
    WrongPrefix {
        /// The refused input.
        input: String,
        /// The human-readable part the input has instead, if any.
        found: String,
    },
    /// The string has the wrong number of characters (a character is
    /// missing or one too many).
    #[error("device id {input:?} has {found} characters, a device id has {expected}")]
    WrongLength {
        /// The refused input.
        input: String,
        /// The length of every device id.
        expected: usize,
        /// The input's length in characters.
        found: usize,
    },
    /// A character outside the bech32 alphabet (`1`, `b`, `i` and `o` are
    /// not in it).
    #[error(
        "device id {input:?} has the character {character:?} at position {position}, \
         which is not in the device id alphabet (qpzry9x8gf2tvdw0s3jn54khce6mua7l)"
    )]
    InvalidCharacter {
        /// The refused input.
        input: String,
        /// The offending character.
        character: char,
        /// Its position, counted in characters from 0.
        position: usize,
    },
    /// The checksum does not match: the id was mistyped.
    #[error("device id {input:?} has a bad checksum: it was mistyped or is not a device id")]
    BadChecksum {
        /// The refused input.
        input: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_the_hrp_and_the_separator() {
        assert_eq!(PREFIX, format!("{DEVICE_ID_HRP}1"));
    }

    #[test]
    fn length_constant_matches_the_encoder() {
        let id = DeviceId::from_id_bytes([7u8; ID_BYTES]).to_string();
        assert_eq!(id.len(), DEVICE_ID_LEN);
        assert_eq!(DEVICE_ID_LEN, 42);
        assert!(id.starts_with("kgd1"));
    }

    #[test]
    fn encoding_of_bytes_0_to_19_matches_an_independent_bech32m_encoder() {
        // Value computed with the BIP-350 reference algorithm in Python.
        let bytes: [u8; ID_BYTES] = std::array::from_fn(|i| i as u8);
        let id = DeviceId::from_id_bytes(bytes);
        assert_eq!(id.to_string(), "kgd1qqqsyqcyq5rqwzqfpg9scrgwpugpzysndvldwu");
        assert_eq!(DeviceId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn a_device_id_is_just_its_twenty_bytes() {
        assert_eq!(std::mem::size_of::<DeviceId>(), ID_BYTES);
    }

    #[test]
    fn echo_shortens_long_input() {
        let long = "x".repeat(1000);
        let e = echo(&long);
        assert_eq!(e.chars().count(), MAX_ECHO + 1);
    }
}

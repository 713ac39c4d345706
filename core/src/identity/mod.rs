//! Device identity: the device's Ed25519 key, its public key, the device id
//! derived from that public key, and certificate fingerprints.
//!
//! Every device makes its own Ed25519 key ([`DeviceKey`]) and never lets the
//! private half leave it. The gateway only ever sees the public half
//! ([`DevicePublicKey`]), and the device's name on the wire, in the state and
//! in operator commands is a [`DeviceId`] derived from that public key, so a
//! device id can never be claimed by another key.
//!
//! # Device id format
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
//! `bech32m_encode` is the encoder of BIP-173 with the checksum constant of
//! BIP-350 (`0x2bc830a3`): the 20 bytes are regrouped, most significant bit
//! first, into 32 groups of 5 bits (160 bits exactly, no padding), each group
//! is written with the alphabet `qpzry9x8gf2tvdw0s3jn54khce6mua7l`, and a
//! 6-character checksum over the human-readable part and the data follows.
//! A device id is therefore always exactly 42 characters:
//!
//! ```text
//! kgd1 <32 data characters> <6 checksum characters>
//! ```
//!
//! Test vector: the public key of RFC 8032's first Ed25519 test vector,
//! `d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a`, has
//! the device id `kgd1y8lrrhap2j3xzcntlp2qgm7jyudhhm2tkyepru`.
//!
//! Any bech32m library recomputes and checks it, e.g. in Python with the
//! reference `segwit_addr.py`:
//! `bech32_encode("kgd", convertbits(sha256(pk).digest()[:20], 8, 5), Encoding.BECH32M)`.
//!
//! Why this form:
//! - **Typeable**: one case, no `1`, `b`, `i` or `o` in the data part (the
//!   easily confused characters are not in the alphabet).
//! - **Checked**: the bech32m checksum detects every error that changes up to
//!   4 characters (so every single substitution and every swap of two
//!   characters), and the fixed length refuses every insertion or deletion;
//!   other errors slip through with a probability below 1 in 10^9. A
//!   mistyped id is refused ([`DeviceIdError`]), it never names a different
//!   device.
//! - **Unambiguous**: 160 bits of SHA-256, so finding a second key with the
//!   same id costs about 2^160 hashes.
//!
//! Case: device ids are displayed in lower case. [`DeviceId::parse`] also
//! accepts the all-upper-case form (bech32 allows it, and QR codes encode
//! upper case more compactly) and refuses mixed case, as bech32 requires.
//!
//! # Certificate fingerprints
//!
//! A [`CertFingerprint`] is the SHA-256 digest of a certificate's DER
//! encoding, written as 64 lower-case hex digits.
//!
//! [bech32m]: https://github.com/bitcoin/bips/blob/master/bip-0350.mediawiki

mod fingerprint;
mod key;

pub use fingerprint::{CertFingerprint, FingerprintError};
pub use key::{DeviceKey, DeviceKeyError, DevicePublicKey, SIGNATURE_LEN};
/// The device id type and its codec live in `keygate-sdk` (plugins use them
/// too); this is the same type.
pub use keygate_sdk::device_id::{DEVICE_ID_HRP, DEVICE_ID_LEN, DeviceId, DeviceIdError};

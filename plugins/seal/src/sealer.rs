//! Sealing: the format of sealed records and of the key check, both
//! AES-256-GCM.
//!
//! # Sealed record (format version 1)
//! ```text
//! offset  size  field
//!      0     4  magic "KGSR"
//!      4     1  format version (1)
//!      5     8  record version (the compare-and-swap version), big-endian u64
//!     13    12  nonce, fresh from the OS random source for every seal
//!     25     n  ciphertext of the value
//!   25+n    16  GCM tag
//! ```
//! The associated data is the first 13 bytes (magic, format version, record
//! version) followed by the UTF-8 key name. So the version cannot be
//! altered, and a blob copied or moved over another key's record fails to
//! open. A blob that does not start with the magic is refused: there is
//! no plaintext fallback.
//!
//! # Key check (format version 1)
//! ```text
//! magic "KGSK" | format version (1) | nonce (12) | ciphertext of a constant (32) | tag (16)
//! ```
//! with associated data `magic | format version | "keycheck"`. A store
//! keeps one beside its records to tell, when it opens, that it was given
//! the wrong key. (The constant names the filesystem store, which defined
//! the format first; every store uses the same one.)

use aes_gcm::aead::array::Array;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use zeroize::{Zeroize, Zeroizing};

/// The length of a store key, in bytes.
pub const KEY_LEN: usize = 32;

const RECORD_MAGIC: &[u8; 4] = b"KGSR";
const CHECK_MAGIC: &[u8; 4] = b"KGSK";
/// The format version written in every record and key check.
pub const FORMAT_VERSION: u8 = 1;
/// The length of a GCM nonce.
pub const NONCE_LEN: usize = 12;
/// The length of a GCM tag.
pub const TAG_LEN: usize = 16;
/// Magic, format version, record version: the authenticated prefix.
const RECORD_PREFIX_LEN: usize = 4 + 1 + 8;
const RECORD_HEADER_LEN: usize = RECORD_PREFIX_LEN + NONCE_LEN;
/// The shortest well-formed sealed record (an empty value).
pub const MIN_RECORD_LEN: usize = RECORD_HEADER_LEN + TAG_LEN;

const CHECK_HEADER_LEN: usize = 4 + 1;
const CHECK_PLAINTEXT: &[u8; 32] = b"keygate-store-fs key check v1...";
const CHECK_AAD_LABEL: &[u8] = b"keycheck";
const CHECK_LEN: usize = CHECK_HEADER_LEN + NONCE_LEN + CHECK_PLAINTEXT.len() + TAG_LEN;

/// 32 bytes of key material, wiped from memory when dropped.
pub struct StoreKey(Zeroizing<[u8; KEY_LEN]>);

impl StoreKey {
    /// Wraps key bytes (moved in; the caller's copy is the caller's to wipe).
    pub fn new(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self(bytes)
    }

    /// A fresh key from the OS random source.
    pub fn generate() -> Result<Self, RandomError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(Self(bytes))
    }

    /// The raw bytes, for writing a new key file.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// The OS random source failed.
#[derive(Debug)]
pub struct RandomError(getrandom::Error);

impl std::fmt::Display for RandomError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the OS random source failed: {}", self.0)
    }
}

impl std::error::Error for RandomError {}

/// Fills `buf` from the OS random source.
pub fn fill_random(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(RandomError)
}

/// A random `u64` from the OS random source.
pub fn random_u64() -> Result<u64, RandomError> {
    getrandom::u64().map_err(RandomError)
}

/// Why a record (or the key check) could not be opened. Shown after the
/// record's name.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenError {
    /// Shorter than the smallest valid blob.
    Truncated {
        /// The blob's length.
        len: usize,
        /// The least a well-formed blob holds.
        min: usize,
    },
    /// Does not start with the magic: plaintext or a foreign file.
    NoHeader,
    /// A format version this build does not read.
    UnsupportedFormat(u8),
    /// The GCM tag did not verify.
    AuthenticationFailed,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated { len, min } => write!(
                f,
                "truncated file ({len} bytes; a sealed file has at least {min})"
            ),
            Self::NoHeader => f.write_str(
                "no keygate header (a plaintext or foreign file; records are always sealed)",
            ),
            Self::UnsupportedFormat(v) => write!(
                f,
                "unsupported format version {v} (this build reads version {FORMAT_VERSION})"
            ),
            Self::AuthenticationFailed => {
                f.write_str("authentication failed (tampered, moved, or wrong key)")
            }
        }
    }
}

impl std::error::Error for OpenError {}

/// Why sealing failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SealError {
    /// No nonce could be drawn.
    Random(RandomError),
    /// The value is beyond what one GCM message may hold (64 GiB).
    TooLarge,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Random(e) => e.fmt(f),
            Self::TooLarge => f.write_str("value too large to seal in one record"),
        }
    }
}

impl std::error::Error for SealError {}

impl From<RandomError> for SealError {
    fn from(e: RandomError) -> Self {
        Self::Random(e)
    }
}

/// Seals and opens records with one store key. The cipher's key schedule
/// is wiped when it is dropped (the `zeroize` feature of `aes-gcm`).
pub struct Sealer {
    cipher: Aes256Gcm,
}

fn record_aad(prefix: &[u8], key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(prefix.len() + key.len());
    aad.extend_from_slice(prefix);
    aad.extend_from_slice(key.as_bytes());
    aad
}

fn check_aad() -> Vec<u8> {
    let mut aad = Vec::with_capacity(CHECK_HEADER_LEN + CHECK_AAD_LABEL.len());
    aad.extend_from_slice(CHECK_MAGIC);
    aad.push(FORMAT_VERSION);
    aad.extend_from_slice(CHECK_AAD_LABEL);
    aad
}

impl Sealer {
    /// A sealer for `key`.
    pub fn new(key: &StoreKey) -> Self {
        let key: &[u8; KEY_LEN] = &key.0;
        // Borrowed, not copied: no stray copy of the key on the stack.
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// Encrypts `buf[start..]` in place under `nonce` and appends the tag.
    fn seal_tail(
        &self,
        buf: &mut Vec<u8>,
        start: usize,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
    ) -> Result<(), SealError> {
        let tag = self
            .cipher
            .encrypt_inout_detached(&Array::from(*nonce), aad, (&mut buf[start..]).into())
            .map_err(|_| SealError::TooLarge)?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// The sealed record of `value` stored under `key` at `version` (the
    /// contents of a record file, or of a database row's value).
    pub fn seal_record(&self, key: &str, version: u64, value: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut buf = Vec::with_capacity(RECORD_HEADER_LEN + value.len() + TAG_LEN);
        buf.extend_from_slice(RECORD_MAGIC);
        buf.push(FORMAT_VERSION);
        buf.extend_from_slice(&version.to_be_bytes());
        let aad = record_aad(&buf, key);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(value);
        if let Err(e) = self.seal_tail(&mut buf, RECORD_HEADER_LEN, &nonce, &aad) {
            buf.zeroize();
            return Err(e);
        }
        Ok(buf)
    }

    /// Authenticates `aad` alone (GMAC: GCM over an empty plaintext) under
    /// a fresh random nonce; returns the nonce and the tag. For data that
    /// needs integrity but not secrecy (the filesystem store's journal,
    /// whose contents are sealed records and key names already).
    pub fn authenticate(&self, aad: &[u8]) -> Result<([u8; NONCE_LEN], [u8; TAG_LEN]), SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut empty: [u8; 0] = [];
        let tag = self
            .cipher
            .encrypt_inout_detached(&Array::from(nonce), aad, (&mut empty[..]).into())
            .map_err(|_| SealError::TooLarge)?;
        Ok((nonce, tag.into()))
    }

    /// Whether `tag` authenticates `aad` under `nonce` with this key (see
    /// [`Sealer::authenticate`]).
    pub fn verify(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], tag: &[u8; TAG_LEN]) -> bool {
        let mut empty: [u8; 0] = [];
        self.cipher
            .decrypt_inout_detached(
                &Array::from(*nonce),
                aad,
                (&mut empty[..]).into(),
                &Array::from(*tag),
            )
            .is_ok()
    }

    /// Reads only the header of a sealed record: its format and version,
    /// unauthenticated. Used to give precise errors before decryption.
    fn check_record_header(file: &[u8]) -> Result<(), OpenError> {
        if file.len() < RECORD_MAGIC.len() + 1 {
            // Too short to even hold the magic: say "no header" only when
            // what is there is not a prefix of it.
            if !RECORD_MAGIC.starts_with(&file[..file.len().min(RECORD_MAGIC.len())]) {
                return Err(OpenError::NoHeader);
            }
            return Err(OpenError::Truncated {
                len: file.len(),
                min: MIN_RECORD_LEN,
            });
        }
        if &file[..4] != RECORD_MAGIC {
            return Err(OpenError::NoHeader);
        }
        if file[4] != FORMAT_VERSION {
            return Err(OpenError::UnsupportedFormat(file[4]));
        }
        if file.len() < MIN_RECORD_LEN {
            return Err(OpenError::Truncated {
                len: file.len(),
                min: MIN_RECORD_LEN,
            });
        }
        Ok(())
    }

    /// Authenticates and decrypts `key`'s sealed record, returning the
    /// version sealed in it and the value. On failure nothing of the
    /// plaintext is returned or left behind.
    pub fn open_record(&self, key: &str, mut file: Vec<u8>) -> Result<(u64, Vec<u8>), OpenError> {
        Self::check_record_header(&file)?;
        let mut version = [0u8; 8];
        version.copy_from_slice(&file[5..RECORD_PREFIX_LEN]);
        let version = u64::from_be_bytes(version);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&file[RECORD_PREFIX_LEN..RECORD_HEADER_LEN]);
        let tag_at = file.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&file[tag_at..]);
        let aad = record_aad(&file[..RECORD_PREFIX_LEN], key);
        // aes-gcm verifies the tag before it decrypts anything, so a failure
        // leaves only ciphertext in `file`.
        self.cipher
            .decrypt_inout_detached(
                &Array::from(nonce),
                &aad,
                (&mut file[RECORD_HEADER_LEN..tag_at]).into(),
                &Array::from(tag),
            )
            .map_err(|_| OpenError::AuthenticationFailed)?;
        if version == 0 {
            // Never written by this store: versions start at 1.
            file.zeroize();
            return Err(OpenError::AuthenticationFailed);
        }
        file.truncate(tag_at);
        file.drain(..RECORD_HEADER_LEN);
        Ok((version, file))
    }

    /// A new key check for this sealer's key.
    pub fn seal_check(&self) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let mut buf = Vec::with_capacity(CHECK_LEN);
        buf.extend_from_slice(CHECK_MAGIC);
        buf.push(FORMAT_VERSION);
        buf.extend_from_slice(&nonce);
        buf.extend_from_slice(CHECK_PLAINTEXT);
        let start = CHECK_HEADER_LEN + NONCE_LEN;
        self.seal_tail(&mut buf, start, &nonce, &check_aad())?;
        Ok(buf)
    }

    /// Verifies a key check against this sealer's key.
    pub fn open_check(&self, mut file: Vec<u8>) -> Result<(), OpenError> {
        if file.len() >= CHECK_HEADER_LEN && &file[..4] != CHECK_MAGIC {
            return Err(OpenError::NoHeader);
        }
        if file.len() >= CHECK_HEADER_LEN && file[4] != FORMAT_VERSION {
            return Err(OpenError::UnsupportedFormat(file[4]));
        }
        if file.len() != CHECK_LEN {
            return Err(OpenError::Truncated {
                len: file.len(),
                min: CHECK_LEN,
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&file[CHECK_HEADER_LEN..CHECK_HEADER_LEN + NONCE_LEN]);
        let tag_at = CHECK_LEN - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&file[tag_at..]);
        self.cipher
            .decrypt_inout_detached(
                &Array::from(nonce),
                &check_aad(),
                (&mut file[CHECK_HEADER_LEN + NONCE_LEN..tag_at]).into(),
                &Array::from(tag),
            )
            .map_err(|_| OpenError::AuthenticationFailed)?;
        if &file[CHECK_HEADER_LEN + NONCE_LEN..tag_at] != CHECK_PLAINTEXT {
            return Err(OpenError::AuthenticationFailed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&StoreKey::generate().unwrap())
    }

    #[test]
    fn records_round_trip_with_their_version() {
        let s = sealer();
        let file = s.seal_record("a/b", 42, b"secret").unwrap();
        assert_eq!(&file[..4], RECORD_MAGIC);
        assert!(!file.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            s.open_record("a/b", file).unwrap(),
            (42, b"secret".to_vec())
        );
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let s = sealer();
        assert_ne!(
            s.seal_record("k", 1, b"v").unwrap(),
            s.seal_record("k", 1, b"v").unwrap()
        );
    }

    #[test]
    fn every_authenticated_byte_matters() {
        let s = sealer();
        let file = s.seal_record("k", 7, b"value").unwrap();
        for i in 5..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                s.open_record("k", bad),
                Err(OpenError::AuthenticationFailed),
                "byte {i}"
            );
        }
        assert_eq!(
            s.open_record("other", file),
            Err(OpenError::AuthenticationFailed)
        );
    }

    #[test]
    fn malformed_files_get_precise_errors() {
        let s = sealer();
        let file = s.seal_record("k", 7, b"value").unwrap();
        assert_eq!(
            s.open_record("k", b"plain text".to_vec()),
            Err(OpenError::NoHeader)
        );
        assert_eq!(
            s.open_record("k", Vec::new()),
            Err(OpenError::Truncated {
                len: 0,
                min: MIN_RECORD_LEN
            })
        );
        assert!(matches!(
            s.open_record("k", file[..20].to_vec()),
            Err(OpenError::Truncated { len: 20, .. })
        ));
        let mut future = file.clone();
        future[4] = 9;
        assert_eq!(
            s.open_record("k", future),
            Err(OpenError::UnsupportedFormat(9))
        );
    }

    #[test]
    fn authentication_covers_every_byte_and_the_key() {
        let a = sealer();
        let aad = b"journal frame bytes".to_vec();
        let (nonce, tag) = a.authenticate(&aad).unwrap();
        assert!(a.verify(&nonce, &aad, &tag));
        assert!(!sealer().verify(&nonce, &aad, &tag), "another key");
        for i in 0..aad.len() {
            let mut bad = aad.clone();
            bad[i] ^= 0x01;
            assert!(!a.verify(&nonce, &bad, &tag), "byte {i}");
        }
        assert!(!a.verify(&nonce, &aad[1..], &tag), "shorter");
        let mut bad_nonce = nonce;
        bad_nonce[0] ^= 1;
        assert!(!a.verify(&bad_nonce, &aad, &tag), "nonce");
        let (nonce2, _) = a.authenticate(&aad).unwrap();
        assert_ne!(nonce, nonce2, "a fresh nonce each time");
    }

    #[test]
    fn the_key_check_tells_keys_apart() {
        let a = sealer();
        let b = sealer();
        let check = a.seal_check().unwrap();
        a.open_check(check.clone()).unwrap();
        assert_eq!(b.open_check(check), Err(OpenError::AuthenticationFailed));
        let record = a.seal_record("k", 1, b"x").unwrap();
        assert_eq!(a.open_check(record), Err(OpenError::NoHeader));
    }
}

//! [`DeviceKey`] (a device's Ed25519 private key) and [`DevicePublicKey`].

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::rand_core::CryptoRng;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use keygate_sdk::device_id::{DeviceId, Ed25519PublicKey};

/// The length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// The length of a raw Ed25519 public key or seed in bytes.
const KEY_LEN: usize = 32;

/// A device's Ed25519 key pair. It stays on the device: the gateway and the
/// CA only ever see [`DevicePublicKey`].
///
/// The secret is wiped from memory when the key is dropped; every export
/// ([`seed`](Self::seed), [`to_pkcs8_der`](Self::to_pkcs8_der)) is
/// returned in a [`Zeroizing`] buffer. `Debug` shows the device id, never
/// the secret.
#[derive(Clone)]
pub struct DeviceKey {
    signing: SigningKey,
    public: DevicePublicKey,
}

impl DeviceKey {
    /// Makes a new key from a cryptographically secure RNG, for instance
    /// `&mut rand::rng()`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_signing_key(SigningKey::generate(rng))
    }

    /// Rebuilds a key from its 32-byte seed (the RFC 8032 private key).
    pub fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        let public = DevicePublicKey(signing.verifying_key());
        Self { signing, public }
    }

    /// The Ed25519 signing key, for the pairing protocol's device side.
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The 32-byte seed (the RFC 8032 private key), for storing the key.
    pub fn seed(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// Reads a PKCS#8 DER private key: v1 (seed only, as OpenSSL writes) or
    /// v2 (seed and public key, RFC 8410/5958, as ring and rustls write).
    ///
    /// # Errors
    /// [`DeviceKeyError::InvalidPkcs8`] when the document is not an Ed25519
    /// PKCS#8 key, or when a v2 document's public key does not belong to its
    /// private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, DeviceKeyError> {
        let signing =
            SigningKey::from_pkcs8_der(der).map_err(|e| DeviceKeyError::InvalidPkcs8 {
                reason: e.to_string(),
            })?;
        Ok(Self::from_signing_key(signing))
    }

    /// The key as PKCS#8 v2 DER (RFC 5958: seed and public key). This is the
    /// form rustls and ring load (ring's `Ed25519KeyPair::from_pkcs8` wants
    /// v2), so it is the one to hand to a TLS stack as the client key.
    ///
    /// # Errors
    /// [`DeviceKeyError::InvalidPkcs8`] if encoding fails (it does not for a
    /// valid key; the error exists so no panic is hidden here).
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, DeviceKeyError> {
        let doc = self
            .signing
            .to_pkcs8_der()
            .map_err(|e| DeviceKeyError::InvalidPkcs8 {
                reason: e.to_string(),
            })?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The key as PKCS#8 v1 DER (seed only). OpenSSL 3.0 and Python's
    /// `cryptography` refuse v2 Ed25519 keys: export keys meant for those
    /// tools in this form.
    ///
    /// # Errors
    /// As [`to_pkcs8_der`](Self::to_pkcs8_der).
    pub fn to_pkcs8_v1_der(&self) -> Result<Zeroizing<Vec<u8>>, DeviceKeyError> {
        let bytes = KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        };
        let doc = bytes
            .to_pkcs8_der()
            .map_err(|e| DeviceKeyError::InvalidPkcs8 {
                reason: e.to_string(),
            })?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The public half.
    pub fn public_key(&self) -> DevicePublicKey {
        self.public
    }

    /// The device id of this key.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_public_key(&self.public)
    }

    /// Signs `message` (pure Ed25519, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("device_id", &self.device_id())
            .field("secret", &"[elided]")
            .finish()
    }
}

/// A device's Ed25519 public key (32 bytes, RFC 8032 encoding).
///
/// Construction refuses byte strings that are not a curve point or not its
/// canonical encoding, and the small-order ("weak") points, for which
/// signatures prove nothing.
/// Displayed and serialized as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DevicePublicKey(VerifyingKey);

impl DevicePublicKey {
    /// Reads a raw 32-byte public key.
    ///
    /// # Errors
    /// [`DeviceKeyError::InvalidPublicKey`] when the bytes are not the
    /// canonical encoding of a point of the curve, [`DeviceKeyError::WeakPublicKey`] for a small-order
    /// point.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, DeviceKeyError> {
        let invalid = || DeviceKeyError::InvalidPublicKey {
            key_hex: hex::encode(bytes),
        };
        // A y coordinate ≥ p is a second spelling of a small y: refusing it
        // keeps one encoding (so one device id) per key.
        if !is_canonical_y(bytes) {
            return Err(invalid());
        }
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| invalid())?;
        if key.is_weak() {
            return Err(DeviceKeyError::WeakPublicKey {
                key_hex: hex::encode(bytes),
            });
        }
        Ok(Self(key))
    }

    /// Reads a raw public key from a slice, which must be 32 bytes long.
    ///
    /// # Errors
    /// [`DeviceKeyError::WrongPublicKeyLength`] and as
    /// [`from_bytes`](Self::from_bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, DeviceKeyError> {
        let array: &[u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| DeviceKeyError::WrongPublicKeyLength { found: bytes.len() })?;
        Self::from_bytes(array)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        self.0.as_bytes()
    }

    /// The raw 32 bytes, copied.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    /// The device id of this key.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_public_key(self)
    }

    /// Checks an Ed25519 signature of `message` made with this key.
    ///
    /// Verification is strict (RFC 8032 §5.1.7 with the checks of
    /// `verify_strict`): non-canonical and malleable signatures are refused.
    ///
    /// # Errors
    /// [`DeviceKeyError::WrongSignatureLength`] when `signature` is not 64
    /// bytes, [`DeviceKeyError::BadSignature`] when it does not verify.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), DeviceKeyError> {
        let bytes: &[u8; SIGNATURE_LEN] =
            signature
                .try_into()
                .map_err(|_| DeviceKeyError::WrongSignatureLength {
                    found: signature.len(),
                })?;
        let signature = Signature::from_bytes(bytes);
        self.0
            .verify_strict(message, &signature)
            .map_err(|_| DeviceKeyError::BadSignature {
                device_id: self.device_id(),
            })
    }
}

impl Ed25519PublicKey for DevicePublicKey {
    fn ed25519_bytes(&self) -> &[u8; KEY_LEN] {
        self.as_bytes()
    }
}

/// Whether the little-endian y coordinate (sign bit cleared) is below
/// p = 2^255 − 19.
fn is_canonical_y(bytes: &[u8; KEY_LEN]) -> bool {
    let top_is_max = bytes[31] & 0x7f == 0x7f && bytes[1..31].iter().all(|b| *b == 0xff);
    !(top_is_max && bytes[0] >= 0xed)
}

impl fmt::Display for DevicePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.as_bytes()))
    }
}

impl fmt::Debug for DevicePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DevicePublicKey({self})")
    }
}

impl FromStr for DevicePublicKey {
    type Err = DeviceKeyError;

    /// Parses 64 hex digits (either case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(s, &mut bytes).map_err(|e| DeviceKeyError::InvalidPublicKeyHex {
            input: s.chars().take(80).collect(),
            reason: e.to_string(),
        })?;
        Self::from_bytes(&bytes)
    }
}

impl serde::Serialize for DevicePublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for DevicePublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DevicePublicKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an Ed25519 public key as 64 hex digits")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DevicePublicKey, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Why a device key, public key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceKeyError {
    /// The bytes are not an Ed25519 public key (not a curve point, or not
    /// its canonical encoding).
    #[error("{key_hex} is not an Ed25519 public key (not the canonical encoding of a curve point)")]
    InvalidPublicKey {
        /// The refused key, hex.
        key_hex: String,
    },
    /// The public key is a small-order point: any signature "verifies".
    #[error("Ed25519 public key {key_hex} is a weak (small-order) key and is refused")]
    WeakPublicKey {
        /// The refused key, hex.
        key_hex: String,
    },
    /// A raw public key that is not 32 bytes.
    #[error("an Ed25519 public key is 32 bytes, got {found}")]
    WrongPublicKeyLength {
        /// The length received.
        found: usize,
    },
    /// A hex public key that does not decode to 32 bytes.
    #[error("{input:?} is not an Ed25519 public key in hex (64 hex digits): {reason}")]
    InvalidPublicKeyHex {
        /// The refused input (at most 80 characters of it).
        input: String,
        /// What the hex decoder said.
        reason: String,
    },
    /// A signature that is not 64 bytes.
    #[error("an Ed25519 signature is 64 bytes, got {found}")]
    WrongSignatureLength {
        /// The length received.
        found: usize,
    },
    /// The signature does not verify under the key.
    #[error("signature does not verify under the key of device {device_id}")]
    BadSignature {
        /// The device whose key was used.
        device_id: DeviceId,
    },
    /// A PKCS#8 document that is not a (consistent) Ed25519 private key.
    #[error("not an Ed25519 PKCS#8 private key: {reason}")]
    InvalidPkcs8 {
        /// What the PKCS#8 decoder said.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_round_trip_gives_the_same_key() {
        let key = DeviceKey::generate(&mut rand::rng());
        let again = DeviceKey::from_seed(&key.seed());
        assert_eq!(key.public_key(), again.public_key());
    }

    #[test]
    fn pkcs8_v1_is_48_bytes_and_v2_carries_the_public_key() {
        let key = DeviceKey::from_seed(&[9u8; 32]);
        let v1 = key.to_pkcs8_v1_der().unwrap();
        let v2 = key.to_pkcs8_der().unwrap();
        assert_eq!(v1.len(), 48);
        assert!(v2.len() > v1.len());
        assert!(
            v2.windows(32)
                .any(|w| w == key.public_key().as_bytes().as_slice())
        );
    }

    #[test]
    fn non_canonical_encodings_are_refused() {
        // y = p + 1 (≡ 1) and y = p + 2 spelled with y ≥ p.
        for low in [0xee_u8, 0xef] {
            let mut bytes = [0xffu8; 32];
            bytes[0] = low;
            bytes[31] = 0x7f;
            assert!(matches!(
                DevicePublicKey::from_bytes(&bytes),
                Err(DeviceKeyError::InvalidPublicKey { .. })
            ));
        }
        let mut p_minus_1 = [0xffu8; 32];
        p_minus_1[0] = 0xec;
        p_minus_1[31] = 0x7f;
        assert!(is_canonical_y(&p_minus_1));
    }

    #[test]
    fn debug_does_not_show_the_seed() {
        let key = DeviceKey::from_seed(&[0xab; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert!(shown.contains("kgd1"));
    }
}

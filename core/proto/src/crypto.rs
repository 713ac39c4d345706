//! The hashes, key derivations, MACs and signatures both flows share.
//!
//! Every hash here is `SHA-256(lp(label) || lp(part) || ...)` where `lp(x)`
//! is the big-endian `u32` length of `x` followed by `x`: no two different
//! lists of parts hash the same input.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac as _};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::PairingError;
use crate::wire::{CHECK_CODE_LEN, CROCKFORD_ALPHABET, Mac, SignatureBytes};

/// Transcript label of the PIN flow.
pub const LABEL_PIN: &[u8] = b"keygate pairing v1 pin";
/// Transcript label of the QR flow.
pub const LABEL_QR: &[u8] = b"keygate pairing v1 qr";
/// Label of the digest the device signs.
pub const LABEL_SIGNATURE: &[u8] = b"keygate pairing v1 signature";
/// Label of the digest a [`crate::Resume`] signs.
pub const LABEL_RESUME: &[u8] = b"keygate pairing v1 resume";
/// Domain label of the digest a node signs in `Renew`.
pub const LABEL_RENEW: &[u8] = b"keygate node v1 renew";
/// Label of the check code digest.
pub const LABEL_CHECK_CODE: &[u8] = b"keygate check code";
/// HKDF info of the device's confirmation key.
pub const INFO_DEVICE_CONFIRM: &[u8] = b"device confirm";
/// HKDF info of the gateway's confirmation key.
pub const INFO_GATEWAY_CONFIRM: &[u8] = b"gateway confirm";
/// SPAKE2 identity of the device (side A).
pub const SPAKE2_ID_DEVICE: &[u8] = b"keygate-device";
/// SPAKE2 identity of the gateway (side B).
pub const SPAKE2_ID_GATEWAY: &[u8] = b"keygate-gateway";

/// What the transport gives both sides about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// SHA-256 of the CA certificate: as the TLS server presented it (device
    /// side), or of the gateway's own CA (gateway side).
    pub ca_fingerprint: [u8; 32],
    /// The TLS exporter value of this connection (32 bytes).
    pub channel_binding: [u8; 32],
}

/// A length-prefixed, labelled SHA-256 (see the module docs).
pub(crate) fn hash(label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in std::iter::once(&label).chain(parts) {
        // Every part here is far below 4 GiB (messages are at most 16 KiB).
        let len = u32::try_from(p.len()).unwrap_or(u32::MAX);
        h.update(len.to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The transcript hash of one run.
pub(crate) fn transcript(label: &[u8], hello: &[u8], challenge: &[u8], b: &Binding) -> [u8; 32] {
    hash(
        label,
        &[hello, challenge, &b.ca_fingerprint, &b.channel_binding],
    )
}

/// The two confirmation keys of one run (or one PIN candidate).
pub(crate) struct ConfirmKeys {
    pub(crate) device: Zeroizing<[u8; 32]>,
    pub(crate) gateway: Zeroizing<[u8; 32]>,
}

/// HKDF-SHA256: `PRK = Extract(salt, ikm)`; each key `Expand(PRK, info_prefix
/// || label, 32)` with the labels "device confirm" / "gateway confirm".
pub(crate) fn confirm_keys(salt: &[u8], ikm: &[u8], info_prefix: &[u8]) -> ConfirmKeys {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let expand = |label: &[u8]| {
        let mut out = Zeroizing::new([0u8; 32]);
        let mut info = Vec::with_capacity(info_prefix.len() + label.len());
        info.extend_from_slice(info_prefix);
        info.extend_from_slice(label);
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32: never an error.
        let _ = hk.expand(&info, out.as_mut_slice());
        out
    };
    ConfirmKeys {
        device: expand(INFO_DEVICE_CONFIRM),
        gateway: expand(INFO_GATEWAY_CONFIRM),
    }
}

/// HMAC-SHA256(key, transcript hash || extra).
pub(crate) fn mac(key: &[u8; 32], transcript: &[u8; 32], extra: &[u8]) -> Mac {
    // HMAC takes keys of any length: never an error.
    let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    m.update(transcript);
    m.update(extra);
    m.finalize().into_bytes().into()
}

/// Constant-time MAC comparison.
pub(crate) fn mac_eq(a: &Mac, b: &Mac) -> bool {
    a.ct_eq(b).into()
}

/// The digest the device signs in both flows.
pub(crate) fn signed_digest(transcript: &[u8; 32]) -> [u8; 32] {
    hash(LABEL_SIGNATURE, &[transcript])
}

pub(crate) fn sign_transcript(key: &SigningKey, transcript: &[u8; 32]) -> SignatureBytes {
    key.sign(&signed_digest(transcript)).to_bytes()
}

pub(crate) fn verifying_key(bytes: &[u8; 32]) -> Result<VerifyingKey, PairingError> {
    VerifyingKey::from_bytes(bytes).map_err(|_| PairingError::BadPublicKey)
}

/// `verify_strict` of a device signature over `digest`.
pub(crate) fn verify(
    key: &VerifyingKey,
    digest: &[u8; 32],
    signature: &SignatureBytes,
) -> Result<(), PairingError> {
    key.verify_strict(digest, &Signature::from_bytes(signature))
        .map_err(|_| PairingError::BadSignature)
}

/// The check code: the first 30 bits of `SHA-256(label, transcript)` as 6
/// characters of Crockford base32 (most significant bits first).
pub fn check_code(transcript: &[u8; 32]) -> String {
    let d = hash(LABEL_CHECK_CODE, &[transcript]);
    let bits = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) >> 2;
    (0..CHECK_CODE_LEN)
        .map(|i| {
            let shift = 5 * (CHECK_CODE_LEN - 1 - i);
            char::from(CROCKFORD_ALPHABET[((bits >> shift) & 31) as usize])
        })
        .collect()
}

/// Lends an RNG of `rand_core` 0.10 to `spake2`, which takes `rand_core` 0.6.
pub(crate) struct Rng06<'a, R: ?Sized>(pub(crate) &'a mut R);

impl<R: rand_core::CryptoRng + ?Sized> rand_core_06::RngCore for Rng06<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl<R: rand_core::CryptoRng + ?Sized> rand_core_06::CryptoRng for Rng06<'_, R> {}

/// A deterministic generator: SHA-256 in counter mode over a secret 32-byte
/// seed. The device keeps only such a seed between its hello and the
/// challenge, and replays it to rebuild its SPAKE2 state once per candidate
/// (`spake2::Spake2` can be finished only once and cannot be cloned).
pub(crate) struct SeedRng {
    seed: Zeroizing<[u8; 32]>,
    counter: u64,
    block: Zeroizing<[u8; 32]>,
    used: usize,
}

impl SeedRng {
    pub(crate) fn new(seed: &[u8; 32]) -> SeedRng {
        SeedRng {
            seed: Zeroizing::new(*seed),
            counter: 0,
            block: Zeroizing::new([0; 32]),
            used: 32,
        }
    }
}

impl rand_core_06::RngCore for SeedRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == 32 {
                let mut h = Sha256::new();
                h.update(b"keygate spake2 seed");
                h.update(self.seed.as_slice());
                h.update(self.counter.to_be_bytes());
                self.block.copy_from_slice(&h.finalize());
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core_06::CryptoRng for SeedRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_codes_are_six_crockford_characters_and_follow_the_transcript() {
        let a = check_code(&[0; 32]);
        let b = check_code(&[1; 32]);
        assert_eq!(a.len(), 6);
        assert!(a.bytes().all(|c| CROCKFORD_ALPHABET.contains(&c)));
        assert_ne!(a, b);
        assert_eq!(a, check_code(&[0; 32]));
    }

    #[test]
    fn check_code_is_the_first_30_bits_in_crockford_base32() {
        for t in [[0u8; 32], [0xa5; 32], [0xff; 32]] {
            let d = hash(LABEL_CHECK_CODE, &[&t]);
            let bits: String = d.iter().map(|b| format!("{b:08b}")).collect();
            let expected: String = (0..6)
                .map(|i| {
                    let v = usize::from_str_radix(&bits[5 * i..5 * i + 5], 2).unwrap();
                    char::from(CROCKFORD_ALPHABET[v])
                })
                .collect();
            assert_eq!(check_code(&t), expected);
        }
    }

    #[test]
    fn hash_parts_are_length_prefixed() {
        assert_ne!(hash(b"l", &[b"ab", b"c"]), hash(b"l", &[b"a", b"bc"]));
        assert_ne!(hash(b"l", &[b"ab"]), hash(b"la", &[b"b"]));
    }

    #[test]
    fn seed_rng_replays_the_same_stream_and_differs_by_seed() {
        use rand_core_06::RngCore;
        let mut a = SeedRng::new(&[7; 32]);
        let mut b = SeedRng::new(&[7; 32]);
        let mut c = SeedRng::new(&[8; 32]);
        let (mut x, mut y, mut z) = ([0u8; 100], [0u8; 100], [0u8; 100]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y[..33]);
        b.fill_bytes(&mut y[33..]);
        c.fill_bytes(&mut z);
        assert_eq!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn seed_rng_is_sha256_in_counter_mode() {
        use rand_core_06::RngCore;
        let block = |i: u64| {
            let mut h = Sha256::new();
            h.update(b"keygate spake2 seed");
            h.update([7u8; 32]);
            h.update(i.to_be_bytes());
            <[u8; 32]>::from(h.finalize())
        };
        let mut expected = block(0).to_vec();
        expected.extend_from_slice(&block(1));
        let mut got = [0u8; 64];
        SeedRng::new(&[7; 32]).fill_bytes(&mut got);
        assert_eq!(got.to_vec(), expected);
        let mut r = SeedRng::new(&[7; 32]);
        assert_eq!(
            r.next_u32(),
            u32::from_le_bytes(expected[..4].try_into().unwrap())
        );
        assert_eq!(
            r.next_u64(),
            u64::from_le_bytes(expected[4..12].try_into().unwrap())
        );
        let mut b = [0u8; 2];
        r.try_fill_bytes(&mut b).unwrap();
        assert_eq!(b, expected[12..14]);
    }

    /// Counts up: byte n of its stream is n (from 1).
    struct Counter(u8);

    impl rand_core::TryRng for Counter {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            self.0 += 1;
            Ok(u32::from(self.0))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            self.0 += 1;
            Ok(u64::from(self.0) << 32)
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            for b in dst {
                self.0 += 1;
                *b = self.0;
            }
            Ok(())
        }
    }

    impl rand_core::TryCryptoRng for Counter {}

    #[test]
    fn rng06_passes_every_call_through() {
        use rand_core_06::RngCore;
        let mut c = Counter(0);
        let mut r = Rng06(&mut c);
        assert_eq!(r.next_u32(), 1);
        assert_eq!(r.next_u64(), 2 << 32);
        let mut b = [0u8; 2];
        r.fill_bytes(&mut b);
        assert_eq!(b, [3, 4]);
        r.try_fill_bytes(&mut b).unwrap();
        assert_eq!(b, [5, 6]);
    }

    #[test]
    fn confirm_keys_differ_by_role_and_input() {
        let k = confirm_keys(b"salt", b"ikm", b"");
        assert_ne!(*k.device, *k.gateway);
        let k2 = confirm_keys(b"salt", b"ikm2", b"");
        assert_ne!(*k.device, *k2.device);
    }
}

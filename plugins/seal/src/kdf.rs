//! A store key from a passphrase: Argon2id with a random salt.
//!
//! The parameters and the 16-byte salt are kept by the store (the
//! filesystem store in a file, a database store in a row) in this
//! encoding:
//! ```text
//! magic "KGSP" | format version (1) | algorithm (1 = Argon2id v1.3)
//!   | m_cost KiB (u32 BE) | t_cost (u32 BE) | p_cost (u32 BE) | salt (16)
//! ```
//! New stores get m = 64 MiB, t = 3, p = 1. The encoding is not secret and
//! not authenticated on its own: a changed salt or parameter yields another
//! key, which the store's key check then refuses.

use argon2::{Algorithm, Argon2, Params};
use zeroize::Zeroizing;

use crate::sealer::{KEY_LEN, RandomError, StoreKey, fill_random};

const KDF_MAGIC: &[u8; 4] = b"KGSP";
const KDF_FORMAT_VERSION: u8 = 1;
const KDF_ARGON2ID_V13: u8 = 1;
const SALT_LEN: usize = 16;
/// The length of encoded [`KdfParams`].
pub const KDF_ENCODED_LEN: usize = 4 + 1 + 1 + 4 * 3 + SALT_LEN;

/// Argon2id memory cost of new stores, in KiB (64 MiB).
pub const DEFAULT_M_COST: u32 = 64 * 1024;
/// Argon2id passes of new stores.
pub const DEFAULT_T_COST: u32 = 3;
/// Argon2id lanes of new stores.
pub const DEFAULT_P_COST: u32 = 1;

/// Bounds on decoded parameters, so damaged parameters cannot make the
/// store allocate or spin without end.
const MAX_M_COST: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 64;

/// Why parameters could not be decoded or used. Its text is meant to
/// follow the place they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdfError(String);

impl std::fmt::Display for KdfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KdfError {}

/// Argon2id parameters and salt of a passphrase store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdfParams {
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    salt: [u8; SALT_LEN],
}

impl KdfParams {
    /// The parameters of a new store: the defaults and a fresh salt.
    pub fn generate() -> Result<Self, RandomError> {
        let mut salt = [0u8; SALT_LEN];
        fill_random(&mut salt)?;
        Ok(Self {
            m_cost: DEFAULT_M_COST,
            t_cost: DEFAULT_T_COST,
            p_cost: DEFAULT_P_COST,
            salt,
        })
    }

    /// The encoding a store keeps (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KDF_ENCODED_LEN);
        out.extend_from_slice(KDF_MAGIC);
        out.push(KDF_FORMAT_VERSION);
        out.push(KDF_ARGON2ID_V13);
        out.extend_from_slice(&self.m_cost.to_be_bytes());
        out.extend_from_slice(&self.t_cost.to_be_bytes());
        out.extend_from_slice(&self.p_cost.to_be_bytes());
        out.extend_from_slice(&self.salt);
        out
    }

    /// Decodes what [`KdfParams::encode`] wrote, refusing parameters out of
    /// bounds.
    pub fn decode(bytes: &[u8]) -> Result<Self, KdfError> {
        if bytes.len() != KDF_ENCODED_LEN {
            return Err(KdfError(format!(
                "{} bytes, expected {KDF_ENCODED_LEN}",
                bytes.len()
            )));
        }
        if &bytes[..4] != KDF_MAGIC {
            return Err(KdfError("no keygate header".into()));
        }
        if bytes[4] != KDF_FORMAT_VERSION || bytes[5] != KDF_ARGON2ID_V13 {
            return Err(KdfError(format!(
                "unsupported format {} / algorithm {}",
                bytes[4], bytes[5]
            )));
        }
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[i..i + 4]);
            u32::from_be_bytes(b)
        };
        let (m_cost, t_cost, p_cost) = (u32_at(6), u32_at(10), u32_at(14));
        if m_cost > MAX_M_COST || t_cost > MAX_T_COST || p_cost > MAX_P_COST {
            return Err(KdfError(format!(
                "parameters out of range (m={m_cost} KiB, t={t_cost}, p={p_cost})"
            )));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[18..]);
        Ok(Self {
            m_cost,
            t_cost,
            p_cost,
            salt,
        })
    }

    /// The store key for `passphrase` under these parameters.
    pub fn derive(&self, passphrase: &[u8]) -> Result<StoreKey, KdfError> {
        let bad = |e: argon2::Error| KdfError(e.to_string());
        let params =
            Params::new(self.m_cost, self.t_cost, self.p_cost, Some(KEY_LEN)).map_err(bad)?;
        let argon = Argon2::new(Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        argon
            .hash_password_into(passphrase, &self.salt, key.as_mut())
            .map_err(bad)?;
        Ok(StoreKey::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> KdfParams {
        KdfParams {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
            ..KdfParams::generate().unwrap()
        }
    }

    #[test]
    fn parameters_round_trip_and_new_ones_use_the_defaults() {
        let p = KdfParams::generate().unwrap();
        assert_eq!((p.m_cost, p.t_cost, p.p_cost), (65536, 3, 1));
        assert_eq!(KdfParams::decode(&p.encode()).unwrap(), p);
        assert_ne!(p.salt, KdfParams::generate().unwrap().salt);
    }

    #[test]
    fn damaged_parameters_are_refused() {
        let good = small().encode();
        assert!(KdfParams::decode(&good[1..]).is_err());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(
            KdfParams::decode(&bad).unwrap_err().to_string(),
            "no keygate header"
        );
        let mut huge = good.clone();
        huge[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(
            KdfParams::decode(&huge)
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }

    #[test]
    fn one_passphrase_and_salt_give_one_key() {
        let p = small();
        let a = p.derive(b"pass").unwrap();
        assert_eq!(a.as_bytes(), p.derive(b"pass").unwrap().as_bytes());
        assert_ne!(a.as_bytes(), p.derive(b"other").unwrap().as_bytes());
        let other_salt = KdfParams { salt: [7; 16], ..p };
        assert_ne!(a.as_bytes(), other_salt.derive(b"pass").unwrap().as_bytes());
    }
}

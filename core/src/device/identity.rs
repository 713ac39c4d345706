//! What a node keeps about itself, in its own SecretStore:
//!
//! | key | what |
//! |---|---|
//! | `device/key` | its Ed25519 private key (made once, never sent) |
//! | `device/pending` | the pairing request it proved a code for and waits on |
//! | `device/credentials` | its client certificate, the CA's and where the gateways are |
//!
//! Credentials are checked before they are kept: the certificate must
//! carry this device's key and be signed by the CA whose fingerprint the
//! device pinned or saw during pairing. A gateway that sent anything else
//! is refused, and nothing is written.

use std::sync::Arc;

use keygate_sdk::{ErrorKind, SecretStore};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::identity::{CertFingerprint, DeviceId, DeviceKey};

/// Where the key is kept.
pub const KEY_RECORD: &str = "device/key";
/// Where the pending pairing is kept.
pub const PENDING_RECORD: &str = "device/pending";
/// Where the credentials are kept.
pub const CREDENTIALS_RECORD: &str = "device/credentials";

/// Why the device's own state cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceIdentityError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] keygate_sdk::PluginError),
    /// A record does not decode.
    #[error("record {key:?} of this device is corrupt: {reason}")]
    Corrupt {
        /// Its key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A certificate the gateway sent cannot be kept.
    #[error("the certificate the gateway sent is refused: {0}")]
    BadCertificate(String),
}

/// The pairing a device proved a code for and waits on: enough to ask
/// for its answer again after a lost connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingPairing {
    /// The gateway's request id.
    pub request_id: String,
    /// `HOST:PORT` of each gateway that may answer.
    pub gateways: Vec<String>,
    /// The CA the device saw (PIN) or pinned (QR) while pairing.
    pub ca_fingerprint: CertFingerprint,
    /// The check code both sides derived.
    pub check_code: String,
}

/// What a paired device connects with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// This device.
    pub device_id: DeviceId,
    /// Its client certificate, DER.
    #[serde(with = "hex_bytes")]
    pub certificate_der: Vec<u8>,
    /// The CA certificate, DER.
    #[serde(with = "hex_bytes")]
    pub ca_der: Vec<u8>,
    /// `HOST:PORT` of each gateway.
    pub gateways: Vec<String>,
}

impl Credentials {
    /// The CA's fingerprint.
    pub fn ca_fingerprint(&self) -> CertFingerprint {
        CertFingerprint::of_der(&self.ca_der)
    }

    /// Checks that the certificate holds `key` and is signed by the CA,
    /// and that the CA is the one with `expected_ca`.
    pub fn verify(
        &self,
        key: &DeviceKey,
        expected_ca: &CertFingerprint,
    ) -> Result<(), DeviceIdentityError> {
        let bad = |why: String| DeviceIdentityError::BadCertificate(why);
        if self.ca_fingerprint() != *expected_ca {
            return Err(bad(format!(
                "its CA has fingerprint {}, but this device paired with CA {expected_ca}",
                self.ca_fingerprint()
            )));
        }
        if self.device_id != key.device_id() {
            return Err(bad(format!(
                "it is for device {}, this device is {}",
                self.device_id,
                key.device_id()
            )));
        }
        let (_, ca) = X509Certificate::from_der(&self.ca_der)
            .map_err(|e| bad(format!("the CA certificate does not parse: {e}")))?;
        let (_, leaf) = X509Certificate::from_der(&self.certificate_der)
            .map_err(|e| bad(format!("the certificate does not parse: {e}")))?;
        if leaf.public_key().subject_public_key.data.as_ref() != key.public_key().as_bytes() {
            return Err(bad("it does not carry this device's public key".into()));
        }
        leaf.verify_signature(Some(ca.public_key()))
            .map_err(|e| bad(format!("it is not signed by the CA: {e}")))?;
        Ok(())
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

/// The key record: the seed, hex, in memory wiped on drop.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    seed: Zeroizing<String>,
}

/// A device's own state in its store.
#[derive(Clone)]
pub struct DeviceIdentity {
    store: Arc<dyn SecretStore>,
    /// The key once read or made: it never changes, and deriving its
    /// public half again costs a scalar multiplication.
    key: std::sync::OnceLock<DeviceKey>,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity").finish_non_exhaustive()
    }
}

fn corrupt(key: &'static str, reason: impl std::fmt::Display) -> DeviceIdentityError {
    DeviceIdentityError::Corrupt {
        key,
        reason: reason.to_string(),
    }
}

impl DeviceIdentity {
    /// The device state in `store`.
    pub fn new(store: Arc<dyn SecretStore>) -> Self {
        Self {
            store,
            key: std::sync::OnceLock::new(),
        }
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        key: &'static str,
    ) -> Result<Option<(T, keygate_sdk::Version)>, DeviceIdentityError> {
        match self.store.get(key)? {
            None => Ok(None),
            Some(v) => {
                let value = serde_json::from_slice(&v.value).map_err(|e| corrupt(key, e))?;
                Ok(Some((value, v.version)))
            }
        }
    }

    fn put<T: Serialize>(&self, key: &'static str, value: &T) -> Result<(), DeviceIdentityError> {
        let bytes = Zeroizing::new(serde_json::to_vec(value).map_err(|e| corrupt(key, e))?);
        let version = self.store.get(key)?.map(|v| v.version);
        self.store.put(key, &bytes, version)?;
        Ok(())
    }

    /// This device's key, made and kept on first use. Two processes
    /// starting at once end up with the same key: the store's
    /// compare-and-swap lets only one first write win.
    pub fn key(&self) -> Result<DeviceKey, DeviceIdentityError> {
        if let Some(key) = self.key.get() {
            return Ok(key.clone());
        }
        let key = self.read_or_make_key()?;
        Ok(self.key.get_or_init(|| key).clone())
    }

    fn read_or_make_key(&self) -> Result<DeviceKey, DeviceIdentityError> {
        if let Some(key) = self.existing_key()? {
            return Ok(key);
        }
        let key = DeviceKey::generate(&mut rand::rng());
        let record = KeyRecord {
            seed: Zeroizing::new(hex::encode(*key.seed())),
        };
        let bytes =
            Zeroizing::new(serde_json::to_vec(&record).map_err(|e| corrupt(KEY_RECORD, e))?);
        match self.store.put(KEY_RECORD, &bytes, None) {
            Ok(_) => Ok(key),
            Err(e) if e.kind() == ErrorKind::Conflict => self
                .existing_key()?
                .ok_or_else(|| corrupt(KEY_RECORD, "written by another process, then gone")),
            Err(e) => Err(e.into()),
        }
    }

    fn existing_key(&self) -> Result<Option<DeviceKey>, DeviceIdentityError> {
        let Some((record, _)) = self.get::<KeyRecord>(KEY_RECORD)? else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(hex::decode(&*record.seed).map_err(|e| corrupt(KEY_RECORD, e))?);
        let seed: &[u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| corrupt(KEY_RECORD, "the seed is not 32 bytes"))?;
        Ok(Some(DeviceKey::from_seed(seed)))
    }

    /// The pairing this device waits on, if any.
    pub fn pending(&self) -> Result<Option<PendingPairing>, DeviceIdentityError> {
        Ok(self.get(PENDING_RECORD)?.map(|(p, _)| p))
    }

    /// Remembers the pairing this device waits on.
    pub fn set_pending(&self, pending: &PendingPairing) -> Result<(), DeviceIdentityError> {
        self.put(PENDING_RECORD, pending)
    }

    /// Forgets the pending pairing (it was rejected or expired).
    pub fn clear_pending(&self) -> Result<(), DeviceIdentityError> {
        if let Some(v) = self.store.get(PENDING_RECORD)? {
            match self.store.delete(PENDING_RECORD, v.version) {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The credentials this device connects with, if paired.
    pub fn credentials(&self) -> Result<Option<Credentials>, DeviceIdentityError> {
        Ok(self.get(CREDENTIALS_RECORD)?.map(|(c, _)| c))
    }

    /// Keeps credentials after [`Credentials::verify`] accepts them for
    /// this device's key and `expected_ca`, and forgets the pending
    /// pairing. Refused credentials write nothing.
    pub fn store_credentials(
        &self,
        credentials: &Credentials,
        expected_ca: &CertFingerprint,
    ) -> Result<(), DeviceIdentityError> {
        self.store_credentials_for(&self.key()?, credentials, expected_ca)
    }

    /// Replaces the credentials with renewed ones after
    /// [`Credentials::verify`] accepts them for this device's key and
    /// `expected_ca` (the CA of the credentials they replace). Unlike
    /// [`store_credentials`](Self::store_credentials) it leaves a pending
    /// pairing alone. Refused credentials write nothing.
    pub fn replace_credentials(
        &self,
        credentials: &Credentials,
        expected_ca: &CertFingerprint,
    ) -> Result<(), DeviceIdentityError> {
        credentials.verify(&self.key()?, expected_ca)?;
        self.put(CREDENTIALS_RECORD, credentials)
    }

    /// [`store_credentials`](Self::store_credentials) with this device's
    /// key already at hand (from [`key`](Self::key)).
    pub(crate) fn store_credentials_for(
        &self,
        key: &DeviceKey,
        credentials: &Credentials,
        expected_ca: &CertFingerprint,
    ) -> Result<(), DeviceIdentityError> {
        credentials.verify(key, expected_ca)?;
        self.put(CREDENTIALS_RECORD, credentials)?;
        self.clear_pending()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::ca::CertificateAuthority;

    fn identity() -> DeviceIdentity {
        DeviceIdentity::new(Arc::new(keygate_store_memory::MemoryStore::new()))
    }

    fn ca(name: &str) -> CertificateAuthority {
        CertificateAuthority::generate(name, Duration::from_secs(86_400 * 365), SystemTime::now())
            .unwrap()
    }

    fn credentials_for(ca: &CertificateAuthority, key: &DeviceKey) -> Credentials {
        let cert = ca
            .issue_client(
                &key.public_key(),
                &key.device_id(),
                Duration::from_secs(86_400),
                SystemTime::now(),
            )
            .unwrap();
        Credentials {
            device_id: key.device_id(),
            certificate_der: cert.der,
            ca_der: ca.certificate_der().to_vec(),
            gateways: vec!["127.0.0.1:7443".into()],
        }
    }

    #[test]
    fn the_key_is_made_once_and_kept() {
        let id = identity();
        let first = id.key().unwrap();
        assert_eq!(id.key().unwrap().device_id(), first.device_id());
        // A restart (a new handle on the same store) finds the same key.
        let again = DeviceIdentity::new(id.store.clone());
        assert_eq!(again.key().unwrap().device_id(), first.device_id());
        // A corrupt key record is an error naming it, not a new key (for a
        // handle that has not read the key yet; one that has keeps it).
        let v = id.store.get(KEY_RECORD).unwrap().unwrap().version;
        id.store
            .put(KEY_RECORD, b"{\"seed\":\"zz\"}", Some(v))
            .unwrap();
        assert_eq!(id.key().unwrap().device_id(), first.device_id());
        let fresh = DeviceIdentity::new(id.store.clone());
        let err = fresh.key().unwrap_err().to_string();
        assert!(err.contains("device/key"), "{err}");
    }

    #[test]
    fn credentials_for_this_key_from_the_expected_ca_are_kept_and_end_the_pending_pairing() {
        let id = identity();
        let key = id.key().unwrap();
        let ca = ca("Test CA");
        id.set_pending(&PendingPairing {
            request_id: "r1".into(),
            gateways: vec!["127.0.0.1:7443".into()],
            ca_fingerprint: ca.fingerprint(),
            check_code: "ABCDEF".into(),
        })
        .unwrap();
        assert_eq!(id.pending().unwrap().unwrap().request_id, "r1");
        let creds = credentials_for(&ca, &key);
        id.store_credentials(&creds, &ca.fingerprint()).unwrap();
        assert_eq!(id.credentials().unwrap(), Some(creds));
        assert_eq!(id.pending().unwrap(), None);
    }

    #[test]
    fn credentials_for_another_key_or_from_another_ca_are_refused_and_nothing_is_written() {
        let id = identity();
        let key = id.key().unwrap();
        let ca_a = ca("A");
        let ca_b = ca("B");
        let other = DeviceKey::from_seed(&[5; 32]);

        let wrong_ca = credentials_for(&ca_b, &key);
        let err = id
            .store_credentials(&wrong_ca, &ca_a.fingerprint())
            .unwrap_err();
        assert!(
            err.to_string().contains("this device paired with CA"),
            "{err}"
        );

        let mut someone_elses = credentials_for(&ca_a, &other);
        let err = id
            .store_credentials(&someone_elses, &ca_a.fingerprint())
            .unwrap_err();
        assert!(err.to_string().contains("it is for device"), "{err}");
        // Claiming this device's id does not help: the key inside differs.
        someone_elses.device_id = key.device_id();
        let err = id
            .store_credentials(&someone_elses, &ca_a.fingerprint())
            .unwrap_err();
        assert!(err.to_string().contains("public key"), "{err}");

        // A certificate for this key signed by B, with A's certificate
        // beside it.
        let mut forged = credentials_for(&ca_b, &key);
        forged.ca_der = ca_a.certificate_der().to_vec();
        let err = id
            .store_credentials(&forged, &ca_a.fingerprint())
            .unwrap_err();
        assert!(err.to_string().contains("not signed by the CA"), "{err}");

        assert_eq!(id.credentials().unwrap(), None);
    }

    #[test]
    fn renewed_credentials_replace_the_old_ones_after_the_same_checks_and_leave_pending_alone() {
        let id = identity();
        let key = id.key().unwrap();
        let ca_a = ca("A");
        let first = credentials_for(&ca_a, &key);
        id.store_credentials(&first, &ca_a.fingerprint()).unwrap();
        let pending = PendingPairing {
            request_id: "r2".into(),
            gateways: vec![],
            ca_fingerprint: ca_a.fingerprint(),
            check_code: "ABCDEF".into(),
        };
        id.set_pending(&pending).unwrap();

        let renewed = credentials_for(&ca_a, &key);
        assert_ne!(renewed.certificate_der, first.certificate_der);
        id.replace_credentials(&renewed, &ca_a.fingerprint())
            .unwrap();
        assert_eq!(id.credentials().unwrap(), Some(renewed.clone()));
        assert_eq!(id.pending().unwrap(), Some(pending));

        // From another CA: refused, the kept ones stay.
        let ca_b = ca("B");
        let foreign = credentials_for(&ca_b, &key);
        assert!(
            id.replace_credentials(&foreign, &ca_a.fingerprint())
                .is_err()
        );
        let mut forged = foreign;
        forged.ca_der = ca_a.certificate_der().to_vec();
        assert!(
            id.replace_credentials(&forged, &ca_a.fingerprint())
                .is_err()
        );
        assert_eq!(id.credentials().unwrap(), Some(renewed));
    }
}

//! The `IdentityManager`: the CA, devices, certificates and revocations, kept
//! as per-record keys in the configured SecretStore and shared safely with
//! other processes (the CLI next to a running gateway).
//!
//! Every mutation is a read-modify-write under the exclusive state lock that
//! appends one change-log entry and then writes its records with
//! compare-and-swap, so no update is lost and none is half-announced. Reads
//! of the revocation index are O(1) and lock-free with respect to the store;
//! [`IdentityManager::refresh`] (or a [`Watcher`](super::watch::Watcher))
//! brings the index up to date with changes made elsewhere.
//!
//! All methods block (store I/O, the state lock): async callers run them on
//! a blocking pool.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use keygate_sdk::{ErrorKind, SecretStore, Version};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::IdentityError;
use super::changelog::{self, read_floor};
use super::index::RevocationIndex;
use super::lock::StateLock;
use super::records::*;
use crate::ca::{
    CertificateAuthority, DEFAULT_CA_VALIDITY, DEFAULT_CLIENT_VALIDITY, IssuedCertificate,
};
use crate::identity::{CertFingerprint, DeviceId, DevicePublicKey};
use crate::time::{unix_ms, unix_secs};

/// Settings of the identity core.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// Subject CN of a new CA.
    pub ca_common_name: String,
    /// Validity of a new CA.
    pub ca_validity: Duration,
    /// Validity of client certificates.
    pub client_validity: Duration,
    /// How long a mutation waits for the state lock.
    pub lock_timeout: Duration,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            ca_common_name: "Keygate CA".into(),
            ca_validity: DEFAULT_CA_VALIDITY,
            client_validity: DEFAULT_CLIENT_VALIDITY,
            lock_timeout: Duration::from_secs(10),
        }
    }
}

/// A revocation seen by [`IdentityManager::refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationEvent {
    /// A device was revoked: close its connections.
    Device(DeviceId),
    /// One certificate was revoked: close connections that presented it.
    Certificate {
        /// The certificate.
        fingerprint: CertFingerprint,
        /// Its device.
        device_id: DeviceId,
    },
}

/// What a revoke command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked now.
    Revoked(Revocation),
    /// It already was; nothing was written.
    AlreadyRevoked(Revocation),
}

/// A device and the certificate just issued to it.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The device record after enrolment.
    pub device: DeviceRecord,
    /// The new certificate.
    pub certificate: IssuedCertificate,
}

/// One record a mutation writes (`value: None` deletes it).
pub(super) struct Write {
    pub(super) key: String,
    pub(super) value: Option<Vec<u8>>,
    pub(super) expected: Option<Version>,
}

impl Write {
    /// Puts `value` under `key`, replacing `expected` (`None`: creates it).
    pub(super) fn put(key: String, value: Vec<u8>, expected: Option<Version>) -> Self {
        Self {
            key,
            value: Some(value),
            expected,
        }
    }

    /// Deletes `key` at version `expected`.
    pub(super) fn delete(key: String, expected: Version) -> Self {
        Self {
            key,
            value: None,
            expected: Some(expected),
        }
    }
}

/// Where this process's index stands in the change log.
#[derive(Default)]
pub(super) struct Reader {
    pub(super) cursor: u64,
    pub(super) snapshot_seq: u64,
    pub(super) loaded: bool,
}

/// The identity core of one state directory.
pub struct IdentityManager {
    pub(super) store: Arc<dyn SecretStore>,
    pub(super) lock: StateLock,
    pub(super) settings: IdentitySettings,
    pub(super) ca: CertificateAuthority,
    /// The newest change sequence this process knows (writers).
    pub(super) head: Mutex<Option<u64>>,
    /// Position of the index in the change log (readers).
    pub(super) reader: Mutex<Reader>,
    pub(super) index: RwLock<RevocationIndex>,
}

impl std::fmt::Debug for IdentityManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityManager")
            .field("state_dir", &self.lock.state_dir())
            .field("ca", &self.ca.fingerprint())
            .finish_non_exhaustive()
    }
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, IdentityError> {
    serde_json::from_slice(bytes).map_err(|e| IdentityError::corrupt(key, e))
}

pub(super) fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, IdentityError> {
    serde_json::to_vec(value).map_err(|e| IdentityError::corrupt(key, e))
}

impl IdentityManager {
    /// Opens the identity state of `state_dir` in `store`: checks the schema
    /// marker and loads the CA, creating both on first use (under the lock).
    pub fn open(
        store: Arc<dyn SecretStore>,
        state_dir: &std::path::Path,
        settings: IdentitySettings,
        now: SystemTime,
    ) -> Result<Self, IdentityError> {
        std::fs::create_dir_all(state_dir).map_err(|cause| {
            IdentityError::Lock(super::lock::LockError::Io {
                path: state_dir.to_owned(),
                cause,
            })
        })?;
        let lock = StateLock::new(state_dir)?;
        let ca = match (Self::schema(&*store)?, Self::load_ca(&*store)?) {
            (true, Some(ca)) => ca,
            _ => {
                let _guard =
                    lock.acquire_exclusive("initialise identity state", settings.lock_timeout)?;
                if !Self::schema(&*store)? {
                    store.put(SCHEMA_KEY, SCHEMA_VERSION.as_bytes(), None)?;
                }
                match Self::load_ca(&*store)? {
                    Some(ca) => ca,
                    None => {
                        let ca = CertificateAuthority::generate(
                            &settings.ca_common_name,
                            settings.ca_validity,
                            now,
                        )?;
                        let (cert_pem, key_pem) = ca.to_pem();
                        let record = CaRecord { cert_pem, key_pem };
                        let bytes = Zeroizing::new(encode(CA_KEY, &record)?);
                        store.put(CA_KEY, &bytes, None)?;
                        tracing::info!(fingerprint = %ca.fingerprint(), subject = ca.subject(), "created a new CA");
                        ca
                    }
                }
            }
        };
        Ok(Self {
            store,
            lock,
            settings,
            ca,
            head: Mutex::new(None),
            reader: Mutex::new(Reader::default()),
            index: RwLock::new(RevocationIndex::new()),
        })
    }

    /// True when the marker says v1; false when absent; an error otherwise.
    fn schema(store: &dyn SecretStore) -> Result<bool, IdentityError> {
        match store.get(SCHEMA_KEY)? {
            None => Ok(false),
            Some(v) if v.value == SCHEMA_VERSION.as_bytes() => Ok(true),
            Some(v) => Err(IdentityError::Schema {
                found: String::from_utf8_lossy(&v.value).into_owned(),
                expected: SCHEMA_VERSION,
            }),
        }
    }

    fn load_ca(store: &dyn SecretStore) -> Result<Option<CertificateAuthority>, IdentityError> {
        let Some(v) = store.get(CA_KEY)? else {
            return Ok(None);
        };
        let value = Zeroizing::new(v.value);
        let record: CaRecord = decode(CA_KEY, &value)?;
        Ok(Some(CertificateAuthority::from_pem(
            &record.cert_pem,
            &record.key_pem,
        )?))
    }

    /// The CA.
    pub fn ca(&self) -> &CertificateAuthority {
        &self.ca
    }

    /// The settings.
    pub fn settings(&self) -> &IdentitySettings {
        &self.settings
    }

    pub(super) fn get_record<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Version)>, IdentityError> {
        match self.store.get(key)? {
            None => Ok(None),
            Some(v) => Ok(Some((decode(key, &v.value)?, v.version))),
        }
    }

    /// Runs one mutation: `plan` reads what it needs and returns the records
    /// to write (with the versions it read) and its result. The change-log
    /// entry goes first, then the records, all under the exclusive lock.
    pub(super) fn mutate<T>(
        &self,
        purpose: &str,
        plan: impl FnOnce(&Self) -> Result<(Vec<Write>, T), IdentityError>,
    ) -> Result<T, IdentityError> {
        let _guard = self
            .lock
            .acquire_exclusive(purpose, self.settings.lock_timeout)?;
        let (writes, out) = plan(self)?;
        if writes.is_empty() {
            return Ok(out);
        }
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let current = match *head {
            // Entries at or below the floor may have been compacted away
            // since this process last wrote: follow the log from whichever
            // is later, never from a gap (which would append below the head).
            Some(h) => {
                let (floor, _) = read_floor(&*self.store)?;
                changelog::probe_head(&*self.store, h.max(floor))?
            }
            None => changelog::find_head(&*self.store)?,
        };
        let seq = current + 1;
        let at_ms = unix_ms(SystemTime::now());
        changelog::append(
            &*self.store,
            seq,
            writes.iter().map(|w| w.key.clone()).collect(),
            at_ms,
        )?;
        *head = Some(seq);
        for w in writes {
            let result = match (&w.value, w.expected) {
                (Some(value), expected) => self.store.put(&w.key, value, expected).map(drop),
                (None, Some(expected)) => self.store.delete(&w.key, expected),
                (None, None) => Ok(()),
            };
            match result {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) => {
                    return Err(IdentityError::Raced { key: w.key });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Enrols the device with `public_key` (creating its record if new) and
    /// issues it a client certificate. A revoked device is refused. Writes
    /// at most two records and one change entry.
    pub fn enroll(
        &self,
        public_key: &DevicePublicKey,
        name: &str,
        capabilities: &[String],
        now: SystemTime,
    ) -> Result<Enrolled, IdentityError> {
        let device_id = public_key.device_id();
        self.mutate("enroll device", |m| {
            let dkey = device_key(&device_id);
            let existing: Option<(DeviceRecord, Version)> = m.get_record(&dkey)?;
            let mut writes = Vec::with_capacity(2);
            let device = match existing {
                Some((record, _)) => {
                    if let Some(r) = &record.revoked {
                        return Err(IdentityError::DeviceRevoked {
                            device_id,
                            reason: r.reason.clone(),
                        });
                    }
                    record
                }
                None => {
                    let record = DeviceRecord {
                        device_id,
                        public_key: *public_key,
                        name: name.to_owned(),
                        capabilities: capabilities.to_vec(),
                        enrolled_at: unix_secs(now),
                        revoked: None,
                    };
                    writes.push(Write::put(dkey.clone(), encode(&dkey, &record)?, None));
                    record
                }
            };
            let certificate = m.issue_for(&device, now, &mut writes)?;
            Ok((
                writes,
                Enrolled {
                    device,
                    certificate,
                },
            ))
        })
    }

    /// Issues a new client certificate to an enrolled, unrevoked device
    /// (renewal: same key, new certificate; older ones stay valid until they
    /// expire or are revoked).
    pub fn issue_certificate(
        &self,
        device_id: &DeviceId,
        now: SystemTime,
    ) -> Result<IssuedCertificate, IdentityError> {
        self.mutate("issue certificate", |m| {
            let (device, _): (DeviceRecord, _) = m
                .get_record(&device_key(device_id))?
                .ok_or(IdentityError::UnknownDevice(*device_id))?;
            if let Some(r) = &device.revoked {
                return Err(IdentityError::DeviceRevoked {
                    device_id: *device_id,
                    reason: r.reason.clone(),
                });
            }
            let mut writes = Vec::with_capacity(1);
            let cert = m.issue_for(&device, now, &mut writes)?;
            Ok((writes, cert))
        })
    }

    fn issue_for(
        &self,
        device: &DeviceRecord,
        now: SystemTime,
        writes: &mut Vec<Write>,
    ) -> Result<IssuedCertificate, IdentityError> {
        let cert = self.ca.issue_client(
            &device.public_key,
            &device.device_id,
            self.settings.client_validity,
            now,
        )?;
        let record = CertRecord {
            fingerprint: cert.fingerprint,
            device_id: device.device_id,
            serial_hex: cert.serial_hex.clone(),
            not_before: unix_secs(cert.not_before),
            not_after: unix_secs(cert.not_after),
            revoked: None,
        };
        let key = cert_key(&cert.fingerprint);
        writes.push(Write::put(key.clone(), encode(&key, &record)?, None));
        Ok(cert)
    }

    /// Revokes a device: it never pairs or connects again. One record and
    /// one change entry; nothing is written if it already was revoked.
    pub fn revoke_device(
        &self,
        device_id: &DeviceId,
        reason: &str,
        now: SystemTime,
    ) -> Result<RevokeOutcome, IdentityError> {
        self.revoke::<DeviceRecord>("devices revoke", device_key(device_id), reason, now, || {
            IdentityError::UnknownDevice(*device_id)
        })
    }

    /// Revokes one certificate; its device may pair again.
    pub fn revoke_certificate(
        &self,
        fingerprint: &CertFingerprint,
        reason: &str,
        now: SystemTime,
    ) -> Result<RevokeOutcome, IdentityError> {
        self.revoke::<CertRecord>("certs revoke", cert_key(fingerprint), reason, now, || {
            IdentityError::UnknownCertificate(*fingerprint)
        })
    }

    /// Marks the record at `key` revoked, once.
    fn revoke<R: Revocable>(
        &self,
        purpose: &str,
        key: String,
        reason: &str,
        now: SystemTime,
        unknown: impl FnOnce() -> IdentityError,
    ) -> Result<RevokeOutcome, IdentityError> {
        self.mutate(purpose, |m| {
            let (mut record, version): (R, _) = m.get_record(&key)?.ok_or_else(unknown)?;
            if let Some(r) = record.revocation().clone() {
                return Ok((Vec::new(), RevokeOutcome::AlreadyRevoked(r)));
            }
            let revocation = Revocation {
                reason: reason.to_owned(),
                at: unix_secs(now),
            };
            *record.revocation() = Some(revocation.clone());
            let value = encode(&key, &record)?;
            Ok((
                vec![Write::put(key, value, Some(version))],
                RevokeOutcome::Revoked(revocation),
            ))
        })
    }

    /// One device record.
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, IdentityError> {
        Ok(self.get_record(&device_key(id))?.map(|(r, _)| r))
    }

    /// One certificate record.
    pub fn certificate(&self, fp: &CertFingerprint) -> Result<Option<CertRecord>, IdentityError> {
        Ok(self.get_record(&cert_key(fp))?.map(|(r, _)| r))
    }

    pub(super) fn all<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, IdentityError> {
        let keys = self.store.list(prefix)?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some((r, _)) = self.get_record(&key)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Every device, by id.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>, IdentityError> {
        self.all(DEVICES_PREFIX)
    }

    /// Every certificate, by fingerprint.
    pub fn certificates(&self) -> Result<Vec<CertRecord>, IdentityError> {
        self.all(CERTS_PREFIX)
    }
}

/// A record that can be revoked.
trait Revocable: Serialize + DeserializeOwned {
    fn revocation(&mut self) -> &mut Option<Revocation>;
}

impl Revocable for DeviceRecord {
    fn revocation(&mut self) -> &mut Option<Revocation> {
        &mut self.revoked
    }
}

impl Revocable for CertRecord {
    fn revocation(&mut self) -> &mut Option<Revocation> {
        &mut self.revoked
    }
}

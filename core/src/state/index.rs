//! The in-memory revocation index: O(1) answers to "may this certificate
//! act, and as which device?".
//!
//! One hash table maps a certificate fingerprint to a small entry (its
//! device's slot, its own state and its expiry); devices live in a vector,
//! so answering costs one table probe and one vector read. Fingerprints are
//! SHA-256 outputs, already uniform, so the table hashes them by taking
//! their first eight bytes instead of running a keyed hash: the keys in the
//! table are fingerprints of certificates this CA issued (with random
//! serials), which a client cannot choose, so a client presenting crafted
//! fingerprints cannot lengthen the probe sequences it walks.
//!
//! # Failing closed
//! A certificate may act only when its own record and its device's record
//! were read and neither is revoked ([`CertStatus::Valid`]). A record that
//! exists but cannot be read (tampered, undecodable) is
//! [`DeviceState::Unreadable`] or [`CertState::Unreadable`], and refused
//! exactly like a revoked one until it reads again; a certificate whose
//! device has no record at all is refused too.
//!
//! Expired certificates leave the index ([`RevocationIndex::prune_expired`]):
//! the TLS layer refuses them anyway, and the index does not grow with
//! every certificate ever issued.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::identity::{CertFingerprint, DeviceId};

/// What the index says about a presented certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued here to this device, and neither is revoked.
    Valid(DeviceId),
    /// This certificate was revoked.
    CertificateRevoked(DeviceId),
    /// The device it was issued to was revoked.
    DeviceRevoked(DeviceId),
    /// The certificate's record, or its device's, exists but cannot be
    /// read: refused until it reads again (the device is named when known).
    Unreadable(Option<DeviceId>),
    /// The device it was issued to has no record (it was moved aside):
    /// refused.
    DeviceUnknown(DeviceId),
    /// Not a certificate this gateway issued, expired, or not known yet.
    Unknown,
}

impl CertStatus {
    /// The device a certificate may act as: `Some` only for
    /// [`CertStatus::Valid`].
    pub fn allowed_device(&self) -> Option<DeviceId> {
        match self {
            CertStatus::Valid(id) => Some(*id),
            _ => None,
        }
    }
}

/// What the index knows about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// No record was read for it: never seen here, or its record is gone.
    Unknown,
    /// Its record says it is not revoked.
    Active,
    /// Its record says it is revoked.
    Revoked,
    /// Its record exists but cannot be read: treated as revoked.
    Unreadable,
}

impl DeviceState {
    /// Revoked, or treated as revoked.
    pub fn is_blocked(self) -> bool {
        matches!(self, DeviceState::Revoked | DeviceState::Unreadable)
    }
}

/// What the index knows about one certificate's own record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertState {
    /// Issued and not revoked.
    Valid,
    /// Revoked.
    Revoked,
    /// Its record exists but cannot be read: refused.
    Unreadable,
}

impl CertState {
    /// Revoked, or treated as revoked.
    pub fn is_blocked(self) -> bool {
        matches!(self, CertState::Revoked | CertState::Unreadable)
    }
}

/// Hashes a fingerprint by its first eight bytes (see the module docs).
#[derive(Default)]
pub struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(head) = bytes.get(..8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(head);
            self.0 ^= u64::from_le_bytes(word);
        } else {
            for b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(*b);
            }
        }
    }

    // The length prefix of the 32-byte array carries no information.
    fn write_usize(&mut self, _: usize) {}
}

type FingerprintMap<V> = HashMap<CertFingerprint, V, BuildHasherDefault<FingerprintHasher>>;

/// The device slot of a certificate whose record could not be read, so its
/// device is not known.
const NO_DEVICE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct CertEntry {
    device: u32,
    state: CertState,
    /// Unix seconds; 0 when unknown (an unreadable record).
    not_after: u64,
}

#[derive(Debug, Clone, Copy)]
struct DeviceSlot {
    id: DeviceId,
    state: DeviceState,
}

/// What one certificate is, as the index records it: the device it is
/// bound to (unknown for an unreadable record), its state and its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertBinding {
    /// The device, when the record could be read (or was read before).
    pub device: Option<DeviceId>,
    /// Its own state.
    pub state: CertState,
    /// `notAfter`, unix seconds (0 when unknown).
    pub not_after: u64,
}

/// Certificate bindings, revocations and unreadable records, in memory.
#[derive(Debug, Default, Clone)]
pub struct RevocationIndex {
    certs: FingerprintMap<CertEntry>,
    devices: Vec<DeviceSlot>,
    slots: HashMap<DeviceId, u32>,
    /// The earliest `not_after` of any certificate (`u64::MAX`: none).
    earliest_expiry: u64,
}

impl RevocationIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self {
            earliest_expiry: u64::MAX,
            ..Self::default()
        }
    }

    /// The status of the certificate with fingerprint `fp`.
    #[inline]
    pub fn status(&self, fp: &CertFingerprint) -> CertStatus {
        let Some(entry) = self.certs.get(fp) else {
            return CertStatus::Unknown;
        };
        let Some(device) = self.devices.get(entry.device as usize) else {
            return CertStatus::Unreadable(None);
        };
        match (entry.state, device.state) {
            (CertState::Unreadable, _) => CertStatus::Unreadable(Some(device.id)),
            (CertState::Revoked, _) => CertStatus::CertificateRevoked(device.id),
            (CertState::Valid, DeviceState::Active) => CertStatus::Valid(device.id),
            (CertState::Valid, DeviceState::Revoked) => CertStatus::DeviceRevoked(device.id),
            (CertState::Valid, DeviceState::Unreadable) => CertStatus::Unreadable(Some(device.id)),
            (CertState::Valid, DeviceState::Unknown) => CertStatus::DeviceUnknown(device.id),
        }
    }

    /// What the index knows about device `id`.
    pub fn device_state(&self, id: &DeviceId) -> DeviceState {
        self.slots
            .get(id)
            .map_or(DeviceState::Unknown, |s| self.devices[*s as usize].state)
    }

    /// Whether a device is revoked, or treated as revoked because its
    /// record cannot be read.
    pub fn is_device_revoked(&self, id: &DeviceId) -> bool {
        self.device_state(id).is_blocked()
    }

    /// What the index records for certificate `fp`, if anything.
    pub fn cert(&self, fp: &CertFingerprint) -> Option<CertBinding> {
        self.certs.get(fp).map(|e| CertBinding {
            device: self.devices.get(e.device as usize).map(|d| d.id),
            state: e.state,
            not_after: e.not_after,
        })
    }

    /// Number of certificates known.
    pub fn certificates(&self) -> usize {
        self.certs.len()
    }

    fn slot(&mut self, id: &DeviceId) -> u32 {
        if let Some(slot) = self.slots.get(id) {
            return *slot;
        }
        // Fewer than 2^32 - 1 devices: a `u32` slot, `NO_DEVICE` reserved.
        let slot = u32::try_from(self.devices.len())
            .ok()
            .filter(|s| *s != NO_DEVICE)
            .expect("fewer than 2^32 - 1 devices");
        self.devices.push(DeviceSlot {
            id: *id,
            state: DeviceState::Unknown,
        });
        self.slots.insert(*id, slot);
        slot
    }

    /// Records what device `id`'s record says.
    pub fn set_device(&mut self, id: &DeviceId, state: DeviceState) {
        if state == DeviceState::Unknown && !self.slots.contains_key(id) {
            return;
        }
        let slot = self.slot(id);
        self.devices[slot as usize].state = state;
    }

    /// Records certificate `fp`; `None` forgets it. A binding without a
    /// device (an unreadable record) keeps the device known from before.
    pub fn set_cert(&mut self, fp: &CertFingerprint, binding: Option<CertBinding>) {
        let Some(binding) = binding else {
            self.certs.remove(fp);
            return;
        };
        let device = match binding.device {
            Some(id) => self.slot(&id),
            None => self.certs.get(fp).map_or(NO_DEVICE, |e| e.device),
        };
        if binding.not_after != 0 {
            self.earliest_expiry = self.earliest_expiry.min(binding.not_after);
        }
        self.certs.insert(
            *fp,
            CertEntry {
                device,
                state: binding.state,
                not_after: binding.not_after,
            },
        );
    }

    /// Forgets every certificate whose `notAfter` is at or before `now`
    /// (unix seconds), when any is due. Returns how many were dropped.
    pub fn prune_expired(&mut self, now: u64) -> usize {
        if now < self.earliest_expiry {
            return 0;
        }
        let before = self.certs.len();
        let mut earliest = u64::MAX;
        self.certs.retain(|_, e| {
            let keep = e.not_after == 0 || e.not_after > now;
            if keep && e.not_after != 0 {
                earliest = earliest.min(e.not_after);
            }
            keep
        });
        self.earliest_expiry = earliest;
        before - self.certs.len()
    }

    /// Reserves room for `certs` more certificates.
    pub fn reserve(&mut self, certs: usize) {
        self.certs.reserve(certs);
    }

    /// Every device with its state.
    pub fn devices(&self) -> impl Iterator<Item = (DeviceId, DeviceState)> + '_ {
        self.devices.iter().map(|d| (d.id, d.state))
    }

    /// Every certificate with what is recorded for it.
    pub fn certs(&self) -> impl Iterator<Item = (CertFingerprint, CertBinding)> + '_ {
        self.certs.iter().map(|(fp, e)| {
            (
                *fp,
                CertBinding {
                    device: self.devices.get(e.device as usize).map(|d| d.id),
                    state: e.state,
                    not_after: e.not_after,
                },
            )
        })
    }

    /// The index as a snapshot at change sequence `seq`. Unreadable records
    /// are not in it: the snapshot lists their keys instead (`unreadable`),
    /// and a process loading it reads them again.
    pub fn to_snapshot(&self, seq: u64, unreadable: Vec<String>) -> IndexSnapshot {
        let mut certs: Vec<SnapshotCert> = self
            .certs
            .iter()
            .filter_map(|(fp, e)| {
                let device = self.devices.get(e.device as usize)?.id;
                let revoked = match e.state {
                    CertState::Valid => false,
                    CertState::Revoked => true,
                    CertState::Unreadable => return None,
                };
                Some(SnapshotCert(*fp, device, revoked, e.not_after))
            })
            .collect();
        certs.sort_by_key(|c| c.0);
        let mut devices: Vec<SnapshotDevice> = self
            .devices
            .iter()
            .filter_map(|d| match d.state {
                DeviceState::Active => Some(SnapshotDevice(d.id, false)),
                DeviceState::Revoked => Some(SnapshotDevice(d.id, true)),
                DeviceState::Unknown | DeviceState::Unreadable => None,
            })
            .collect();
        devices.sort_by_key(|d| d.0);
        IndexSnapshot {
            seq,
            certs,
            devices,
            unreadable,
        }
    }

    /// The index a snapshot describes (without its unreadable records,
    /// which the caller reads again).
    pub fn from_snapshot(snapshot: &IndexSnapshot) -> Self {
        let mut index = Self::new();
        index.reserve(snapshot.certs.len());
        for SnapshotDevice(id, revoked) in &snapshot.devices {
            let state = if *revoked {
                DeviceState::Revoked
            } else {
                DeviceState::Active
            };
            index.set_device(id, state);
        }
        for SnapshotCert(fp, device, revoked, not_after) in &snapshot.certs {
            let state = if *revoked {
                CertState::Revoked
            } else {
                CertState::Valid
            };
            index.set_cert(
                fp,
                Some(CertBinding {
                    device: Some(*device),
                    state,
                    not_after: *not_after,
                }),
            );
        }
        index
    }
}

/// A certificate in a snapshot: fingerprint, device, revoked, `notAfter`
/// (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCert(pub CertFingerprint, pub DeviceId, pub bool, pub u64);

/// A device in a snapshot: id, revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDevice(pub DeviceId, pub bool);

/// The index at one change sequence, stored under
/// `identity/index/snapshot` so a process starts without reading every
/// record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSnapshot {
    /// The change sequence the snapshot includes.
    pub seq: u64,
    /// Every known, unexpired certificate.
    pub certs: Vec<SnapshotCert>,
    /// Every device with a readable record.
    pub devices: Vec<SnapshotDevice>,
    /// Keys of device and certificate records that could not be read when
    /// the snapshot was taken: a reader reads them again.
    pub unreadable: Vec<String>,
}

/// The snapshot's key.
pub const SNAPSHOT_KEY: &str = "identity/index/snapshot";

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> CertFingerprint {
        CertFingerprint::of_der(&[n])
    }

    fn dev(n: u8) -> DeviceId {
        crate::identity::DeviceKey::from_seed(&[n; 32]).device_id()
    }

    fn cert(device: u8, state: CertState, not_after: u64) -> Option<CertBinding> {
        Some(CertBinding {
            device: Some(dev(device)),
            state,
            not_after,
        })
    }

    #[test]
    fn statuses_follow_certificate_and_device_records() {
        let mut index = RevocationIndex::new();
        index.set_device(&dev(1), DeviceState::Active);
        index.set_device(&dev(2), DeviceState::Active);
        index.set_cert(&fp(1), cert(1, CertState::Valid, 100));
        index.set_cert(&fp(2), cert(1, CertState::Revoked, 100));
        index.set_cert(&fp(3), cert(2, CertState::Valid, 100));
        assert_eq!(index.status(&fp(1)), CertStatus::Valid(dev(1)));
        assert_eq!(index.status(&fp(1)).allowed_device(), Some(dev(1)));
        assert_eq!(index.status(&fp(2)), CertStatus::CertificateRevoked(dev(1)));
        assert_eq!(index.status(&fp(9)), CertStatus::Unknown);
        index.set_device(&dev(1), DeviceState::Revoked);
        assert_eq!(index.status(&fp(1)), CertStatus::DeviceRevoked(dev(1)));
        assert_eq!(index.status(&fp(1)).allowed_device(), None);
        assert_eq!(index.status(&fp(3)), CertStatus::Valid(dev(2)));
        assert!(index.is_device_revoked(&dev(1)));
        index.set_cert(&fp(1), None);
        assert_eq!(index.status(&fp(1)), CertStatus::Unknown);
    }

    #[test]
    fn unreadable_and_missing_records_fail_closed() {
        let mut index = RevocationIndex::new();
        index.set_device(&dev(1), DeviceState::Active);
        index.set_cert(&fp(1), cert(1, CertState::Valid, 100));
        index.set_cert(&fp(2), cert(2, CertState::Valid, 100));
        // A device whose record was never read: its certificate is refused.
        assert_eq!(index.status(&fp(2)), CertStatus::DeviceUnknown(dev(2)));
        // A device record that cannot be read counts as revoked.
        index.set_device(&dev(1), DeviceState::Unreadable);
        assert!(index.is_device_revoked(&dev(1)));
        assert_eq!(index.status(&fp(1)), CertStatus::Unreadable(Some(dev(1))));
        // An unreadable certificate record keeps the device it had.
        index.set_device(&dev(1), DeviceState::Active);
        let unreadable = Some(CertBinding {
            device: None,
            state: CertState::Unreadable,
            not_after: 0,
        });
        index.set_cert(&fp(1), unreadable);
        assert_eq!(index.status(&fp(1)), CertStatus::Unreadable(Some(dev(1))));
        // ...and one never seen before has no device.
        index.set_cert(&fp(3), unreadable);
        assert_eq!(index.status(&fp(3)), CertStatus::Unreadable(None));
        // Forgetting a device that was never seen makes no slot.
        index.set_device(&dev(7), DeviceState::Unknown);
        assert_eq!(index.devices().count(), 2);
    }

    #[test]
    fn expired_certificates_leave_the_index() {
        let mut index = RevocationIndex::new();
        index.set_device(&dev(1), DeviceState::Active);
        index.set_cert(&fp(1), cert(1, CertState::Valid, 100));
        index.set_cert(&fp(2), cert(1, CertState::Revoked, 200));
        index.set_cert(&fp(3), cert(1, CertState::Valid, 300));
        assert_eq!(index.prune_expired(99), 0);
        assert_eq!(index.prune_expired(100), 1);
        assert_eq!(index.status(&fp(1)), CertStatus::Unknown);
        assert_eq!(index.prune_expired(250), 1);
        assert_eq!(index.certificates(), 1);
        assert_eq!(index.status(&fp(3)), CertStatus::Valid(dev(1)));
        assert_eq!(index.prune_expired(299), 0);
        assert_eq!(index.prune_expired(u64::MAX), 1);
        assert_eq!(index.certificates(), 0);
    }

    #[test]
    fn a_snapshot_round_trips_without_its_unreadable_records() {
        let mut index = RevocationIndex::new();
        index.set_device(&dev(1), DeviceState::Active);
        index.set_device(&dev(2), DeviceState::Active);
        index.set_device(&dev(3), DeviceState::Revoked);
        index.set_device(&dev(4), DeviceState::Unreadable);
        index.set_cert(&fp(1), cert(1, CertState::Valid, 100));
        index.set_cert(&fp(2), cert(2, CertState::Revoked, 100));
        index.set_cert(&fp(3), cert(2, CertState::Unreadable, 0));
        let snap = index.to_snapshot(42, vec!["identity/certs/x".into()]);
        assert_eq!(snap.devices.len(), 3, "unreadable devices are not kept");
        assert_eq!(snap.certs.len(), 2, "unreadable certificates are not kept");
        let back = RevocationIndex::from_snapshot(&snap);
        assert_eq!(back.to_snapshot(42, snap.unreadable.clone()), snap);
        assert_eq!(back.status(&fp(1)), CertStatus::Valid(dev(1)));
        assert_eq!(back.status(&fp(2)), CertStatus::CertificateRevoked(dev(2)));
        assert!(back.is_device_revoked(&dev(3)));
        assert_eq!(back.device_state(&dev(4)), DeviceState::Unknown);
        assert_eq!(back.cert(&fp(1)).unwrap().not_after, 100);
    }
}

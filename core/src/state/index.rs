//! The in-memory revocation index: O(1) answers to "may this certificate
//! act, and as which device?".
//!
//! One hash table maps a certificate fingerprint to a small entry (its
//! device's slot and whether it is revoked); devices live in a vector, so
//! answering costs one table probe and one vector read. Fingerprints are
//! SHA-256 outputs, already uniform, so the table hashes them by taking
//! their first eight bytes instead of running a keyed hash: the keys in the
//! table are fingerprints of certificates this CA issued (with random
//! serials), which a client cannot choose, so a client presenting crafted
//! fingerprints cannot lengthen the probe sequences it walks.

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
    /// Not a certificate this gateway issued (or not known yet).
    Unknown,
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

#[derive(Debug, Clone, Copy)]
struct CertEntry {
    device: u32,
    revoked: bool,
}

#[derive(Debug, Clone, Copy)]
struct DeviceSlot {
    id: DeviceId,
    revoked: bool,
}

/// Certificate bindings and revocations, in memory.
#[derive(Debug, Default, Clone)]
pub struct RevocationIndex {
    certs: FingerprintMap<CertEntry>,
    devices: Vec<DeviceSlot>,
    slots: HashMap<DeviceId, u32>,
}

impl RevocationIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The status of the certificate with fingerprint `fp`.
    #[inline]
    pub fn status(&self, fp: &CertFingerprint) -> CertStatus {
        let Some(entry) = self.certs.get(fp) else {
            return CertStatus::Unknown;
        };
        let device = self.devices[entry.device as usize];
        if entry.revoked {
            CertStatus::CertificateRevoked(device.id)
        } else if device.revoked {
            CertStatus::DeviceRevoked(device.id)
        } else {
            CertStatus::Valid(device.id)
        }
    }

    /// Whether a device is revoked.
    pub fn is_device_revoked(&self, id: &DeviceId) -> bool {
        self.slots
            .get(id)
            .is_some_and(|s| self.devices[*s as usize].revoked)
    }

    /// Number of certificates known.
    pub fn certificates(&self) -> usize {
        self.certs.len()
    }

    fn slot(&mut self, id: &DeviceId) -> u32 {
        if let Some(slot) = self.slots.get(id) {
            return *slot;
        }
        let slot = u32::try_from(self.devices.len()).expect("fewer than 2^32 devices");
        self.devices.push(DeviceSlot {
            id: *id,
            revoked: false,
        });
        self.slots.insert(*id, slot);
        slot
    }

    /// Records whether device `id` is revoked.
    pub fn set_device(&mut self, id: &DeviceId, revoked: bool) {
        let slot = self.slot(id);
        self.devices[slot as usize].revoked = revoked;
    }

    /// Records certificate `fp`, bound to `device`, revoked or not; `None`
    /// forgets it.
    pub fn set_cert(&mut self, fp: &CertFingerprint, binding: Option<(DeviceId, bool)>) {
        match binding {
            Some((device, revoked)) => {
                let device = self.slot(&device);
                self.certs.insert(*fp, CertEntry { device, revoked });
            }
            None => {
                self.certs.remove(fp);
            }
        }
    }

    /// Reserves room for `certs` more certificates.
    pub fn reserve(&mut self, certs: usize) {
        self.certs.reserve(certs);
    }

    /// The index as a snapshot at change sequence `seq`.
    pub fn to_snapshot(&self, seq: u64) -> IndexSnapshot {
        let mut certs: Vec<SnapshotCert> = self
            .certs
            .iter()
            .map(|(fp, e)| SnapshotCert(*fp, self.devices[e.device as usize].id, e.revoked))
            .collect();
        certs.sort_by_key(|c| c.0);
        let mut revoked_devices: Vec<DeviceId> = self
            .devices
            .iter()
            .filter(|d| d.revoked)
            .map(|d| d.id)
            .collect();
        revoked_devices.sort();
        IndexSnapshot {
            seq,
            certs,
            revoked_devices,
        }
    }

    /// The index a snapshot describes.
    pub fn from_snapshot(snapshot: &IndexSnapshot) -> Self {
        let mut index = Self::new();
        index.reserve(snapshot.certs.len());
        for SnapshotCert(fp, device, revoked) in &snapshot.certs {
            index.set_cert(fp, Some((*device, *revoked)));
        }
        for device in &snapshot.revoked_devices {
            index.set_device(device, true);
        }
        index
    }
}

/// A certificate in a snapshot: fingerprint, device, revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCert(pub CertFingerprint, pub DeviceId, pub bool);

/// The index at one change sequence, stored under
/// `identity/index/snapshot` so a process starts without reading every
/// record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSnapshot {
    /// The change sequence the snapshot includes.
    pub seq: u64,
    /// Every known certificate.
    pub certs: Vec<SnapshotCert>,
    /// Every revoked device.
    pub revoked_devices: Vec<DeviceId>,
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

    #[test]
    fn statuses_follow_certificate_and_device_revocation() {
        let mut index = RevocationIndex::new();
        index.set_cert(&fp(1), Some((dev(1), false)));
        index.set_cert(&fp(2), Some((dev(1), true)));
        index.set_cert(&fp(3), Some((dev(2), false)));
        assert_eq!(index.status(&fp(1)), CertStatus::Valid(dev(1)));
        assert_eq!(index.status(&fp(2)), CertStatus::CertificateRevoked(dev(1)));
        assert_eq!(index.status(&fp(9)), CertStatus::Unknown);
        index.set_device(&dev(1), true);
        assert_eq!(index.status(&fp(1)), CertStatus::DeviceRevoked(dev(1)));
        assert_eq!(index.status(&fp(3)), CertStatus::Valid(dev(2)));
        assert!(index.is_device_revoked(&dev(1)));
        index.set_cert(&fp(1), None);
        assert_eq!(index.status(&fp(1)), CertStatus::Unknown);
    }

    #[test]
    fn a_snapshot_round_trips() {
        let mut index = RevocationIndex::new();
        index.set_cert(&fp(1), Some((dev(1), false)));
        index.set_cert(&fp(2), Some((dev(2), true)));
        index.set_device(&dev(3), true);
        let snap = index.to_snapshot(42);
        let back = RevocationIndex::from_snapshot(&snap);
        assert_eq!(back.to_snapshot(42), snap);
        assert_eq!(back.status(&fp(2)), CertStatus::CertificateRevoked(dev(2)));
        assert!(back.is_device_revoked(&dev(3)));
    }
}

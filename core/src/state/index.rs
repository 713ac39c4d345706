//! The in-memory revocation index: O(1) answers to "may this certificate
//! act, and as which device?".

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::records::{CertRecord, DeviceRecord};
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

/// Certificate bindings and revocations, in memory.
#[derive(Debug, Default, Clone)]
pub struct RevocationIndex {
    bindings: HashMap<CertFingerprint, DeviceId>,
    revoked_certs: HashSet<CertFingerprint>,
    revoked_devices: HashSet<DeviceId>,
}

impl RevocationIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The status of the certificate with fingerprint `fp`.
    #[inline]
    pub fn status(&self, fp: &CertFingerprint) -> CertStatus {
        let Some(device) = self.bindings.get(fp) else {
            return CertStatus::Unknown;
        };
        if self.revoked_certs.contains(fp) {
            CertStatus::CertificateRevoked(*device)
        } else if self.revoked_devices.contains(device) {
            CertStatus::DeviceRevoked(*device)
        } else {
            CertStatus::Valid(*device)
        }
    }

    /// Whether a device is revoked.
    pub fn is_device_revoked(&self, id: &DeviceId) -> bool {
        self.revoked_devices.contains(id)
    }

    /// Number of certificates known.
    pub fn certificates(&self) -> usize {
        self.bindings.len()
    }

    /// Applies a device record (or its absence).
    pub fn apply_device(&mut self, id: &DeviceId, record: Option<&DeviceRecord>) {
        if record.is_some_and(|r| r.revoked.is_some()) {
            self.revoked_devices.insert(*id);
        } else {
            self.revoked_devices.remove(id);
        }
    }

    /// Applies a certificate record (or its absence).
    pub fn apply_cert(&mut self, fp: &CertFingerprint, record: Option<&CertRecord>) {
        match record {
            Some(r) => {
                self.bindings.insert(*fp, r.device_id);
                if r.revoked.is_some() {
                    self.revoked_certs.insert(*fp);
                } else {
                    self.revoked_certs.remove(fp);
                }
            }
            None => {
                self.bindings.remove(fp);
                self.revoked_certs.remove(fp);
            }
        }
    }

    /// Reserves room for `certs` more certificates.
    pub fn reserve(&mut self, certs: usize) {
        self.bindings.reserve(certs);
    }

    /// The index as a snapshot at change sequence `seq`.
    pub fn to_snapshot(&self, seq: u64) -> IndexSnapshot {
        let mut certs: Vec<SnapshotCert> = self
            .bindings
            .iter()
            .map(|(fp, dev)| SnapshotCert(*fp, *dev, self.revoked_certs.contains(fp)))
            .collect();
        certs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut revoked_devices: Vec<DeviceId> = self.revoked_devices.iter().copied().collect();
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
        index.bindings.reserve(snapshot.certs.len());
        for SnapshotCert(fp, dev, revoked) in &snapshot.certs {
            index.bindings.insert(*fp, *dev);
            if *revoked {
                index.revoked_certs.insert(*fp);
            }
        }
        index.revoked_devices.extend(snapshot.revoked_devices.iter().copied());
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

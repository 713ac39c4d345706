//! The records of identity state and the store keys they live under.
//!
//! Every record is its own key, so a mutation writes O(1) records whatever
//! the number of devices. Values are JSON (the store encrypts them); unknown
//! fields are refused so a record from a newer schema is never half-read.
//!
//! | key | value |
//! |---|---|
//! | `identity/schema` | `v1` |
//! | `identity/ca` | [`CaRecord`]: the CA certificate and key, PEM, in one record |
//! | `identity/devices/<device_id>` | [`DeviceRecord`] |
//! | `identity/certs/<fingerprint>` | [`CertRecord`]: a certificate and the device it is bound to |
//! | `identity/changes/<seq>` | [`ChangeEntry`](super::changelog::ChangeEntry): keys one mutation changed |
//! | `identity/changes/floor` | highest compacted change sequence |
//! | `identity/index/snapshot` | [`IndexSnapshot`](super::index::IndexSnapshot) |
//!
//! | `identity/pairing/<id>` | [`PairingSession`](super::pairing::PairingSession): a minted code |
//! | `identity/approvals/<id>` | [`ApprovalRecord`](super::pairing::ApprovalRecord) |
//! | `identity/audit/<seq>` | [`AuditEntry`](super::audit::AuditEntry): one state change, hash-chained |
//! | `identity/operators/<name>` | [`OperatorRecord`](super::operators::OperatorRecord) |
//! | `identity/operator-tokens/<hash>` | [`TokenRecord`](super::operators::TokenRecord) |
//! | `identity/operator-token-key` | the key of the operators' token hashes |
//! | `identity/audit-head` | [`AuditHead`](super::audit::AuditHead): the audit log's last entry |

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::{CertFingerprint, DeviceId, DevicePublicKey};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: &str = "v1";
/// The schema marker's key.
pub const SCHEMA_KEY: &str = "identity/schema";
/// The CA record's key.
pub const CA_KEY: &str = "identity/ca";
/// Prefix of device records.
pub const DEVICES_PREFIX: &str = "identity/devices/";
/// Prefix of certificate records.
pub const CERTS_PREFIX: &str = "identity/certs/";

/// The key of a device's record.
pub fn device_key(id: &DeviceId) -> String {
    format!("{DEVICES_PREFIX}{id}")
}

/// The key of a certificate's record.
pub fn cert_key(fp: &CertFingerprint) -> String {
    format!("{CERTS_PREFIX}{fp}")
}

/// When and why something was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// The operator's reason (may be empty).
    pub reason: String,
    /// Unix seconds.
    pub at: u64,
}

/// A device known to the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRecord {
    /// Its id (derived from `public_key`).
    pub device_id: DeviceId,
    /// Its Ed25519 public key: the key of every certificate it gets.
    pub public_key: DevicePublicKey,
    /// The name it gave (untrusted, for display).
    pub name: String,
    /// Capabilities it asked for.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// First enrolment, unix seconds.
    pub enrolled_at: u64,
    /// Set when the device is revoked: it never pairs or connects again.
    pub revoked: Option<Revocation>,
}

/// A client certificate issued to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRecord {
    /// SHA-256 of the DER.
    pub fingerprint: CertFingerprint,
    /// The device it was issued to: a connection presenting this
    /// certificate may act only as this device.
    pub device_id: DeviceId,
    /// Serial number, hex.
    pub serial_hex: String,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// Set when this one certificate is revoked (the device may pair again).
    pub revoked: Option<Revocation>,
}

/// The CA's certificate and key, stored as one record so they can never be
/// half-written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaRecord {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
}

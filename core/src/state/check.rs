//! `keygate state check [--quarantine]`: reads every identity record, names
//! the ones that cannot be used, and can move them aside.
//!
//! Each key under `identity/` is read through the store and decoded as the
//! record its name says it holds ([`check_record`]); a key no record of
//! schema `v1` is stored under is reported too. Checking only reads: the
//! state lock is not taken, and a record written while the check runs is
//! checked as it was read.
//!
//! # Moving records aside
//! [`IdentityManager::quarantine`] moves unreadable records out of the
//! state with the store's `quarantine` (the filesystem store renames the
//! file, as found, into `<root>/.quarantine/`), as one mutation under the
//! exclusive lock whose change entry names them, so every running gateway
//! reads them again (now absent) within a second. What a moved record
//! covered stays refused:
//! - a device record: the device has no record, so its certificates are
//!   refused ([`CertStatus::DeviceUnknown`](super::CertStatus::DeviceUnknown));
//!   the device is forgotten and comes back only by enrolling or pairing
//!   again, which an operator approves;
//! - a certificate record: that certificate is refused (`Unknown`);
//! - a change entry: an entry marked `reload` takes its place, so a reader
//!   that has not passed it yet reads every record instead of skipping what
//!   the original announced;
//! - an audit entry or the audit log's head: `keygate audit verify` names
//!   the break from then on (the log is evidence; nothing replaces it);
//! - the snapshot, the floor, pairing codes, approval requests, stray keys:
//!   nothing is refused; a snapshot or floor is written again.
//!
//! The schema marker and the CA are never moved: without them no gateway
//! can run, and the only repair is a backup.

use zeroize::Zeroizing;

use super::IdentityError;
use super::audit::{AUDIT_HEAD_KEY, AUDIT_PREFIX, AuditEntry, AuditHead};
use super::changelog::{CHANGES_PREFIX, ChangeEntry, FLOOR_KEY, change_key, decode_floor};
use super::fault::{Read, UnreadableRecord, read_with};
use super::index::{IndexSnapshot, SNAPSHOT_KEY};
use super::manager::{IdentityManager, Write};
use super::operators::{
    self, OPERATORS_PREFIX, OperatorRecord, TOKEN_KEY_KEY, TOKENS_PREFIX, TokenRecord,
};
use super::pairing::{APPROVALS_PREFIX, ApprovalRecord, PAIRING_PREFIX, PairingSession};
use super::ratelimit::{self, RATE_LIMIT_PREFIX};
use super::records::{
    CA_KEY, CERTS_PREFIX, CaRecord, CertRecord, DEVICES_PREFIX, DeviceRecord, SCHEMA_KEY,
    SCHEMA_VERSION,
};
use crate::ca::CertificateAuthority;
use crate::identity::{CertFingerprint, DeviceId};
use crate::time::unix_ms;

/// The prefix every identity record lives under.
pub const IDENTITY_PREFIX: &str = "identity/";

/// What a check found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// How many keys were read.
    pub checked: usize,
    /// The ones that cannot be used, by key.
    pub unreadable: Vec<UnreadableRecord>,
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Decodes `bytes` as the record `key` names: `Err` says what is wrong.
pub fn check_record(key: &str, bytes: &[u8]) -> Result<(), String> {
    let names = |what: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(format!("it holds the record of another {what}"))
        }
    };
    if key == SCHEMA_KEY {
        return match bytes == SCHEMA_VERSION.as_bytes() {
            true => Ok(()),
            false => Err(format!(
                "schema marker {:?}, expected {SCHEMA_VERSION:?}",
                String::from_utf8_lossy(bytes)
            )),
        };
    }
    if key == CA_KEY {
        let record: CaRecord = json(&Zeroizing::new(bytes.to_vec()))?;
        return CertificateAuthority::from_pem(&record.cert_pem, &record.key_pem)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    if key == FLOOR_KEY {
        return decode_floor(bytes).map(drop);
    }
    if key == SNAPSHOT_KEY {
        return json::<IndexSnapshot>(bytes).map(drop);
    }
    if let Some(id) = key.strip_prefix(DEVICES_PREFIX) {
        let id = DeviceId::parse(id).map_err(|e| format!("not a device id: {e}"))?;
        let record: DeviceRecord = json(bytes)?;
        return names("device", record.device_id == id);
    }
    if let Some(fp) = key.strip_prefix(CERTS_PREFIX) {
        let fp = CertFingerprint::parse(fp).map_err(|e| format!("not a fingerprint: {e}"))?;
        let record: CertRecord = json(bytes)?;
        return names("certificate", record.fingerprint == fp);
    }
    if let Some(seq) = key.strip_prefix(CHANGES_PREFIX) {
        let seq: u64 = seq
            .parse()
            .ok()
            .filter(|_| seq.len() == 20)
            .ok_or("not a change sequence number")?;
        return ChangeEntry::decode(seq, bytes)
            .map(drop)
            .map_err(|e| match e {
                IdentityError::Corrupt { reason, .. } => reason,
                other => other.to_string(),
            });
    }
    if let Some(id) = key.strip_prefix(PAIRING_PREFIX) {
        let record: PairingSession = json(bytes)?;
        return names("pairing code", record.id == id);
    }
    if let Some(id) = key.strip_prefix(APPROVALS_PREFIX) {
        let record: ApprovalRecord = json(bytes)?;
        return names("approval request", record.id == id);
    }
    if key == AUDIT_HEAD_KEY {
        return json::<AuditHead>(bytes).map(drop);
    }
    if let Some(seq) = key.strip_prefix(AUDIT_PREFIX) {
        let seq: u64 = seq
            .parse()
            .ok()
            .filter(|_| seq.len() == 20)
            .ok_or("not an audit entry number")?;
        let entry: AuditEntry = json(bytes)?;
        return names("audit entry", entry.seq == seq);
    }
    if key == TOKEN_KEY_KEY {
        return operators::check_token_key(bytes);
    }
    if let Some(name) = key.strip_prefix(OPERATORS_PREFIX) {
        let record: OperatorRecord = json(bytes)?;
        return names("operator", record.name == name);
    }
    if let Some(hash) = key.strip_prefix(TOKENS_PREFIX) {
        let record: TokenRecord = json(bytes)?;
        return match hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => operators::check_name(&record.operator).map_err(|e| e.to_string()),
            false => Err("not a token hash".into()),
        };
    }
    if let Some(source) = key.strip_prefix(RATE_LIMIT_PREFIX) {
        return names(
            "pairing failure count",
            ratelimit::names_source(bytes, source)?,
        );
    }
    Err(format!(
        "no record of identity schema {SCHEMA_VERSION} is stored under this name"
    ))
}

/// A record moved aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Its key.
    pub key: String,
    /// Why it was unreadable.
    pub reason: String,
    /// Where the store put it.
    pub place: String,
}

/// What [`IdentityManager::quarantine`] did.
#[derive(Debug, Clone, Default)]
pub struct QuarantineReport {
    /// The records moved aside.
    pub moved: Vec<Moved>,
    /// The records left in place, and why (they read now, are gone, or may
    /// never be moved).
    pub left: Vec<UnreadableRecord>,
}

impl IdentityManager {
    /// Moves the records at `keys` aside, if each is still unreadable when
    /// checked again under the exclusive lock; see the module docs. A store
    /// without the capability makes this an
    /// [`Unsupported`](keygate_sdk::ErrorKind::Unsupported) error and
    /// moves nothing.
    pub fn quarantine(
        &self,
        keys: &[String],
        now: std::time::SystemTime,
    ) -> Result<QuarantineReport, IdentityError> {
        let (mut report, places) = self.mutate_moving("state quarantine", |m| {
            let mut writes = Vec::new();
            let mut report = QuarantineReport::default();
            for key in keys {
                let left = |why: &str| UnreadableRecord {
                    key: key.clone(),
                    reason: why.to_owned(),
                };
                if key == SCHEMA_KEY || key == CA_KEY {
                    report.left.push(left(
                        "never moved aside: no gateway runs without it; restore it from a backup",
                    ));
                    continue;
                }
                let reason = match read_with(m.store(), key, |bytes| check_record(key, bytes))? {
                    Read::Absent => {
                        report.left.push(left("no such record"));
                        continue;
                    }
                    Read::Found(..) => {
                        report.left.push(left("it reads now: left in place"));
                        continue;
                    }
                    Read::Unreadable(reason) => reason,
                };
                writes.push(Write::quarantine(key.clone()));
                if let Some(seq) = key
                    .strip_prefix(CHANGES_PREFIX)
                    .and_then(|s| s.parse::<u64>().ok())
                    .filter(|seq| change_key(*seq) == *key)
                {
                    let replacement = ChangeEntry::replacement(seq, unix_ms(now));
                    writes.push(Write::put(key.clone(), replacement.encode()?, None));
                }
                report.moved.push(Moved {
                    key: key.clone(),
                    reason,
                    place: String::new(),
                });
            }
            Ok((writes, report))
        })?;
        for moved in &mut report.moved {
            if let Some((_, place)) = places.iter().find(|(key, _)| *key == moved.key) {
                moved.place.clone_from(place);
            }
        }
        Ok(report)
    }

    /// Reads and decodes every identity record (see the module docs). Only
    /// a transient store failure is an error.
    pub fn check(&self) -> Result<CheckReport, IdentityError> {
        let mut report = CheckReport::default();
        for key in self.store.list(IDENTITY_PREFIX)? {
            report.checked += 1;
            let reason = match read_with(&*self.store, &key, |bytes| check_record(&key, bytes))? {
                Read::Absent | Read::Found(..) => continue,
                Read::Unreadable(reason) => reason,
            };
            report.unreadable.push(UnreadableRecord { key, reason });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_key_is_decoded_as_its_record() {
        assert_eq!(check_record(SCHEMA_KEY, b"v1"), Ok(()));
        assert!(
            check_record(SCHEMA_KEY, b"v2")
                .unwrap_err()
                .contains("\"v2\"")
        );
        assert_eq!(check_record(FLOOR_KEY, b"17"), Ok(()));
        assert!(check_record(FLOOR_KEY, b"x").is_err());
        let entry = br#"{"seq":3,"at_unix_ms":0,"keys":[]}"#;
        assert_eq!(
            check_record("identity/changes/00000000000000000003", entry),
            Ok(())
        );
        assert!(
            check_record("identity/changes/00000000000000000004", entry)
                .unwrap_err()
                .contains("change 3")
        );
        assert_eq!(
            check_record("identity/changes/3", entry).unwrap_err(),
            "not a change sequence number"
        );
        assert!(
            check_record("identity/devices/nope", b"{}")
                .unwrap_err()
                .starts_with("not a device id")
        );
        assert!(
            check_record("identity/certs/nope", b"{}")
                .unwrap_err()
                .starts_with("not a fingerprint")
        );
        assert!(check_record(CA_KEY, b"{}").is_err());
        assert!(check_record(SNAPSHOT_KEY, b"[]").is_err());
        let audit = br#"{"seq":2,"at":0,"events":[{"actor":"gateway","action":"plugin_loaded","subject":"s","details":{}}],"prev":"p","hash":"h"}"#;
        assert_eq!(
            check_record("identity/audit/00000000000000000002", audit),
            Ok(())
        );
        assert!(
            check_record("identity/audit/00000000000000000001", audit)
                .unwrap_err()
                .contains("another audit entry")
        );
        assert_eq!(
            check_record("identity/audit/2", audit).unwrap_err(),
            "not an audit entry number"
        );
        assert_eq!(
            check_record(AUDIT_HEAD_KEY, br#"{"seq":2,"hash":"h"}"#),
            Ok(())
        );
        assert!(check_record(AUDIT_HEAD_KEY, b"{}").is_err());
        let key = format!(r#"{{"key_hex":"{}"}}"#, "ab".repeat(32));
        assert_eq!(check_record(TOKEN_KEY_KEY, key.as_bytes()), Ok(()));
        assert!(
            check_record(TOKEN_KEY_KEY, br#"{"key_hex":"abcd"}"#)
                .unwrap_err()
                .contains("not 32 bytes")
        );
        assert!(check_record(TOKEN_KEY_KEY, b"{}").is_err());
        assert!(
            check_record("identity/elsewhere", b"{}")
                .unwrap_err()
                .contains("no record of identity schema v1")
        );
    }
}

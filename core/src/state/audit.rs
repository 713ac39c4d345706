//! The audit log: every state change, who made it, in an append-only,
//! hash-chained sequence of records in the store.
//!
//! | key | value |
//! |---|---|
//! | `identity/audit/<seq>` (20 digits) | [`AuditEntry`] |
//! | `identity/audit-head` | [`AuditHead`]: the last entry's number and hash |
//!
//! An entry holds the changes ([`AuditEvent`]s) of one mutation and is
//! written by that mutation, with its other records (one batch on a store with the batch
//! capability), so no change commits without its entry and no entry
//! without its change. Each entry holds the SHA-256 of the one before it
//! (`prev`; 64 zeros for the first) and its own (`hash`, over every other
//! field): an entry edited in the store no longer matches its hash, and
//! one removed leaves a gap in the numbers or a `prev` that matches
//! nothing. [`IdentityManager::verify_audit`] walks the chain and names the
//! first entry that breaks it; the head record, which every append moves,
//! catches entries removed from the end.
//!
//! What it does not stop: someone who can write the store can rewrite the
//! whole chain from an entry on, head included (there is no secret in
//! it). Keep a copy of `keygate audit list --json` elsewhere (or a past
//! head's hash) to pin what was there.
//!
//! On a store without the batch capability a mutation's records are
//! written one by one, so a writer that dies between its entry and the
//! head leaves an entry past the head. It chains correctly, so the next
//! append adopts it and [`IdentityManager::verify_audit`] accepts it.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::IdentityError;
use super::fault::{Read, read_record};
use super::manager::{IdentityManager, Write, encode};
use super::plan::Planner;
use crate::identity::DeviceId;
use crate::time::unix_secs;

/// Prefix of audit entries.
pub const AUDIT_PREFIX: &str = "identity/audit/";
/// The key of the audit log's head.
pub const AUDIT_HEAD_KEY: &str = "identity/audit-head";
/// What the first entry names as the hash before it.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Hashed before an entry's fields, so the hash is of nothing else.
const DOMAIN: &[u8] = b"keygate audit entry v1\n";

/// The key of entry `seq`.
pub fn audit_key(seq: u64) -> String {
    format!("{AUDIT_PREFIX}{seq:020}")
}

/// Who made a change, as the audit log and decisions name them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// An operator through the admin API, by the name of its token:
    /// `operator:NAME`.
    pub fn operator(name: &str) -> Self {
        Self(format!("operator:{name}"))
    }

    /// Someone at this host's command line, by login name:
    /// `cli:LOGIN` (`$USER`, else `$LOGNAME`, else `unknown`).
    pub fn cli() -> Self {
        let login = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        Self(format!("cli:{login}"))
    }

    /// An approval policy plugin, by its slot's plugin name:
    /// `policy(NAME)`.
    pub fn policy(name: &str) -> Self {
        Self(format!("policy({name})"))
    }

    /// A device acting for itself (renewing its certificate):
    /// `device:ID`.
    pub fn device(id: &DeviceId) -> Self {
        Self(format!("device:{id}"))
    }

    /// The gateway itself (start-up): `gateway`.
    pub fn gateway() -> Self {
        Self("gateway".to_owned())
    }

    /// As written in records.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A pairing code was minted (subject: its session id).
    CodeMinted,
    /// A pairing request was filed and waits for a decision (subject: the
    /// request id).
    RequestFiled,
    /// A request was approved (subject: the request id).
    RequestApproved,
    /// A request was rejected (subject: the request id).
    RequestRejected,
    /// A device was enrolled (subject: the device id).
    DeviceEnrolled,
    /// A certificate was issued (subject: its fingerprint).
    CertificateIssued,
    /// A device was revoked (subject: the device id).
    DeviceRevoked,
    /// A certificate was revoked (subject: its fingerprint).
    CertificateRevoked,
    /// An operator was added (subject: the operator's name).
    OperatorAdded,
    /// An operator's token was revoked (subject: the operator's name).
    OperatorRevoked,
    /// The gateway started with a plugin (subject: `SLOT=NAME`).
    PluginLoaded,
}

impl AuditAction {
    /// As written in entries (`code_minted`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CodeMinted => "code_minted",
            Self::RequestFiled => "request_filed",
            Self::RequestApproved => "request_approved",
            Self::RequestRejected => "request_rejected",
            Self::DeviceEnrolled => "device_enrolled",
            Self::CertificateIssued => "certificate_issued",
            Self::DeviceRevoked => "device_revoked",
            Self::CertificateRevoked => "certificate_revoked",
            Self::OperatorAdded => "operator_added",
            Self::OperatorRevoked => "operator_revoked",
            Self::PluginLoaded => "plugin_loaded",
        }
    }
}

/// One change: who did what to what. An entry holds the events of one
/// mutation (a pairing approved by a policy is a request filed by the
/// device, approved by the policy, a device enrolled and a certificate
/// issued).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Who made it.
    pub actor: Actor,
    /// What it was.
    pub action: AuditAction,
    /// What it was done to (an id, a fingerprint, a name).
    pub subject: String,
    /// Anything else worth keeping (a reason, a method, a hash).
    pub details: BTreeMap<String, String>,
}

impl AuditEvent {
    /// `actor` did `action` to `subject`.
    pub fn new(actor: &Actor, action: AuditAction, subject: impl Into<String>) -> Self {
        Self {
            actor: actor.clone(),
            action,
            subject: subject.into(),
            details: BTreeMap::new(),
        }
    }

    /// With one more detail.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.details.insert(name.to_owned(), value.into());
        self
    }
}

/// One entry of the log: the changes one mutation made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Its number, from 1, without gaps.
    pub seq: u64,
    /// When, in unix seconds.
    pub at: u64,
    /// What was done, in order.
    pub events: Vec<AuditEvent>,
    /// The hash of the entry before (hex), or [`GENESIS`].
    pub prev: String,
    /// SHA-256 (hex) over every field above.
    pub hash: String,
}

/// The fields an entry's hash covers, in a fixed order.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: u64,
    at: u64,
    events: &'a [AuditEvent],
    prev: &'a str,
}

impl AuditEntry {
    /// The hash its fields give, to compare with `hash`.
    pub fn computed_hash(&self) -> String {
        let hashed = Hashed {
            seq: self.seq,
            at: self.at,
            events: &self.events,
            prev: &self.prev,
        };
        // Serializing plain strings, numbers and sorted maps cannot fail.
        let bytes = serde_json::to_vec(&hashed).unwrap_or_default();
        let mut digest = Sha256::new();
        digest.update(DOMAIN);
        digest.update(&bytes);
        hex::encode(digest.finalize())
    }

    fn chained(seq: u64, prev: &str, events: Vec<AuditEvent>, at: u64) -> Self {
        let mut entry = Self {
            seq,
            at,
            events,
            prev: prev.to_owned(),
            hash: String::new(),
        };
        entry.hash = entry.computed_hash();
        entry
    }
}

/// Where the log ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditHead {
    /// The last entry's number.
    pub seq: u64,
    /// The last entry's hash.
    pub hash: String,
}

/// Where and how the chain breaks: the first entry that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {seq} ({key}): {problem}")]
pub struct AuditBreak {
    /// The entry's number (for a missing entry, the one expected).
    pub seq: u64,
    /// Its key.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

/// What [`IdentityManager::verify_audit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// The chain holds: this many entries, the last with this hash.
    Intact {
        /// Entries checked.
        entries: u64,
        /// The last entry's hash ([`GENESIS`] when there is none).
        head: String,
    },
    /// The first entry that breaks it.
    Broken(AuditBreak),
}

impl Planner<'_> {
    /// Appends `events` to the audit log as one entry after its end as the
    /// group left it, adding its writes (the entry and the head) to
    /// `writes`, so they commit with the mutation.
    pub(super) fn audit(
        &self,
        events: Vec<AuditEvent>,
        now: SystemTime,
        writes: &mut Vec<Write>,
    ) -> Result<(), IdentityError> {
        if events.is_empty() {
            return Ok(());
        }
        let (mut seq, mut prev, head_version) =
            match self.get_record::<AuditHead>(AUDIT_HEAD_KEY)? {
                Some((head, version)) => (head.seq, head.hash, Some(version)),
                None => (0, GENESIS.to_owned(), None),
            };
        // An entry past the head: a writer without batches died between
        // the entry and the head. It is part of the chain if it follows;
        // one that does not (written by hand?) is stepped over, never
        // replaced, so the change still commits and `verify_audit` names
        // the break.
        loop {
            let key = audit_key(seq + 1);
            match read_record::<AuditEntry>(self.store(), &key)? {
                Read::Absent => break,
                Read::Found(next, _)
                    if next.seq == seq + 1
                        && next.prev == prev
                        && next.computed_hash() == next.hash =>
                {
                    prev = next.hash;
                }
                Read::Unreadable(_) => {
                    self.m.faults.counted(1);
                    tracing::warn!(%key, "an audit entry past the log's head cannot be read; stepping over it (see `keygate audit verify`)");
                }
                Read::Found(..) => {
                    tracing::warn!(%key, "an audit entry past the log's head does not follow it; stepping over it (see `keygate audit verify`)");
                }
            }
            seq += 1;
        }
        seq += 1;
        let entry = AuditEntry::chained(seq, &prev, events, unix_secs(now));
        let key = audit_key(seq);
        writes.push(Write::put(key.clone(), encode(&key, &entry)?, None));
        let head = AuditHead {
            seq,
            hash: entry.hash,
        };
        writes.push(Write::put(
            AUDIT_HEAD_KEY.to_owned(),
            encode(AUDIT_HEAD_KEY, &head)?,
            head_version,
        ));
        Ok(())
    }
}

impl IdentityManager {
    /// Records `events` on their own, as one entry in one mutation (for changes outside
    /// identity state, such as the plugins a gateway started with).
    pub fn record_audit(
        &self,
        events: Vec<AuditEvent>,
        now: SystemTime,
    ) -> Result<(), IdentityError> {
        self.mutate("audit", |m| {
            let mut writes = Vec::new();
            m.audit(events.clone(), now, &mut writes)?;
            Ok((writes, ()))
        })
    }

    /// Every entry, oldest first, read as they are (not verified): an entry
    /// that cannot be read is an error naming it.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>, IdentityError> {
        let mut keys = self.store.list(AUDIT_PREFIX)?;
        keys.sort();
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            match read_record::<AuditEntry>(&*self.store, &key)? {
                Read::Absent => {}
                Read::Found(entry, _) => entries.push(entry),
                Read::Unreadable(reason) => {
                    self.faults.counted(1);
                    return Err(IdentityError::corrupt(&key, &reason));
                }
            }
        }
        Ok(entries)
    }

    /// The number of the last entry the log's head names (0 for an empty
    /// log): where a reader that follows the log starts.
    pub fn audit_head_seq(&self) -> Result<u64, IdentityError> {
        Ok(self
            .get_record::<AuditHead>(AUDIT_HEAD_KEY)?
            .map_or(0, |(head, _)| head.seq))
    }

    /// Entry `seq` as stored (not verified), `None` while there is none.
    /// Readers that follow the log ask for the entry after the last they
    /// saw; an entry that cannot be read is an error naming it.
    pub fn audit_entry(&self, seq: u64) -> Result<Option<AuditEntry>, IdentityError> {
        Ok(self
            .get_record::<AuditEntry>(&audit_key(seq))?
            .map(|(entry, _)| entry))
    }

    /// Walks the chain from the first entry and names the first that does
    /// not hold: missing, unreadable, under another number, not following
    /// the one before, edited (its hash), or entries removed from the end
    /// (the head names an entry that is gone). Takes the shared state lock,
    /// so no writer of this host appends meanwhile.
    pub fn verify_audit(&self) -> Result<AuditVerdict, IdentityError> {
        let _guard = self
            .lock
            .acquire_shared("audit verify", self.settings.lock_timeout)?;
        let head = match read_record::<AuditHead>(&*self.store, AUDIT_HEAD_KEY)? {
            Read::Absent => None,
            Read::Found(head, _) => Some(head),
            Read::Unreadable(reason) => {
                return Ok(AuditVerdict::Broken(AuditBreak {
                    seq: 0,
                    key: AUDIT_HEAD_KEY.to_owned(),
                    problem: format!("the log's head cannot be read: {reason}"),
                }));
            }
        };
        let mut keys = self.store.list(AUDIT_PREFIX)?;
        keys.sort();
        let broken = |seq: u64, key: &str, problem: String| {
            Ok(AuditVerdict::Broken(AuditBreak {
                seq,
                key: key.to_owned(),
                problem,
            }))
        };
        let mut prev = GENESIS.to_owned();
        let mut seq = 0u64;
        for key in keys {
            let expected = seq + 1;
            let numbered = key
                .strip_prefix(AUDIT_PREFIX)
                .filter(|n| n.len() == 20)
                .and_then(|n| n.parse::<u64>().ok());
            match numbered {
                None => return broken(expected, &key, "not an audit entry's key".into()),
                Some(n) if n != expected => {
                    return broken(
                        expected,
                        &audit_key(expected),
                        format!("missing (the next entry found is {n})"),
                    );
                }
                Some(_) => {}
            }
            let entry = match read_record::<AuditEntry>(&*self.store, &key)? {
                // Removed between the listing and the read.
                Read::Absent => return broken(expected, &key, "missing".into()),
                Read::Unreadable(reason) => {
                    return broken(expected, &key, format!("unreadable: {reason}"));
                }
                Read::Found(entry, _) => entry,
            };
            if entry.seq != expected {
                return broken(expected, &key, format!("holds entry {} instead", entry.seq));
            }
            if entry.prev != prev {
                return broken(
                    expected,
                    &key,
                    "does not follow the entry before it (its `prev` is not that entry's hash)"
                        .into(),
                );
            }
            if entry.computed_hash() != entry.hash {
                return broken(
                    expected,
                    &key,
                    "its content does not match its hash: it was edited".into(),
                );
            }
            seq = expected;
            prev = entry.hash;
        }
        match head {
            Some(head) if head.seq > seq => broken(
                seq + 1,
                &audit_key(seq + 1),
                format!(
                    "missing: the log's head says it ends at entry {}, but the entries stop at {seq}",
                    head.seq
                ),
            ),
            Some(head) if head.seq == seq && head.hash != prev => broken(
                seq,
                &audit_key(seq),
                "the log's head names another hash for the last entry".into(),
            ),
            None if seq > 0 => broken(seq, AUDIT_HEAD_KEY, "the log's head is missing".into()),
            _ => Ok(AuditVerdict::Intact {
                entries: seq,
                head: prev,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use keygate_sdk::SecretStore;

    use super::*;
    use crate::identity::DeviceKey;
    use crate::state::pairing::Method;

    fn manager(dir: &std::path::Path) -> (Arc<dyn SecretStore>, IdentityManager) {
        crate::state::testing::on_memory(dir)
    }

    fn key(n: u8) -> DeviceKey {
        DeviceKey::from_seed(&[n; 32])
    }

    /// Four changes, one entry each: a device enrolled (2 events), a code
    /// minted, a second device enrolled and the first revoked.
    fn changes(m: &IdentityManager) -> DeviceId {
        let now = SystemTime::now();
        let alice = Actor::operator("alice");
        let id = m
            .enroll(&key(1).public_key(), "printer", &[], now, &alice)
            .unwrap()
            .device
            .device_id;
        m.create_pairing_session(
            Method::Qr,
            zeroize::Zeroizing::new("secret".into()),
            Duration::from_secs(60),
            5,
            now,
            &Actor::cli(),
        )
        .unwrap();
        m.enroll(&key(2).public_key(), "scanner", &[], now, &alice)
            .unwrap();
        m.revoke_device(&id, "lost", now, &alice).unwrap();
        id
    }

    fn broken(m: &IdentityManager) -> AuditBreak {
        match m.verify_audit().unwrap() {
            AuditVerdict::Broken(b) => b,
            other => panic!("the chain should be broken: {other:?}"),
        }
    }

    fn put_raw(store: &dyn SecretStore, key: &str, value: &[u8]) {
        let version = store.get(key).unwrap().map(|v| v.version);
        store.put(key, value, version).unwrap();
    }

    #[test]
    fn each_change_is_one_entry_with_who_made_it_chained_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let (_, m) = manager(dir.path());
        assert_eq!(
            m.verify_audit().unwrap(),
            AuditVerdict::Intact {
                entries: 0,
                head: GENESIS.into()
            }
        );
        let id = changes(&m);
        let entries = m.audit_entries().unwrap();
        let seen: Vec<(u64, &str, AuditAction)> = entries
            .iter()
            .flat_map(|e| e.events.iter().map(|v| (e.seq, v.actor.as_str(), v.action)))
            .collect();
        let cli = Actor::cli();
        assert_eq!(
            seen,
            vec![
                (1, "operator:alice", AuditAction::DeviceEnrolled),
                (1, "operator:alice", AuditAction::CertificateIssued),
                (2, cli.as_str(), AuditAction::CodeMinted),
                (3, "operator:alice", AuditAction::DeviceEnrolled),
                (3, "operator:alice", AuditAction::CertificateIssued),
                (4, "operator:alice", AuditAction::DeviceRevoked),
            ]
        );
        assert_eq!(entries[0].events[0].subject, id.to_string());
        assert_eq!(
            entries[3].events[0]
                .details
                .get("reason")
                .map(String::as_str),
            Some("lost")
        );
        assert_eq!(entries[0].prev, GENESIS);
        for pair in entries.windows(2) {
            assert_eq!(pair[1].prev, pair[0].hash);
        }
        assert_eq!(
            m.verify_audit().unwrap(),
            AuditVerdict::Intact {
                entries: 4,
                head: entries[3].hash.clone()
            }
        );
        // A change that does nothing records nothing.
        m.revoke_device(&id, "again", SystemTime::now(), &cli)
            .unwrap();
        assert_eq!(m.audit_entries().unwrap().len(), 4);
        // A change refused records nothing.
        let unknown = key(9).public_key().device_id();
        assert!(
            m.revoke_device(&unknown, "x", SystemTime::now(), &cli)
                .is_err()
        );
        assert_eq!(m.audit_entries().unwrap().len(), 4);
    }

    #[test]
    fn an_edited_entry_is_named_even_with_its_hash_recomputed_then_the_next_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = manager(dir.path());
        changes(&m);
        let mut entry = m.audit_entries().unwrap()[1].clone();
        entry.events[0].actor = Actor::operator("mallory");
        put_raw(&*store, &audit_key(2), &serde_json::to_vec(&entry).unwrap());
        let b = broken(&m);
        assert_eq!((b.seq, b.key.as_str()), (2, audit_key(2).as_str()));
        assert!(b.problem.contains("edited"), "{b}");
        // Rehashed, it passes its own check and breaks the next link.
        entry.hash = entry.computed_hash();
        put_raw(&*store, &audit_key(2), &serde_json::to_vec(&entry).unwrap());
        let b = broken(&m);
        assert_eq!(b.seq, 3);
        assert!(b.problem.contains("does not follow"), "{b}");
    }

    #[test]
    fn a_removed_entry_is_named_in_the_middle_and_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = manager(dir.path());
        changes(&m);
        let last = store.get(&audit_key(4)).unwrap().unwrap();
        store.delete(&audit_key(4), last.version).unwrap();
        let b = broken(&m);
        assert_eq!((b.seq, b.key.as_str()), (4, audit_key(4).as_str()));
        assert!(b.problem.contains("head says it ends at entry 4"), "{b}");
        let second = store.get(&audit_key(2)).unwrap().unwrap();
        store.delete(&audit_key(2), second.version).unwrap();
        let b = broken(&m);
        assert_eq!((b.seq, b.key.as_str()), (2, audit_key(2).as_str()));
        assert!(
            b.problem.contains("missing (the next entry found is 3)"),
            "{b}"
        );
    }

    #[test]
    fn an_unreadable_entry_a_renumbered_one_and_a_lost_head_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = manager(dir.path());
        changes(&m);
        let first = m.audit_entries().unwrap()[0].clone();
        put_raw(&*store, &audit_key(3), b"not json");
        let b = broken(&m);
        assert_eq!(b.seq, 3);
        assert!(b.problem.starts_with("unreadable"), "{b}");
        put_raw(&*store, &audit_key(3), &serde_json::to_vec(&first).unwrap());
        let b = broken(&m);
        assert_eq!(b.seq, 3);
        assert!(b.problem.contains("holds entry 1"), "{b}");

        let dir = tempfile::tempdir().unwrap();
        let (store, m) = manager(dir.path());
        changes(&m);
        let head = store.get(AUDIT_HEAD_KEY).unwrap().unwrap();
        store.delete(AUDIT_HEAD_KEY, head.version).unwrap();
        let b = broken(&m);
        assert_eq!(b.key, AUDIT_HEAD_KEY);
        assert!(b.problem.contains("head is missing"), "{b}");
        put_raw(&*store, AUDIT_HEAD_KEY, br#"{"seq":4,"hash":"00"}"#);
        let b = broken(&m);
        assert_eq!(b.seq, 4);
        assert!(b.problem.contains("another hash"), "{b}");
    }

    #[test]
    fn an_entry_a_dead_writer_left_past_the_head_is_adopted_and_a_stray_one_stepped_over() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = manager(dir.path());
        changes(&m);
        // As if a writer without batches died after writing entry 5 but
        // before moving the head.
        let head: AuditHead =
            serde_json::from_slice(&store.get(AUDIT_HEAD_KEY).unwrap().unwrap().value).unwrap();
        let orphan = AuditEntry::chained(
            5,
            &head.hash,
            vec![AuditEvent::new(
                &Actor::gateway(),
                AuditAction::PluginLoaded,
                "store=x",
            )],
            1,
        );
        put_raw(
            &*store,
            &audit_key(5),
            &serde_json::to_vec(&orphan).unwrap(),
        );
        assert!(matches!(
            m.verify_audit().unwrap(),
            AuditVerdict::Intact { entries: 5, .. }
        ));
        m.record_audit(
            vec![AuditEvent::new(
                &Actor::gateway(),
                AuditAction::PluginLoaded,
                "store=y",
            )],
            SystemTime::now(),
        )
        .unwrap();
        let entries = m.audit_entries().unwrap();
        assert_eq!(entries.len(), 6);
        assert_eq!(entries[5].prev, orphan.hash);
        assert!(matches!(
            m.verify_audit().unwrap(),
            AuditVerdict::Intact { entries: 6, .. }
        ));
        // A stray entry past the head that does not follow: the next change
        // still commits, after it, and the break stays visible.
        let stray = AuditEntry::chained(
            7,
            GENESIS,
            vec![AuditEvent::new(
                &Actor::gateway(),
                AuditAction::PluginLoaded,
                "forged",
            )],
            1,
        );
        put_raw(&*store, &audit_key(7), &serde_json::to_vec(&stray).unwrap());
        let id = key(1).public_key().device_id();
        let cert = m.issue_certificate(&id, SystemTime::now());
        assert!(matches!(cert, Err(IdentityError::DeviceRevoked { .. })));
        m.revoke_certificate(
            &m.certificates().unwrap().records[0].fingerprint,
            "leaked",
            SystemTime::now(),
            &Actor::cli(),
        )
        .unwrap();
        let entries = m.audit_entries().unwrap();
        assert_eq!(entries.last().unwrap().seq, 8);
        // Chained to the last entry that followed, not to the stray.
        assert_eq!(entries.last().unwrap().prev, entries[5].hash);
        assert_eq!(
            entries.last().unwrap().events[0].action,
            AuditAction::CertificateRevoked
        );
        let b = broken(&m);
        assert_eq!(b.seq, 7);
    }

    #[test]
    fn an_action_reads_as_it_is_stored() {
        use AuditAction::*;
        for action in [
            CodeMinted,
            RequestFiled,
            RequestApproved,
            RequestRejected,
            DeviceEnrolled,
            CertificateIssued,
            DeviceRevoked,
            CertificateRevoked,
            OperatorAdded,
            OperatorRevoked,
            PluginLoaded,
        ] {
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::Value::from(action.as_str())
            );
        }
    }

    #[test]
    fn changes_made_together_are_chained_in_one_order() {
        let dir = tempfile::tempdir().unwrap();
        let (_, m) = manager(dir.path());
        let now = SystemTime::now();
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let m = &m;
                s.spawn(move || {
                    for i in 0..4u8 {
                        m.enroll(
                            &key(t * 4 + i + 1).public_key(),
                            "d",
                            &[],
                            now,
                            &Actor::cli(),
                        )
                        .unwrap();
                    }
                });
            }
        });
        assert!(matches!(
            m.verify_audit().unwrap(),
            AuditVerdict::Intact { entries: 32, .. }
        ));
    }
}

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

use keygate_sdk::{BatchOp, BatchStore, ErrorKind, PluginError, SecretStore, Version, WatchStore};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::IdentityError;
use super::audit::{Actor, AuditAction, AuditEvent};
use super::changelog;
use super::fault::{Faults, UnreadableRecord};
use super::follower::{CommitTimes, Context, Follower};
use super::group::{Groups, Turn};
use super::index::{CertStatus, RevocationIndex};
use super::lock::StateLock;
use super::overlay::{NetWrite, Overlay};
use super::plan::{Planner, all_in, get_record_in};
use super::records::*;
use crate::ca::{
    CertificateAuthority, DEFAULT_CA_VALIDITY, DEFAULT_CLIENT_VALIDITY, IssuedCertificate,
};
use crate::identity::{CertFingerprint, DeviceId, DevicePublicKey};
use crate::time::{unix_ms, unix_secs};

/// Default of [`IdentitySettings::snapshot_interval`].
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 1024;
/// Default of [`IdentitySettings::change_retention`].
pub const DEFAULT_CHANGE_RETENTION: u64 = 4096;
/// Default of [`IdentitySettings::recheck_interval`].
pub const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Settings of the identity core.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    /// Subject CN of a new CA.
    pub ca_common_name: String,
    /// Validity of a new CA.
    pub ca_validity: Duration,
    /// Validity of client certificates.
    pub client_validity: Duration,
    /// Validity of the gateway's server certificate (re-issued at two
    /// thirds of it).
    pub server_validity: Duration,
    /// How long a mutation waits for the state lock.
    pub lock_timeout: Duration,
    /// A reader writes an index snapshot once this many changes accumulated
    /// after the last one (at least 1).
    pub snapshot_interval: u64,
    /// Change-log entries kept behind the newest, for readers that poll;
    /// older ones are compacted.
    pub change_retention: u64,
    /// How often a reader reads unreadable records again (a record restored
    /// from a backup is picked up within this) and checks the change log
    /// for a gap.
    pub recheck_interval: Duration,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            ca_common_name: "Keygate CA".into(),
            ca_validity: DEFAULT_CA_VALIDITY,
            client_validity: DEFAULT_CLIENT_VALIDITY,
            server_validity: crate::ca::DEFAULT_SERVER_VALIDITY,
            lock_timeout: Duration::from_secs(10),
            snapshot_interval: DEFAULT_SNAPSHOT_INTERVAL,
            change_retention: DEFAULT_CHANGE_RETENTION,
            recheck_interval: DEFAULT_RECHECK_INTERVAL,
        }
    }
}

/// A revocation seen by [`IdentityManager::refresh`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// A device to enrol: its key, name and capabilities.
pub(super) struct NewDevice<'a> {
    pub(super) public_key: &'a DevicePublicKey,
    pub(super) name: &'a str,
    pub(super) capabilities: &'a [String],
}

/// A device and the certificate just issued to it.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The device record after enrolment.
    pub device: DeviceRecord,
    /// The new certificate.
    pub certificate: IssuedCertificate,
}

/// One record a mutation writes.
pub(super) struct Write {
    pub(super) key: String,
    pub(super) op: Op,
}

pub(super) enum Op {
    Put {
        value: Vec<u8>,
        expected: Option<Version>,
    },
    Delete {
        expected: Version,
    },
    Quarantine,
}

impl Write {
    /// Puts `value` under `key`, replacing `expected` (`None`: creates it).
    pub(super) fn put(key: String, value: Vec<u8>, expected: Option<Version>) -> Self {
        Self {
            key,
            op: Op::Put { value, expected },
        }
    }

    /// Deletes `key` at version `expected`.
    pub(super) fn delete(key: String, expected: Version) -> Self {
        Self {
            key,
            op: Op::Delete { expected },
        }
    }

    /// Moves the record at `key` aside, whatever it holds (see
    /// [`SecretStore::quarantine`]).
    pub(super) fn quarantine(key: String) -> Self {
        Self {
            key,
            op: Op::Quarantine,
        }
    }
}

/// The store identity state is kept in, with the capabilities it offers.
#[derive(Clone)]
pub struct StateStore {
    records: Arc<dyn SecretStore>,
    batch: Option<Arc<dyn BatchStore>>,
    watch: Option<Arc<dyn WatchStore>>,
}

impl StateStore {
    /// A store without the batch capability: a commit writes its records
    /// one by one, announced first in the change log.
    pub fn plain(store: Arc<dyn SecretStore>) -> Self {
        Self {
            records: store,
            batch: None,
            watch: None,
        }
    }

    /// A store with the batch capability: a commit is one
    /// [`BatchStore::apply_batch`].
    pub fn batched(store: Arc<dyn BatchStore>) -> Self {
        Self {
            records: store.clone(),
            batch: Some(store),
            watch: None,
        }
    }

    /// The same store with its watch side (the watch capability): the
    /// revocation watcher then waits for the store to report a write
    /// instead of polling ([`Watcher`](super::Watcher)).
    pub fn with_watch(self, watch: Option<Arc<dyn WatchStore>>) -> Self {
        Self { watch, ..self }
    }

    /// Whether commits are batches.
    pub fn has_batch(&self) -> bool {
        self.batch.is_some()
    }

    /// Whether the store reports writes.
    pub fn has_watch(&self) -> bool {
        self.watch.is_some()
    }
}

/// A plain store ([`StateStore::plain`]).
impl From<Arc<dyn SecretStore>> for StateStore {
    fn from(store: Arc<dyn SecretStore>) -> Self {
        Self::plain(store)
    }
}

/// A plain store ([`StateStore::plain`]), *even when `S` also implements
/// [`BatchStore`]*: every commit then writes its records one by one, each
/// synced on a durable store. Use [`StateStore::batched`] for a store with
/// the batch capability, as the plugin host does.
impl<S: SecretStore> From<Arc<S>> for StateStore {
    fn from(store: Arc<S>) -> Self {
        Self::plain(store)
    }
}

impl From<Arc<dyn BatchStore>> for StateStore {
    fn from(store: Arc<dyn BatchStore>) -> Self {
        Self::batched(store)
    }
}

/// The identity core of one state directory.
pub struct IdentityManager {
    pub(super) store: Arc<dyn SecretStore>,
    /// The same store's batch capability, when it has one.
    batch: Option<Arc<dyn BatchStore>>,
    /// The store's watch side, if it has the capability.
    watch: Option<Arc<dyn WatchStore>>,
    /// Mutations waiting to commit together.
    groups: Groups,
    pub(super) lock: StateLock,
    pub(super) settings: IdentitySettings,
    pub(super) ca: CertificateAuthority,
    /// The newest change sequence this process knows (writers).
    pub(super) head: Mutex<Option<u64>>,
    /// Position of the index in the change log (readers).
    pub(super) follower: Mutex<Follower>,
    pub(super) index: RwLock<RevocationIndex>,
    /// Unreadable records met by this process.
    pub(super) faults: Faults,
    /// When the revocations found by following the log were committed.
    committed: CommitTimes,
}

impl std::fmt::Debug for IdentityManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityManager")
            .field("state_dir", &self.lock.state_dir())
            .field("ca", &self.ca.fingerprint())
            .finish_non_exhaustive()
    }
}

pub(super) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, IdentityError> {
    serde_json::from_slice(bytes).map_err(|e| IdentityError::corrupt(key, e))
}

pub(super) fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, IdentityError> {
    serde_json::to_vec(value).map_err(|e| IdentityError::corrupt(key, e))
}

impl IdentityManager {
    /// Opens the identity state of `state_dir` in `store`: checks the schema
    /// marker and loads the CA, creating both on first use (under the lock).
    pub fn open(
        store: impl Into<StateStore>,
        state_dir: &std::path::Path,
        settings: IdentitySettings,
        now: SystemTime,
    ) -> Result<Self, IdentityError> {
        let StateStore {
            records: store,
            batch,
            watch,
        } = store.into();
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
            batch,
            watch,
            groups: Groups::default(),
            lock,
            settings,
            ca,
            head: Mutex::new(None),
            follower: Mutex::new(Follower::default()),
            index: RwLock::new(RevocationIndex::new()),
            faults: Faults::default(),
            committed: CommitTimes::default(),
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

    /// How many commit-group outcomes are still held (tests: none once
    /// every mutation returned).
    #[cfg(test)]
    pub(super) fn groups_outcomes_held(&self) -> usize {
        self.groups.outcomes_held()
    }

    /// A client certificate for the device with `public_key`, signed
    /// before the mutation that records it: signing needs no state, and
    /// the group commit plans one mutation at a time, so every signature
    /// made inside a plan delays every mutator waiting behind it. One that
    /// its mutation then refuses is dropped: it was never recorded nor
    /// handed out.
    pub(super) fn issue_ahead(
        &self,
        public_key: &DevicePublicKey,
        now: SystemTime,
    ) -> Result<IssuedCertificate, IdentityError> {
        Ok(self.ca.issue_client(
            public_key,
            &public_key.device_id(),
            self.settings.client_validity,
            now,
        )?)
    }

    /// The settings.
    pub fn settings(&self) -> &IdentitySettings {
        &self.settings
    }

    pub(super) fn get_record<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Version)>, IdentityError> {
        get_record_in(&*self.store, key)
    }

    /// Runs one mutation: `plan` reads what it needs and returns the records
    /// to write (with the versions it read) and its result. Mutations that
    /// arrive together are planned in turn and committed as one group,
    /// under the exclusive lock (see the `group` module); the result is
    /// returned once the group committed.
    pub(super) fn mutate<T>(
        &self,
        purpose: &str,
        plan: impl FnMut(&Planner<'_>) -> Result<(Vec<Write>, T), IdentityError>,
    ) -> Result<T, IdentityError> {
        self.mutate_moving(purpose, plan).map(|(out, _)| out)
    }

    /// [`mutate`](Self::mutate), also returning where each record it
    /// quarantined went: `(key, place)`.
    ///
    /// A mutation that meets another writer's commit (another gateway on a
    /// shared store: the state lock only excludes processes on one host)
    /// is planned again from what the store then holds, up to
    /// [`RACE_ATTEMPTS`] times with a short random pause between tries, so
    /// `plan` may run more than once and must act only through the writes
    /// it returns.
    pub(super) fn mutate_moving<T>(
        &self,
        purpose: &str,
        mut plan: impl FnMut(&Planner<'_>) -> Result<(Vec<Write>, T), IdentityError>,
    ) -> Result<(T, Vec<(String, String)>), IdentityError> {
        let mut attempt = 1;
        loop {
            match self.mutate_once(purpose, &mut plan) {
                Err(IdentityError::Raced { key }) if attempt < RACE_ATTEMPTS => {
                    tracing::debug!(purpose, %key, attempt, "another writer committed first: planning again");
                    std::thread::sleep(race_pause(attempt));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One try of [`mutate_moving`](Self::mutate_moving).
    fn mutate_once<T>(
        &self,
        purpose: &str,
        plan: &mut impl FnMut(&Planner<'_>) -> Result<(Vec<Write>, T), IdentityError>,
    ) -> Result<(T, Vec<(String, String)>), IdentityError> {
        let mut member = self.groups.join();
        let mut plan = Some(plan);
        let mut mine: Option<Result<(T, Vec<String>), IdentityError>> = None;
        let mut lead = None;
        let mut panicked = None;
        let moved = loop {
            match member.next(&mut lead) {
                Turn::Plan(mut st) => {
                    let plan = plan.take().expect("a member plans once");
                    let overlay = st.overlay();
                    let planner = Planner {
                        m: self,
                        store: &*overlay,
                    };
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plan(&planner)))
                    {
                        Ok(Ok((writes, out))) => {
                            mine = Some(match overlay.apply(&writes) {
                                Ok(()) => Ok((out, writes.into_iter().map(|w| w.key).collect())),
                                Err(mismatch) => Err(IdentityError::Raced { key: mismatch.key }),
                            });
                        }
                        Ok(Err(e)) => mine = Some(Err(e)),
                        // Keep the group going; the panic goes on once
                        // this member is out of it.
                        Err(payload) => panicked = Some(payload),
                    }
                    member.planned(st);
                }
                Turn::Lead => {
                    let started = self
                        .lock
                        .acquire_exclusive(purpose, self.settings.lock_timeout)
                        .map_err(IdentityError::from)
                        .and_then(|guard| {
                            // The group's plans read the store as it is
                            // at (or after) this head, so its commit must
                            // land right after it: see `commit`.
                            lead = Some((guard, self.log_base()?));
                            Ok(Overlay::new(self.store.clone()))
                        });
                    member.start(started);
                }
                Turn::Commit(overlay, (guard, base)) => {
                    let result = self.commit(overlay, base);
                    drop(guard);
                    member.finish(result);
                }
                Turn::Done(result) => break result,
            }
        };
        if let Some(payload) = panicked {
            std::panic::resume_unwind(payload);
        }
        let moved = moved?;
        let (out, keys) = mine.expect("every member of a group plans before it commits")?;
        let moved = moved
            .into_iter()
            .filter(|(k, _)| keys.contains(k))
            .collect();
        Ok((out, moved))
    }

    /// Where the change log stands now (under the exclusive lock, as a
    /// group starts).
    fn log_base(&self) -> Result<LogBase, IdentityError> {
        let head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let floor = changelog::floor_or_zero(&*self.store)?;
        let head = match *head {
            // Entries at or below the floor may have been compacted away
            // since this process last wrote: follow the log from whichever
            // is later, never from a gap (which would append below the head).
            Some(h) => changelog::probe_head(&*self.store, h.max(floor))?,
            None => changelog::find_head(&*self.store)?,
        };
        Ok(LogBase { floor, head })
    }

    /// Commits what a group wrote: one change-log entry naming every key,
    /// and the records. With a batch-capable store, records and entry are
    /// one batch (the entry last), all or nothing. Without, the entry goes
    /// first and the records after it, so a writer that dies half-way
    /// leaves an entry whose keys did not all change (readers re-read them
    /// harmlessly), never a changed record that no entry announces. Runs
    /// under the exclusive lock.
    ///
    /// The entry is created at `base.head + 1`, the sequence right after
    /// the head the group's plans started from, and creating a key that
    /// exists is a conflict: so if any other writer committed since (a
    /// gateway on another host, which the state lock does not exclude),
    /// this commit fails as [`IdentityError::Raced`] and writes nothing
    /// (with a batch store), and the mutation is planned again. Every
    /// commit is thereby checked against everything its plans read, not
    /// only the records it writes, and the log stays gapless: an entry
    /// exists only once its writer committed, so a writer that died or
    /// rolled back leaves no hole for readers to wait at.
    fn commit(
        &self,
        overlay: Overlay,
        base: LogBase,
    ) -> Result<Vec<(String, String)>, IdentityError> {
        if overlay.is_empty() {
            return Ok(Vec::new());
        }
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let LogBase {
            floor,
            head: current,
        } = base;
        if current >= changelog::MAX_SEQ {
            return Err(IdentityError::corrupt(
                &changelog::change_key(current),
                "the change log reached its last sequence number",
            ));
        }
        let seq = current + 1;
        let entry = changelog::ChangeEntry {
            seq,
            at_unix_ms: unix_ms(SystemTime::now()),
            keys: overlay.keys().to_vec(),
            reload: false,
        };
        let writes = overlay.net_writes();
        let quarantines = writes
            .iter()
            .any(|w| matches!(w, NetWrite::Quarantine { .. }));
        let mut moved = Vec::new();
        match &self.batch {
            Some(batch) if !quarantines => {
                let mut ops: Vec<BatchOp> = writes
                    .into_iter()
                    .filter_map(NetWrite::into_batch_op)
                    .collect();
                ops.push(BatchOp::Put {
                    key: changelog::change_key(seq),
                    value: entry.encode()?,
                    expected: None,
                });
                batch
                    .apply_batch(&ops)
                    .map_err(|e| raced_or(e, ops.iter().map(BatchOp::key)))?;
            }
            _ => {
                changelog::append(&*self.store, seq, entry.keys, entry.at_unix_ms)?;
                for w in writes {
                    let result = match &w {
                        NetWrite::Put {
                            key,
                            value,
                            expected,
                        } => self.store.put(key, value, *expected).map(drop),
                        NetWrite::Delete { key, expected } => self.store.delete(key, *expected),
                        NetWrite::Quarantine { key } => self
                            .store
                            .quarantine(key)
                            .map(|place| moved.push((key.clone(), place))),
                    };
                    result.map_err(|e| raced_or(e, [w.key()]))?;
                }
            }
        }
        *head = Some(seq);
        drop(head);
        self.compact_if_due(floor, seq);
        Ok(moved)
    }

    /// A writer's share of compaction: once the log holds
    /// `change_retention + snapshot_interval` entries above the floor, drop
    /// all but the newest `change_retention`, so a deployment where only
    /// the CLI writes does not grow the log without bound. Runs under the
    /// exclusive lock, after the mutation committed: a failure is logged,
    /// not returned.
    fn compact_if_due(&self, floor: u64, seq: u64) {
        let keep = self.settings.change_retention;
        if seq.saturating_sub(floor) < keep.saturating_add(self.settings.snapshot_interval) {
            return;
        }
        match changelog::compact(&*self.store, seq - keep, seq) {
            Ok(deleted) => tracing::debug!(seq, deleted, "compacted the change log"),
            Err(error) => tracing::warn!(%error, "compacting the change log failed"),
        }
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
        actor: &Actor,
    ) -> Result<Enrolled, IdentityError> {
        // Signed before the mutation, so the state lock is not held for it.
        let issued = self.issue_ahead(public_key, now)?;
        self.mutate("enroll device", |m| {
            let mut writes = Vec::with_capacity(5);
            let mut events = Vec::with_capacity(2);
            let enrolled = m.plan_enroll(
                NewDevice {
                    public_key,
                    name,
                    capabilities,
                },
                now,
                Some(issued.clone()),
                (actor, &mut events),
                &mut writes,
            )?;
            m.audit(events, now, &mut writes)?;
            Ok((writes, enrolled))
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
            let mut writes = Vec::with_capacity(3);
            let mut events = Vec::with_capacity(1);
            let actor = Actor::device(device_id);
            let cert = m.issue_for(&device, now, None, (&actor, &mut events), &mut writes)?;
            m.audit(events, now, &mut writes)?;
            Ok((writes, cert))
        })
    }

    /// Revokes a device: it never pairs or connects again. One record and
    /// one change entry; nothing is written if it already was revoked.
    pub fn revoke_device(
        &self,
        device_id: &DeviceId,
        reason: &str,
        now: SystemTime,
        actor: &Actor,
    ) -> Result<RevokeOutcome, IdentityError> {
        let event = AuditEvent::new(actor, AuditAction::DeviceRevoked, device_id.to_string());
        self.revoke::<DeviceRecord>(
            "devices revoke",
            device_key(device_id),
            reason,
            now,
            event,
            || IdentityError::UnknownDevice(*device_id),
        )
    }

    /// Revokes one certificate; its device may pair again.
    pub fn revoke_certificate(
        &self,
        fingerprint: &CertFingerprint,
        reason: &str,
        now: SystemTime,
        actor: &Actor,
    ) -> Result<RevokeOutcome, IdentityError> {
        let event = AuditEvent::new(
            actor,
            AuditAction::CertificateRevoked,
            fingerprint.to_string(),
        );
        self.revoke::<CertRecord>(
            "certs revoke",
            cert_key(fingerprint),
            reason,
            now,
            event,
            || IdentityError::UnknownCertificate(*fingerprint),
        )
    }

    /// Marks the record at `key` revoked, once, recording `event` (with the
    /// reason) in the audit log.
    fn revoke<R: Revocable>(
        &self,
        purpose: &str,
        key: String,
        reason: &str,
        now: SystemTime,
        event: AuditEvent,
        unknown: impl Fn() -> IdentityError,
    ) -> Result<RevokeOutcome, IdentityError> {
        self.mutate(purpose, |m| {
            let (mut record, version): (R, _) = m.get_record(&key)?.ok_or_else(&unknown)?;
            if let Some(r) = record.revocation().clone() {
                return Ok((Vec::new(), RevokeOutcome::AlreadyRevoked(r)));
            }
            let revocation = Revocation {
                reason: reason.to_owned(),
                at: unix_secs(now),
            };
            *record.revocation() = Some(revocation.clone());
            let value = encode(&key, &record)?;
            let mut writes = vec![Write::put(key.clone(), value, Some(version))];
            m.audit(vec![event.clone().with("reason", reason)], now, &mut writes)?;
            Ok((writes, RevokeOutcome::Revoked(revocation)))
        })
    }

    /// The store's watch side, when it has the watch capability.
    pub fn store_watch(&self) -> Option<Arc<dyn WatchStore>> {
        self.watch.clone()
    }

    /// Whether the store answers with the CA record (a readiness check).
    pub fn store_answers(&self) -> Result<bool, IdentityError> {
        Ok(self.store.get(CA_KEY)?.is_some())
    }

    /// One device record.
    pub fn device(&self, id: &DeviceId) -> Result<Option<DeviceRecord>, IdentityError> {
        Ok(self.get_record(&device_key(id))?.map(|(r, _)| r))
    }

    /// One certificate record.
    pub fn certificate(&self, fp: &CertFingerprint) -> Result<Option<CertRecord>, IdentityError> {
        Ok(self.get_record(&cert_key(fp))?.map(|(r, _)| r))
    }

    /// The status of a presented certificate, from the in-memory index
    /// (call [`refresh`](Self::refresh) or run a watcher to keep it
    /// current). O(1).
    pub fn certificate_status(&self, fp: &CertFingerprint) -> CertStatus {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .status(fp)
    }

    /// How many certificates in the index, neither revoked nor of a
    /// revoked device, expire after `now` and within `within` of it (for
    /// metrics; a walk of the in-memory index, no store read).
    pub fn certificates_expiring(&self, now: SystemTime, within: std::time::Duration) -> usize {
        let from = crate::time::unix_secs(now);
        let until = crate::time::unix_secs(now + within);
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index
            .certs()
            .filter(|(_, b)| b.state == super::index::CertState::Valid)
            .filter(|(_, b)| b.not_after > from && b.not_after <= until)
            .filter(|(_, b)| {
                b.device
                    .is_some_and(|d| index.device_state(&d) == super::DeviceState::Active)
            })
            .count()
    }

    /// Whether a device is revoked (or treated as revoked because its
    /// record cannot be read), from the in-memory index.
    pub fn is_device_revoked(&self, id: &DeviceId) -> bool {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_device_revoked(id)
    }

    /// How many certificates the in-memory index holds (expired ones
    /// leave it).
    pub fn indexed_certificates(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .certificates()
    }

    /// [`refresh_at`](Self::refresh_at) the current time.
    pub fn refresh(&self) -> Result<Vec<RevocationEvent>, IdentityError> {
        self.refresh_at(SystemTime::now())
    }

    /// Brings the index up to date with the change log (loading it in full,
    /// from the snapshot if there is one, the first time) and returns what
    /// it newly refuses: all or nothing, see the `follower` module. `now`
    /// decides which certificates have expired. Takes the shared state
    /// lock.
    pub fn refresh_at(&self, now: SystemTime) -> Result<Vec<RevocationEvent>, IdentityError> {
        let _guard = self
            .lock
            .acquire_shared("refresh revocation index", self.settings.lock_timeout)?;
        let cx = Context {
            store: &*self.store,
            settings: &self.settings,
            faults: &self.faults,
            committed: &self.committed,
        };
        self.follower
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refresh(&cx, &self.index, now)
    }

    /// When `event`, returned by a refresh of this manager, was committed:
    /// the time of the change-log entry it was found through (millisecond
    /// precision, the writer's clock). Taken once; `None` for an event
    /// found by a full reload, which has no entry.
    pub fn revocation_committed_at(&self, event: &RevocationEvent) -> Option<SystemTime> {
        self.committed
            .take(event)
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
    }

    /// The unreadable records this process met and has not seen read again.
    pub fn unreadable_records(&self) -> Vec<UnreadableRecord> {
        self.faults.unreadable()
    }

    /// How many times this process met an unreadable record (for metrics).
    pub fn unreadable_met(&self) -> u64 {
        self.faults.met_count()
    }

    /// Every record under `prefix` that reads, and the ones that do not;
    /// see [`all_in`].
    pub(super) fn all<T: DeserializeOwned>(
        &self,
        prefix: &str,
        names: impl Fn(&str, &T) -> bool,
    ) -> Result<Listing<T>, IdentityError> {
        let listing = all_in(&*self.store, prefix, names)?;
        self.faults.counted(listing.unreadable.len());
        Ok(listing)
    }

    /// Every device, by id, and the device records that cannot be read.
    pub fn devices(&self) -> Result<Listing<DeviceRecord>, IdentityError> {
        self.all(DEVICES_PREFIX, |id, r: &DeviceRecord| {
            DeviceId::parse(id).is_ok_and(|id| id == r.device_id)
        })
    }

    /// Every certificate, by fingerprint, and the certificate records that
    /// cannot be read.
    pub fn certificates(&self) -> Result<Listing<CertRecord>, IdentityError> {
        self.all(CERTS_PREFIX, |fp, r: &CertRecord| {
            CertFingerprint::parse(fp).is_ok_and(|fp| fp == r.fingerprint)
        })
    }
}

impl Planner<'_> {
    /// Inside a mutation: the writes that enroll a device (unless it is
    /// already enrolled) and issue it a certificate (`issued`, if it was
    /// signed ahead by [`IdentityManager::issue_ahead`]). Refuses a revoked
    /// device.
    pub(super) fn plan_enroll(
        &self,
        NewDevice {
            public_key,
            name,
            capabilities,
        }: NewDevice<'_>,
        now: SystemTime,
        issued: Option<IssuedCertificate>,
        (actor, events): (&Actor, &mut Vec<AuditEvent>),
        writes: &mut Vec<Write>,
    ) -> Result<Enrolled, IdentityError> {
        let device_id = public_key.device_id();
        let dkey = device_key(&device_id);
        let device = match self.get_record::<DeviceRecord>(&dkey)? {
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
                events.push(
                    AuditEvent::new(actor, AuditAction::DeviceEnrolled, device_id.to_string())
                        .with("name", name),
                );
                record
            }
        };
        let certificate = self.issue_for(&device, now, issued, (actor, events), writes)?;
        Ok(Enrolled {
            device,
            certificate,
        })
    }

    /// Inside a mutation: the write that records a certificate for
    /// `device`, issued now unless `issued` holds one signed ahead for its
    /// key at `now`, and the audit event that says `actor` had it issued.
    pub(super) fn issue_for(
        &self,
        device: &DeviceRecord,
        now: SystemTime,
        issued: Option<IssuedCertificate>,
        (actor, events): (&Actor, &mut Vec<AuditEvent>),
        writes: &mut Vec<Write>,
    ) -> Result<IssuedCertificate, IdentityError> {
        let cert = match issued {
            Some(cert) => cert,
            None => self.ca().issue_client(
                &device.public_key,
                &device.device_id,
                self.settings().client_validity,
                now,
            )?,
        };
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
        events.push(
            AuditEvent::new(
                actor,
                AuditAction::CertificateIssued,
                cert.fingerprint.to_string(),
            )
            .with("device_id", device.device_id.to_string())
            .with("serial", cert.serial_hex.clone()),
        );
        Ok(cert)
    }
}

/// How many times a mutation is planned before a run of other writers'
/// commits is reported as [`IdentityError::Raced`].
pub const RACE_ATTEMPTS: u32 = 16;

/// The pause before try `attempt + 1`: random, up to 2^attempt
/// milliseconds (at most 64), so writers that collided spread out.
fn race_pause(attempt: u32) -> std::time::Duration {
    let ceiling = 1u64 << attempt.min(6);
    std::time::Duration::from_micros(rand::random_range(0..ceiling * 1000))
}

/// Where the change log stood when a group took the state lock.
#[derive(Debug, Clone, Copy)]
pub(super) struct LogBase {
    /// The compaction floor.
    floor: u64,
    /// The newest entry; the group's commit creates `head + 1`.
    head: u64,
}

/// A store's refusal inside a commit: a conflict means another writer
/// committed first (another gateway, or a process outside the state lock) ([`IdentityError::Raced`], naming the key the
/// store named, if it is one of `keys`); anything else stays itself.
fn raced_or<'k>(e: PluginError, keys: impl IntoIterator<Item = &'k str>) -> IdentityError {
    if !matches!(e.kind(), ErrorKind::Conflict | ErrorKind::NotFound) {
        return e.into();
    }
    let mut first = None;
    for key in keys {
        if e.message().contains(&format!("{key:?}")) {
            return IdentityError::Raced {
                key: key.to_owned(),
            };
        }
        first.get_or_insert(key);
    }
    IdentityError::Raced {
        key: first.unwrap_or_default().to_owned(),
    }
}

/// The records under one prefix: those that read, and those that did not
/// (which a listing shows beside the rest instead of failing as a whole).
#[derive(Debug, Clone)]
pub struct Listing<T> {
    /// The records that read, by key.
    pub records: Vec<T>,
    /// The keys that hold no usable record, and why.
    pub unreadable: Vec<UnreadableRecord>,
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

//! The follower: keeps one process's revocation index current with the
//! change log (see [`super::changelog`]), and reports what it newly refuses.
//!
//! # All or nothing
//! A refresh first *reads*: every change entry after its cursor and every
//! device and certificate record those entries name, into a batch. Only
//! when all of that was read does it *apply* the batch to the index (which
//! cannot fail) and move its cursor, and the events it returns describe
//! exactly what it applied. A transient store failure anywhere in the
//! reading phase (the store said `Unavailable`) fails the refresh and
//! changes nothing: the next refresh reads the same entries again, so no
//! revocation is ever skipped or reported twice. Work after the apply
//! (snapshots, compaction, re-reading unreadable records) never fails the
//! refresh; it is logged and tried again later.
//!
//! # Unreadable records
//! An unreadable record ([`super::fault`]) is not a reason to stop. A
//! device record that cannot be read makes the device count as revoked; a
//! certificate record that cannot be read refuses that certificate; a key
//! under `identity/devices/` or `identity/certs/` that names no device or
//! certificate is reported and otherwise ignored. Each is named at `error`
//! level when met, and read again every `recheck_interval`, so a record
//! restored from a backup is picked up without a restart.
//!
//! A change entry that cannot be read is worse: nobody can tell which keys
//! it announced. The follower names it and reloads every record (a full
//! scan), which covers whatever the entry announced, and carries on after
//! it.
//!
//! # Events
//! A [`RevocationEvent`] means "close the connections this covers". One is
//! reported when a device or certificate becomes refused that was not
//! refused before in this index: revoked, unreadable, or (for an active
//! one) gone from the state. A first load reports nothing (nothing is
//! connected yet); a reload (after falling behind the compacted log, or
//! after an unreadable change entry) reports the difference between the
//! index before and after. Certificates that expire just leave the index.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use serde::Deserialize;

use super::IdentityError;
use super::changelog::{self, change_key, read_entry};
use super::fault::{Faults, Read, read_record, read_with};
use super::index::{
    CertBinding, CertState, DeviceState, IndexSnapshot, RevocationIndex, SNAPSHOT_KEY,
};
use super::manager::{IdentitySettings, RevocationEvent, encode};
use super::records::{CERTS_PREFIX, DEVICES_PREFIX, Revocation};
use crate::identity::{CertFingerprint, DeviceId};
use crate::time::unix_secs;
use keygate_sdk::SecretStore;

/// What a refresh works with, borrowed from the manager.
pub(super) struct Context<'a> {
    pub(super) store: &'a dyn SecretStore,
    pub(super) settings: &'a IdentitySettings,
    pub(super) faults: &'a Faults,
    /// When each revocation event found by following the log was
    /// committed (its change entry's time, unix ms), until the gateway
    /// takes it ([`CommitTimes`]).
    pub(super) committed: &'a CommitTimes,
}

/// The commit time (unix ms) of each revocation event a refresh found by
/// following the change log, for the revocation latency metric; events
/// found by a full reload have none. Bounded: past [`CommitTimes::CAP`]
/// entries (a process that never takes them), it starts over.
#[derive(Debug, Default)]
pub struct CommitTimes(Mutex<HashMap<RevocationEvent, u64>>);

impl CommitTimes {
    /// The most events remembered.
    pub const CAP: usize = 4096;

    fn note(&self, event: &RevocationEvent, at_unix_ms: u64) {
        let mut times = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if times.len() >= Self::CAP {
            times.clear();
        }
        times.insert(event.clone(), at_unix_ms);
    }

    /// Takes the commit time of `event`, if a refresh noted one.
    pub fn take(&self, event: &RevocationEvent) -> Option<u64> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(event)
    }
}

/// One process's position in the change log and what it could not read.
#[derive(Debug, Default)]
pub(super) struct Follower {
    /// The last change sequence applied to the index.
    cursor: u64,
    /// The sequence of the last snapshot this process wrote or loaded;
    /// `None` after an index built by reading every record, which the next
    /// refresh saves as a snapshot so no later start repeats the scan.
    snapshot_seq: Option<u64>,
    /// Whether the index was loaded at all.
    loaded: bool,
    /// Device and certificate keys met unreadable, read again every
    /// `recheck_interval`.
    unreadable: BTreeMap<String, String>,
    /// When to read `unreadable` again and check for a gap in the log.
    next_recheck: Option<SystemTime>,
}

/// What one key says about the index, read but not applied.
#[derive(Debug, Clone)]
enum Observation {
    Device(DeviceId, DeviceState),
    Cert(CertFingerprint, Option<CertBinding>),
    /// A key the index does not cover (the CA, pairing sessions, approvals,
    /// or a stray key under an indexed prefix).
    Other,
}

/// An observation and, if the record was unreadable, why.
#[derive(Debug)]
struct Observed {
    key: String,
    observation: Observation,
    unreadable: Option<String>,
    /// The time of the change entry that named the key (unix ms), when
    /// it was read by following the log.
    committed_ms: Option<u64>,
}

/// An index built from scratch, not yet installed.
struct Loaded {
    index: RevocationIndex,
    cursor: u64,
    snapshot_seq: Option<u64>,
    observed: Vec<Observed>,
}

/// Entries read after the cursor, not yet applied.
enum Batch {
    /// Every entry through `through`, and what their keys say now.
    Follow {
        through: u64,
        observed: Vec<Observed>,
    },
    /// An entry that cannot be read, or one written in place of such an
    /// entry (`reason: None`): only a full scan covers what it said.
    Rescan { seq: u64, reason: Option<String> },
}

/// The part of a device record the index needs (parsing the public key,
/// a curve point, would dominate a full load).
#[derive(Deserialize)]
struct DeviceIndexView {
    device_id: DeviceId,
    revoked: Option<Revocation>,
}

/// The part of a certificate record the index needs.
#[derive(Deserialize)]
struct CertIndexView {
    fingerprint: CertFingerprint,
    device_id: DeviceId,
    not_after: u64,
    revoked: Option<Revocation>,
}

/// Reads what `key` says about the index. Only a transient store failure
/// is an error.
fn observe(store: &dyn SecretStore, key: &str) -> Result<Observed, IdentityError> {
    let observed = |observation, unreadable| Observed {
        key: key.to_owned(),
        observation,
        unreadable,
        committed_ms: None,
    };
    if let Some(rest) = key.strip_prefix(DEVICES_PREFIX) {
        let Ok(id) = DeviceId::parse(rest) else {
            return stray(
                store,
                key,
                "a key under identity/devices/ that is not a device id",
            );
        };
        let (state, unreadable) = match read_record::<DeviceIndexView>(store, key)? {
            Read::Absent => (DeviceState::Unknown, None),
            Read::Found(view, _) if view.device_id != id => (
                DeviceState::Unreadable,
                Some(format!("it holds the record of device {}", view.device_id)),
            ),
            Read::Found(view, _) if view.revoked.is_some() => (DeviceState::Revoked, None),
            Read::Found(_, _) => (DeviceState::Active, None),
            Read::Unreadable(why) => (DeviceState::Unreadable, Some(why)),
        };
        Ok(observed(Observation::Device(id, state), unreadable))
    } else if let Some(rest) = key.strip_prefix(CERTS_PREFIX) {
        let Ok(fp) = CertFingerprint::parse(rest) else {
            return stray(
                store,
                key,
                "a key under identity/certs/ that is not a fingerprint",
            );
        };
        let unreadable = |why| {
            let binding = CertBinding {
                device: None,
                state: CertState::Unreadable,
                not_after: 0,
            };
            observed(Observation::Cert(fp, Some(binding)), Some(why))
        };
        Ok(match read_record::<CertIndexView>(store, key)? {
            Read::Absent => observed(Observation::Cert(fp, None), None),
            Read::Found(view, _) if view.fingerprint != fp => unreadable(format!(
                "it holds the record of certificate {}",
                view.fingerprint
            )),
            Read::Found(view, _) => {
                let state = if view.revoked.is_some() {
                    CertState::Revoked
                } else {
                    CertState::Valid
                };
                let binding = CertBinding {
                    device: Some(view.device_id),
                    state,
                    not_after: view.not_after,
                };
                observed(Observation::Cert(fp, Some(binding)), None)
            }
            Read::Unreadable(why) => unreadable(why),
        })
    } else {
        Ok(observed(Observation::Other, None))
    }
}

/// A key under an indexed prefix that names nothing the index holds: a
/// fault while it exists, nothing once it is gone (moved aside).
fn stray(store: &dyn SecretStore, key: &str, why: &str) -> Result<Observed, IdentityError> {
    let exists = !matches!(read_with(store, key, |_| Ok(()))?, Read::Absent);
    Ok(Observed {
        key: key.to_owned(),
        observation: Observation::Other,
        unreadable: exists.then(|| why.to_owned()),
        committed_ms: None,
    })
}

/// Whether a device going from `before` to `after` newly refuses it, so
/// its connections must close.
fn device_closes(before: DeviceState, after: DeviceState) -> bool {
    !before.is_blocked() && before != after && (after.is_blocked() || before == DeviceState::Active)
}

/// Whether a certificate going from `before` to `after` (`None`: not in the
/// index) newly refuses it.
fn cert_closes(before: Option<CertState>, after: Option<CertState>) -> bool {
    let blocked = |s: Option<CertState>| s.is_some_and(CertState::is_blocked);
    !blocked(before) && before != after && (blocked(after) || before == Some(CertState::Valid))
}

/// Applies one observation to `index`, reporting what it newly refuses.
/// A certificate past its expiry leaves the index after its event (a
/// revocation still closes connections; an expiry alone does not).
fn apply(
    index: &mut RevocationIndex,
    observation: &Observation,
    now: u64,
    events: &mut Vec<RevocationEvent>,
) {
    match observation {
        Observation::Device(id, after) => {
            let before = index.device_state(id);
            index.set_device(id, *after);
            if device_closes(before, *after) {
                events.push(RevocationEvent::Device(*id));
            }
        }
        Observation::Cert(fp, binding) => {
            let before = index.cert(fp);
            index.set_cert(fp, *binding);
            let after = index.cert(fp);
            if cert_closes(before.map(|b| b.state), after.map(|b| b.state)) {
                let device = after
                    .and_then(|b| b.device)
                    .or(before.and_then(|b| b.device));
                if let Some(device_id) = device {
                    events.push(RevocationEvent::Certificate {
                        fingerprint: *fp,
                        device_id,
                    });
                }
            }
            if after.is_some_and(|b| b.not_after != 0 && b.not_after <= now) {
                index.set_cert(fp, None);
            }
        }
        Observation::Other => {}
    }
}

/// What `after` newly refuses compared with `before` (a reload).
fn difference(before: &RevocationIndex, after: &RevocationIndex, now: u64) -> Vec<RevocationEvent> {
    let mut events = Vec::new();
    for (id, state) in after.devices() {
        if device_closes(before.device_state(&id), state) {
            events.push(RevocationEvent::Device(id));
        }
    }
    for (id, state) in before.devices() {
        if after.device_state(&id) == DeviceState::Unknown
            && device_closes(state, DeviceState::Unknown)
        {
            events.push(RevocationEvent::Device(id));
        }
    }
    let cert_event = |fp, device: Option<DeviceId>| {
        device.map(|device_id| RevocationEvent::Certificate {
            fingerprint: fp,
            device_id,
        })
    };
    for (fp, binding) in after.certs() {
        let old = before.cert(&fp);
        if cert_closes(old.map(|b| b.state), Some(binding.state)) {
            events.extend(cert_event(
                fp,
                binding.device.or(old.and_then(|b| b.device)),
            ));
        }
    }
    for (fp, old) in before.certs() {
        let expired = old.not_after != 0 && old.not_after <= now;
        if after.cert(&fp).is_none() && !expired && cert_closes(Some(old.state), None) {
            events.extend(cert_event(fp, old.device));
        }
    }
    events
}

impl Follower {
    /// Brings `index` up to date (see the module docs) and returns what it
    /// newly refuses.
    pub(super) fn refresh(
        &mut self,
        cx: &Context<'_>,
        index: &RwLock<RevocationIndex>,
        now: SystemTime,
    ) -> Result<Vec<RevocationEvent>, IdentityError> {
        let now_secs = unix_secs(now);
        if !self.loaded {
            let loaded = self.load(cx, true)?;
            self.install(cx, loaded, index, now_secs);
        }
        let mut events = match self.read_batch(cx)? {
            Batch::Follow { through, observed } if through > self.cursor => {
                let mut events = Vec::new();
                {
                    let mut index = index.write().unwrap_or_else(|p| p.into_inner());
                    for o in &observed {
                        let before = events.len();
                        apply(&mut index, &o.observation, now_secs, &mut events);
                        if let Some(at) = o.committed_ms {
                            events[before..]
                                .iter()
                                .for_each(|e| cx.committed.note(e, at));
                        }
                    }
                }
                self.note(cx, &observed);
                self.cursor = through;
                events
            }
            Batch::Follow { .. } => {
                if self.fell_behind(cx)? {
                    tracing::warn!(
                        cursor = self.cursor,
                        "revocation index fell behind the compacted change log; reloading"
                    );
                    self.reload(cx, index, now_secs, true)?
                } else {
                    Vec::new()
                }
            }
            Batch::Rescan { seq, reason } => {
                match reason {
                    Some(reason) => cx.faults.met(
                        &change_key(seq),
                        &reason,
                        "which keys it changed is unknown, so every record is read again",
                        cx.settings.recheck_interval,
                    ),
                    None => tracing::info!(
                        seq,
                        "change entry {seq} replaces one moved aside; reading every record again"
                    ),
                }
                self.reload(cx, index, now_secs, false)?
            }
        };
        self.maintain(cx, index, now, &mut events);
        Ok(events)
    }

    /// Reads every entry after the cursor and every record they name.
    fn read_batch(&self, cx: &Context<'_>) -> Result<Batch, IdentityError> {
        let mut seq = self.cursor;
        let mut observed = Vec::new();
        loop {
            let next = seq + 1;
            match read_entry(cx.store, next)? {
                Read::Absent => break,
                Read::Found(entry, _) if entry.reload => {
                    return Ok(Batch::Rescan {
                        seq: next,
                        reason: None,
                    });
                }
                Read::Found(entry, _) => {
                    for key in &entry.keys {
                        let mut o = observe(cx.store, key)?;
                        o.committed_ms = Some(entry.at_unix_ms);
                        observed.push(o);
                    }
                    seq = next;
                }
                Read::Unreadable(reason) => {
                    return Ok(Batch::Rescan {
                        seq: next,
                        reason: Some(reason),
                    });
                }
            }
        }
        Ok(Batch::Follow {
            through: seq,
            observed,
        })
    }

    /// Whether the entry after the cursor was compacted away.
    fn fell_behind(&self, cx: &Context<'_>) -> Result<bool, IdentityError> {
        Ok(changelog::floor_or_zero(cx.store)? > self.cursor)
    }

    /// Loads a new index (from the snapshot when `snapshot_ok` and it is
    /// usable, else by reading every record) and reports what it newly
    /// refuses compared with the current one.
    fn reload(
        &mut self,
        cx: &Context<'_>,
        index: &RwLock<RevocationIndex>,
        now: u64,
        snapshot_ok: bool,
    ) -> Result<Vec<RevocationEvent>, IdentityError> {
        let loaded = self.load(cx, snapshot_ok)?;
        let before = index.read().unwrap_or_else(|p| p.into_inner()).clone();
        self.install(cx, loaded, index, now);
        let after = index.read().unwrap_or_else(|p| p.into_inner());
        Ok(difference(&before, &after, now))
    }

    /// Builds an index from the snapshot (if allowed and usable) or from
    /// every record, without touching the current one.
    fn load(&self, cx: &Context<'_>, snapshot_ok: bool) -> Result<Loaded, IdentityError> {
        if snapshot_ok && let Some(loaded) = self.load_snapshot(cx)? {
            return Ok(loaded);
        }
        // Entries after `head` are followed afterwards; the shared lock
        // keeps writers out, so every record of an entry up to `head` is
        // written by now (or never will be: its writer died).
        let head = changelog::find_head(cx.store)?;
        let mut observed = self.scan(cx, DEVICES_PREFIX)?;
        observed.extend(self.scan(cx, CERTS_PREFIX)?);
        let mut index = RevocationIndex::new();
        index.reserve(observed.len());
        Ok(Loaded {
            index,
            cursor: head,
            snapshot_seq: None,
            observed,
        })
    }

    /// The index of a usable snapshot, with its unreadable records read
    /// again; `None` when there is none or it cannot be used.
    fn load_snapshot(&self, cx: &Context<'_>) -> Result<Option<Loaded>, IdentityError> {
        let snapshot = match read_record::<IndexSnapshot>(cx.store, SNAPSHOT_KEY)? {
            Read::Absent => return Ok(None),
            Read::Found(snapshot, _) => snapshot,
            Read::Unreadable(reason) => {
                cx.faults.met(
                    SNAPSHOT_KEY,
                    &reason,
                    "reading every record instead",
                    cx.settings.recheck_interval,
                );
                return Ok(None);
            }
        };
        cx.faults.cleared(SNAPSHOT_KEY);
        if changelog::floor_or_zero(cx.store)? > snapshot.seq {
            return Ok(None);
        }
        let mut observed = Vec::with_capacity(snapshot.unreadable.len());
        for key in &snapshot.unreadable {
            observed.push(observe(cx.store, key)?);
        }
        Ok(Some(Loaded {
            index: RevocationIndex::from_snapshot(&snapshot),
            cursor: snapshot.seq,
            snapshot_seq: Some(snapshot.seq),
            observed,
        }))
    }

    /// Observes every key under `prefix`, on as many threads as the
    /// machine has cores (a full load is bound by record reads).
    fn scan(&self, cx: &Context<'_>, prefix: &str) -> Result<Vec<Observed>, IdentityError> {
        let keys = cx.store.list(prefix)?;
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let chunk = keys.len().div_ceil(threads).max(1);
        let store = cx.store;
        let parts: Vec<Result<Vec<Observed>, IdentityError>> = std::thread::scope(|s| {
            let handles: Vec<_> = keys
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().map(|key| observe(store, key)).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(IdentityError::corrupt(prefix, "a scan thread panicked"))
                    })
                })
                .collect()
        });
        let mut all = Vec::with_capacity(keys.len());
        for part in parts {
            all.extend(part?);
        }
        Ok(all)
    }

    /// Makes `loaded` the index and this follower's position.
    fn install(
        &mut self,
        cx: &Context<'_>,
        loaded: Loaded,
        index: &RwLock<RevocationIndex>,
        now: u64,
    ) {
        let Loaded {
            index: mut new,
            cursor,
            snapshot_seq,
            observed,
        } = loaded;
        let mut ignored = Vec::new();
        for o in &observed {
            apply(&mut new, &o.observation, now, &mut ignored);
        }
        new.prune_expired(now);
        *index.write().unwrap_or_else(|p| p.into_inner()) = new;
        let before = std::mem::take(&mut self.unreadable);
        self.note(cx, &observed);
        for key in before.keys() {
            if !self.unreadable.contains_key(key) {
                cx.faults.cleared(key);
            }
        }
        self.cursor = cursor;
        self.snapshot_seq = snapshot_seq;
        self.loaded = true;
    }

    /// Records which observed keys are unreadable, naming each.
    fn note(&mut self, cx: &Context<'_>, observed: &[Observed]) {
        for o in observed {
            let covers = match o.observation {
                Observation::Device(..) => "the device counts as revoked",
                Observation::Cert(..) => "the certificate is refused",
                Observation::Other => "ignored",
            };
            match &o.unreadable {
                Some(reason) => {
                    cx.faults
                        .met(&o.key, reason, covers, cx.settings.recheck_interval);
                    self.unreadable.insert(o.key.clone(), reason.clone());
                }
                None => {
                    if self.unreadable.remove(&o.key).is_some() {
                        cx.faults.cleared(&o.key);
                    }
                }
            }
        }
    }

    /// The work after a refresh applied its batch: reading unreadable
    /// records again and checking for a gap (every `recheck_interval`),
    /// dropping expired certificates, writing a snapshot and compacting
    /// when due. Failures are logged, never returned: the batch is applied
    /// and its events must reach the caller.
    fn maintain(
        &mut self,
        cx: &Context<'_>,
        index: &RwLock<RevocationIndex>,
        now: SystemTime,
        events: &mut Vec<RevocationEvent>,
    ) {
        let now_secs = unix_secs(now);
        if self.next_recheck.is_none_or(|at| now >= at) {
            self.next_recheck = Some(now + cx.settings.recheck_interval);
            if let Err(error) = self.recheck(cx, index, now_secs, events) {
                tracing::warn!(%error, "re-reading unreadable records failed; trying again later");
            }
        }
        let pruned = index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .prune_expired(now_secs);
        if pruned > 0 {
            tracing::debug!(pruned, "expired certificates left the revocation index");
        }
        if self
            .snapshot_seq
            .is_none_or(|seq| self.cursor >= seq + cx.settings.snapshot_interval)
            && let Err(error) = self.snapshot_and_compact(cx, index)
        {
            tracing::warn!(%error, "writing the index snapshot failed; trying again later");
        }
    }

    /// Reads the unreadable records again, and reloads if the log has an
    /// entry past a gap (which following entry by entry would never reach).
    fn recheck(
        &mut self,
        cx: &Context<'_>,
        index: &RwLock<RevocationIndex>,
        now: u64,
        events: &mut Vec<RevocationEvent>,
    ) -> Result<(), IdentityError> {
        let mut observed = Vec::with_capacity(self.unreadable.len());
        for key in self.unreadable.keys() {
            observed.push(observe(cx.store, key)?);
        }
        {
            let mut index = index.write().unwrap_or_else(|p| p.into_inner());
            for o in &observed {
                apply(&mut index, &o.observation, now, events);
            }
        }
        self.note(cx, &observed);
        let head = changelog::find_head(cx.store)?;
        if head > self.cursor && matches!(read_entry(cx.store, self.cursor + 1)?, Read::Absent) {
            tracing::warn!(
                cursor = self.cursor,
                head,
                "the change log has a gap after this index's position; reloading"
            );
            events.extend(self.reload(cx, index, now, false)?);
        }
        Ok(())
    }

    /// Writes the index as a snapshot at the cursor, then compacts the log
    /// through `cursor - change_retention`.
    fn snapshot_and_compact(
        &mut self,
        cx: &Context<'_>,
        index: &RwLock<RevocationIndex>,
    ) -> Result<(), IdentityError> {
        let snapshot = index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .to_snapshot(self.cursor, self.unreadable.keys().cloned().collect());
        let bytes = encode(SNAPSHOT_KEY, &snapshot)?;
        let version = match read_with(cx.store, SNAPSHOT_KEY, |_| Ok(()))? {
            Read::Found(_, version) => Some(version),
            Read::Absent => None,
            // The store will not replace a record it cannot open.
            Read::Unreadable(reason) => {
                cx.faults.met(
                    SNAPSHOT_KEY,
                    &reason,
                    "no snapshot is written until it is moved aside",
                    cx.settings.recheck_interval,
                );
                // Try again after another interval, not at every refresh.
                self.snapshot_seq = Some(self.cursor);
                return Ok(());
            }
        };
        // A conflict (another reader wrote one meanwhile) is tried again at
        // the next refresh, like any other failure.
        cx.store.put(SNAPSHOT_KEY, &bytes, version)?;
        self.snapshot_seq = Some(self.cursor);
        let through = self.cursor.saturating_sub(cx.settings.change_retention);
        let deleted = changelog::compact(cx.store, through, self.cursor)?;
        tracing::debug!(
            seq = self.cursor,
            certs = snapshot.certs.len(),
            deleted,
            "wrote index snapshot"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use CertState::{Revoked as CR, Unreadable as CU, Valid as CV};
    use DeviceState::{Active, Revoked, Unknown, Unreadable};

    #[test]
    fn a_device_closes_when_it_becomes_refused_or_leaves_while_active() {
        for (before, after, closes) in [
            (Unknown, Revoked, true),
            (Active, Revoked, true),
            (Active, Unreadable, true),
            (Active, Unknown, true),
            (Unknown, Unreadable, true),
            (Unknown, Active, false),
            (Unknown, Unknown, false),
            (Active, Active, false),
            (Revoked, Revoked, false),
            (Revoked, Unreadable, false),
            (Unreadable, Revoked, false),
            (Unreadable, Active, false),
            (Revoked, Unknown, false),
        ] {
            assert_eq!(
                device_closes(before, after),
                closes,
                "{before:?} -> {after:?}"
            );
        }
    }

    #[test]
    fn a_certificate_closes_when_it_becomes_refused_or_leaves_while_valid() {
        for (before, after, closes) in [
            (None, Some(CR), true),
            (Some(CV), Some(CR), true),
            (Some(CV), Some(CU), true),
            (Some(CV), None, true),
            (None, Some(CU), true),
            (None, Some(CV), false),
            (None, None, false),
            (Some(CV), Some(CV), false),
            (Some(CR), Some(CR), false),
            (Some(CR), Some(CU), false),
            (Some(CU), Some(CR), false),
            (Some(CU), Some(CV), false),
            (Some(CR), None, false),
        ] {
            assert_eq!(
                cert_closes(before, after),
                closes,
                "{before:?} -> {after:?}"
            );
        }
    }
}

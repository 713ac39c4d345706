//! The change log: how a process learns what other processes changed
//! without reloading everything.
//!
//! Each mutation, under the exclusive state lock, first appends one entry
//! `identity/changes/<seq>` (zero-padded, so keys sort by sequence) naming
//! the keys it is about to write, then writes them. A reader keeps a cursor
//! and, under the shared lock, reads entry `cursor + 1` until there is none,
//! re-reading the keys each entry names: the cost of noticing a change is
//! the size of the change, not of the state. Writing the entry first means a
//! writer that dies half-way leaves an entry whose keys did not change,
//! which readers re-read harmlessly, and never a changed record that no entry
//! announces.
//!
//! Old entries are compacted, by readers when they write an index snapshot
//! and by writers when the log has grown `change_retention +
//! snapshot_interval` entries past the floor (so a deployment where only
//! the CLI writes does not grow without bound): `identity/changes/floor` is
//! raised first, then entries at or below it are deleted. A reader that
//! finds its next entry gone and its cursor below the floor has fallen
//! behind and reloads in full. The newest entry is never deleted, so the
//! head can always be found.
//!
//! An entry that exists but cannot be read (tampered, or a foreign file at
//! that sequence) still counts as present: writers append after it, and a
//! reader that meets it cannot know which keys it announced, so it reloads
//! every record instead (see the `follower` module).

use keygate_sdk::{ErrorKind, SecretStore};
use serde::{Deserialize, Serialize};

use super::IdentityError;
use super::fault::{Read, read_with};

/// Prefix of change-log entries.
pub const CHANGES_PREFIX: &str = "identity/changes/";
/// Key of the compaction floor.
pub const FLOOR_KEY: &str = "identity/changes/floor";

/// The highest change sequence a log may reach. Keys or entries naming a
/// higher one are foreign (nothing here writes them), so the arithmetic on
/// sequences never overflows.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The key of entry `seq`.
pub fn change_key(seq: u64) -> String {
    format!("{CHANGES_PREFIX}{seq:020}")
}

/// One mutation's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEntry {
    /// Its sequence number, from 1.
    pub seq: u64,
    /// When it was written, unix milliseconds.
    pub at_unix_ms: u64,
    /// The store keys the mutation writes.
    pub keys: Vec<String>,
    /// Set on an entry written in place of one that was moved aside
    /// (`keygate state check --quarantine`): what the original announced
    /// is unknown, so a reader that meets it reads every record again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reload: bool,
}

impl ChangeEntry {
    /// The entry that takes the place of unreadable entry `seq` once it is
    /// moved aside.
    pub fn replacement(seq: u64, at_unix_ms: u64) -> ChangeEntry {
        ChangeEntry {
            seq,
            at_unix_ms,
            keys: Vec::new(),
            reload: true,
        }
    }

    /// The entry's bytes as stored.
    pub fn encode(&self) -> Result<Vec<u8>, IdentityError> {
        serde_json::to_vec(self).map_err(|e| IdentityError::corrupt(&change_key(self.seq), e))
    }

    /// Decodes the bytes stored under [`change_key`]`(seq)`: a JSON entry
    /// whose own `seq` must be `seq` (a file copied in from elsewhere in the
    /// log is refused, not applied). Every error names the key.
    pub fn decode(seq: u64, bytes: &[u8]) -> Result<ChangeEntry, IdentityError> {
        let key = change_key(seq);
        if !(1..=MAX_SEQ).contains(&seq) {
            return Err(IdentityError::corrupt(
                &key,
                format!("change sequence {seq} is outside 1..={MAX_SEQ}"),
            ));
        }
        let entry: ChangeEntry =
            serde_json::from_slice(bytes).map_err(|e| IdentityError::corrupt(&key, e))?;
        if entry.seq != seq {
            return Err(IdentityError::corrupt(
                &key,
                format!("entry says it is change {}", entry.seq),
            ));
        }
        Ok(entry)
    }
}

/// Reads entry `seq`: [`Read::Absent`] past the end of the log.
pub(crate) fn read_entry(
    store: &dyn SecretStore,
    seq: u64,
) -> Result<Read<ChangeEntry>, IdentityError> {
    read_with(store, &change_key(seq), |bytes| {
        ChangeEntry::decode(seq, bytes).map_err(|e| match e {
            IdentityError::Corrupt { reason, .. } => reason,
            other => other.to_string(),
        })
    })
}

/// Decodes the floor record: a decimal sequence number up to [`MAX_SEQ`].
pub fn decode_floor(bytes: &[u8]) -> Result<u64, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let floor: u64 = text.trim().parse().map_err(|e| format!("{e}: {text:?}"))?;
    // The newest entry is never compacted, so a floor is below MAX_SEQ.
    if floor >= MAX_SEQ {
        return Err(format!("floor {floor} is not below {MAX_SEQ}"));
    }
    Ok(floor)
}

/// The compaction floor: [`Read::Absent`] when nothing was compacted yet.
pub(crate) fn read_floor(store: &dyn SecretStore) -> Result<Read<u64>, IdentityError> {
    read_with(store, FLOOR_KEY, decode_floor)
}

/// The floor as a number (0 when absent or unreadable: an unreadable floor
/// only stops compaction, see [`compact`]).
pub(crate) fn floor_or_zero(store: &dyn SecretStore) -> Result<u64, IdentityError> {
    Ok(match read_floor(store)? {
        Read::Found(floor, _) => floor,
        Read::Absent | Read::Unreadable(_) => 0,
    })
}

/// Whether entry `seq` exists, readable or not.
fn entry_exists(store: &dyn SecretStore, seq: u64) -> Result<bool, IdentityError> {
    match store.get(&change_key(seq)) {
        Ok(found) => Ok(found.is_some()),
        Err(e) if e.kind() == ErrorKind::Unavailable => Err(e.into()),
        // It is there, it just cannot be read.
        Err(_) => Ok(true),
    }
}

/// The newest sequence number in the log, found by listing (used once per
/// process, then followed with [`probe_head`]). The newest *readable*
/// listed entry counts, so a file planted under a high sequence number by
/// someone without the store's key cannot move the head.
pub(crate) fn find_head(store: &dyn SecretStore) -> Result<u64, IdentityError> {
    let mut listed: Vec<u64> = store
        .list(CHANGES_PREFIX)?
        .iter()
        .filter_map(|k| k.strip_prefix(CHANGES_PREFIX)?.parse::<u64>().ok())
        .filter(|seq| (1..MAX_SEQ).contains(seq))
        .collect();
    listed.sort_unstable_by(|a, b| b.cmp(a));
    let mut newest = 0;
    for seq in listed {
        if let Read::Found(..) = read_entry(store, seq)? {
            newest = seq;
            break;
        }
    }
    probe_head(store, newest.max(floor_or_zero(store)?))
}

/// Follows the log from `from` to its end.
pub(crate) fn probe_head(store: &dyn SecretStore, mut from: u64) -> Result<u64, IdentityError> {
    while from < MAX_SEQ && entry_exists(store, from + 1)? {
        from += 1;
    }
    Ok(from)
}

/// Appends entry `seq` (which must not exist yet).
pub(crate) fn append(
    store: &dyn SecretStore,
    seq: u64,
    keys: Vec<String>,
    at_unix_ms: u64,
) -> Result<(), IdentityError> {
    let entry = ChangeEntry {
        seq,
        at_unix_ms,
        keys,
        reload: false,
    };
    let bytes = entry.encode()?;
    match store.put(&change_key(seq), &bytes, None) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::Conflict => Err(IdentityError::Raced {
            key: change_key(seq),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Raises the floor to `through` and deletes the entries below it, keeping
/// at least the newest entry `head`. Returns how many were deleted.
pub(crate) fn compact(
    store: &dyn SecretStore,
    through: u64,
    head: u64,
) -> Result<usize, IdentityError> {
    let through = through.min(head.saturating_sub(1));
    let (floor, version) = match read_floor(store)? {
        Read::Absent => (0, None),
        Read::Found(floor, version) => (floor, Some(version)),
        // Raising a floor that cannot be read could hide entries readers
        // still need: leave it to `keygate state check`.
        Read::Unreadable(_) => return Ok(0),
    };
    if through <= floor {
        return Ok(0);
    }
    match store.put(FLOOR_KEY, through.to_string().as_bytes(), version) {
        Ok(_) => {}
        // Another reader compacts at the same moment: let it.
        Err(e) if e.kind() == ErrorKind::Conflict => return Ok(0),
        Err(e) => return Err(e.into()),
    }
    let mut deleted = 0;
    for seq in floor + 1..=through {
        let key = change_key(seq);
        // An unreadable entry stays where it is (the store will not delete
        // a record it cannot open); `keygate state check` reports it.
        if let Read::Found(_, version) = read_with(store, &key, |_| Ok(()))? {
            match store.delete(&key, version) {
                Ok(()) => deleted += 1,
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(deleted)
}

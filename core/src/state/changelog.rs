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
//! Old entries are compacted by readers that also write an index snapshot:
//! `identity/changes/floor` is raised first, then entries at or below it are
//! deleted. A reader that finds its next entry gone and its cursor below the
//! floor has fallen behind and reloads in full. The newest entry is never
//! deleted, so the head can always be found.

use keygate_sdk::{ErrorKind, SecretStore};
use serde::{Deserialize, Serialize};

use super::IdentityError;

/// Prefix of change-log entries.
pub const CHANGES_PREFIX: &str = "identity/changes/";
/// Key of the compaction floor.
pub const FLOOR_KEY: &str = "identity/changes/floor";

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
}

impl ChangeEntry {
    /// Decodes the bytes stored under [`change_key`]`(seq)`: a JSON entry
    /// whose own `seq` must be `seq` (a file copied in from elsewhere in the
    /// log is refused, not applied). Every error names the key.
    pub fn decode(seq: u64, bytes: &[u8]) -> Result<ChangeEntry, IdentityError> {
        let key = change_key(seq);
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

/// Reads entry `seq`.
pub(crate) fn read_entry(
    store: &dyn SecretStore,
    seq: u64,
) -> Result<Option<ChangeEntry>, IdentityError> {
    match store.get(&change_key(seq))? {
        None => Ok(None),
        Some(v) => ChangeEntry::decode(seq, &v.value).map(Some),
    }
}

/// The compaction floor (0 when nothing was compacted).
pub(crate) fn read_floor(store: &dyn SecretStore) -> Result<(u64, Option<u64>), IdentityError> {
    match store.get(FLOOR_KEY)? {
        None => Ok((0, None)),
        Some(v) => {
            let text =
                std::str::from_utf8(&v.value).map_err(|e| IdentityError::corrupt(FLOOR_KEY, e))?;
            let floor = text
                .trim()
                .parse()
                .map_err(|e| IdentityError::corrupt(FLOOR_KEY, e))?;
            Ok((floor, Some(v.version)))
        }
    }
}

/// The newest sequence number in the log, found by listing (used once per
/// process, then followed with [`probe_head`]).
pub(crate) fn find_head(store: &dyn SecretStore) -> Result<u64, IdentityError> {
    let listed = store
        .list(CHANGES_PREFIX)?
        .iter()
        .filter_map(|k| k.strip_prefix(CHANGES_PREFIX)?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let (floor, _) = read_floor(store)?;
    probe_head(store, listed.max(floor))
}

/// Follows the log from `from` to its end.
pub(crate) fn probe_head(store: &dyn SecretStore, mut from: u64) -> Result<u64, IdentityError> {
    while store.get(&change_key(from + 1))?.is_some() {
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
    };
    let bytes =
        serde_json::to_vec(&entry).map_err(|e| IdentityError::corrupt(&change_key(seq), e))?;
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
    let (floor, version) = read_floor(store)?;
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
        if let Some(v) = store.get(&key)? {
            match store.delete(&key, v.version) {
                Ok(()) => deleted += 1,
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(deleted)
}

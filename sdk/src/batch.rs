//! The `batch` capability of stores: several writes made durable together,
//! all or none.
//!
//! A store that has it implements [`BatchStore`] next to
//! [`SecretStore`](crate::SecretStore) and marks itself in the export
//! macro (`stores: [MyStore: batch]`). Libraries built before the
//! capability existed still load; the host then makes a batch's writes one
//! by one, in an order a crash cannot make harmful (see the host's docs).
//! The capability does not change the `SecretStore` trait: a new capability
//! of a plugin kind comes as a new trait offered through a new constructor
//! of the root module.

use crate::{PluginError, SecretStore, Version};

/// One write of a batch.
#[derive(Clone, PartialEq, Eq)]
pub enum BatchOp {
    /// Writes `value` under `key` if its current version is `expected`
    /// (`None`: the key must not exist), as [`SecretStore::put`] does.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// The version it replaces; `None` creates the key.
        expected: Option<Version>,
    },
    /// Deletes `key` if its current version is `expected`, as
    /// [`SecretStore::delete`] does.
    Delete {
        /// The key.
        key: String,
        /// The version it deletes.
        expected: Version,
    },
}

impl BatchOp {
    /// The key the write is to.
    pub fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Delete { key, .. } => key,
        }
    }
}

impl std::fmt::Debug for BatchOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are secrets more often than not: never print them.
        match self {
            Self::Put {
                key,
                value,
                expected,
            } => f
                .debug_struct("Put")
                .field("key", key)
                .field("len", &value.len())
                .field("expected", expected)
                .finish(),
            Self::Delete { key, expected } => f
                .debug_struct("Delete")
                .field("key", key)
                .field("expected", expected)
                .finish(),
        }
    }
}

/// A [`SecretStore`] that can apply several writes as one.
///
/// # Contract
/// - **All or nothing.** Every op's key is checked ([`validate_key`](crate::validate_key))
///   and every expected version compared before anything is written. Any
///   failure (an invalid key, a key named twice, a version that does not
///   match) is returned and nothing is written: a mismatch is
///   [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) naming the key, a
///   bad key or a repeated one [`ErrorKind::Invalid`](crate::ErrorKind::Invalid).
/// - **Each op answers as its single call would.** A `Put` whose expected
///   version is not the current one (an existing key for `None`, a missing
///   key for `Some`) is a `Conflict`; a `Delete` of a key at another
///   version is a `Conflict`, and a `Delete` of a key that does not exist
///   is [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) naming the key,
///   as [`SecretStore::delete`] answers; either way the whole batch writes
///   nothing. Ops never see each other's effects (each compares against
///   the store as it was before the batch), which is why a key may appear
///   only once. When several ops fail, which one the error names is up to
///   the store.
/// - **Atomic against crashes.** Once `apply_batch` returns `Ok`, every write
///   is as durable as a single `put` of the store; if the process or the
///   machine dies during the call, the store shows either all of the writes
///   or none of them from the moment it is next opened (and, for a store
///   other processes have open, at the latest after its next write).
/// - **Atomic against other writers.** No other write (single or batch,
///   from this process or another) interleaves with a batch: the
///   comparisons and the writes happen under the store's write exclusion.
///   Readers may see a batch's writes appear one at a time while it is
///   applied; callers that need more hold their own lock (Keygate's
///   identity state does).
/// - **Results.** `Ok` holds one entry per op, in order: the new version of
///   a `Put`, `None` for a `Delete`. An empty batch is `Ok(vec![])` and
///   writes nothing.
/// - The ops are applied in the order given.
pub trait BatchStore: SecretStore {
    /// Applies `ops` all or nothing; see the trait's contract.
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError>;
}

impl<S: BatchStore + ?Sized> BatchStore for std::sync::Arc<S> {
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
        (**self).apply_batch(ops)
    }
}

impl<S: BatchStore + ?Sized> BatchStore for Box<S> {
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
        (**self).apply_batch(ops)
    }
}

//! The `batch` capability: several writes in one transaction, all or
//! none (see `records::commit` for the comparisons and locks).

use std::collections::HashSet;

use keygate_sdk::{BatchOp, BatchStore, PluginError, Version, validate_key};

use crate::PgStore;
use crate::records::{self, Write};

impl<'a> Write<'a> {
    fn of(op: &'a BatchOp) -> Self {
        match op {
            BatchOp::Put {
                key,
                value,
                expected,
            } => Self::Put {
                key,
                value,
                expected: *expected,
            },
            BatchOp::Delete { key, expected } => Self::Delete {
                key,
                expected: *expected,
            },
        }
    }
}

/// Validates every key of `writes` and refuses a key named twice, before
/// the database is touched.
pub(crate) fn check_keys(writes: &[Write<'_>]) -> Result<(), PluginError> {
    let mut keys = HashSet::with_capacity(writes.len());
    for write in writes {
        let key = write.key();
        validate_key(key)?;
        if !keys.insert(key) {
            return Err(PluginError::invalid(format!(
                "key {key:?} appears twice in one batch"
            )));
        }
    }
    Ok(())
}

impl BatchStore for PgStore {
    /// Checks every key, then compares and writes in one transaction with
    /// the rows locked: see the `records` module.
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
        let writes: Vec<Write<'_>> = ops.iter().map(Write::of).collect();
        check_keys(&writes)?;
        records::commit(&self.pool, &self.sealer, &writes)
    }
}

//! Reading and writing records: the SQL of every store call.
//!
//! # Writes (compare-and-swap)
//! `put`, `delete` and `apply_batch` all go through [`commit`], in one
//! transaction:
//! 1. the rows of the keys written are read and locked
//!    (`SELECT ... WHERE key = ANY($1) ORDER BY key FOR UPDATE`, so two
//!    writers lock shared rows in one order);
//! 2. each row found is opened with the key, and a row that does not open
//!    (or whose sealed version is not its version column) is refused as
//!    damaged: it is never overwritten;
//! 3. every expected version is compared with the locked row's: a
//!    mismatch is `Conflict` (a missing key for a delete `NotFound`), and
//!    the transaction is rolled back, having written nothing;
//! 4. new versions are drawn from the `keygate_record_version` sequence,
//!    the values are sealed with them, and the rows are inserted, updated
//!    or deleted; a concurrent insert of the same key makes the insert fail
//!    on the primary key, which is answered as `Conflict`;
//! 5. `NOTIFY keygate_writes` (delivered to listeners at commit: see the
//!    `watch` module), and commit.
//!
//! Versions come from one sequence for the whole database, so a key
//! deleted and created again never gets a version of its earlier life.
//!
//! # Reads
//! `get` reads one row and opens it: a value that does not open, or whose
//! sealed version differs from the row's version column, is `Internal`
//! naming the key ("tampered"). `list` reads keys in a range of the
//! primary key's index (`key >= prefix AND key < successor(prefix)`, in
//! byte order: the column's collation is "C"), never the whole table.

use std::collections::HashMap;

use keygate_sdk::{PluginError, Version, Versioned};
use keygate_seal::Sealer;
use postgres::types::Type;
use zeroize::Zeroize;

use crate::pool::{Pool, is_unique_violation};
use crate::watch::NOTIFY;

/// One write of `put`, `delete` or `apply_batch`.
#[derive(Clone, Copy)]
pub(crate) enum Write<'a> {
    /// Writes `value` if the current version is `expected`.
    Put {
        /// The key.
        key: &'a str,
        /// The value, in clear.
        value: &'a [u8],
        /// The version replaced; `None` creates the key.
        expected: Option<Version>,
    },
    /// Deletes the key if its version is `expected`.
    Delete {
        /// The key.
        key: &'a str,
        /// The version deleted.
        expected: Version,
    },
}

impl<'a> Write<'a> {
    /// The key written.
    pub(crate) fn key(&self) -> &'a str {
        match self {
            Self::Put { key, .. } | Self::Delete { key, .. } => key,
        }
    }
}

/// A row's version column as the SDK's version (a negative one can only
/// be an edit by hand: it never equals an expected version).
fn to_version(v: i64) -> Version {
    u64::try_from(v).unwrap_or(0)
}

/// The error for a row that does not open.
fn damaged(key: &str, detail: impl std::fmt::Display) -> PluginError {
    PluginError::internal(format!(
        "record {key:?}: {detail}; row in table keygate_records"
    ))
}

/// Opens `key`'s row: its value, checked against the row's version.
pub(crate) fn open_row(
    sealer: &Sealer,
    key: &str,
    row_version: i64,
    sealed: Vec<u8>,
) -> Result<Versioned, PluginError> {
    let (version, mut value) = sealer
        .open_record(key, sealed)
        .map_err(|e| damaged(key, e))?;
    if version != to_version(row_version) {
        value.zeroize();
        return Err(damaged(
            key,
            format_args!(
                "tampered: the version sealed in the value ({version}) is not the row's \
                 version ({row_version})"
            ),
        ));
    }
    Ok(Versioned { value, version })
}

/// Reads `key` (already validated).
pub(crate) fn get(
    pool: &Pool,
    sealer: &Sealer,
    key: &str,
) -> Result<Option<Versioned>, PluginError> {
    let mut conn = pool.get()?;
    let rows = conn
        .query_typed(
            "SELECT version, value FROM keygate_records WHERE key = $1",
            &[(&key, Type::TEXT)],
        )
        .map_err(|e| pool.error(&format!("read record {key:?}"), &e))?;
    match rows.into_iter().next() {
        None => Ok(None),
        Some(row) => open_row(sealer, key, row.get(0), row.get(1)).map(Some),
    }
}

/// The smallest string greater than every string that starts with
/// `prefix`, in code point (= UTF-8 byte) order; `None` if there is none.
pub(crate) fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The keys starting with `prefix` (already validated), ascending.
pub(crate) fn list(pool: &Pool, prefix: &str) -> Result<Vec<String>, PluginError> {
    let mut conn = pool.get()?;
    let what = format!("list keys with prefix {prefix:?}");
    let rows = match (prefix.is_empty(), successor(prefix)) {
        (true, _) => conn.query_typed("SELECT key FROM keygate_records ORDER BY key", &[]),
        (false, Some(end)) => conn.query_typed(
            "SELECT key FROM keygate_records WHERE key >= $1 AND key < $2 ORDER BY key",
            &[(&prefix, Type::TEXT), (&end, Type::TEXT)],
        ),
        (false, None) => conn.query_typed(
            "SELECT key FROM keygate_records WHERE key >= $1 ORDER BY key",
            &[(&prefix, Type::TEXT)],
        ),
    }
    .map_err(|e| pool.error(&what, &e))?;
    Ok(rows.into_iter().map(|row| row.get(0)).collect())
}

/// Moves `key`'s row (whatever it holds) into `keygate_quarantine`, in one
/// statement and a notification; returns where it went.
pub(crate) fn quarantine(pool: &Pool, key: &str) -> Result<String, PluginError> {
    let mut conn = pool.get()?;
    let mut tx = conn
        .transaction()
        .map_err(|e| pool.error("begin a transaction", &e))?;
    let rows = tx
        .query_typed(
            "WITH moved AS (DELETE FROM keygate_records WHERE key = $1 \
                            RETURNING key, version, value) \
             INSERT INTO keygate_quarantine (key, version, value) \
             SELECT key, version, value FROM moved RETURNING id",
            &[(&key, Type::TEXT)],
        )
        .map_err(|e| pool.error(&format!("quarantine record {key:?}"), &e))?;
    match rows.first() {
        None => Err(PluginError::not_found(format!("key {key:?}"))),
        Some(row) => {
            let id: i64 = row.get(0);
            tx.batch_execute(NOTIFY)
                .map_err(|e| pool.error("notify the write", &e))?;
            tx.commit()
                .map_err(|e| pool.error("commit the quarantine", &e))?;
            Ok(format!(
                "table keygate_quarantine, id {id}, in database {}",
                pool.place()
            ))
        }
    }
}

/// Makes `writes` (keys validated and distinct) all or none, in one
/// transaction: see the module docs. The new version of each put, `None`
/// for each delete.
pub(crate) fn commit(
    pool: &Pool,
    sealer: &Sealer,
    writes: &[Write<'_>],
) -> Result<Vec<Option<Version>>, PluginError> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = pool.get()?;
    let mut tx = conn
        .transaction()
        .map_err(|e| pool.error("begin a transaction", &e))?;
    let keys: Vec<&str> = writes.iter().map(Write::key).collect();
    let rows = tx
        .query_typed(
            "SELECT key, version, value FROM keygate_records WHERE key = ANY($1) \
             ORDER BY key FOR UPDATE",
            &[(&keys, Type::TEXT_ARRAY)],
        )
        .map_err(|e| pool.error("read the records written", &e))?;
    let mut current: HashMap<String, Version> = HashMap::with_capacity(rows.len());
    for row in rows {
        let key: String = row.get(0);
        let row_version: i64 = row.get(1);
        let mut opened = open_row(sealer, &key, row_version, row.get(2))?;
        opened.value.zeroize();
        current.insert(key, opened.version);
    }
    let mut puts = 0i64;
    for write in writes {
        let key = write.key();
        let found = current.get(key).copied();
        match *write {
            Write::Put { expected, .. } if found != expected => {
                return Err(PluginError::version_conflict(key, expected, found));
            }
            Write::Put { .. } => puts += 1,
            Write::Delete { .. } if found.is_none() => {
                return Err(PluginError::not_found(format!("key {key:?}")));
            }
            Write::Delete { expected, .. } if found != Some(expected) => {
                return Err(PluginError::version_conflict(key, Some(expected), found));
            }
            Write::Delete { .. } => {}
        }
    }
    let mut versions: Vec<i64> = if puts == 0 {
        Vec::new()
    } else {
        tx.query_typed(
            "SELECT nextval('keygate_record_version') FROM generate_series(1, $1)",
            &[(&puts, Type::INT8)],
        )
        .map_err(|e| pool.error("draw record versions", &e))?
        .into_iter()
        .map(|row| row.get(0))
        .collect()
    };
    versions.reverse();
    let mut out = Vec::with_capacity(writes.len());
    for write in writes {
        let key = write.key();
        match *write {
            Write::Put { value, .. } => {
                let version = versions
                    .pop()
                    .ok_or_else(|| PluginError::internal("the database drew too few versions"))?;
                let sealed = sealer
                    .seal_record(key, to_version(version), value)
                    .map_err(|e| PluginError::internal(format!("record {key:?}: {e}")))?;
                let written = if current.contains_key(key) {
                    tx.execute_typed(
                        "UPDATE keygate_records SET version = $2, value = $3 WHERE key = $1",
                        &[
                            (&key, Type::TEXT),
                            (&version, Type::INT8),
                            (&sealed, Type::BYTEA),
                        ],
                    )
                } else {
                    tx.execute_typed(
                        "INSERT INTO keygate_records (key, version, value) VALUES ($1, $2, $3)",
                        &[
                            (&key, Type::TEXT),
                            (&version, Type::INT8),
                            (&sealed, Type::BYTEA),
                        ],
                    )
                };
                match written {
                    Ok(_) => {}
                    Err(e) if is_unique_violation(&e) => {
                        return Err(PluginError::conflict(format!(
                            "key {key:?}: created by another writer at the same time \
                             (expected no record)"
                        )));
                    }
                    Err(e) => return Err(pool.error(&format!("write record {key:?}"), &e)),
                }
                out.push(Some(to_version(version)));
            }
            Write::Delete { .. } => {
                tx.execute_typed(
                    "DELETE FROM keygate_records WHERE key = $1",
                    &[(&key, Type::TEXT)],
                )
                .map_err(|e| pool.error(&format!("delete record {key:?}"), &e))?;
                out.push(None);
            }
        }
    }
    tx.batch_execute(NOTIFY)
        .map_err(|e| pool.error("notify the write", &e))?;
    tx.commit()
        .map_err(|e| pool.error("commit the write", &e))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_bounds_exactly_the_prefixed_strings() {
        assert_eq!(successor("devices/").as_deref(), Some("devices0"));
        assert_eq!(successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{10FFFF}"), None);
        for (prefix, key) in [("ab", "ab"), ("ab", "ab\u{10FFFF}"), ("κ", "κλ")] {
            let end = successor(prefix).unwrap();
            assert!(key >= prefix && key < end.as_str(), "{key:?}");
        }
        assert!("ac" >= successor("ab").unwrap().as_str());
    }
}

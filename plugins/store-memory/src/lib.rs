//! The built-in `memory` secret store: everything lives in a map inside the
//! process and is gone when it exits. Meant for tests, demos and gateways
//! whose state is disposable.
//!
//! Versions come from one counter shared by all keys, so a key that is
//! deleted and created again never repeats a version it had before.
//!
//! It has the `batch` capability: [`BatchStore::apply_batch`] checks every
//! key and every expected version and then makes all the writes under one
//! hold of the write lock, so no other writer and no reader sees part of a
//! batch. And the `watch` capability: its write position counts the writes
//! (puts, deletes, batches, quarantines) made through this store object,
//! the only writers there can be.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, RwLock};
use std::time::Duration;

use keygate_sdk::{
    BatchOp, BatchStore, PluginContext, PluginError, SecretStore, StorePlugin, Version, Versioned,
    WatchStore, validate_key, validate_prefix,
};

/// An in-memory [`SecretStore`].
#[derive(Default)]
pub struct MemoryStore {
    records: RwLock<BTreeMap<String, (Vec<u8>, Version)>>,
    next_version: AtomicU64,
    /// Records moved aside by `quarantine`, kept for the life of the store.
    quarantined: Mutex<Vec<(String, Vec<u8>)>>,
    /// The write position ([`WatchStore`]): writes made so far.
    writes: Mutex<u64>,
    /// Signalled after each write.
    wrote: Condvar,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn records_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, (Vec<u8>, Version)>> {
        // A poisoned lock means a panic while holding it; every write below
        // completes before it can panic, so the map is consistent.
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }

    fn records_write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, (Vec<u8>, Version)>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }

    fn fresh_version(&self) -> Version {
        self.next_version.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Moves the write position and wakes the watchers; called after a
    /// write, with the records' lock let go.
    fn written(&self) {
        *self.writes.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.wrote.notify_all();
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        validate_key(key)?;
        Ok(self
            .records_read()
            .get(key)
            .map(|(value, version)| Versioned {
                value: value.clone(),
                version: *version,
            }))
    }

    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        validate_key(key)?;
        let mut records = self.records_write();
        let current = records.get(key).map(|(_, v)| *v);
        if current != expected {
            return Err(PluginError::version_conflict(key, expected, current));
        }
        let version = self.fresh_version();
        records.insert(key.to_owned(), (value.to_vec(), version));
        drop(records);
        self.written();
        Ok(version)
    }

    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        validate_key(key)?;
        let mut records = self.records_write();
        match records.get(key) {
            None => Err(PluginError::not_found(format!("key {key:?}"))),
            Some((_, current)) if *current != expected => Err(PluginError::version_conflict(
                key,
                Some(expected),
                Some(*current),
            )),
            Some(_) => {
                records.remove(key);
                drop(records);
                self.written();
                Ok(())
            }
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        validate_prefix(prefix)?;
        let records = self.records_read();
        Ok(records
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        validate_key(key)?;
        let (value, _) = self
            .records_write()
            .remove(key)
            .ok_or_else(|| PluginError::not_found(format!("key {key:?}")))?;
        self.written();
        let mut aside = self.quarantined.lock().unwrap_or_else(|p| p.into_inner());
        aside.push((key.to_owned(), value));
        Ok(format!(
            "kept in this process's memory as quarantined record {} (the memory store has no disk)",
            aside.len()
        ))
    }
}

impl BatchStore for MemoryStore {
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
        let mut seen = HashSet::with_capacity(ops.len());
        for op in ops {
            validate_key(op.key())?;
            if !seen.insert(op.key()) {
                return Err(PluginError::invalid(format!(
                    "key {:?} appears twice in one batch",
                    op.key()
                )));
            }
        }
        let mut records = self.records_write();
        // Every comparison before the first write: a failure leaves the map
        // as it was.
        for op in ops {
            let current = records.get(op.key()).map(|(_, v)| *v);
            match op {
                BatchOp::Put { key, expected, .. } if current != *expected => {
                    return Err(PluginError::version_conflict(key, *expected, current));
                }
                BatchOp::Delete { key, .. } if current.is_none() => {
                    return Err(PluginError::not_found(format!("key {key:?}")));
                }
                BatchOp::Delete { key, expected } if current != Some(*expected) => {
                    return Err(PluginError::version_conflict(key, Some(*expected), current));
                }
                _ => {}
            }
        }
        // Nothing below can fail or panic short of running out of memory.
        let versions = ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { key, value, .. } => {
                    let version = self.fresh_version();
                    records.insert(key.clone(), (value.clone(), version));
                    Some(version)
                }
                BatchOp::Delete { key, .. } => {
                    records.remove(key);
                    None
                }
            })
            .collect();
        drop(records);
        if !ops.is_empty() {
            self.written();
        }
        Ok(versions)
    }
}

impl WatchStore for MemoryStore {
    fn wait_for_writes(&self, seen: u64, timeout: Duration) -> Result<u64, PluginError> {
        let writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let (writes, _) = self
            .wrote
            .wait_timeout_while(writes, timeout, |w| *w == seen)
            .unwrap_or_else(|p| p.into_inner());
        Ok(*writes)
    }
}

impl StorePlugin for MemoryStore {
    const NAME: &'static str = "memory";
    const DESCRIPTION: &'static str = "In-memory store: versioned, compare-and-swap, gone at exit";

    fn from_config(config: &str, _ctx: PluginContext) -> Result<Self, PluginError> {
        if !config.trim().is_empty() {
            return Err(PluginError::invalid(
                "the memory store takes no settings: remove its [config] table",
            ));
        }
        Ok(Self::new())
    }
}

keygate_sdk::register_builtin_plugins! {
    stores: [MemoryStore: batch + watch],
}

//! Records that cannot be read, and how one of them is kept from stopping
//! everything else.
//!
//! Reading a record has three outcomes besides success, and they are kept
//! apart everywhere ([`read_record`]):
//! - **absent**: the store has no such key;
//! - **unreadable**: the store has the key but it cannot be used: the store
//!   refused to open it (tampered, torn, sealed under another name or key:
//!   any store error but `Unavailable`), it does not decode as the record
//!   its key names, or it names another device or certificate than its key.
//!   This is a fact about that one record: it is named, counted and failed
//!   closed for what it covers, and everything else goes on;
//! - **transient**: the store said [`Unavailable`](keygate_sdk::ErrorKind::Unavailable)
//!   (a disk or database that cannot be reached now). That is a fact about
//!   the store, not the record, so the whole operation fails and changes
//!   nothing, and is tried again.
//!
//! [`Faults`] is where a process keeps the unreadable records it currently
//! knows of: each is logged at `error` level when it is met (at most once
//! per `recheck` interval per record, so a record read four times a second
//! does not flood the log) and counted every time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keygate_sdk::{ErrorKind, SecretStore, Version};
use serde::de::DeserializeOwned;

use super::IdentityError;

/// What reading one record gave.
#[derive(Debug)]
pub enum Read<T> {
    /// No such key.
    Absent,
    /// The record and its version.
    Found(T, Version),
    /// The key exists but its record cannot be used; the reason names what
    /// is wrong.
    Unreadable(String),
}

/// Reads and decodes the record at `key`. A transient store failure is the
/// error; every other failure is [`Read::Unreadable`].
pub fn read_record<T: DeserializeOwned>(
    store: &dyn SecretStore,
    key: &str,
) -> Result<Read<T>, IdentityError> {
    read_with(store, key, |bytes| {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    })
}

/// Like [`read_record`], with `decode` turning the bytes into the record.
pub fn read_with<T>(
    store: &dyn SecretStore,
    key: &str,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<Read<T>, IdentityError> {
    match store.get(key) {
        Ok(None) => Ok(Read::Absent),
        Ok(Some(v)) => Ok(match decode(&v.value) {
            Ok(record) => Read::Found(record, v.version),
            Err(reason) => Read::Unreadable(format!("does not decode: {reason}")),
        }),
        Err(e) if e.kind() == ErrorKind::Unavailable => Err(e.into()),
        Err(e) => Ok(Read::Unreadable(format!("the store cannot read it: {e}"))),
    }
}

/// One record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableRecord {
    /// Its store key.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for UnreadableRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {:?} is unreadable: {}", self.key, self.reason)
    }
}

/// The unreadable records one process knows of, and how often it met one.
#[derive(Debug, Default)]
pub struct Faults {
    current: Mutex<BTreeMap<String, Known>>,
    met: AtomicU64,
}

#[derive(Debug)]
struct Known {
    reason: String,
    logged: Instant,
}

impl Faults {
    /// Records that `key` was met unreadable: counted every time, logged
    /// at `error` level unless it was logged less than `quiet` ago with the
    /// same reason. `covers` says what is refused because of it.
    pub(crate) fn met(&self, key: &str, reason: &str, covers: &str, quiet: Duration) {
        self.met.fetch_add(1, Ordering::Relaxed);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let log = match current.get(key) {
            Some(known) => known.reason != reason || now.duration_since(known.logged) >= quiet,
            None => true,
        };
        if log {
            tracing::error!(
                key,
                reason,
                "unreadable record: {covers}; `keygate state check` lists it and can move it aside"
            );
            current.insert(
                key.to_owned(),
                Known {
                    reason: reason.to_owned(),
                    logged: now,
                },
            );
        }
    }

    /// Counts `n` unreadable records met where the caller reports them
    /// itself (a listing that names them, an audit read that fails).
    pub(crate) fn counted(&self, n: usize) {
        self.met.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records that `key` reads again (or is gone); logs it if it was known
    /// unreadable.
    pub(crate) fn cleared(&self, key: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.remove(key).is_some() {
            tracing::info!(key, "record reads again");
        }
    }

    /// The unreadable records known now, by key.
    pub fn unreadable(&self) -> Vec<UnreadableRecord> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(key, known)| UnreadableRecord {
                key: key.clone(),
                reason: known.reason.clone(),
            })
            .collect()
    }

    /// How many times an unreadable record was met, since the process
    /// started (for metrics).
    pub fn met_count(&self) -> u64 {
        self.met.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use keygate_sdk::{PluginError, Versioned};

    use super::*;

    /// A store whose `get` answers from a fixed script.
    struct Scripted(Result<Option<Versioned>, PluginError>);

    impl SecretStore for Scripted {
        fn get(&self, _: &str) -> Result<Option<Versioned>, PluginError> {
            self.0.clone()
        }
        fn put(&self, _: &str, _: &[u8], _: Option<Version>) -> Result<Version, PluginError> {
            unreachable!()
        }
        fn delete(&self, _: &str, _: Version) -> Result<(), PluginError> {
            unreachable!()
        }
        fn list(&self, _: &str) -> Result<Vec<String>, PluginError> {
            unreachable!()
        }
    }

    fn read(answer: Result<Option<Versioned>, PluginError>) -> Result<Read<u32>, IdentityError> {
        read_record::<u32>(&Scripted(answer), "k")
    }

    #[test]
    fn only_an_unavailable_store_is_an_error() {
        let found = |bytes: &[u8]| {
            Ok(Some(Versioned {
                value: bytes.to_vec(),
                version: 7,
            }))
        };
        assert!(matches!(read(Ok(None)).unwrap(), Read::Absent));
        assert!(matches!(read(found(b"12")).unwrap(), Read::Found(12, 7)));
        match read(found(b"{")).unwrap() {
            Read::Unreadable(reason) => assert!(reason.starts_with("does not decode"), "{reason}"),
            other => panic!("{other:?}"),
        }
        for kind in [
            PluginError::internal("authentication failed"),
            PluginError::invalid("bad key"),
            PluginError::not_found("gone"),
        ] {
            match read(Err(kind.clone())).unwrap() {
                Read::Unreadable(reason) => assert!(reason.contains(kind.message()), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
        let err = read(Err(PluginError::unavailable("disk gone"))).unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
    }

    #[test]
    fn a_record_is_counted_every_time_and_listed_until_it_reads_again() {
        let faults = Faults::default();
        faults.met("a", "bad", "x", Duration::from_secs(60));
        faults.met("a", "bad", "x", Duration::from_secs(60));
        faults.met("b", "worse", "y", Duration::ZERO);
        assert_eq!(faults.met_count(), 3);
        assert_eq!(
            faults.unreadable(),
            vec![
                UnreadableRecord {
                    key: "a".into(),
                    reason: "bad".into()
                },
                UnreadableRecord {
                    key: "b".into(),
                    reason: "worse".into()
                }
            ]
        );
        faults.cleared("a");
        assert_eq!(faults.unreadable().len(), 1);
        assert_eq!(faults.met_count(), 3);
    }
}

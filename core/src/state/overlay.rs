//! The pending writes of a commit group, as a store the next plan reads
//! through.
//!
//! Mutations that arrive together are planned one after another and
//! committed as one (see the `group` module). Each plan must see the writes
//! of the plans before it in its group, which are not in the store yet: it
//! reads through an [`Overlay`], which answers from the group's pending
//! writes and falls back to the store for everything else. Once every plan
//! of the group ran, [`Overlay::net_writes`] turns what they wrote into
//! the smallest set of store writes with the same effect: one per key, each
//! naming the version the key had in the store when the group began, so the
//! store's own compare-and-swap still guards every write.

use std::collections::HashMap;
use std::sync::Arc;

use keygate_sdk::{BatchOp, PluginError, SecretStore, Version, Versioned};

use super::manager::{Op, Write};

/// Versions handed to plans for pending values. They only ever meet the
/// overlay's own comparisons (net writes name the store's versions), so
/// any value works; counting from the top half keeps them apart from the
/// small versions test stores hand out.
const FIRST_PENDING_VERSION: Version = 1 << 63;

/// One key's pending state.
#[derive(Clone)]
struct Pending {
    /// What the key held in the store before the group (the version the
    /// first write to it named), unless the group moved the record aside
    /// first, in which case the record is gone whatever it held.
    base: Base,
    /// What it holds now: value and pending version, or nothing.
    now: Option<(Vec<u8>, Version)>,
}

#[derive(Clone, Copy)]
enum Base {
    Version(Option<Version>),
    Quarantined,
}

/// A write the group makes to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NetWrite {
    /// Put `value`, replacing `expected` (`None`: create).
    Put {
        key: String,
        value: Vec<u8>,
        expected: Option<Version>,
    },
    /// Delete the key at version `expected`.
    Delete { key: String, expected: Version },
    /// Move the record aside, whatever it holds.
    Quarantine { key: String },
}

impl NetWrite {
    /// The batch op of a put or delete; `None` for moving a record aside,
    /// which is no batch op (a group that does it commits one write at a
    /// time).
    pub(super) fn into_batch_op(self) -> Option<BatchOp> {
        match self {
            Self::Put {
                key,
                value,
                expected,
            } => Some(BatchOp::Put {
                key,
                value,
                expected,
            }),
            Self::Delete { key, expected } => Some(BatchOp::Delete { key, expected }),
            Self::Quarantine { .. } => None,
        }
    }

    pub(super) fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Delete { key, .. } | Self::Quarantine { key } => key,
        }
    }
}

/// The group's pending writes over `base`.
pub(super) struct Overlay {
    base: Arc<dyn SecretStore>,
    pending: HashMap<String, Pending>,
    /// Keys in the order the group first wrote them.
    order: Vec<String>,
    next_version: Version,
}

/// A write that does not match what the overlay holds: the plan read
/// something else than it wrote against.
#[derive(Debug)]
pub(super) struct Mismatch {
    pub(super) key: String,
}

impl Overlay {
    /// An empty overlay over `base`.
    pub(super) fn new(base: Arc<dyn SecretStore>) -> Self {
        Self {
            base,
            pending: HashMap::new(),
            order: Vec::new(),
            next_version: FIRST_PENDING_VERSION,
        }
    }

    /// The keys written, in the order the group first wrote them.
    pub(super) fn keys(&self) -> &[String] {
        &self.order
    }

    /// Whether nothing is pending.
    pub(super) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Applies one mutation's writes, all or none: each must name the
    /// version the overlay shows for its key (writes to the same key see
    /// the ones before them).
    pub(super) fn apply(&mut self, writes: &[Write]) -> Result<(), Mismatch> {
        // Keys in the order this mutation first writes them: a store without
        // batches gets the writes in that order (see `net_writes`).
        let mut scratch: Vec<(&str, Pending)> = Vec::new();
        let mut next_version = self.next_version;
        for w in writes {
            let known = scratch
                .iter()
                .rev()
                .find(|(k, _)| *k == w.key)
                .map(|(_, p)| p)
                .or_else(|| self.pending.get(&w.key))
                .cloned();
            let current = known.as_ref().map(|p| p.now.as_ref().map(|(_, v)| *v));
            let mismatch = || Mismatch { key: w.key.clone() };
            let next = match &w.op {
                Op::Put { value, expected } => {
                    if current.is_some_and(|c| c != *expected) {
                        return Err(mismatch());
                    }
                    let version = next_version;
                    next_version += 1;
                    Pending {
                        base: known.map_or(Base::Version(*expected), |p| p.base),
                        now: Some((value.clone(), version)),
                    }
                }
                Op::Delete { expected } => {
                    if current.is_some_and(|c| c != Some(*expected)) {
                        return Err(mismatch());
                    }
                    Pending {
                        base: known.map_or(Base::Version(Some(*expected)), |p| p.base),
                        now: None,
                    }
                }
                Op::Quarantine => Pending {
                    base: Base::Quarantined,
                    now: None,
                },
            };
            scratch.push((&w.key, next));
        }
        self.next_version = next_version;
        // The last state of each key wins; the first write places it.
        for (key, pending) in scratch {
            if self.pending.insert(key.to_owned(), pending).is_none() {
                self.order.push(key.to_owned());
            }
        }
        Ok(())
    }

    /// The store writes with the same effect as everything applied, one
    /// per key that changed, in the order the keys were first written.
    pub(super) fn net_writes(&self) -> Vec<NetWrite> {
        let mut out = Vec::with_capacity(self.order.len());
        for key in &self.order {
            let p = &self.pending[key];
            let key = key.clone();
            match (p.base, &p.now) {
                (Base::Quarantined, now) => {
                    out.push(NetWrite::Quarantine { key: key.clone() });
                    if let Some((value, _)) = now {
                        out.push(NetWrite::Put {
                            key,
                            value: value.clone(),
                            expected: None,
                        });
                    }
                }
                (Base::Version(expected), Some((value, _))) => out.push(NetWrite::Put {
                    key,
                    value: value.clone(),
                    expected,
                }),
                (Base::Version(Some(expected)), None) => {
                    out.push(NetWrite::Delete { key, expected })
                }
                // Created and deleted within the group: nothing to write.
                (Base::Version(None), None) => {}
            }
        }
        out
    }
}

impl SecretStore for Overlay {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        match self.pending.get(key) {
            Some(p) => Ok(p.now.as_ref().map(|(value, version)| Versioned {
                value: value.clone(),
                version: *version,
            })),
            None => self.base.get(key),
        }
    }

    fn put(&self, key: &str, _: &[u8], _: Option<Version>) -> Result<Version, PluginError> {
        Err(read_only(key))
    }

    fn delete(&self, key: &str, _: Version) -> Result<(), PluginError> {
        Err(read_only(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        let mut keys = self.base.list(prefix)?;
        keys.retain(|k| self.pending.get(k).is_none_or(|p| p.now.is_some()));
        keys.extend(
            self.order
                .iter()
                .filter(|k| k.starts_with(prefix) && self.pending[*k].now.is_some())
                .cloned(),
        );
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

fn read_only(key: &str) -> PluginError {
    PluginError::internal(format!(
        "a plan wrote {key:?} directly; plans return their writes"
    ))
}

#[cfg(test)]
mod tests {
    use keygate_sdk::ErrorKind;
    use keygate_store_memory::MemoryStore;

    use super::*;

    fn put(key: &str, value: &[u8], expected: Option<Version>) -> Write {
        Write::put(key.into(), value.into(), expected)
    }

    #[test]
    fn plans_read_the_writes_before_them_and_the_store_for_the_rest() {
        let store = Arc::new(MemoryStore::new());
        let a = store.put("k/a", b"stored", None).unwrap();
        store.put("k/b", b"untouched", None).unwrap();
        let mut o = Overlay::new(store.clone());
        o.apply(&[put("k/a", b"new", Some(a)), put("k/c", b"created", None)])
            .unwrap();
        let seen = o.get("k/a").unwrap().unwrap();
        assert_eq!(seen.value, b"new");
        assert_eq!(o.get("k/b").unwrap().unwrap().value, b"untouched");
        assert_eq!(o.list("k/").unwrap(), ["k/a", "k/b", "k/c"]);
        o.apply(&[Write::delete("k/a".into(), seen.version)])
            .unwrap();
        assert_eq!(o.get("k/a").unwrap(), None);
        assert_eq!(o.list("k/").unwrap(), ["k/b", "k/c"]);
        assert_eq!(store.get("k/a").unwrap().unwrap().value, b"stored");
    }

    #[test]
    fn a_write_against_another_version_than_the_overlay_shows_changes_nothing() {
        let store = Arc::new(MemoryStore::new());
        let v = store.put("k", b"1", None).unwrap();
        let mut o = Overlay::new(store.clone());
        o.apply(&[put("k", b"2", Some(v))]).unwrap();
        let pending = o.get("k").unwrap().unwrap().version;
        // Stale: names the stored version, not the pending one; the whole
        // mutation is refused, including its first, valid write.
        let err = o
            .apply(&[put("other", b"x", None), put("k", b"3", Some(v))])
            .unwrap_err();
        assert_eq!(err.key, "k");
        assert_eq!(o.get("other").unwrap(), None);
        assert!(o.apply(&[put("k", b"3", None)]).is_err(), "k exists");
        assert!(
            o.apply(&[Write::delete("k".into(), v)]).is_err(),
            "stale delete"
        );
        o.apply(&[put("k", b"3", Some(pending))]).unwrap();
        assert_eq!(o.get("k").unwrap().unwrap().value, b"3");
    }

    #[test]
    fn a_key_written_twice_in_a_group_refuses_a_write_naming_its_first_pending_version() {
        let store = Arc::new(MemoryStore::new());
        let mut o = Overlay::new(store.clone());
        o.apply(&[put("k", b"1", None)]).unwrap();
        let first = o.get("k").unwrap().unwrap().version;
        o.apply(&[put("k", b"2", Some(first))]).unwrap();
        let second = o.get("k").unwrap().unwrap().version;
        assert_ne!(first, second, "each write gives a new version");
        assert!(o.apply(&[put("k", b"stale", Some(first))]).is_err());
        assert_eq!(o.get("k").unwrap().unwrap().value, b"2");
    }

    #[test]
    fn pending_versions_never_match_a_version_the_store_gave() {
        let store = Arc::new(MemoryStore::new());
        let v = store.put("k", b"stored", None).unwrap();
        let mut o = Overlay::new(store.clone());
        // Hand out as many pending versions as it takes for a counter that
        // started low to reach the store's version at `k`.
        for i in 0..v.min(10_000) {
            o.apply(&[put(&format!("pad/{i}"), b"", None)]).unwrap();
        }
        o.apply(&[put("k", b"new", Some(v))]).unwrap();
        // A plan that read `k` from the store before the group wrote it is
        // stale, whatever the numbers.
        assert!(o.apply(&[put("k", b"stale", Some(v))]).is_err());
        assert!(o.apply(&[Write::delete("k".into(), v)]).is_err());
    }

    #[test]
    fn net_writes_name_the_stored_versions_once_per_key() {
        let store = Arc::new(MemoryStore::new());
        let a = store.put("a", b"1", None).unwrap();
        let b = store.put("b", b"1", None).unwrap();
        let mut o = Overlay::new(store.clone());
        o.apply(&[put("a", b"2", Some(a))]).unwrap();
        let a2 = o.get("a").unwrap().unwrap().version;
        o.apply(&[put("a", b"3", Some(a2)), Write::delete("b".into(), b)])
            .unwrap();
        o.apply(&[put("tmp", b"x", None)]).unwrap();
        let tmp = o.get("tmp").unwrap().unwrap().version;
        o.apply(&[Write::delete("tmp".into(), tmp), put("new", b"n", None)])
            .unwrap();
        assert_eq!(
            o.net_writes(),
            [
                NetWrite::Put {
                    key: "a".into(),
                    value: b"3".to_vec(),
                    expected: Some(a)
                },
                NetWrite::Delete {
                    key: "b".into(),
                    expected: b
                },
                NetWrite::Put {
                    key: "new".into(),
                    value: b"n".to_vec(),
                    expected: None
                },
            ]
        );
    }

    #[test]
    fn net_writes_keep_the_order_a_mutation_wrote_in() {
        let store = Arc::new(MemoryStore::new());
        let mut o = Overlay::new(store.clone());
        o.apply(&[
            put("z", b"1", None),
            put("a", b"1", None),
            put("m", b"1", None),
        ])
        .unwrap();
        let keys: Vec<String> = o.net_writes().iter().map(|w| w.key().to_owned()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(o.keys(), ["z", "a", "m"]);
    }

    #[test]
    fn a_record_moved_aside_and_written_again_is_moved_then_created() {
        let store = Arc::new(MemoryStore::new());
        store.put("c", b"bad", None).unwrap();
        let mut o = Overlay::new(store.clone());
        o.apply(&[Write::quarantine("c".into()), put("c", b"fresh", None)])
            .unwrap();
        assert_eq!(o.get("c").unwrap().unwrap().value, b"fresh");
        assert_eq!(
            o.net_writes(),
            [
                NetWrite::Quarantine { key: "c".into() },
                NetWrite::Put {
                    key: "c".into(),
                    value: b"fresh".to_vec(),
                    expected: None
                }
            ]
        );
    }

    #[test]
    fn the_overlay_cannot_be_written_to_directly() {
        let o = Overlay::new(Arc::new(MemoryStore::new()));
        assert_eq!(
            o.put("k", b"", None).unwrap_err().kind(),
            ErrorKind::Internal
        );
        assert_eq!(o.delete("k", 1).unwrap_err().kind(), ErrorKind::Internal);
        assert!(o.is_empty());
    }
}

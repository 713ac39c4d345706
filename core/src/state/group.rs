//! Group commit: mutations that arrive together share one commit.
//!
//! A durable commit costs a disk sync (about half a millisecond here),
//! far more than planning a mutation. So the mutations of one process are
//! gathered into groups, and each group is planned and committed as one:
//!
//! 1. A thread that mutates joins the open group. The first member to find
//!    no group at work becomes its *leader* and takes the exclusive state
//!    lock; threads that arrive meanwhile (and while the group before is
//!    committing) join the same group.
//! 2. Once the leader holds the lock, the group closes to newcomers (they
//!    form the next group) and its members plan in turn, each on its own
//!    thread, reading through the group's [`Overlay`]: every plan sees the
//!    store as the plans before it left it.
//! 3. When all have planned, the leader commits everything the group wrote
//!    as one change-log entry and one store batch (see
//!    `IdentityManager::commit`), releases the lock and publishes the
//!    outcome; every member returns its own result, or the commit's error.
//!
//! Nothing is weakened by grouping: each group commits all or nothing, in
//! one batch when the store has the capability, so a crash leaves a prefix
//! of the committed groups and no part of any; a plan's own error only
//! drops that plan's writes. No result leaves a member before its group
//! committed, so no caller ever acts on a write that a crash could still
//! take back.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::IdentityError;
use super::overlay::Overlay;

/// The commit groups of one `IdentityManager`.
#[derive(Default)]
pub(super) struct Groups {
    inner: Mutex<Inner>,
    /// Group-level changes: a group started, a group's outcome is out, a
    /// new leader may step up.
    changed: Condvar,
    /// The last member of the active group planned. Only its leader waits
    /// here, so a plan wakes one thread, not every waiting mutator.
    all_planned: Condvar,
}

#[derive(Default)]
pub(super) struct Inner {
    /// The group taking new members.
    open: u64,
    /// How many have joined it.
    joined: usize,
    /// A member of the open group is taking the state lock for it.
    leader_chosen: bool,
    /// The group being planned or committed.
    active: Option<Active>,
    /// Outcomes of committed groups, until every member took its own.
    outcomes: HashMap<u64, Outcome>,
}

/// The group at work.
pub(super) struct Active {
    id: u64,
    members: usize,
    planned: usize,
    /// The pending writes; taken by the leader to commit.
    pub(super) overlay: Option<Overlay>,
}

struct Outcome {
    /// Where each record moved aside went, or the commit's error.
    result: Result<Vec<(String, String)>, IdentityError>,
    uncollected: usize,
}

/// One member's view of its group.
pub(super) struct Membership<'a> {
    groups: &'a Groups,
    id: u64,
    planned: bool,
}

/// What a member should do next.
pub(super) enum Turn<'g, L> {
    /// Plan now, with the overlay of the active group (the guard is held
    /// while planning), then call [`Membership::planned`].
    Plan(MutexGuard<'g, Inner>),
    /// Lead the group: take the state lock, then call
    /// [`Membership::start`] with it.
    Lead,
    /// Every member planned: commit, then [`Membership::finish`].
    Commit(Overlay, L),
    /// The group's outcome.
    Done(Result<Vec<(String, String)>, IdentityError>),
}

impl Groups {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Plans run under this mutex; one that panicked leaves the group
        // state consistent (see `Membership::planned`).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many group outcomes wait for members to take them.
    #[cfg(test)]
    pub(super) fn outcomes_held(&self) -> usize {
        self.lock().outcomes.len()
    }

    /// Joins the open group.
    pub(super) fn join(&self) -> Membership<'_> {
        let mut st = self.lock();
        st.joined += 1;
        Membership {
            groups: self,
            id: st.open,
            planned: false,
        }
    }
}

impl Inner {
    /// The overlay of the active group, for a member whose turn it is.
    pub(super) fn overlay(&mut self) -> &mut Overlay {
        self.active
            .as_mut()
            .and_then(|a| a.overlay.as_mut())
            .expect("a member plans only while its group is planning")
    }
}

impl<'g> Membership<'g> {
    /// Waits for this member's next turn. `lead` is the state lock guard
    /// while this member leads, handed back with [`Turn::Commit`].
    pub(super) fn next<L>(&mut self, lead: &mut Option<L>) -> Turn<'g, L> {
        let mut st = self.groups.lock();
        loop {
            if let Some(outcome) = st.outcomes.get_mut(&self.id) {
                outcome.uncollected -= 1;
                let result = if outcome.uncollected == 0 {
                    st.outcomes.remove(&self.id).map(|o| o.result)
                } else {
                    None
                };
                let result = result.unwrap_or_else(|| match &st.outcomes[&self.id].result {
                    Ok(moved) => Ok(moved.clone()),
                    Err(e) => Err(e.for_another_member()),
                });
                return Turn::Done(result);
            }
            let mine_active = st.active.as_ref().is_some_and(|a| a.id == self.id);
            if mine_active && !self.planned {
                return Turn::Plan(st);
            }
            if lead.is_some()
                && let Some(active) = st.active.as_mut()
                && active.planned == active.members
                && let Some(overlay) = active.overlay.take()
            {
                let guard = lead.take().expect("checked above");
                return Turn::Commit(overlay, guard);
            }
            if st.active.is_none() && !st.leader_chosen && st.open == self.id {
                st.leader_chosen = true;
                return Turn::Lead;
            }
            let wake = if lead.is_some() {
                &self.groups.all_planned
            } else {
                &self.groups.changed
            };
            st = wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The leader took the state lock (or failed to): the group closes to
    /// newcomers and its members plan, or all get the lock's error.
    pub(super) fn start(&self, overlay: Result<Overlay, IdentityError>) {
        let mut st = self.groups.lock();
        st.leader_chosen = false;
        let members = std::mem::take(&mut st.joined);
        st.open += 1;
        match overlay {
            Ok(overlay) => {
                st.active = Some(Active {
                    id: self.id,
                    members,
                    planned: 0,
                    overlay: Some(overlay),
                })
            }
            Err(error) => {
                st.outcomes.insert(
                    self.id,
                    Outcome {
                        result: Err(error),
                        uncollected: members,
                    },
                );
            }
        }
        self.groups.changed.notify_all();
    }

    /// This member planned (or its plan panicked), with `st` from its
    /// [`Turn::Plan`].
    pub(super) fn planned(&mut self, mut st: MutexGuard<'_, Inner>) {
        self.planned = true;
        let last = st.active.as_mut().is_some_and(|active| {
            active.planned += 1;
            active.planned == active.members
        });
        drop(st);
        // The members still to plan are waiting for the mutex, not a
        // condition; only the leader needs to hear of the last plan.
        if last {
            self.groups.all_planned.notify_one();
        }
    }

    /// The leader committed: publishes the outcome and lets the next group
    /// start. The state lock must be released before.
    pub(super) fn finish(&self, result: Result<Vec<(String, String)>, IdentityError>) {
        let mut st = self.groups.lock();
        let members = st.active.take().map_or(0, |a| a.members);
        st.outcomes.insert(
            self.id,
            Outcome {
                result,
                uncollected: members,
            },
        );
        drop(st);
        self.groups.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, SystemTime};

    use keygate_sdk::{BatchOp, BatchStore, PluginError, SecretStore, Version, Versioned};
    use keygate_store_memory::MemoryStore;

    use super::super::changelog::{CHANGES_PREFIX, FLOOR_KEY};
    use super::super::lock::StateLock;
    use super::super::manager::{IdentityManager, RevokeOutcome, StateStore, Write};
    use super::*;
    use crate::identity::{DeviceKey, DevicePublicKey};

    /// A memory store with the batch capability, counting batches, that
    /// fails every batch while `fail` is set.
    #[derive(Default)]
    struct Batching {
        records: MemoryStore,
        batches: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
        last: Mutex<Vec<BatchOp>>,
    }

    impl SecretStore for Batching {
        fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
            self.records.get(key)
        }
        fn put(&self, key: &str, v: &[u8], e: Option<Version>) -> Result<Version, PluginError> {
            self.records.put(key, v, e)
        }
        fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
            self.records.delete(key, expected)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
            self.records.list(prefix)
        }
    }

    impl BatchStore for Batching {
        fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
            self.batches.fetch_add(1, Ordering::SeqCst);
            *self.last.lock().unwrap() = ops.to_vec();
            if self.fail.load(Ordering::SeqCst) {
                return Err(PluginError::unavailable("the disk is gone"));
            }
            // Not atomic, but nothing else writes in these tests, and
            // every op is checked by the memory store.
            ops.iter()
                .map(|op| match op {
                    BatchOp::Put {
                        key,
                        value,
                        expected,
                    } => self.records.put(key, value, *expected).map(Some),
                    BatchOp::Delete { key, expected } => {
                        self.records.delete(key, *expected).map(|()| None)
                    }
                })
                .collect()
        }
    }

    fn open(store: StateStore, dir: &std::path::Path) -> IdentityManager {
        IdentityManager::open(store, dir, Default::default(), SystemTime::now()).unwrap()
    }

    fn entries(store: &dyn SecretStore) -> usize {
        store
            .list(CHANGES_PREFIX)
            .unwrap()
            .iter()
            .filter(|k| *k != FLOOR_KEY)
            .count()
    }

    fn key(i: usize) -> DevicePublicKey {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        DeviceKey::from_seed(&seed).public_key()
    }

    /// Runs `work(i)` on `n` threads that all call it while the test holds
    /// the state lock, so they all join one group, then releases it.
    fn all_in_one_group<T: Send>(
        dir: &std::path::Path,
        n: usize,
        work: impl Fn(usize) -> T + Sync,
    ) -> Vec<T> {
        let held = StateLock::new(dir)
            .unwrap()
            .acquire_exclusive("test: hold the group", Duration::from_secs(5))
            .unwrap();
        let started = Barrier::new(n + 1);
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..n)
                .map(|i| {
                    let (work, started) = (&work, &started);
                    s.spawn(move || {
                        started.wait();
                        work(i)
                    })
                })
                .collect();
            started.wait();
            // Every thread is in `mutate` (joined, or waiting for the lock
            // as the leader) well before this.
            std::thread::sleep(Duration::from_millis(300));
            drop(held);
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        })
    }

    #[test]
    fn mutations_that_arrive_together_commit_as_one_batch_with_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Batching::default());
        let m = open(StateStore::batched(store.clone()), dir.path());
        let before = entries(&*store);
        let now = SystemTime::now();
        let enrolled = all_in_one_group(dir.path(), 32, |i| {
            m.enroll(&key(i), "d", &[], now, &crate::state::Actor::cli())
                .unwrap()
        });
        assert_eq!(entries(&*store), before + 1, "one entry for the group");
        assert_eq!(store.batches.load(Ordering::SeqCst), 1, "one batch");
        // Device and certificate of each with its audit entry, the audit
        // log's head once, and the change entry last.
        let ops = store.last.lock().unwrap().clone();
        assert_eq!(ops.len(), 32 * 3 + 1 + 1);
        assert!(ops.last().unwrap().key().starts_with(CHANGES_PREFIX));
        for e in &enrolled {
            assert!(m.device(&e.device.device_id).unwrap().is_some());
            assert!(m.certificate(&e.certificate.fingerprint).unwrap().is_some());
        }
        // The follower learns all of them from the one entry.
        m.refresh().unwrap();
        assert_eq!(m.indexed_certificates(), 32);
    }

    #[test]
    fn once_every_member_has_its_result_the_group_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Batching::default());
        let m = open(StateStore::batched(store.clone()), dir.path());
        let now = SystemTime::now();
        for round in 0..3 {
            all_in_one_group(dir.path(), 8, |i| {
                m.enroll(
                    &key(round * 8 + i),
                    "d",
                    &[],
                    now,
                    &crate::state::Actor::cli(),
                )
                .unwrap()
            });
            assert_eq!(m.groups_outcomes_held(), 0, "round {round}");
        }
    }

    #[test]
    fn each_plan_sees_the_writes_of_the_plans_before_it_in_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        let m = open(StateStore::plain(store.clone()), dir.path());
        let now = SystemTime::now();
        let device = m
            .enroll(&key(1), "d", &[], now, &crate::state::Actor::cli())
            .unwrap()
            .device
            .device_id;
        let outcomes = all_in_one_group(dir.path(), 8, |_| {
            m.revoke_device(&device, "lost", now, &crate::state::Actor::cli())
                .unwrap()
        });
        let revoked = outcomes
            .iter()
            .filter(|o| matches!(o, RevokeOutcome::Revoked(_)))
            .count();
        assert_eq!(
            revoked, 1,
            "the first plan revokes, the rest see it: {outcomes:?}"
        );
        assert!(m.device(&device).unwrap().unwrap().revoked.is_some());
    }

    #[test]
    fn a_failed_plan_drops_only_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Batching::default());
        let m = open(StateStore::batched(store.clone()), dir.path());
        let now = SystemTime::now();
        let bad = m
            .enroll(&key(0), "d", &[], now, &crate::state::Actor::cli())
            .unwrap()
            .device
            .device_id;
        m.revoke_device(&bad, "stolen", now, &crate::state::Actor::cli())
            .unwrap();
        let results = all_in_one_group(dir.path(), 6, |i| {
            m.enroll(&key(i), "d", &[], now, &crate::state::Actor::cli())
        });
        assert!(matches!(
            results[0],
            Err(IdentityError::DeviceRevoked { .. })
        ));
        for (i, r) in results.iter().enumerate().skip(1) {
            let e = r.as_ref().unwrap_or_else(|e| panic!("{i}: {e}"));
            assert!(m.certificate(&e.certificate.fingerprint).unwrap().is_some());
        }
        // Only the five good ones were issued anything.
        assert_eq!(m.certificates().unwrap().records.len(), 1 + 5);
    }

    #[test]
    fn a_commit_that_fails_fails_every_member_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Batching::default());
        let m = open(StateStore::batched(store.clone()), dir.path());
        let now = SystemTime::now();
        let before = store.records.list("").unwrap();
        store.fail.store(true, Ordering::SeqCst);
        let results = all_in_one_group(dir.path(), 5, |i| {
            m.enroll(&key(i), "d", &[], now, &crate::state::Actor::cli())
        });
        for r in &results {
            let e = r.as_ref().unwrap_err();
            assert!(e.to_string().contains("the disk is gone"), "{e}");
        }
        assert_eq!(store.records.list("").unwrap(), before, "nothing written");
        store.fail.store(false, Ordering::SeqCst);
        // The next group works, and its entry follows the last one written.
        m.enroll(&key(9), "d", &[], now, &crate::state::Actor::cli())
            .unwrap();
        m.refresh().unwrap();
        assert_eq!(m.indexed_certificates(), 1);
    }

    #[test]
    fn a_plan_that_panics_panics_its_caller_and_the_rest_of_its_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        let m = open(StateStore::plain(store.clone()), dir.path());
        let results = all_in_one_group(dir.path(), 4, |i| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                m.mutate("test", |_| {
                    assert!(i != 2, "plan {i} panics");
                    let key = format!("identity/test/{i}");
                    Ok((vec![Write::put(key, b"x".to_vec(), None)], i))
                })
            }))
        });
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(out) => assert_eq!(*out.as_ref().unwrap(), i),
                Err(_) => assert_eq!(i, 2),
            }
        }
        assert_eq!(
            store.list("identity/test/").unwrap(),
            ["identity/test/0", "identity/test/1", "identity/test/3"]
        );
        // The groups go on.
        m.mutate("test", |_| Ok((Vec::new(), ()))).unwrap();
    }

    #[test]
    fn without_the_capability_the_entry_is_written_before_the_records() {
        /// Remembers the order of writes.
        #[derive(Default)]
        struct Order(MemoryStore, Mutex<Vec<String>>);
        impl SecretStore for Order {
            fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
                self.0.get(key)
            }
            fn put(&self, k: &str, v: &[u8], e: Option<Version>) -> Result<Version, PluginError> {
                self.1.lock().unwrap().push(k.to_owned());
                self.0.put(k, v, e)
            }
            fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
                self.0.delete(key, expected)
            }
            fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
                self.0.list(prefix)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Order::default());
        let m = open(StateStore::plain(store.clone()), dir.path());
        store.1.lock().unwrap().clear();
        m.enroll(
            &key(1),
            "d",
            &[],
            SystemTime::now(),
            &crate::state::Actor::cli(),
        )
        .unwrap();
        let order = store.1.lock().unwrap().clone();
        // The entry, device, certificate, audit entry, audit head.
        assert_eq!(order.len(), 5, "{order:?}");
        assert!(order[0].starts_with(CHANGES_PREFIX), "{order:?}");
    }
}

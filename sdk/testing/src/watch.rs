//! The WatchStore conformance cases. Each takes a fresh, empty store with
//! the watch capability (its `SecretStore` side to write through, its
//! `WatchStore` side to wait on) and panics with a message naming what it
//! expected.
//!
//! Waits that should end early are given a minute, so a store that never
//! reports a write fails the case (after that minute) instead of passing
//! by chance; none of them measures how fast a store reports.

use std::time::{Duration, Instant};

use keygate_sdk::{SecretStore, WatchStore};

/// Long enough that only a missed wake-up reaches it.
const NEVER: Duration = Duration::from_secs(60);

/// The position now (a zero timeout never waits).
fn position(watch: &dyn WatchStore) -> u64 {
    watch
        .wait_for_writes(0, Duration::ZERO)
        .expect("read the write position")
}

/// Waits for the position to leave `seen`, failing the case if it does not
/// within [`NEVER`].
fn moved_from(watch: &dyn WatchStore, seen: u64, after: &str) -> u64 {
    let started = Instant::now();
    let now = watch.wait_for_writes(seen, NEVER).expect("wait_for_writes");
    assert_ne!(
        now,
        seen,
        "the write position did not move after {after} (waited {:?})",
        started.elapsed()
    );
    now
}

/// A put, an update, a delete and a quarantine each move the position, and
/// a wait on a position that is already stale returns it without waiting
/// for another write.
pub fn every_write_moves_the_position(store: &dyn SecretStore, watch: &dyn WatchStore) {
    let p0 = position(watch);
    let v1 = store.put("watch/a", b"1", None).expect("put");
    let p1 = moved_from(watch, p0, "a create");
    let v2 = store.put("watch/a", b"2", Some(v1)).expect("update");
    let p2 = moved_from(watch, p1, "an update");
    store.delete("watch/a", v2).expect("delete");
    let p3 = moved_from(watch, p2, "a delete");
    store.put("watch/b", b"x", None).expect("put");
    let p4 = moved_from(watch, p3, "a second create");
    match store.quarantine("watch/b") {
        Ok(_) => {
            moved_from(watch, p4, "a quarantine");
        }
        Err(e) if e.kind() == keygate_sdk::ErrorKind::Unsupported => {}
        Err(e) => panic!("quarantine: {e}"),
    }
}

/// With no write, a wait returns the same position after its timeout, not
/// at once.
pub fn without_writes_a_wait_times_out_unchanged(_: &dyn SecretStore, watch: &dyn WatchStore) {
    let p = position(watch);
    let started = Instant::now();
    let q = watch
        .wait_for_writes(p, Duration::from_millis(200))
        .expect("wait_for_writes");
    assert_eq!(q, p, "the position moved with no write");
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "a wait with nothing to report returned after {:?} of its 200 ms",
        started.elapsed()
    );
}

/// A waiter blocked on the current position wakes when another thread
/// writes.
pub fn a_write_from_another_thread_wakes_a_waiter(store: &dyn SecretStore, watch: &dyn WatchStore) {
    let p = position(watch);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            store.put("watch/from-a-thread", b"v", None).expect("put");
        });
        moved_from(watch, p, "a put from another thread");
    });
    assert!(store.get("watch/from-a-thread").expect("get").is_some());
}

/// Several threads waiting at once all wake for one write.
pub fn one_write_wakes_every_waiter(store: &dyn SecretStore, watch: &dyn WatchStore) {
    let p = position(watch);
    std::thread::scope(|s| {
        let waiters: Vec<_> = (0..4)
            .map(|_| s.spawn(move || moved_from(watch, p, "one put, with four waiters")))
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        store.put("watch/one", b"v", None).expect("put");
        for w in waiters {
            w.join().expect("a waiter panicked");
        }
    });
}

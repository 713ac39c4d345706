//! The database file outlives the store object, and several stores (in one
//! process or in several) share it without losing an update or repeating a
//! version.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use keygate_example_store_sqlite::SqliteStore;
use keygate_sdk::{ErrorKind, SecretStore};

/// Adds one to the little-endian counter under `key`, retrying on conflict.
fn increment(store: &SqliteStore, key: &str) {
    loop {
        let current = store.get(key).expect("get").expect("counter exists");
        let n = u64::from_le_bytes(current.value.as_slice().try_into().expect("8 bytes"));
        match store.put(key, &(n + 1).to_le_bytes(), Some(current.version)) {
            Ok(_) => return,
            Err(e) if e.kind() == ErrorKind::Conflict => continue,
            Err(e) => panic!("increment: {e}"),
        }
    }
}

fn counter(store: &SqliteStore, key: &str) -> u64 {
    let value = store.get(key).expect("get").expect("counter exists").value;
    u64::from_le_bytes(value.as_slice().try_into().expect("8 bytes"))
}

#[test]
fn records_and_versions_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = {
        let store = common::open_in(dir.path());
        let v1 = store.put("devices/a", b"alpha", None).expect("create a");
        let v2 = store.put("devices/b", b"beta", None).expect("create b");
        store.delete("devices/b", v2).expect("delete b");
        (v1, v2)
    };

    let store = common::open_in(dir.path());
    let got = store.get("devices/a").expect("get").expect("a survived");
    assert_eq!((got.value.as_slice(), got.version), (&b"alpha"[..], v1));
    assert_eq!(store.get("devices/b").expect("get"), None);
    assert_eq!(store.list("").expect("list"), vec!["devices/a"]);

    // The version counter survived too: a re-created key gets a version
    // that none of its earlier incarnations had.
    let v3 = store
        .put("devices/b", b"beta again", None)
        .expect("re-create b");
    assert!(v3 > v2 && v3 > v1, "v3 = {v3} after {v1}, {v2}");
    let err = store
        .put("devices/b", b"stale", Some(v2))
        .expect_err("the old version must not match");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
}

#[test]
fn two_stores_on_one_file_see_each_others_writes_and_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::open_in(dir.path());
    let b = common::open_in(dir.path());

    let v1 = a.put("k", b"from a", None).expect("a creates");
    let err = b
        .put("k", b"from b", None)
        .expect_err("b must see a's record");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    let seen = b.get("k").expect("get").expect("b sees a's write");
    assert_eq!((seen.value.as_slice(), seen.version), (&b"from a"[..], v1));
    let v2 = b.put("k", b"from b", Some(v1)).expect("b updates");

    let err = a
        .put("k", b"lost update", Some(v1))
        .expect_err("a is stale");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let err = a.delete("k", v1).expect_err("a is stale");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(a.get("k").expect("get").expect("present").version, v2);

    a.delete("k", v2)
        .expect("a deletes with the current version");
    let err = b.delete("k", v2).expect_err("already gone");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
fn two_stores_on_one_file_increment_concurrently_without_losing_updates() {
    const EACH: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let a = common::open_in(dir.path());
    let b = common::open_in(dir.path());
    a.put("counter", &0u64.to_le_bytes(), None).expect("create");

    std::thread::scope(|s| {
        for store in [&a, &b, &a, &b] {
            s.spawn(move || {
                for _ in 0..EACH {
                    increment(store, "counter");
                }
            });
        }
    });
    assert_eq!(counter(&a, "counter"), 4 * EACH);
    assert_eq!(counter(&b, "counter"), 4 * EACH);
}

#[test]
fn versions_are_unique_across_stores_sharing_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::open_in(dir.path());
    let b = common::open_in(dir.path());
    let mut versions: Vec<u64> = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { &a } else { &b };
        versions.push(store.put(&format!("k/{i}"), b"v", None).expect("create"));
    }
    let mut unique = versions.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        versions.len(),
        "repeated version in {versions:?}"
    );
}

/// The environment variable that turns [`child_process_incrementer`] on.
const CHILD_DB: &str = "KEYGATE_SQLITE_TEST_CHILD_DB";
const CHILD_INCREMENTS: u64 = 100;

/// Not a test on its own: the body of each child process started by
/// [`two_processes_incrementing_one_counter_lose_no_update`].
#[test]
#[ignore = "run in child processes by two_processes_incrementing_one_counter_lose_no_update"]
fn child_process_incrementer() {
    let dir = std::env::var_os(CHILD_DB).expect("started by the parent test");
    let store = common::open_in(Path::new(&dir));
    for _ in 0..CHILD_INCREMENTS {
        increment(&store, "counter");
    }
}

#[test]
fn two_processes_incrementing_one_counter_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_in(dir.path());
    store
        .put("counter", &0u64.to_le_bytes(), None)
        .expect("create");

    let exe = std::env::current_exe().expect("test binary path");
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_incrementer",
                    "--ignored",
                    "--quiet",
                ])
                .env(CHILD_DB, dir.path())
                // Captured so the children's own test summaries stay out of
                // this run's output; shown if a child fails.
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a child process")
        })
        .collect();
    // This process writes too, while the children run.
    for _ in 0..CHILD_INCREMENTS {
        increment(&store, "counter");
    }
    for child in children {
        let out = child.wait_with_output().expect("wait for child");
        assert!(
            out.status.success(),
            "child process failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(counter(&store, "counter"), 3 * CHILD_INCREMENTS);
}

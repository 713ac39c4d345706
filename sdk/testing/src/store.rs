//! The SecretStore conformance cases. Each takes a fresh, empty store and
//! panics with a message naming what it expected.

use keygate_sdk::{ErrorKind, SecretStore, Version};

fn expect_kind<T: std::fmt::Debug>(
    result: Result<T, keygate_sdk::PluginError>,
    kind: ErrorKind,
    what: &str,
) {
    match result {
        Err(e) => assert_eq!(e.kind(), kind, "{what}: wrong error kind in {e}"),
        Ok(v) => panic!("{what}: expected a {kind} error, got Ok({v:?})"),
    }
}

fn value_of(store: &dyn SecretStore, key: &str) -> Option<(Vec<u8>, Version)> {
    store
        .get(key)
        .unwrap_or_else(|e| panic!("get {key:?}: {e}"))
        .map(|v| (v.value, v.version))
}

/// `get` of a key never written is `None`, not an error.
pub fn get_of_a_missing_key_is_none(store: &dyn SecretStore) {
    assert_eq!(value_of(store, "nothing/here"), None);
}

/// A created value reads back with the returned version; an update with
/// that version replaces it and yields a different version.
pub fn put_then_get_round_trips(store: &dyn SecretStore) {
    let v1 = store.put("a/b", b"one", None).expect("create");
    assert_ne!(v1, 0, "versions are never zero");
    assert_eq!(value_of(store, "a/b"), Some((b"one".to_vec(), v1)));
    let v2 = store.put("a/b", b"two", Some(v1)).expect("update");
    assert_ne!(v1, v2, "an update must change the version");
    assert_eq!(value_of(store, "a/b"), Some((b"two".to_vec(), v2)));
}

/// `put(.., None)` on an existing key is a conflict.
pub fn create_of_an_existing_key_conflicts(store: &dyn SecretStore) {
    let v1 = store.put("k", b"first", None).expect("create");
    expect_kind(
        store.put("k", b"second", None),
        ErrorKind::Conflict,
        "second create",
    );
    assert_eq!(value_of(store, "k"), Some((b"first".to_vec(), v1)));
}

/// A write naming an old version, or naming a version for a missing key, is
/// a conflict and leaves the record as it was.
pub fn stale_version_conflicts_and_changes_nothing(store: &dyn SecretStore) {
    let v1 = store.put("k", b"1", None).expect("create");
    let v2 = store.put("k", b"2", Some(v1)).expect("update");
    expect_kind(
        store.put("k", b"stale", Some(v1)),
        ErrorKind::Conflict,
        "stale put",
    );
    assert_eq!(value_of(store, "k"), Some((b"2".to_vec(), v2)));
    expect_kind(
        store.put("missing", b"x", Some(v2)),
        ErrorKind::Conflict,
        "update of a missing key",
    );
    assert_eq!(value_of(store, "missing"), None);
}

/// `delete` with a stale version conflicts; with the current one it removes.
pub fn delete_needs_the_current_version(store: &dyn SecretStore) {
    let v1 = store.put("d", b"1", None).expect("create");
    let v2 = store.put("d", b"2", Some(v1)).expect("update");
    expect_kind(store.delete("d", v1), ErrorKind::Conflict, "stale delete");
    assert_eq!(value_of(store, "d"), Some((b"2".to_vec(), v2)));
    store.delete("d", v2).expect("delete");
    assert_eq!(value_of(store, "d"), None);
    assert!(store.list("").expect("list").is_empty());
}

/// `delete` of a key that does not exist is `NotFound`.
pub fn delete_of_a_missing_key_is_not_found(store: &dyn SecretStore) {
    expect_kind(
        store.delete("ghost", 1),
        ErrorKind::NotFound,
        "delete of a missing key",
    );
}

/// After delete and re-create, no version of the old incarnation matches.
pub fn recreated_key_never_reuses_a_version(store: &dyn SecretStore) {
    let mut old = Vec::new();
    let mut v = store.put("r", b"0", None).expect("create");
    old.push(v);
    for i in 1..4u8 {
        v = store.put("r", &[i], Some(v)).expect("update");
        old.push(v);
    }
    store.delete("r", v).expect("delete");
    let fresh = store.put("r", b"new", None).expect("re-create");
    assert!(
        !old.contains(&fresh),
        "version {fresh} was used before the delete: {old:?}"
    );
    for stale in old {
        expect_kind(
            store.put("r", b"x", Some(stale)),
            ErrorKind::Conflict,
            "stale version after re-create",
        );
    }
}

/// `list` returns exactly the keys with the prefix, sorted.
pub fn list_filters_by_prefix_in_order(store: &dyn SecretStore) {
    for key in [
        "devices/b",
        "devices/a",
        "devices2/x",
        "certs/1",
        "devices/a/sub",
    ] {
        store.put(key, key.as_bytes(), None).expect(key);
    }
    assert_eq!(
        store.list("devices/").expect("list"),
        vec!["devices/a", "devices/a/sub", "devices/b"]
    );
    assert_eq!(
        store.list("devices").expect("list"),
        vec!["devices/a", "devices/a/sub", "devices/b", "devices2/x"]
    );
    assert_eq!(store.list("").expect("list all").len(), 5);
    assert!(store.list("nothing/").expect("empty list").is_empty());
}

/// A 1 MiB value with every byte value survives the round trip.
pub fn one_mebibyte_values_round_trip(store: &dyn SecretStore) {
    let value: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let v = store.put("big", &value, None).expect("put 1 MiB");
    let got = value_of(store, "big").expect("present");
    assert_eq!(got.1, v);
    assert!(got.0 == value, "1 MiB value came back different");
}

/// An empty value is a value, not an absence.
pub fn empty_values_round_trip(store: &dyn SecretStore) {
    let v = store.put("empty", b"", None).expect("put empty");
    assert_eq!(value_of(store, "empty"), Some((Vec::new(), v)));
}

/// Keys with slashes, dots inside names, spaces and non-ASCII work and stay
/// distinct.
pub fn odd_keys_work(store: &dyn SecretStore) {
    let keys = [
        "a/b/c/d/e",
        "ключ/🔑",
        "dots..inside/.hidden",
        "with space",
        "UPPER",
        "upper",
        "%2F",
        "a%2Fb",
        "a/b%2Fc",
    ];
    for key in keys {
        store
            .put(key, key.as_bytes(), None)
            .unwrap_or_else(|e| panic!("put {key:?}: {e}"));
    }
    for key in keys {
        assert_eq!(
            value_of(store, key).map(|v| v.0),
            Some(key.as_bytes().to_vec()),
            "{key:?}"
        );
    }
    let mut listed = store.list("").expect("list");
    listed.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

/// Empty keys, `.`/`..` segments and empty segments are refused as
/// `Invalid` by every operation, and nothing is written.
pub fn invalid_keys_are_refused_and_nothing_is_written(store: &dyn SecretStore) {
    for key in [
        "",
        "..",
        "../escape",
        "a/../../b",
        "./a",
        "a//b",
        "/abs",
        "nul\0byte",
    ] {
        expect_kind(
            store.put(key, b"x", None),
            ErrorKind::Invalid,
            &format!("put {key:?}"),
        );
        expect_kind(store.get(key), ErrorKind::Invalid, &format!("get {key:?}"));
        expect_kind(
            store.delete(key, 1),
            ErrorKind::Invalid,
            &format!("delete {key:?}"),
        );
    }
    expect_kind(store.list("../"), ErrorKind::Invalid, "list \"../\"");
    assert!(
        store.list("").expect("list").is_empty(),
        "an invalid key was written"
    );
}

/// Eight threads increment one counter with compare-and-swap, retrying on
/// conflict; the final count is exact.
pub fn eight_threads_of_cas_increments_lose_no_update(store: &dyn SecretStore) {
    const THREADS: u64 = 8;
    const EACH: u64 = 25;
    store
        .put("counter", &0u64.to_le_bytes(), None)
        .expect("create counter");
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..EACH {
                    loop {
                        let current = store.get("counter").expect("get").expect("present");
                        let n = u64::from_le_bytes(
                            current.value.as_slice().try_into().expect("8 bytes"),
                        );
                        match store.put("counter", &(n + 1).to_le_bytes(), Some(current.version)) {
                            Ok(_) => break,
                            Err(e) if e.kind() == ErrorKind::Conflict => continue,
                            Err(e) => panic!("increment: {e}"),
                        }
                    }
                }
            });
        }
    });
    let (value, _) = value_of(store, "counter").expect("present");
    assert_eq!(
        u64::from_le_bytes(value.try_into().unwrap()),
        THREADS * EACH
    );
}

/// `quarantine` (optional) either answers `Unsupported` and changes
/// nothing, or moves the record out: the key is then absent, not listed,
/// and can be created again; a missing key is `NotFound`.
pub fn quarantine_removes_the_key_or_is_unsupported(store: &dyn SecretStore) {
    store.put("q/bad", b"x", None).expect("create");
    store.put("q/good", b"y", None).expect("create");
    match store.quarantine("q/bad") {
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            assert_eq!(value_of(store, "q/bad").map(|v| v.0), Some(b"x".to_vec()));
            return;
        }
        Err(e) => panic!("quarantine: {e}"),
        Ok(place) => assert!(!place.is_empty(), "quarantine says where the record went"),
    }
    assert_eq!(
        value_of(store, "q/bad"),
        None,
        "a quarantined key is absent"
    );
    assert_eq!(store.list("q/").expect("list"), ["q/good"]);
    store
        .put("q/bad", b"new", None)
        .expect("re-create after quarantine");
    expect_kind(
        store.quarantine("q/missing"),
        ErrorKind::NotFound,
        "quarantine of a missing key",
    );
}

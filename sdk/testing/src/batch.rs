//! The BatchStore conformance cases. Each takes a fresh, empty store with
//! the batch capability and panics with a message naming what it expected.
//!
//! Every refused batch is checked twice: for the error (its kind, and the
//! key it names), and for the store, which must be exactly as before
//! (same keys, same values, same versions).

use keygate_sdk::{BatchOp, BatchStore, ErrorKind, PluginError, SecretStore, Version};

type Snapshot = Vec<(String, Vec<u8>, Version)>;

/// Every record of the store, in key order.
fn snapshot(store: &dyn SecretStore) -> Snapshot {
    store
        .list("")
        .expect("list")
        .into_iter()
        .map(|key| {
            let v = store
                .get(&key)
                .unwrap_or_else(|e| panic!("get {key:?}: {e}"))
                .unwrap_or_else(|| panic!("{key:?} is listed but absent"));
            (key, v.value, v.version)
        })
        .collect()
}

fn value_of(store: &dyn SecretStore, key: &str) -> Option<(Vec<u8>, Version)> {
    store
        .get(key)
        .unwrap_or_else(|e| panic!("get {key:?}: {e}"))
        .map(|v| (v.value, v.version))
}

fn put(key: &str, value: &[u8], expected: Option<Version>) -> BatchOp {
    BatchOp::Put {
        key: key.to_owned(),
        value: value.to_vec(),
        expected,
    }
}

fn delete(key: &str, expected: Version) -> BatchOp {
    BatchOp::Delete {
        key: key.to_owned(),
        expected,
    }
}

/// Applies `ops`, expects an error of `kind` whose message names `key`
/// (as it is or quoted), and checks the store is exactly as it was.
fn expect_refused(store: &dyn BatchStore, ops: &[BatchOp], kind: ErrorKind, key: &str, what: &str) {
    let before = snapshot(store);
    let err = match store.apply_batch(ops) {
        Err(e) => e,
        Ok(versions) => panic!("{what}: expected a {kind} error, got Ok({versions:?}) for {ops:?}"),
    };
    assert_eq!(err.kind(), kind, "{what}: wrong error kind in {err}");
    // validate_key says "empty key" without quoting the nothing.
    let named = key.is_empty()
        || err.message().contains(key)
        || err.message().contains(&format!("{key:?}"));
    assert!(named, "{what}: the error does not name key {key:?}: {err}");
    assert_eq!(
        snapshot(store),
        before,
        "{what}: a refused batch changed the store"
    );
}

/// Three records `p/a`, `p/b`, `p/c` (values `a`, `b`, `c`), with their
/// versions.
fn three_records(store: &dyn BatchStore, p: &str) -> [Version; 3] {
    ["a", "b", "c"].map(|k| {
        store
            .put(&format!("{p}/{k}"), k.as_bytes(), None)
            .unwrap_or_else(|e| panic!("create {p}/{k}: {e}"))
    })
}

/// A batch of creates, updates and deletes applies whole: one result per
/// op in order (the new version of each put, `None` for each delete), and
/// `get` reads back exactly those values and versions.
pub fn puts_and_deletes_round_trip_with_their_versions(store: &dyn BatchStore) {
    let [va, vb, vc] = three_records(store, "r");
    let ops = [
        put("r/new", b"created", None),
        put("r/a", b"updated", Some(va)),
        delete("r/b", vb),
        put("r/empty", b"", None),
        put("r/c", b"c2", Some(vc)),
    ];
    let versions = store.apply_batch(&ops).expect("batch");
    assert_eq!(versions.len(), ops.len(), "one result per op: {versions:?}");
    assert_eq!(versions[2], None, "a delete's result is None");
    let new = [0, 1, 3, 4].map(|i| {
        versions[i].unwrap_or_else(|| panic!("op {i} is a put: its result is its version"))
    });
    for v in new {
        assert_ne!(v, 0, "versions are never zero");
        assert!(
            ![va, vb, vc].contains(&v),
            "version {v} was already used: {versions:?}"
        );
    }
    assert_ne!(new[1], va, "an update changes the version");
    assert_eq!(
        value_of(store, "r/new"),
        Some((b"created".to_vec(), new[0]))
    );
    assert_eq!(value_of(store, "r/a"), Some((b"updated".to_vec(), new[1])));
    assert_eq!(value_of(store, "r/b"), None);
    assert_eq!(value_of(store, "r/empty"), Some((Vec::new(), new[2])));
    assert_eq!(value_of(store, "r/c"), Some((b"c2".to_vec(), new[3])));
    assert_eq!(
        store.list("r/").expect("list"),
        ["r/a", "r/c", "r/empty", "r/new"]
    );
    // The returned versions are the current ones: single writes accept them.
    store
        .put("r/a", b"again", Some(new[1]))
        .expect("put with the batch's version");
    store
        .delete("r/new", new[0])
        .expect("delete with the batch's version");
}

/// One op whose version does not match (a stale update, a create of an
/// existing key, an update of a missing key, a stale delete), first, in
/// the middle or last, refuses the whole batch as `Conflict` naming that
/// key, and nothing is written.
pub fn one_stale_version_anywhere_conflicts_and_writes_nothing(store: &dyn BatchStore) {
    for (n, position) in ["first", "middle", "last"].into_iter().enumerate() {
        for (m, bad) in [
            "stale update",
            "create of an existing key",
            "update of a missing key",
            "stale delete",
        ]
        .into_iter()
        .enumerate()
        {
            let p = format!("c{n}{m}");
            let [va, vb, vc] = three_records(store, &p);
            // Move `b` on, so `vb` is stale.
            let vb2 = store
                .put(&format!("{p}/b"), b"b2", Some(vb))
                .expect("update b");
            let (bad_key, bad_op) = match bad {
                "stale update" => (format!("{p}/b"), put(&format!("{p}/b"), b"x", Some(vb))),
                "create of an existing key" => {
                    (format!("{p}/b"), put(&format!("{p}/b"), b"x", None))
                }
                "update of a missing key" => (
                    format!("{p}/missing"),
                    put(&format!("{p}/missing"), b"x", Some(vb2)),
                ),
                _ => (format!("{p}/b"), delete(&format!("{p}/b"), vb)),
            };
            // The other ops would all succeed on their own.
            let mut ops = vec![
                put(&format!("{p}/a"), b"a2", Some(va)),
                put(&format!("{p}/new"), b"n", None),
                delete(&format!("{p}/c"), vc),
            ];
            ops.insert(n * ops.len() / 2, bad_op);
            expect_refused(
                store,
                &ops,
                ErrorKind::Conflict,
                &bad_key,
                &format!("{bad} {position}"),
            );
            assert_eq!(value_of(store, &format!("{p}/new")), None);
        }
    }
}

/// An invalid key (first, in the middle or last) or a key named twice in
/// one batch refuses the whole batch as `Invalid`, and nothing is written.
pub fn an_invalid_or_repeated_key_is_invalid_and_writes_nothing(store: &dyn BatchStore) {
    let [va, _, vc] = three_records(store, "i");
    for (n, position) in ["first", "middle", "last"].into_iter().enumerate() {
        for bad in ["", "../escape", "a//b", "/abs", "nul\0byte"] {
            let mut ops = vec![
                put("i/a", b"a2", Some(va)),
                put("i/new", b"n", None),
                delete("i/c", vc),
            ];
            ops.insert(n * ops.len() / 2, put(bad, b"x", None));
            expect_refused(
                store,
                &ops,
                ErrorKind::Invalid,
                bad,
                &format!("invalid key {bad:?} {position}"),
            );
            let mut ops = vec![put("i/new", b"n", None), put("i/a", b"a2", Some(va))];
            ops.insert(n, delete(bad, 1));
            expect_refused(
                store,
                &ops,
                ErrorKind::Invalid,
                bad,
                &format!("delete of invalid key {bad:?} {position}"),
            );
        }
    }
    for (what, ops) in [
        (
            "two puts",
            vec![put("i/new", b"1", None), put("i/new", b"2", None)],
        ),
        (
            "two updates",
            vec![put("i/a", b"1", Some(va)), put("i/a", b"2", Some(va))],
        ),
        (
            "a put and a delete",
            vec![
                put("i/new", b"n", None),
                put("i/a", b"1", Some(va)),
                delete("i/a", va),
            ],
        ),
        (
            "two deletes",
            vec![
                delete("i/c", vc),
                put("i/new", b"n", None),
                delete("i/c", vc),
            ],
        ),
    ] {
        let key = ops.last().expect("ops").key().to_owned();
        expect_refused(
            store,
            &ops,
            ErrorKind::Invalid,
            &key,
            &format!("same key in {what}"),
        );
    }
    assert_eq!(value_of(store, "i/new"), None);
}

/// An empty batch is `Ok(vec![])` and changes nothing.
pub fn an_empty_batch_is_ok_and_writes_nothing(store: &dyn BatchStore) {
    store.put("e/k", b"v", None).expect("create");
    let before = snapshot(store);
    assert_eq!(store.apply_batch(&[]).expect("empty batch"), vec![]);
    assert_eq!(snapshot(store), before, "an empty batch changed the store");
}

/// A delete of a key that does not exist is `NotFound` naming the key, as
/// [`SecretStore::delete`] answers it, and the batch writes nothing.
pub fn a_delete_of_a_missing_key_is_not_found_and_writes_nothing(store: &dyn BatchStore) {
    let v = store.put("m/here", b"1", None).expect("create");
    for (n, position) in ["first", "middle", "last"].into_iter().enumerate() {
        let mut ops = vec![put("m/new", b"n", None), put("m/here", b"2", Some(v))];
        ops.insert(n, delete("m/ghost", 1));
        expect_refused(
            store,
            &ops,
            ErrorKind::NotFound,
            "m/ghost",
            &format!("delete of a missing key {position}"),
        );
    }
}

/// Versions handed out by batches never repeat a version an earlier life
/// of the key had, whether that life was written by batches or by single
/// puts; every old version then conflicts.
pub fn batch_versions_never_reuse_an_earlier_life_of_a_key(store: &dyn BatchStore) {
    let mut old = Vec::new();
    let created = store
        .apply_batch(&[put("v/k", b"0", None)])
        .expect("create by batch");
    let mut v = created[0].expect("a put's version");
    old.push(v);
    for i in 1..4u8 {
        v = store
            .apply_batch(&[put("v/k", &[i], Some(v))])
            .expect("update by batch")[0]
            .expect("a put's version");
        old.push(v);
    }
    v = store.put("v/k", b"single", Some(v)).expect("single update");
    old.push(v);
    store
        .apply_batch(&[delete("v/k", v)])
        .expect("delete by batch");
    let fresh = store
        .apply_batch(&[put("v/k", b"new", None)])
        .expect("re-create by batch")[0]
        .expect("a put's version");
    assert!(
        !old.contains(&fresh),
        "version {fresh} was used before the delete: {old:?}"
    );
    for stale in old {
        expect_refused(
            store,
            &[put("v/k", b"x", Some(stale))],
            ErrorKind::Conflict,
            "v/k",
            "stale version after re-create",
        );
    }
    // And the other way round: a single re-create after a batch's life.
    store.delete("v/k", fresh).expect("delete");
    let again = store.put("v/k", b"again", None).expect("single re-create");
    assert_ne!(again, fresh, "a single re-create reused a batch's version");
}

/// Runs one compare-and-swap step until it succeeds, retrying on
/// `Conflict`. A conflict means another writer won in between, so the
/// number of retries is bounded by the other threads' writes: far more
/// than that means the store refuses writes it should accept.
fn until_it_sticks(what: &str, mut attempt: impl FnMut() -> Result<(), PluginError>) {
    const MAX_CONFLICTS: usize = 10_000;
    for _ in 0..MAX_CONFLICTS {
        match attempt() {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::Conflict => continue,
            Err(e) => panic!("{what}: {e}"),
        }
    }
    panic!(
        "{what}: still conflicting after {MAX_CONFLICTS} attempts: the store refuses current versions"
    );
}

fn read_u64(store: &dyn SecretStore, key: &str) -> (u64, Version) {
    let v = store
        .get(key)
        .unwrap_or_else(|e| panic!("get {key:?}: {e}"))
        .unwrap_or_else(|| panic!("{key:?} is absent"));
    let n = u64::from_le_bytes(v.value.as_slice().try_into().expect("8 bytes"));
    (n, v.version)
}

/// Eight threads each increment two counters together in one batch with
/// compare-and-swap on both, retrying on conflict: no update is lost and
/// the two counters end equal, so no batch was half applied or interleaved
/// with another.
pub fn eight_threads_of_cas_batches_lose_no_update_and_keep_keys_equal(store: &dyn BatchStore) {
    const THREADS: u64 = 8;
    const EACH: u64 = 25;
    store
        .apply_batch(&[
            put("t/a", &0u64.to_le_bytes(), None),
            put("t/b", &0u64.to_le_bytes(), None),
        ])
        .expect("create counters");
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..EACH {
                    until_it_sticks("batch increment", || {
                        let (a, va) = read_u64(store, "t/a");
                        let (b, vb) = read_u64(store, "t/b");
                        let ops = [
                            put("t/a", &(a + 1).to_le_bytes(), Some(va)),
                            put("t/b", &(b + 1).to_le_bytes(), Some(vb)),
                        ];
                        store.apply_batch(&ops).map(drop)
                    });
                }
            });
        }
    });
    assert_eq!(read_u64(store, "t/a").0, THREADS * EACH, "t/a lost updates");
    assert_eq!(read_u64(store, "t/b").0, THREADS * EACH, "t/b lost updates");
}

/// Four threads increment a counter with single compare-and-swap puts
/// while four others increment it in batches (together with a per-thread
/// tally): the count is exact, so a batch's comparisons and writes are one
/// step against single writers too.
pub fn batches_and_single_puts_interleaved_keep_cas_exact(store: &dyn BatchStore) {
    const EACH: u64 = 25;
    store
        .put("s/n", &0u64.to_le_bytes(), None)
        .expect("create counter");
    let tallies: Vec<String> = (0..4).map(|t| format!("s/tally{t}")).collect();
    for key in &tallies {
        store
            .put(key, &0u64.to_le_bytes(), None)
            .expect("create tally");
    }
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..EACH {
                    until_it_sticks("single increment", || {
                        let (n, v) = read_u64(store, "s/n");
                        store.put("s/n", &(n + 1).to_le_bytes(), Some(v)).map(drop)
                    });
                }
            });
        }
        for tally in &tallies {
            s.spawn(move || {
                for _ in 0..EACH {
                    until_it_sticks("batch increment", || {
                        let (n, v) = read_u64(store, "s/n");
                        let (t, vt) = read_u64(store, tally);
                        let ops = [
                            put("s/n", &(n + 1).to_le_bytes(), Some(v)),
                            put(tally, &(t + 1).to_le_bytes(), Some(vt)),
                        ];
                        store.apply_batch(&ops).map(drop)
                    });
                }
            });
        }
    });
    assert_eq!(read_u64(store, "s/n").0, 8 * EACH, "s/n lost updates");
    for tally in &tallies {
        assert_eq!(read_u64(store, tally).0, EACH, "{tally}");
    }
}

//! `apply_batch` against the filesystem store itself: all or nothing (a
//! refused batch leaves every file of the root as it was, the journal
//! included), one result per op, one journal frame per batch, and what it
//! wrote is there after reopening.

use keygate_sdk::{BatchOp, BatchStore, ErrorKind, SecretStore, Version};
use keygate_store_fs::FsStore;

mod common;

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

fn journal_len(store: &FsStore) -> u64 {
    std::fs::metadata(store.root().join(".journal"))
        .expect("the journal exists")
        .len()
}

/// Applies `ops`, expecting an error of `kind` naming `key`, and checks
/// that no file under the root changed (records, journal, lock file).
fn refused(store: &FsStore, ops: &[BatchOp], kind: ErrorKind, key: &str) {
    let before = common::snapshot(store.root());
    let err = store
        .apply_batch(ops)
        .expect_err(&format!("{ops:?} should be refused"));
    assert_eq!(err.kind(), kind, "{err}");
    assert!(
        err.message().contains(&format!("{key:?}")),
        "{err} does not name {key:?}"
    );
    assert_eq!(
        common::snapshot(store.root()),
        before,
        "a refused batch changed the root"
    );
}

#[test]
fn a_batch_applies_whole_with_one_result_per_op_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::fresh_in(dir.path());
    let va = store.put("d/a", b"a", None).unwrap();
    let vb = store.put("d/b", b"b", None).unwrap();
    let ops = [
        put("d/new", b"created", None),
        put("d/a", b"updated", Some(va)),
        delete("d/b", vb),
        put("e/deeper/folder", b"", None),
    ];
    let versions = store.apply_batch(&ops).unwrap();
    assert_eq!(versions.len(), 4);
    // Updated and deleted records leave nothing among the records: the old
    // files are spares, to be filled by later writes.
    let files = common::snapshot(store.root()).into_keys();
    let (spares, temps): (Vec<_>, Vec<_>) = files
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .partition(|p| p.starts_with(".spare"));
    assert!(temps.is_empty(), "{temps:?}");
    assert!(spares.len() <= 2, "{spares:?}");
    assert_eq!(versions[1], Some(va + 1), "an update adds one");
    assert_eq!(versions[2], None, "a delete has no version");
    assert!(versions[0].is_some_and(|v| v != 0) && versions[3].is_some_and(|v| v != 0));
    drop(store);
    let store = common::fresh_in(dir.path());
    let got = |key: &str| store.get(key).unwrap().map(|v| (v.value, Some(v.version)));
    assert_eq!(got("d/new"), Some((b"created".to_vec(), versions[0])));
    assert_eq!(got("d/a"), Some((b"updated".to_vec(), versions[1])));
    assert_eq!(got("d/b"), None);
    assert_eq!(got("e/deeper/folder"), Some((Vec::new(), versions[3])));
    assert_eq!(store.list("").unwrap(), ["d/a", "d/new", "e/deeper/folder"]);
    assert_eq!(store.apply_batch(&[]).unwrap(), vec![]);
}

#[test]
fn a_conflict_anywhere_writes_nothing_at_all() {
    let (_dir, store) = common::fresh();
    let va = store.put("k/a", b"a", None).unwrap();
    let vb = store.put("k/b", b"b", None).unwrap();
    let vc = store.put("k/c", b"c", None).unwrap();
    let stale = [
        ("k/b", put("k/b", b"x", Some(vb + 5))),
        ("k/b", put("k/b", b"x", None)),
        ("k/missing", put("k/missing", b"x", Some(vb))),
        ("k/b", delete("k/b", vb - 1)),
    ];
    for (bad_key, bad) in stale {
        for position in 0..3 {
            let mut ops = vec![put("k/a", b"a2", Some(va)), delete("k/c", vc)];
            ops.insert(position, bad.clone());
            ops.push(put("k/new", b"n", None));
            refused(&store, &ops, ErrorKind::Conflict, bad_key);
        }
    }
    // A delete of a missing key is NotFound, as `delete` says it.
    refused(
        &store,
        &[put("k/a", b"a2", Some(va)), delete("k/ghost", 1)],
        ErrorKind::NotFound,
        "k/ghost",
    );
    assert_eq!(store.get("k/a").unwrap().unwrap().version, va);
    assert_eq!(store.get("k/new").unwrap(), None);
}

#[test]
fn an_invalid_or_repeated_key_writes_nothing_at_all() {
    let (_dir, store) = common::fresh();
    let va = store.put("k/a", b"a", None).unwrap();
    for bad in ["../up", "a//b", "/abs"] {
        refused(
            &store,
            &[put("k/new", b"n", None), put(bad, b"x", None)],
            ErrorKind::Invalid,
            bad,
        );
    }
    let long = "s".repeat(252);
    refused(
        &store,
        &[put("k/new", b"n", None), delete(&long, 1)],
        ErrorKind::Invalid,
        &long,
    );
    refused(
        &store,
        &[
            put("k/a", b"1", Some(va)),
            put("k/new", b"n", None),
            delete("k/a", va),
        ],
        ErrorKind::Invalid,
        "k/a",
    );
}

#[test]
fn a_damaged_record_in_a_batch_refuses_it_and_is_left_as_found() {
    let (_dir, store) = common::fresh();
    let v = store.put("k/damaged", b"x", None).unwrap();
    let file = store.record_file("k/damaged").unwrap();
    std::fs::write(&file, b"not a record").unwrap();
    let before = common::snapshot(store.root());
    let err = store
        .apply_batch(&[put("k/new", b"n", None), put("k/damaged", b"y", Some(v))])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(err.message().starts_with("record \"k/damaged\""), "{err}");
    assert_eq!(common::snapshot(store.root()), before);
}

#[test]
fn an_over_large_batch_is_invalid_and_writes_nothing() {
    let (_dir, store) = common::fresh();
    let before = common::snapshot(store.root());
    // Zeroed allocations are lazy: nothing this size is touched, since the
    // size is checked before anything is sealed.
    let half = vec![0u8; 128 << 20];
    let err = store
        .apply_batch(&[put("big/a", &half, None), put("big/b", &half, None)])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.message().contains("268435456"), "{err}");
    let err = store
        .put("big/one", &vec![0u8; 256 << 20], None)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert_eq!(common::snapshot(store.root()), before);
}

#[test]
fn a_batch_is_one_journal_frame() {
    let (_dir, store) = common::fresh();
    let start = journal_len(&store);
    assert_eq!(start, 57, "a new journal is its header");
    let ops: Vec<BatchOp> = (0..50)
        .map(|i| put(&format!("many/{i:02}"), &[i as u8; 100], None))
        .collect();
    store.apply_batch(&ops).unwrap();
    // Frame overhead, op count, then per op: kind, key length, key, record
    // length, sealed record (41 bytes besides its value).
    let per_op = 1 + 2 + "many/00".len() + 4 + 41 + 100;
    assert_eq!(journal_len(&store), start + 53 + 4 + 50 * per_op as u64);
    let v = store.get("many/07").unwrap().unwrap().version;
    let before = journal_len(&store);
    store.delete("many/07", v).unwrap();
    assert_eq!(journal_len(&store), before + 53 + 4 + 1 + 2 + 7);
}

/// Inode numbers of the record file of `key`.
fn inode(store: &FsStore, key: &str) -> u64 {
    std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(store.record_file(key).unwrap()).unwrap(),
    )
}

#[test]
fn writes_fill_spare_files_instead_of_creating_and_freeing_them() {
    let (_dir, store) = common::fresh();
    let mut v = store.put("k/a", b"0", None).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 1..50u32 {
        v = store.put("k/a", &i.to_le_bytes(), Some(v)).unwrap();
        seen.insert(inode(&store, "k/a"));
    }
    // The record and one spare take turns.
    assert!(seen.len() <= 2, "{} inodes for one key", seen.len());
    // A delete makes a spare too, and a create fills it.
    let b = store.put("k/b", b"b", None).unwrap();
    let freed = inode(&store, "k/b");
    store.delete("k/b", b).unwrap();
    store.put("k/c", b"c", None).unwrap();
    let filled = inode(&store, "k/c");
    assert!(
        filled == freed || seen.contains(&filled),
        "k/c got a new inode {filled}"
    );
    assert_eq!(
        store.get("k/a").unwrap().unwrap().value,
        49u32.to_le_bytes()
    );
    assert_eq!(store.get("k/b").unwrap(), None);
}

#[test]
fn readers_without_the_lock_read_whole_records_while_a_writer_replaces_them() {
    let (_dir, store) = common::fresh();
    let store = std::sync::Arc::new(store);
    let mut v = store.put("r/x", &[0u8; 2048], None).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (store, stop) = (&store, &stop);
                s.spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let got = store.get("r/x").expect("never damaged").expect("present");
                        assert_eq!(got.value.len(), 2048);
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for i in 0..300u32 {
            let mut value = vec![0u8; 2048];
            value[..4].copy_from_slice(&i.to_le_bytes());
            v = store.put("r/x", &value, Some(v)).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
}

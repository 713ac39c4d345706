//! Damaged records: every way a record file can be wrong is refused with an
//! error that names the record, by every operation, and the damaged file is
//! left exactly as it was (nothing is overwritten or removed).

use std::path::Path;

use keygate_sdk::{ErrorKind, SecretStore, Version};
use keygate_store_fs::FsStore;

mod common;

const KEY: &str = "devices/x";
const VALUE: &[u8] = b"a device record worth protecting";

/// A store holding `KEY` and a bystander record; returns `KEY`'s version.
fn store_with_record() -> (tempfile::TempDir, FsStore, Version) {
    let (dir, store) = common::fresh();
    let v = store.put(KEY, VALUE, None).unwrap();
    store.put("devices/y", b"bystander", None).unwrap();
    (dir, store, v)
}

fn record(store: &FsStore, key: &str) -> std::path::PathBuf {
    store.record_file(key).unwrap()
}

fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    change(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

/// `get`, `put` (create and update) and `delete` of `key` all fail with an
/// `Internal` error whose message starts `record "<key>": <reason>` and
/// names the file; nothing on disk changes; other records still read.
fn assert_refused_everywhere(
    dir: &Path,
    store: &FsStore,
    key: &str,
    version: Version,
    reason: &str,
) {
    let before = common::snapshot(dir);
    let file = record(store, key);
    let expected_start = format!("record {key:?}: {reason}");
    let check = |what: &str, err: keygate_sdk::PluginError| {
        assert_eq!(err.kind(), ErrorKind::Internal, "{what}: {err}");
        assert!(
            err.message().starts_with(&expected_start),
            "{what}: expected {expected_start:?}, got {:?}",
            err.message()
        );
        assert!(
            err.message().contains(&file.display().to_string()),
            "{what}: the file is not named in {err}"
        );
    };
    check("get", store.get(key).unwrap_err());
    check(
        "create over it",
        store.put(key, b"replacement", None).unwrap_err(),
    );
    check(
        "update of it",
        store.put(key, b"replacement", Some(version)).unwrap_err(),
    );
    check("delete", store.delete(key, version).unwrap_err());
    assert_eq!(
        common::snapshot(dir),
        before,
        "the damaged file or its neighbours changed"
    );
    assert_eq!(
        store.get("devices/y").unwrap().unwrap().value,
        b"bystander",
        "other records are unaffected"
    );
    assert!(store.list("").unwrap().contains(&key.to_owned()));
}

#[test]
fn a_flipped_ciphertext_byte_is_refused_naming_the_record() {
    let (dir, store, v) = store_with_record();
    rewrite(&record(&store, KEY), |b| b[25 + 3] ^= 0x20);
    assert_refused_everywhere(
        dir.path(),
        &store,
        KEY,
        v,
        "authentication failed (tampered, moved, or wrong key)",
    );
}

#[test]
fn a_flipped_tag_byte_is_refused_naming_the_record() {
    let (dir, store, v) = store_with_record();
    rewrite(&record(&store, KEY), |b| {
        let last = b.len() - 1;
        b[last] ^= 0x01;
    });
    assert_refused_everywhere(dir.path(), &store, KEY, v, "authentication failed");
}

#[test]
fn a_flipped_version_byte_is_refused_naming_the_record() {
    let (dir, store, v) = store_with_record();
    // Bytes 5..13 hold the version: an attacker bumping it to win or block
    // a compare-and-swap gets an authentication failure instead.
    rewrite(&record(&store, KEY), |b| b[12] ^= 0x01);
    assert_refused_everywhere(dir.path(), &store, KEY, v, "authentication failed");
    assert_refused_everywhere(dir.path(), &store, KEY, v ^ 1, "authentication failed");
}

#[test]
fn a_flipped_nonce_byte_is_refused_naming_the_record() {
    let (dir, store, v) = store_with_record();
    rewrite(&record(&store, KEY), |b| b[13] ^= 0x80);
    assert_refused_everywhere(dir.path(), &store, KEY, v, "authentication failed");
}

#[test]
fn a_truncated_file_is_refused_naming_the_record() {
    let (dir, store, v) = store_with_record();
    let path = record(&store, KEY);
    rewrite(&path, |b| b.truncate(20));
    assert_refused_everywhere(dir.path(), &store, KEY, v, "truncated file (20 bytes;");
    rewrite(&path, |b| b.clear());
    assert_refused_everywhere(dir.path(), &store, KEY, v, "truncated file (0 bytes;");
}

#[test]
fn a_file_cut_short_inside_the_ciphertext_fails_authentication() {
    let (dir, store, v) = store_with_record();
    rewrite(&record(&store, KEY), |b| {
        b.pop();
    });
    assert_refused_everywhere(dir.path(), &store, KEY, v, "authentication failed");
}

#[test]
fn a_file_copied_over_another_keys_file_is_refused_naming_the_record() {
    let (dir, store, _) = store_with_record();
    // devices/y's sealed file moved to devices/x's name: it is a perfectly
    // good record, for another key.
    let vy = store.get("devices/y").unwrap().unwrap().version;
    std::fs::copy(record(&store, "devices/y"), record(&store, KEY)).unwrap();
    assert_refused_everywhere(dir.path(), &store, KEY, vy, "authentication failed");
    // The same for a key in another folder.
    let vz = store.put("certs/z", b"z", None).unwrap();
    std::fs::copy(record(&store, "certs/z"), record(&store, KEY)).unwrap();
    assert_refused_everywhere(dir.path(), &store, KEY, vz, "authentication failed");
}

#[test]
fn a_plaintext_file_without_header_is_refused_naming_the_record() {
    let (dir, store, v) = store_with_record();
    std::fs::write(record(&store, KEY), VALUE).unwrap();
    assert_refused_everywhere(dir.path(), &store, KEY, v, "no keygate header");
    // Also a plaintext file for a key that was never written.
    std::fs::write(
        store.root().join("devices/planted.rec"),
        b"{\"admin\":true}",
    )
    .unwrap();
    assert_refused_everywhere(
        dir.path(),
        &store,
        "devices/planted",
        1,
        "no keygate header",
    );
}

#[test]
fn an_unknown_format_version_is_refused_naming_the_record() {
    let (dir, store, v) = store_with_record();
    rewrite(&record(&store, KEY), |b| b[4] = 2);
    assert_refused_everywhere(dir.path(), &store, KEY, v, "unsupported format version 2");
}

#[test]
fn a_damaged_record_is_still_readable_after_restoring_it() {
    let (dir, store, v) = store_with_record();
    let path = record(&store, KEY);
    let good = std::fs::read(&path).unwrap();
    rewrite(&path, |b| b[30] ^= 0xFF);
    assert_refused_everywhere(dir.path(), &store, KEY, v, "authentication failed");
    std::fs::write(&path, &good).unwrap();
    let back = store.get(KEY).unwrap().unwrap();
    assert_eq!((back.value.as_slice(), back.version), (VALUE, v));
    // And removing the damaged file by hand makes the key absent.
    rewrite(&path, |b| b[30] ^= 0xFF);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(store.get(KEY).unwrap(), None);
    store.put(KEY, b"fresh", None).unwrap();
}

#[test]
fn quarantine_moves_a_damaged_file_aside_as_found_and_frees_its_key() {
    let (dir, store, _) = store_with_record();
    let file = record(&store, KEY);
    rewrite(&file, |b| {
        let last = b.len() - 1;
        b[last] ^= 1;
    });
    let damaged = std::fs::read(&file).unwrap();
    assert_eq!(store.get(KEY).unwrap_err().kind(), ErrorKind::Internal);

    let place = store
        .quarantine(KEY)
        .expect("a damaged record can be moved aside");
    let moved = Path::new(&place);
    assert!(
        moved.starts_with(dir.path().join("store/.quarantine")) && moved.exists(),
        "{place}"
    );
    assert_eq!(std::fs::read(moved).unwrap(), damaged, "moved as found");
    assert!(!file.exists());
    assert_eq!(store.get(KEY).unwrap(), None);
    assert_eq!(store.list("devices/").unwrap(), ["devices/y"]);
    assert_eq!(store.get("devices/y").unwrap().unwrap().value, b"bystander");
    store
        .put(KEY, b"fresh", None)
        .expect("the key is free again");
    assert_eq!(
        store.quarantine("devices/none").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

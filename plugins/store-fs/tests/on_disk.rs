//! What the store leaves on disk: records that survive a restart, private
//! modes, names that never leave the root, temp files that never count.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use keygate_sdk::{ErrorKind, SecretStore};

mod common;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn values_and_versions_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (v_a, v_b);
    {
        let store = common::open(dir.path(), "").unwrap();
        let v = store.put("devices/a", b"alpha", None).unwrap();
        v_a = store.put("devices/a", b"alpha2", Some(v)).unwrap();
        v_b = store.put("ca/root", &[0u8, 1, 2, 255], None).unwrap();
    }
    let store = common::open(dir.path(), "").unwrap();
    let a = store.get("devices/a").unwrap().expect("devices/a survives");
    assert_eq!((a.value.as_slice(), a.version), (&b"alpha2"[..], v_a));
    let b = store.get("ca/root").unwrap().expect("ca/root survives");
    assert_eq!((b.value, b.version), (vec![0u8, 1, 2, 255], v_b));
    assert_eq!(store.list("").unwrap(), vec!["ca/root", "devices/a"]);
    // Compare-and-swap carries on from the stored version.
    let err = store.put("devices/a", b"stale", Some(v_a - 1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    store.put("devices/a", b"alpha3", Some(v_a)).unwrap();
}

#[test]
fn files_are_0600_and_folders_0700() {
    let (dir, store) = common::fresh();
    store.put("a/b/c/deep", b"x", None).unwrap();
    store.put("top", b"y", None).unwrap();
    assert_eq!(mode(&dir.path().join("store.key")), 0o600, "key file");
    let root = store.root().to_path_buf();
    assert_eq!(mode(&root), 0o700, "root");
    let mut checked = 0;
    for (rel, contents) in common::snapshot(&root) {
        let path = root.join(&rel);
        let expected = if contents.is_some() { 0o600 } else { 0o700 };
        assert_eq!(mode(&path), expected, "{}", rel.display());
        checked += 1;
    }
    // .lock, .keycheck, .journal, .spare, a, a/b, a/b/c, deep.rec, top.rec
    // (the two creates used the spare folder's files: none is left)
    assert_eq!(checked, 9);
}

#[test]
fn an_existing_root_open_to_others_is_made_private() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lines = common::Lines::default();
    let ctx = keygate_sdk::PluginContext::new("filesystem", dir.path(), dir.path(), lines.clone());
    let _store =
        <keygate_store_fs::FsStore as keygate_sdk::StorePlugin>::from_config("", ctx).unwrap();
    assert_eq!(mode(&root), 0o700);
    assert!(
        lines.warnings().iter().any(|w| w.contains("now 0700")),
        "{:?}",
        lines.warnings()
    );
}

#[test]
fn keys_map_to_readable_nested_files() {
    let (_dir, store) = common::fresh();
    store.put("devices/ab.cd", b"x", None).unwrap();
    store
        .put(
            "devices",
            b"a record beside the folder of the same name",
            None,
        )
        .unwrap();
    let root = store.root();
    assert!(root.join("devices/ab%2Ecd.rec").is_file());
    assert!(root.join("devices.rec").is_file());
    assert_eq!(
        store.record_file("devices/ab.cd").unwrap(),
        root.join("devices/ab%2Ecd.rec")
    );
    assert_eq!(
        store.list("devices").unwrap(),
        vec!["devices", "devices/ab.cd"]
    );
}

#[test]
fn hostile_key_names_never_create_anything_outside_the_root() {
    let (dir, store) = common::fresh();
    let root = store.root().to_path_buf();
    let deep = vec!["x"; 300].join("/");
    let valid = [
        "..a",
        "a..",
        "...",
        "....",
        ".a/..b/...c",
        "%2E%2E",
        "%2E%2E/%2E%2E/escape",
        "..%2F..%2Fescape",
        "a%2F..%2F..%2Fb",
        "\\..\\..\\escape",
        "~/escape",
        "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p",
        deep.as_str(),
        ". /. .",
        "-rf",
        "*",
        "con/nul/aux",
    ];
    for key in valid {
        store
            .put(key, key.as_bytes(), None)
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
    }
    let invalid = [
        "../escape",
        "a/../../b",
        "/etc/passwd",
        "./a",
        "a/./b",
        "a//b",
        "..",
    ];
    for key in invalid {
        let err = store.put(key, b"x", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{key:?}");
    }
    // Everything in the state folder is the key file, the root, or inside it.
    for rel in common::snapshot(dir.path()).keys() {
        let path = dir.path().join(rel);
        assert!(
            path == dir.path().join("store.key") || path.starts_with(&root),
            "{} is outside the root",
            path.display()
        );
    }
    // Every name under the root is a dot-file of the store or an encoded
    // segment: [A-Za-z0-9_-] and %XX only, records with `.rec`.
    for rel in common::snapshot(&root).keys() {
        for part in rel.iter() {
            let part = part.to_str().unwrap();
            if part == ".lock" || part == ".keycheck" || part == ".journal" || part == ".spare" {
                continue;
            }
            if rel.starts_with(".spare") && part.starts_with(".tmp-") {
                continue;
            }
            let stem = part.strip_suffix(".rec").unwrap_or(part);
            assert!(
                !stem.is_empty()
                    && stem
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-%".contains(&b)),
                "unexpected name {part:?} in {}",
                rel.display()
            );
        }
    }
    let mut expected: Vec<String> = valid.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(store.list("").unwrap(), expected);
    for key in valid {
        assert_eq!(store.get(key).unwrap().unwrap().value, key.as_bytes());
    }
}

#[test]
fn segments_too_long_for_a_file_name_are_invalid_and_write_nothing() {
    let (_dir, store) = common::fresh();
    let before = common::snapshot(store.root());
    for key in [
        "k".repeat(252),
        format!("devices/{}", "é".repeat(42)), // 84 bytes, 252 encoded
        format!("{}/x", ".".repeat(84)),
    ] {
        let err = store.put(&key, b"x", None).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{key:?}: {err}");
        assert!(err.message().contains("251"), "{err}");
        assert_eq!(store.get(&key).unwrap_err().kind(), ErrorKind::Invalid);
        assert_eq!(
            store.delete(&key, 1).unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }
    assert_eq!(common::snapshot(store.root()), before);
    // The longest segment that fits works.
    let longest = "k".repeat(251);
    store.put(&longest, b"ok", None).unwrap();
    assert_eq!(store.list("").unwrap(), vec![longest]);
}

#[test]
fn stale_temp_files_are_ignored() {
    let (_dir, store) = common::fresh();
    let v = store.put("devices/a", b"real", None).unwrap();
    let root = store.root();
    // What a crash mid-write leaves: a temp file beside the record, either
    // half written or complete (a copy of a sealed record), and one in the
    // root.
    let sealed = std::fs::read(root.join("devices/a.rec")).unwrap();
    std::fs::write(root.join("devices/.tmp-00000000deadbeef"), &sealed).unwrap();
    std::fs::write(root.join("devices/.tmp-0000000000000001"), b"KGSR\x01half").unwrap();
    std::fs::write(root.join(".tmp-00000000cafebabe"), b"").unwrap();
    assert_eq!(store.list("").unwrap(), vec!["devices/a"]);
    assert_eq!(store.list("devices/").unwrap(), vec!["devices/a"]);
    assert_eq!(store.get("devices/a").unwrap().unwrap().value, b"real");
    let v2 = store.put("devices/a", b"newer", Some(v)).unwrap();
    store.put("devices/b", b"b", None).unwrap();
    assert_eq!(store.get("devices/a").unwrap().unwrap().version, v2);
    assert_eq!(store.list("").unwrap(), vec!["devices/a", "devices/b"]);
    // A restart does not trip over them either.
    drop(store);
    let store = common::open(_dir.path(), "").unwrap();
    assert_eq!(store.list("").unwrap(), vec!["devices/a", "devices/b"]);
}

#[test]
fn foreign_files_in_the_root_are_not_keys() {
    let (_dir, store) = common::fresh();
    store.put("a", b"x", None).unwrap();
    let root = store.root();
    std::fs::write(root.join("README.txt"), b"hello").unwrap();
    std::fs::write(root.join("%61.rec"), b"non-canonical name").unwrap();
    std::fs::write(root.join("b%2fc.rec"), b"lower-case hex").unwrap();
    std::fs::create_dir(root.join("dir.with.dots")).unwrap();
    // A folder name longer than any segment the store writes (252 bytes).
    let long = root.join("k".repeat(252));
    std::fs::create_dir(&long).unwrap();
    std::fs::write(long.join("x.rec"), b"under an over-long folder").unwrap();
    assert_eq!(store.list("").unwrap(), vec!["a"]);
}

#[test]
fn list_walks_only_the_prefix_subtree() {
    let (_dir, store) = common::fresh();
    for key in ["devices/a", "devices/b/c", "devices2/x", "certs/1", "dev"] {
        store.put(key, b"v", None).unwrap();
    }
    // An unreadable sibling folder fails a walk that enters it, so a list
    // that succeeds did not enter it. (Running as root, modes do not stop
    // reads and only the results are checked.)
    let certs = store.root().join("certs");
    std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o000)).unwrap();
    let enforced = std::fs::read_dir(&certs).is_err();
    let listed = store.list("devices/");
    let everything = store.list("");
    std::fs::set_permissions(&certs, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(listed.unwrap(), vec!["devices/a", "devices/b/c"]);
    if enforced {
        let err = everything.unwrap_err();
        assert!(err.message().contains("certs"), "{err}");
    }
    assert_eq!(store.list("devices/b").unwrap(), vec!["devices/b/c"]);
    assert_eq!(
        store.list("dev").unwrap(),
        vec!["dev", "devices/a", "devices/b/c", "devices2/x"]
    );
    assert!(store.list("devices/zz/").unwrap().is_empty());
    assert!(store.list("devices//").unwrap().is_empty());
}

#[test]
fn deleted_records_are_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = common::open(dir.path(), "").unwrap();
        let v = store.put("gone", b"x", None).unwrap();
        store.put("kept", b"y", None).unwrap();
        store.delete("gone", v).unwrap();
        assert!(!store.root().join("gone.rec").exists());
    }
    let store = common::open(dir.path(), "").unwrap();
    assert_eq!(store.get("gone").unwrap(), None);
    assert_eq!(store.list("").unwrap(), vec!["kept"]);
}

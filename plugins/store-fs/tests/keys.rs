//! The store key: key files, passphrases, and the check that refuses a
//! wrong one at open with a message an operator can act on.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use keygate_sdk::{ErrorKind, PluginError, SecretStore};

mod common;

fn open_err(state: &Path, config: &str) -> PluginError {
    match common::open(state, config) {
        Ok(store) => panic!("opened {store:?} with {config:?}"),
        Err(e) => e,
    }
}

/// Sets a passphrase variable whose name is unique to the calling test.
fn set_passphrase(var: &str, value: &str) {
    // SAFETY: each test uses its own variable name, and nothing in these
    // tests reads the environment through libc concurrently.
    unsafe { std::env::set_var(var, value) };
}

#[test]
fn a_new_store_creates_a_private_32_byte_key_file() {
    let (dir, store) = common::fresh();
    let key = dir.path().join("store.key");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(store.root().join(".keycheck").is_file());
    // No temp file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn the_key_file_may_live_apart_from_the_data() {
    let data = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("nested/keygate.key");
    let config = format!("key_file = {:?}", key_file.to_str().unwrap());
    let store = common::open(data.path(), &config).unwrap();
    store.put("a", b"x", None).unwrap();
    assert!(key_file.is_file());
    assert!(!data.path().join("store.key").exists());
    drop(store);
    let store = common::open(data.path(), &config).unwrap();
    assert_eq!(store.get("a").unwrap().unwrap().value, b"x");
}

#[test]
fn a_wrong_key_file_is_refused_at_open_naming_it() {
    let (dir, store) = common::fresh();
    store.put("devices/x", b"secret", None).unwrap();
    drop(store);
    let other = tempfile::tempdir().unwrap();
    drop(common::fresh_in(other.path()));
    let wrong = other.path().join("store.key");
    let before = common::snapshot(dir.path());
    let err = open_err(
        dir.path(),
        &format!("key_file = {:?}", wrong.to_str().unwrap()),
    );
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    let root = dir.path().join("store");
    assert_eq!(
        err.message(),
        format!(
            "key file {} does not match the key this store ({}) was created with \
             (its key check record {} does not open with it)",
            wrong.display(),
            root.display(),
            root.join(".keycheck").display()
        )
    );
    assert_eq!(common::snapshot(dir.path()), before, "nothing was written");
    // The right key still opens it.
    let store = common::open(dir.path(), "").unwrap();
    assert_eq!(store.get("devices/x").unwrap().unwrap().value, b"secret");
}

#[test]
fn a_key_file_of_the_wrong_size_is_refused_naming_it() {
    let (dir, store) = common::fresh();
    drop(store);
    let key = dir.path().join("store.key");
    for len in [0usize, 31, 33, 64] {
        std::fs::write(&key, vec![7u8; len]).unwrap();
        let err = open_err(dir.path(), "");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(
            err.message()
                .starts_with(&format!("key file {} has {len} bytes", key.display())),
            "{err}"
        );
    }
}

#[test]
fn a_missing_key_file_for_a_store_with_data_is_not_replaced() {
    let (dir, store) = common::fresh();
    store.put("a", b"x", None).unwrap();
    drop(store);
    let key = dir.path().join("store.key");
    std::fs::remove_file(&key).unwrap();
    let err = open_err(dir.path(), "");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        err.message()
            .starts_with(&format!("key file {} does not exist", key.display())),
        "{err}"
    );
    assert!(!key.exists(), "no new key was made for old data");
}

#[test]
fn a_missing_key_check_is_rebuilt_from_a_record_with_the_right_key() {
    let (dir, store) = common::fresh();
    store.put("devices/a", b"x", None).unwrap();
    let check = store.root().join(".keycheck");
    drop(store);
    std::fs::remove_file(&check).unwrap();
    let lines = common::Lines::default();
    let ctx = keygate_sdk::PluginContext::new("filesystem", dir.path(), dir.path(), lines.clone());
    let store =
        <keygate_store_fs::FsStore as keygate_sdk::StorePlugin>::from_config("", ctx).unwrap();
    assert!(check.is_file(), "written again");
    assert!(
        lines.warnings().iter().any(|w| w.contains(".keycheck")),
        "{:?}",
        lines.warnings()
    );
    assert_eq!(store.get("devices/a").unwrap().unwrap().value, b"x");
}

#[test]
fn a_missing_key_check_with_a_wrong_key_is_refused_naming_the_record_tried() {
    let (dir, store) = common::fresh();
    store.put("devices/a", b"x", None).unwrap();
    std::fs::remove_file(store.root().join(".keycheck")).unwrap();
    drop(store);
    std::fs::write(dir.path().join("store.key"), [9u8; 32]).unwrap();
    let before = common::snapshot(dir.path());
    let err = open_err(dir.path(), "");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        err.message().contains("does not match the key this store")
            && err.message().contains("record \"devices/a\""),
        "{err}"
    );
    assert_eq!(
        common::snapshot(dir.path()),
        before,
        "no key check was written"
    );
}

#[test]
fn a_damaged_key_check_is_refused_naming_it() {
    let (dir, store) = common::fresh();
    let check = store.root().join(".keycheck");
    drop(store);
    std::fs::write(&check, b"garbage").unwrap();
    let err = open_err(dir.path(), "");
    assert!(
        err.message()
            .starts_with(&format!("key check file {} is damaged", check.display())),
        "{err}"
    );
}

#[test]
fn a_passphrase_store_round_trips_and_uses_no_key_file() {
    let var = "KEYGATE_TEST_STORE_FS_PASSPHRASE_ROUND_TRIP";
    set_passphrase(var, "correct horse battery staple");
    let dir = tempfile::tempdir().unwrap();
    let config = format!("passphrase_env = {var:?}");
    let store = common::open(dir.path(), &config).unwrap();
    let v = store.put("ca/key", b"ca private key", None).unwrap();
    let root = store.root().to_path_buf();
    drop(store);
    assert!(!dir.path().join("store.key").exists());
    let kdf = root.join(".kdf");
    assert_eq!(
        std::fs::metadata(&kdf).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let store = common::open(dir.path(), &config).unwrap();
    let got = store.get("ca/key").unwrap().unwrap();
    assert_eq!(
        (got.value.as_slice(), got.version),
        (&b"ca private key"[..], v)
    );
    // Opened with a key file instead, it says what it is.
    drop(store);
    let err = open_err(dir.path(), "");
    assert!(err.message().contains("created with a passphrase"), "{err}");
    assert!(!dir.path().join("store.key").exists());
}

#[test]
fn a_wrong_passphrase_is_refused_at_open_naming_the_variable() {
    let right = "KEYGATE_TEST_STORE_FS_PASSPHRASE_RIGHT";
    let wrong = "KEYGATE_TEST_STORE_FS_PASSPHRASE_WRONG";
    set_passphrase(right, "the right one");
    set_passphrase(wrong, "the wrong one");
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path(), &format!("passphrase_env = {right:?}")).unwrap();
    store.put("devices/x", b"secret", None).unwrap();
    drop(store);
    let before = common::snapshot(dir.path());
    let err = open_err(dir.path(), &format!("passphrase_env = {wrong:?}"));
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(
        err.message(),
        format!(
            "the passphrase in ${wrong} does not match the key this store ({}) was created with \
             (its key check record {} does not open with it)",
            dir.path().join("store").display(),
            dir.path().join("store").join(".keycheck").display()
        )
    );
    assert_eq!(common::snapshot(dir.path()), before, "nothing was written");
}

#[test]
fn a_key_file_store_opened_with_a_passphrase_is_refused() {
    let var = "KEYGATE_TEST_STORE_FS_PASSPHRASE_ON_KEY_FILE_STORE";
    set_passphrase(var, "anything");
    let (dir, store) = common::fresh();
    store.put("a", b"x", None).unwrap();
    drop(store);
    let err = open_err(dir.path(), &format!("passphrase_env = {var:?}"));
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("configure key_file"), "{err}");
    assert!(!dir.path().join("store/.kdf").exists());
}

#[test]
fn a_missing_or_empty_passphrase_variable_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = "KEYGATE_TEST_STORE_FS_PASSPHRASE_NEVER_SET";
    let err = open_err(dir.path(), &format!("passphrase_env = {missing:?}"));
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(
        err.message().contains("passphrase_env") && err.message().contains(missing),
        "{err}"
    );
    let empty = "KEYGATE_TEST_STORE_FS_PASSPHRASE_EMPTY";
    set_passphrase(empty, "");
    let err = open_err(dir.path(), &format!("passphrase_env = {empty:?}"));
    assert!(
        err.message().contains(empty) && err.message().contains("empty"),
        "{err}"
    );
    assert!(
        !dir.path().join("store").exists(),
        "a bad config touches nothing"
    );
}

#[test]
fn config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = open_err(dir.path(), "rooot = \"x\"");
    assert_eq!(unknown.kind(), ErrorKind::Invalid);
    assert!(unknown.message().contains("rooot"), "{unknown}");
    let both = open_err(dir.path(), "key_file = \"k\"\npassphrase_env = \"P\"");
    assert!(
        both.message().contains("key_file") && both.message().contains("passphrase_env"),
        "{both}"
    );
    let typed = open_err(dir.path(), "key_file = 7");
    assert!(
        typed
            .message()
            .starts_with("line 1: field \"key_file\": invalid type: integer `7`"),
        "{typed}"
    );
    assert!(!dir.path().join("store").exists());
}

#[test]
fn concurrent_first_opens_agree_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| common::open(dir.path(), "").expect("open")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, store) in stores.iter().enumerate() {
        store.put(&format!("from/{i}"), b"x", None).unwrap();
    }
    for store in &stores {
        for i in 0..stores.len() {
            assert_eq!(
                store.get(&format!("from/{i}")).unwrap().unwrap().value,
                b"x"
            );
        }
    }
}

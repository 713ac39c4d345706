//! Building the store from its config table, as the host does.

mod common;

use keygate_example_store_sqlite::SqliteStore;
use keygate_sdk::{ErrorKind, LogLevel, SecretStore, StorePlugin};

#[test]
fn unknown_config_key_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = common::from_config(dir.path(), "path = \"store.db\"\nbusy_timout_ms = 10")
        .expect_err("a misspelt key must be refused");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(
        err.message()
            .starts_with("line 2: field \"busy_timout_ms\": unknown field `busy_timout_ms`"),
        "{err}"
    );
    assert!(
        !dir.path().join("store.db").exists(),
        "a refused config must not create the database"
    );
}

#[test]
fn missing_path_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = common::from_config(dir.path(), "").expect_err("path is required");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert_eq!(err.message(), "field \"path\": missing field `path`");
}

#[test]
fn wrong_type_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let err = common::from_config(dir.path(), "path = \"a.db\"\nbusy_timeout_ms = \"5s\"")
        .expect_err("a string is not a number of milliseconds");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert_eq!(
        err.message(),
        "line 2: field \"busy_timeout_ms\": invalid type: string \"5s\", expected u32"
    );
}

#[test]
fn relative_path_resolves_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::from_config(dir.path(), "path = \"data/keygate.db\"").expect("open");
    assert_eq!(store.path(), dir.path().join("data/keygate.db"));
    store.put("k", b"v", None).expect("put");
    assert!(dir.path().join("data/keygate.db").is_file());
}

#[test]
fn absolute_path_is_used_as_written() {
    let config_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let db = data_dir.path().join("abs.db");
    let config = format!(
        "path = {:?}\nbusy_timeout_ms = 250",
        db.display().to_string()
    );
    let store = common::from_config(config_dir.path(), &config).expect("open");
    assert_eq!(store.path(), db);
}

#[test]
fn opening_logs_one_info_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, recorded) = common::context(dir.path());
    let _store = SqliteStore::from_config("path = \"store.db\"", ctx).expect("open");
    let lines = recorded.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, LogLevel::Info);
    assert!(lines[0].1.contains("store.db"), "{lines:?}");
}

#[cfg(unix)]
#[test]
fn new_database_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = common::open_in(dir.path());
    store.put("ca/root.key", b"secret", None).expect("put");
    let mode = std::fs::metadata(dir.path().join("store.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "mode {mode:o} lets others read the secrets"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    std::fs::write(
        &path,
        b"this is not an sqlite database, it is a text file.....",
    )
    .unwrap();
    let err = common::from_config(dir.path(), "path = \"store.db\"").expect_err("not a database");
    assert!(err.message().contains("store.db"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"this is not an sqlite database, it is a text file.....",
    );
}

//! The store as the host sees it: the `cdylib` this package builds, opened
//! by path through the host's loader (`keygate_sdk_testing::host`), passes the same conformance suite,
//! and its manifest and constructor errors come through intact.
//!
//! Cargo builds the `cdylib` next to this test binary (in `deps/`) because
//! the package's library has `crate-type = ["cdylib", "rlib"]`.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use keygate_sdk::{ErrorKind, PluginKind, SDK_VERSION};
use keygate_sdk_testing::WithGuard;
use keygate_sdk_testing::host::{Library, StoreHandle};
use tempfile::TempDir;

fn library_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("test binary folder");
    dir.join(format!(
        "{}keygate_example_store_sqlite{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn library() -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let path = library_path();
        Library::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    })
}

fn make_store() -> WithGuard<StoreHandle, TempDir> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let (ctx, _) = common::context(dir.path());
    let store = library()
        .new_store("sqlite", "path = \"store.db\"", ctx)
        .expect("construct through the ABI");
    WithGuard(store, dir)
}

keygate_sdk_testing::secret_store_conformance!(make_store);

#[test]
fn manifest_lists_one_sqlite_store_built_with_this_sdk() {
    let manifest = library().manifest();
    assert_eq!(manifest.sdk_version.as_str(), SDK_VERSION);
    let plugins: Vec<_> = manifest
        .plugins
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(plugins, vec![("sqlite", PluginKind::Store)]);
}

#[test]
fn bad_config_through_the_abi_is_invalid_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _) = common::context(dir.path());
    let err = library()
        .new_store("sqlite", "path = \"a.db\"\ncolour = \"blue\"", ctx)
        .err()
        .expect("unknown key refused");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(
        err.message()
            .starts_with("line 2: field \"colour\": unknown field `colour`"),
        "{err}"
    );
}

#[test]
fn asking_for_another_name_is_not_found_and_lists_what_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _) = common::context(dir.path());
    let err = library()
        .new_store("postgres", "", ctx)
        .err()
        .expect("no such plugin");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("sqlite"), "{err}");
}

#[test]
fn log_lines_from_the_library_reach_the_host_logger() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, recorded) = common::context(dir.path());
    let _store = library()
        .new_store("sqlite", "path = \"store.db\"", ctx)
        .expect("construct");
    let lines = recorded.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].1.contains("store.db"), "{lines:?}");
}

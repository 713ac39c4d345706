//! The sqlite store, called directly, passes the SecretStore conformance
//! suite: each case gets a fresh database in its own temporary folder.

mod common;

use keygate_example_store_sqlite::SqliteStore;
use keygate_sdk_testing::WithGuard;
use tempfile::TempDir;

fn make_store() -> WithGuard<SqliteStore, TempDir> {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = common::open_in(dir.path());
    WithGuard(store, dir)
}

keygate_sdk_testing::secret_store_conformance!(make_store);

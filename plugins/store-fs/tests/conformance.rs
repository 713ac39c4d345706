//! The filesystem store passes the SecretStore and BatchStore conformance
//! suites, called directly and through the plugin ABI as a registered
//! built-in.

use keygate_sdk::{PluginKind, StorePlugin};
use keygate_sdk_testing::WithGuard;
use keygate_sdk_testing::host::Library;
use keygate_store_fs::FsStore;
use tempfile::TempDir;

mod common;

fn make_store() -> WithGuard<FsStore, TempDir> {
    let (dir, store) = common::fresh();
    WithGuard(store, dir)
}

keygate_sdk_testing::secret_store_conformance!(make_store);
keygate_sdk_testing::batch_store_conformance!(make_store);

mod through_the_abi {
    use super::*;

    fn make_store() -> WithGuard<keygate_sdk_testing::host::StoreHandle, TempDir> {
        let (store, dir) = handle();
        WithGuard(store, dir)
    }

    fn make_batch_store() -> WithGuard<keygate_sdk_testing::host::BatchStoreHandle, TempDir> {
        let (store, dir) = handle();
        let store = store
            .into_batch()
            .unwrap_or_else(|_| panic!("the filesystem store is exported with `: batch`"));
        WithGuard(store, dir)
    }

    fn handle() -> (keygate_sdk_testing::host::StoreHandle, TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = Library::builtins()
            .into_iter()
            .find(|lib| {
                lib.manifest()
                    .plugins
                    .iter()
                    .any(|p| p.name.as_str() == FsStore::NAME && p.kind == PluginKind::Store)
            })
            .expect("the filesystem store is registered as a built-in");
        let store = library
            .new_store(FsStore::NAME, "", super::common::ctx(dir.path()))
            .expect("construct through the ABI");
        (store, dir)
    }

    keygate_sdk_testing::secret_store_conformance!(make_store);
    keygate_sdk_testing::batch_store_conformance!(make_batch_store);
}

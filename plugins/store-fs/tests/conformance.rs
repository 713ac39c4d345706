//! The filesystem store passes the SecretStore conformance suite, called
//! directly and through the plugin ABI as a registered built-in.

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

mod through_the_abi {
    use super::*;

    fn make_store() -> WithGuard<keygate_sdk_testing::host::StoreHandle, TempDir> {
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
        WithGuard(store, dir)
    }

    keygate_sdk_testing::secret_store_conformance!(make_store);
}

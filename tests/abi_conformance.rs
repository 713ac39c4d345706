//! The SecretStore conformance suite through the ABI: the SQLite example
//! store from its built cdylib, and the memory store as a cdylib, as a
//! built-in from the registry, and as the store a `PluginHost` hands the
//! rest of the core. The memory store has the batch and watch
//! capabilities, so the BatchStore suite runs on it along each of those
//! three routes, and the WatchStore suite along the first two.

/// A store handle and the watch side taken from it: the fixture of the
/// WatchStore suite through the ABI.
struct Watched(keygate_sdk_host::StoreHandle, keygate_sdk_host::WatchHandle);

impl keygate_sdk_testing::WatchStoreFixture for Watched {
    fn store(&self) -> &dyn keygate_sdk::SecretStore {
        &self.0
    }
    fn watch(&self) -> &dyn keygate_sdk::WatchStore {
        &self.1
    }
}

fn watched(mut store: keygate_sdk_host::StoreHandle) -> Watched {
    let watch = store
        .take_watch()
        .unwrap_or_else(|| panic!("the memory store is exported with `watch`"));
    Watched(store, watch)
}

mod sqlite_through_the_abi {
    use keygate_sdk_host::Library;
    use keygate_sdk_testing::WithGuard;

    fn make_store() -> WithGuard<keygate_sdk_host::StoreHandle, tempfile::TempDir> {
        let lib =
            Library::open(&keygate_tests::cdylib("keygate-example-store-sqlite")).expect("open");
        let dir = tempfile::tempdir().unwrap();
        let ctx = keygate_sdk_testing::test_context("store(sqlite)", dir.path());
        let store = lib
            .new_store("sqlite", "path = \"conformance.db\"\n", ctx)
            .expect("construct");
        WithGuard(store, dir)
    }

    keygate_sdk_testing::secret_store_conformance!(make_store);
}

mod memory_cdylib_through_the_abi {
    use keygate_sdk_host::Library;

    fn make_store() -> keygate_sdk_host::StoreHandle {
        let lib =
            Library::open(&keygate_tests::cdylib("keygate-fixture-memory-cdylib")).expect("open");
        let ctx = keygate_sdk_testing::test_context("store(memory)", "/".as_ref());
        lib.new_store("memory", "", ctx).expect("construct")
    }

    fn make_batch_store() -> keygate_sdk_host::BatchStoreHandle {
        make_store()
            .into_batch()
            .unwrap_or_else(|_| panic!("memory-cdylib exports the memory store with `batch`"))
    }

    fn make_watched() -> super::Watched {
        super::watched(make_store())
    }

    keygate_sdk_testing::secret_store_conformance!(make_store);

    mod batch {
        use super::make_batch_store;
        keygate_sdk_testing::batch_store_conformance!(make_batch_store);
    }

    mod watch {
        use super::make_watched;
        keygate_sdk_testing::watch_store_conformance!(make_watched);
    }
}

mod pre_batch_library_through_the_abi {
    //! A library built before the batch capability (keygate-sdk 0.2.0's
    //! root module) is still a full store in today's host.
    use keygate_sdk_host::Library;

    fn make_store() -> keygate_sdk_host::StoreHandle {
        let lib = Library::open(&keygate_tests::cdylib("keygate-fixture-pre-batch")).expect("open");
        let ctx = keygate_sdk_testing::test_context("store(memory)", "/".as_ref());
        lib.new_store("memory", "", ctx).expect("construct")
    }

    keygate_sdk_testing::secret_store_conformance!(make_store);
}

mod memory_builtin_through_the_registry {
    use keygate_core::plugin_host::find_builtin;
    use keygate_sdk::PluginKind;
    // Link the built-in so its inventory registration is present.
    use keygate_store_memory as _;

    fn make_store() -> keygate_sdk_host::StoreHandle {
        let (lib, info) = find_builtin(PluginKind::Store, "memory").expect("registered");
        let ctx = keygate_sdk_testing::test_context("store(memory)", "/".as_ref());
        lib.new_store(&info.name, "", ctx).expect("construct")
    }

    fn make_batch_store() -> keygate_sdk_host::BatchStoreHandle {
        make_store()
            .into_batch()
            .unwrap_or_else(|_| panic!("the built-in memory store registers with `batch`"))
    }

    fn make_watched() -> super::Watched {
        super::watched(make_store())
    }

    keygate_sdk_testing::secret_store_conformance!(make_store);

    mod batch {
        use super::make_batch_store;
        keygate_sdk_testing::batch_store_conformance!(make_batch_store);
    }

    mod watch {
        use super::make_watched;
        keygate_sdk_testing::watch_store_conformance!(make_watched);
    }
}

mod memory_builtin_through_the_plugin_host {
    use std::sync::Arc;

    use keygate_core::config::Config;
    use keygate_core::plugin_host::PluginHost;
    use keygate_sdk::{BatchStore, SecretStore};
    use keygate_sdk_testing::WithGuard;
    // Link the built-in so its inventory registration is present.
    use keygate_store_memory as _;

    fn load(dir: &tempfile::TempDir) -> PluginHost {
        let path = keygate_tests::write_config(dir.path(), "[plugins.store]\nuse = \"memory\"\n");
        PluginHost::load(&Config::load(&path).expect("config")).expect("load")
    }

    fn make_store() -> WithGuard<Arc<dyn SecretStore>, tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        WithGuard(load(&dir).store, dir)
    }

    fn make_batch_store() -> WithGuard<Arc<dyn BatchStore>, tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        let batch = load(&dir).batch.expect("the memory store has `batch`");
        WithGuard(batch, dir)
    }

    keygate_sdk_testing::secret_store_conformance!(make_store);

    mod batch {
        use super::make_batch_store;
        keygate_sdk_testing::batch_store_conformance!(make_batch_store);
    }
}

//! The SecretStore conformance suite through the ABI: the SQLite example
//! store from its built cdylib, and the memory store as a cdylib, as a
//! built-in from the registry, and as the store a `PluginHost` hands the
//! rest of the core.

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

    keygate_sdk_testing::secret_store_conformance!(make_store);
}

mod memory_builtin_through_the_plugin_host {
    use std::sync::Arc;

    use keygate_core::config::Config;
    use keygate_core::plugin_host::PluginHost;
    use keygate_sdk::SecretStore;
    use keygate_sdk_testing::WithGuard;
    // Link the built-in so its inventory registration is present.
    use keygate_store_memory as _;

    fn make_store() -> WithGuard<Arc<dyn SecretStore>, tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        let path = keygate_tests::write_config(dir.path(), "[plugins.store]\nuse = \"memory\"\n");
        let host = PluginHost::load(&Config::load(&path).expect("config")).expect("load");
        WithGuard(host.store, dir)
    }

    keygate_sdk_testing::secret_store_conformance!(make_store);
}

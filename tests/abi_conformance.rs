//! The SecretStore conformance suite through the ABI: the SQLite example
//! store from its built cdylib, and the memory store both as a cdylib and as
//! a built-in registered with inventory.

mod sqlite_through_the_abi {
    use keygate_sdk::host::Library;
    use keygate_sdk_testing::WithGuard;

    fn make_store() -> WithGuard<keygate_sdk::abi::store::StoreHandle, tempfile::TempDir> {
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
    use keygate_sdk::host::Library;

    fn make_store() -> keygate_sdk::abi::store::StoreHandle {
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

    fn make_store() -> keygate_sdk::abi::store::StoreHandle {
        let (lib, info) = find_builtin(PluginKind::Store, "memory").expect("registered");
        let ctx = keygate_sdk_testing::test_context("store(memory)", "/".as_ref());
        lib.new_store(&info.name, "", ctx).expect("construct")
    }

    keygate_sdk_testing::secret_store_conformance!(make_store);
}

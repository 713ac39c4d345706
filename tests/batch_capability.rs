//! The `batch` capability of stores across the ABI, and across SDK
//! releases: a library built before the capability existed loads into
//! today's host as a store without it; today's library loads into a host
//! that only knows the old root module; a batch-capable store reaches the
//! core as one object behind both `store` and `batch`, labelled like every
//! plugin; a panic in `apply_batch` comes back as an error.

use std::path::Path;
use std::sync::Arc;

use keygate_core::config::Config;
use keygate_core::plugin_host::PluginHost;
use keygate_sdk::{BatchOp, BatchStore, ErrorKind, SecretStore};
use keygate_sdk_host::Library;
use keygate_tests::{cdylib, toml_path};
// Link the built-in memory store so its registration is present.
use keygate_store_memory as _;

fn load(body: &str) -> (tempfile::TempDir, PluginHost) {
    let dir = tempfile::tempdir().unwrap();
    let path = keygate_tests::write_config(dir.path(), body);
    let host = PluginHost::load(&Config::load(&path).expect("config")).expect("load");
    (dir, host)
}

fn library_slot(library: &Path) -> String {
    format!("[plugins.store]\nlibrary = {}\n", toml_path(library))
}

fn put(key: &str, value: &[u8], expected: Option<u64>) -> BatchOp {
    BatchOp::Put {
        key: key.to_owned(),
        value: value.to_vec(),
        expected,
    }
}

#[test]
fn a_library_built_before_the_batch_capability_loads_and_its_store_works_without_it() {
    let path = cdylib("keygate-fixture-pre-batch");
    let library = Library::open(&path).expect("an 0.2.0 library loads in this host");
    assert!(
        !library.has_store_parts(),
        "the fixture must lack the new constructor, or it tests nothing"
    );
    let ctx = keygate_sdk_testing::test_context("store(memory)", "/".as_ref());
    let handle = library
        .new_store("memory", "", ctx)
        .expect("constructed through new_store");
    assert!(!handle.has_batch());
    let handle = handle
        .into_batch()
        .expect_err("no batch object from an old library");
    let v = handle.put("k", b"v", None).expect("put");
    assert_eq!(handle.get("k").expect("get").expect("present").version, v);

    // And through the plugin host, as the gateway loads it.
    let (_dir, host) = load(&library_slot(&path));
    assert!(
        host.batch.is_none(),
        "an old library has no batch capability"
    );
    assert!(
        !host.state_store().has_batch(),
        "identity state writes one by one"
    );
    let v = host.store.put("a/b", b"1", None).expect("put");
    let err = host.store.put("a/b", b"2", None).expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().starts_with("store(memory): "), "{err}");
    host.store.delete("a/b", v).expect("delete");
}

#[test]
fn a_library_built_today_loads_in_a_host_that_knows_only_the_old_root_module() {
    // The pre-batch fixture's root-module type is keygate-sdk 0.2.0's: a
    // host built then checks the version and layout against it, and calls
    // `new_store`, never looking past `new_transport`.
    let names = keygate_fixture_pre_batch::open_as_old_host(
        &cdylib("keygate-fixture-memory-cdylib"),
        "memory",
    )
    .expect("an old host loads a library with new_store_parts and uses its store");
    assert_eq!(names, ["memory"]);
}

#[test]
fn the_batch_store_is_the_store_and_both_label_their_errors() {
    for body in [
        "[plugins.store]\nuse = \"memory\"\n".to_owned(),
        library_slot(&cdylib("keygate-fixture-memory-cdylib")),
    ] {
        let (_dir, host) = load(&body);
        let batch = host.batch.clone().expect("the memory store has `batch`");
        assert_eq!(
            Arc::as_ptr(&host.store) as *const u8,
            Arc::as_ptr(&batch) as *const u8,
            "`store` and `batch` are one object"
        );
        // And one store inside the plugin: a batch's writes are what `get`
        // reads, and a single put moves on what the batch compares.
        let versions = batch
            .apply_batch(&[put("x", b"1", None), put("y", b"2", None)])
            .expect("batch");
        let x = host.store.get("x").expect("get").expect("written by batch");
        assert_eq!(
            (x.value.as_slice(), Some(x.version)),
            (&b"1"[..], versions[0])
        );
        host.store.put("y", b"3", versions[1]).expect("single put");
        let err = batch
            .apply_batch(&[put("x", b"4", versions[0]), put("y", b"5", versions[1])])
            .expect_err("y moved on");
        assert_eq!(err.kind(), ErrorKind::Conflict);
        let expected = format!(
            "store(memory): key \"y\": expected version {}, found version",
            versions[1].unwrap()
        );
        assert!(err.to_string().starts_with(&expected), "{err}");
        assert_eq!(
            host.store.get("x").unwrap().unwrap().version,
            x.version,
            "the refused batch wrote x"
        );
    }
}

#[test]
fn a_store_library_without_the_marker_has_no_batch_capability() {
    let path = cdylib("keygate-example-store-sqlite");
    let library = Library::open(&path).expect("open");
    assert!(library.has_store_parts(), "built with this SDK");
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{}[plugins.store.config]\npath = \"s.db\"\n",
        library_slot(&path)
    );
    let path = keygate_tests::write_config(dir.path(), &body);
    let host = PluginHost::load(&Config::load(&path).expect("config")).expect("load");
    assert!(host.batch.is_none());
    assert!(!host.state_store().has_batch());
    host.store.put("k", b"v", None).expect("the store works");

    // The built-in memory store has the capability, and identity state
    // commits through it.
    let (_dir, host) = load("[plugins.store]\nuse = \"memory\"\n");
    assert!(host.batch.is_some());
    assert!(host.state_store().has_batch());
}

/// A built-in store, registered by this test binary with `: batch`, whose
/// `apply_batch` panics.
mod tripwire {
    use keygate_sdk::{
        BatchOp, BatchStore, PluginContext, PluginError, SecretStore, StorePlugin, Version,
        Versioned,
    };

    pub struct BatchTripwire(keygate_store_memory::MemoryStore);

    impl SecretStore for BatchTripwire {
        fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
            self.0.get(key)
        }
        fn put(
            &self,
            key: &str,
            value: &[u8],
            expected: Option<Version>,
        ) -> Result<Version, PluginError> {
            self.0.put(key, value, expected)
        }
        fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
            self.0.delete(key, expected)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
            self.0.list(prefix)
        }
    }

    impl BatchStore for BatchTripwire {
        fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
            panic!("batch tripwire sprung by {} ops", ops.len());
        }
    }

    impl StorePlugin for BatchTripwire {
        const NAME: &'static str = "batch-tripwire";
        const DESCRIPTION: &'static str = "Test built-in: apply_batch panics";
        fn from_config(_: &str, _: PluginContext) -> Result<Self, PluginError> {
            Ok(Self(keygate_store_memory::MemoryStore::new()))
        }
    }

    keygate_sdk::register_builtin_plugins! {
        stores: [BatchTripwire: batch],
    }
}

#[test]
fn a_panic_in_apply_batch_is_an_error_and_the_store_goes_on() {
    let (_dir, host) = load("[plugins.store]\nuse = \"batch-tripwire\"\n");
    let batch = host.batch.as_ref().expect("registered with `: batch`");
    let err = batch
        .apply_batch(&[put("k", b"v", None)])
        .expect_err("the tripwire");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(
        err.to_string(),
        "store(batch-tripwire): plugin panicked in apply_batch: batch tripwire sprung by 1 ops \
         (internal error)"
    );
    host.store
        .put("k", b"v", None)
        .expect("the store works after the panic");
}

//! The `watch` capability of stores across the ABI, and across SDK
//! releases: a library built before it existed (with `batch`) loads into
//! today's host as a store with `batch` and without `watch`; today's
//! library loads into a host of that release; a watch-capable store
//! reaches the core as a watch side of the same store, which the plugin
//! host hands to identity state.

use std::path::Path;
use std::time::Duration;

use keygate_core::config::Config;
use keygate_core::plugin_host::PluginHost;
use keygate_sdk::{SecretStore, WatchStore};
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

#[test]
fn a_library_built_before_the_watch_capability_loads_with_batch_and_without_watch() {
    let path = cdylib("keygate-fixture-pre-watch");
    let library = Library::open(&path).expect("a library of the batch release loads");
    assert!(library.has_store_parts());
    assert!(
        !library.has_store_watched(),
        "the fixture must lack the new constructor, or it tests nothing"
    );
    let ctx = keygate_sdk_testing::test_context("store(memory)", "/".as_ref());
    let mut handle = library
        .new_store("memory", "", ctx)
        .expect("constructed through new_store_parts");
    assert!(handle.has_batch());
    assert!(!handle.has_watch());
    assert!(handle.take_watch().is_none());

    // And through the plugin host, as the gateway loads it.
    let (_dir, host) = load(&library_slot(&path));
    assert!(host.batch.is_some(), "its batch capability is still there");
    assert!(host.watch.is_none(), "an older library has no watch side");
    let state = host.state_store();
    assert!(state.has_batch() && !state.has_watch());
    let v = host.store.put("a/b", b"1", None).expect("put");
    host.store.delete("a/b", v).expect("delete");
}

#[test]
fn a_library_built_today_loads_in_a_host_that_knows_only_the_batch_root_module() {
    let had_batch = keygate_fixture_pre_watch::open_as_batch_host(
        &cdylib("keygate-fixture-memory-cdylib"),
        "memory",
    )
    .expect("a host of the batch release loads a library with new_store_watched");
    assert!(had_batch, "and gets the store's batch object from it");
}

#[test]
fn the_watch_side_reports_writes_made_through_the_store_side() {
    for body in [
        "[plugins.store]\nuse = \"memory\"\n".to_owned(),
        library_slot(&cdylib("keygate-fixture-memory-cdylib")),
    ] {
        let (_dir, host) = load(&body);
        let watch = host.watch.clone().expect("the memory store has `watch`");
        assert!(host.state_store().has_watch());
        let before = watch.wait_for_writes(0, Duration::ZERO).expect("position");
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                host.store.put("w/x", b"1", None).expect("put");
            });
            let after = watch
                .wait_for_writes(before, Duration::from_secs(60))
                .expect("wait");
            assert_ne!(after, before, "{body}: the put moved the position");
        });
    }
}

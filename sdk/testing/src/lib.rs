//! # keygate-sdk-testing
//!
//! The one SecretStore conformance suite every store runs: built-in stores
//! directly, external stores through the ABI from their built `cdylib`, and
//! your own store in its own crate.
//!
//! ```ignore
//! // tests/conformance.rs of a store crate
//! fn make_store() -> MyStore { MyStore::open_temporary() }
//! keygate_sdk_testing::secret_store_conformance!(make_store);
//! ```
//!
//! The macro expands to one `#[test]` per behaviour, each with a fresh store
//! from the factory. A factory that must keep something alive next to the
//! store (a temporary folder) returns [`WithGuard`]`(store, guard)`.
//!
//! A store with the batch capability ([`BatchStore`], exported as
//! `stores: [MyStore: batch]`) runs the batch suite too, from the same
//! factory:
//!
//! ```ignore
//! keygate_sdk_testing::batch_store_conformance!(make_store);
//! ```
//!
//! A store with the watch capability ([`WatchStore`], `stores: [MyStore:
//! watch]`) runs the watch suite: `watch_store_conformance!(make_store)`,
//! with a factory returning a [`WatchStoreFixture`].
//!
//! Through the ABI, the factory returns the handle's batch form:
//! `library.new_store(..)?.into_batch()` (see
//! [`host::StoreHandle::into_batch`]).
#![forbid(unsafe_code)]

use keygate_sdk::{BatchStore, LogLevel, Logger, PluginContext, SecretStore, WatchStore};

pub mod batch;
pub mod store;
pub mod watch;

/// The host's loader (`keygate-sdk-host`), for tests that open a plugin's
/// built `cdylib` the way the gateway does and run the suite through the
/// ABI. Only tests use it: a plugin crate never depends on the host side.
pub use keygate_sdk_host as host;

/// A [`Logger`] that drops every line: for constructing plugins in tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullLogger;

impl Logger for NullLogger {
    fn log(&self, _: LogLevel, _: &str) {}
}

/// A [`PluginContext`] for tests: `dir` as config and state folder, a
/// [`NullLogger`].
pub fn test_context(label: &str, dir: &std::path::Path) -> PluginContext {
    PluginContext::new(label, dir, dir, NullLogger)
}

/// A store together with something that must outlive it (a temporary
/// folder, a loaded library).
pub struct WithGuard<S, G>(pub S, pub G);

/// What a conformance factory may return.
pub trait StoreFixture {
    /// The store under test.
    fn store(&self) -> &dyn SecretStore;
}

impl<S: SecretStore> StoreFixture for S {
    fn store(&self) -> &dyn SecretStore {
        self
    }
}

impl<S: SecretStore, G> StoreFixture for WithGuard<S, G> {
    fn store(&self) -> &dyn SecretStore {
        &self.0
    }
}

/// What a batch conformance factory may return.
pub trait BatchStoreFixture {
    /// The store under test.
    fn batch_store(&self) -> &dyn BatchStore;
}

impl<S: BatchStore> BatchStoreFixture for S {
    fn batch_store(&self) -> &dyn BatchStore {
        self
    }
}

impl<S: BatchStore, G> BatchStoreFixture for WithGuard<S, G> {
    fn batch_store(&self) -> &dyn BatchStore {
        &self.0
    }
}

/// What a watch conformance factory may return: the store to write
/// through and its watch side (the same object for a store type that
/// implements both; through the ABI, a [`host::StoreHandle`] and the
/// [`host::WatchHandle`] taken from it).
pub trait WatchStoreFixture {
    /// The store written to.
    fn store(&self) -> &dyn SecretStore;
    /// Its watch side.
    fn watch(&self) -> &dyn WatchStore;
}

impl<S: SecretStore + WatchStore> WatchStoreFixture for S {
    fn store(&self) -> &dyn SecretStore {
        self
    }
    fn watch(&self) -> &dyn WatchStore {
        self
    }
}

impl<S: SecretStore + WatchStore, G> WatchStoreFixture for WithGuard<S, G> {
    fn store(&self) -> &dyn SecretStore {
        &self.0
    }
    fn watch(&self) -> &dyn WatchStore {
        &self.0
    }
}

/// Generates the SecretStore conformance tests, one `#[test]` each, for the
/// store made by `$factory` (a path to a `fn() -> impl StoreFixture`).
#[macro_export]
macro_rules! secret_store_conformance {
    ($factory:path) => {
        $crate::secret_store_conformance!(@cases $factory;
            get_of_a_missing_key_is_none,
            put_then_get_round_trips,
            create_of_an_existing_key_conflicts,
            stale_version_conflicts_and_changes_nothing,
            delete_needs_the_current_version,
            delete_of_a_missing_key_is_not_found,
            recreated_key_never_reuses_a_version,
            list_filters_by_prefix_in_order,
            one_mebibyte_values_round_trip,
            empty_values_round_trip,
            odd_keys_work,
            invalid_keys_are_refused_and_nothing_is_written,
            eight_threads_of_cas_increments_lose_no_update,
            quarantine_removes_the_key_or_is_unsupported,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let fixture = $factory();
                $crate::store::$case($crate::StoreFixture::store(&fixture));
            }
        )*
    };
}

/// Generates the BatchStore conformance tests, one `#[test]` each, for the
/// store made by `$factory` (a path to a `fn() -> impl BatchStoreFixture`):
/// all-or-nothing batches (conflicts, invalid and repeated keys, deletes of
/// missing keys), the versions they return, and batches racing each other
/// and single writes. Run [`secret_store_conformance!`] on the same store
/// as well.
#[macro_export]
macro_rules! batch_store_conformance {
    ($factory:path) => {
        $crate::batch_store_conformance!(@cases $factory;
            puts_and_deletes_round_trip_with_their_versions,
            one_stale_version_anywhere_conflicts_and_writes_nothing,
            an_invalid_or_repeated_key_is_invalid_and_writes_nothing,
            an_empty_batch_is_ok_and_writes_nothing,
            a_delete_of_a_missing_key_is_not_found_and_writes_nothing,
            batch_versions_never_reuse_an_earlier_life_of_a_key,
            eight_threads_of_cas_batches_lose_no_update_and_keep_keys_equal,
            batches_and_single_puts_interleaved_keep_cas_exact,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let fixture = $factory();
                $crate::batch::$case($crate::BatchStoreFixture::batch_store(&fixture));
            }
        )*
    };
}

/// Generates the WatchStore conformance tests, one `#[test]` each, for the
/// store made by `$factory` (a path to a `fn() -> impl WatchStoreFixture`):
/// every kind of write moves the position, a wait without writes times out
/// unchanged, and writes wake waiters on other threads. Run
/// [`secret_store_conformance!`] on the same store as well.
#[macro_export]
macro_rules! watch_store_conformance {
    ($factory:path) => {
        $crate::watch_store_conformance!(@cases $factory;
            every_write_moves_the_position,
            without_writes_a_wait_times_out_unchanged,
            a_write_from_another_thread_wakes_a_waiter,
            one_write_wakes_every_waiter,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let fixture = $factory();
                $crate::watch::$case(
                    $crate::WatchStoreFixture::store(&fixture),
                    $crate::WatchStoreFixture::watch(&fixture),
                );
            }
        )*
    };
}

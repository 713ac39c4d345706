//! `WatchStore` across the boundary: the trait object, the plugin-side
//! adapter, and what the `new_store_watched` constructor returns.
//!
//! A watch-capable store crosses as a third object around the same shared
//! store as its [`StoreBox`](super::store::StoreBox) (and
//! [`BatchBox`](super::batch::BatchBox), if any): each holds a clone of one
//! `Arc`, so they are one store and may be dropped in any order.

use std::sync::Arc;
use std::time::Duration;

use abi_stable::{
    StableAbi, sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, ROption},
};

use super::batch::{AbiStoreParts, BatchAdapter};
use super::error::{AbiResult, guarded};
use super::store::export_store;
use crate::{BatchStore, SecretStore, WatchStore};

/// The ABI form of [`WatchStore`].
#[sabi_trait]
pub trait AbiWatchStore: Send + Sync {
    /// See [`WatchStore::wait_for_writes`]; the timeout in milliseconds.
    #[sabi(last_prefix_field)]
    fn wait_for_writes(&self, seen: u64, timeout_ms: u64) -> AbiResult<u64>;
}

/// An owned watch object as it crosses the boundary.
pub type WatchBox = AbiWatchStore_TO<'static, RBox<()>>;

/// What the `new_store_watched` constructor returns: the store with its
/// batch object (as `new_store_parts` returns them), and its watch object
/// when the store has the watch capability. All act on one store.
#[repr(C)]
#[derive(StableAbi)]
pub struct AbiWatchedParts {
    /// The store and its batch object.
    pub parts: AbiStoreParts,
    /// `wait_for_writes`, for a store exported with the `watch` marker.
    pub watch: ROption<WatchBox>,
}

struct WatchAdapter<S>(Arc<S>);

impl<S: WatchStore> AbiWatchStore for WatchAdapter<S> {
    fn wait_for_writes(&self, seen: u64, timeout_ms: u64) -> AbiResult<u64> {
        guarded("wait_for_writes", || {
            self.0
                .wait_for_writes(seen, Duration::from_millis(timeout_ms))
        })
    }
}

fn watch_box<S: WatchStore>(store: Arc<S>) -> ROption<WatchBox> {
    ROption::RSome(AbiWatchStore_TO::from_value(WatchAdapter(store), TD_Opaque))
}

/// Exports a store with neither capability.
pub fn export_plain(store: impl SecretStore) -> AbiWatchedParts {
    AbiWatchedParts {
        parts: AbiStoreParts {
            store: export_store(store),
            batch: ROption::RNone,
        },
        watch: ROption::RNone,
    }
}

/// Exports a batch-capable store.
pub fn export_batch<S: BatchStore>(store: S) -> AbiWatchedParts {
    let store = Arc::new(store);
    AbiWatchedParts {
        parts: AbiStoreParts {
            store: export_store(Arc::clone(&store)),
            batch: BatchAdapter::boxed(store),
        },
        watch: ROption::RNone,
    }
}

/// Exports a watch-capable store.
pub fn export_watch<S: SecretStore + WatchStore>(store: S) -> AbiWatchedParts {
    let store = Arc::new(store);
    AbiWatchedParts {
        parts: AbiStoreParts {
            store: export_store(Arc::clone(&store)),
            batch: ROption::RNone,
        },
        watch: watch_box(store),
    }
}

/// Exports a store with both capabilities: the three objects share one
/// `Arc` of it.
pub fn export_batch_watch<S: BatchStore + WatchStore>(store: S) -> AbiWatchedParts {
    let store = Arc::new(store);
    AbiWatchedParts {
        parts: AbiStoreParts {
            store: export_store(Arc::clone(&store)),
            batch: BatchAdapter::boxed(Arc::clone(&store)),
        },
        watch: watch_box(store),
    }
}

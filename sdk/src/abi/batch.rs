//! `BatchStore` across the boundary: the ABI form of a batch, the trait
//! object, the plugin-side adapter, and the pair of objects a store
//! constructor returns.
//!
//! A batch-capable store crosses as two objects around one shared store:
//! a [`StoreBox`] for the `SecretStore` methods and a [`BatchBox`] for
//! `apply_batch`. The two boxes hold clones of one `Arc`, so they are the
//! same store and either may be dropped first. The exporting functions
//! (for every combination of capabilities) are in the `watch` module.

use std::sync::Arc;

use abi_stable::{
    StableAbi, sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, ROption, RSlice, RStr, RVec},
};

use super::error::{AbiResult, guarded};
use super::store::StoreBox;
use crate::{BatchOp, BatchStore};

/// The ABI form of [`BatchOp`]. It borrows the caller's keys and values,
/// so a batch crosses without copying them on the host's side. (No
/// `Debug`: values are secrets more often than not.)
#[repr(u8)]
#[derive(StableAbi, Clone, Copy)]
pub enum AbiBatchOp<'a> {
    /// [`BatchOp::Put`].
    Put {
        /// The key.
        key: RStr<'a>,
        /// The new value.
        value: RSlice<'a, u8>,
        /// The version it replaces; `RNone` creates the key.
        expected: ROption<u64>,
    },
    /// [`BatchOp::Delete`].
    Delete {
        /// The key.
        key: RStr<'a>,
        /// The version it deletes.
        expected: u64,
    },
}

impl<'a> From<&'a BatchOp> for AbiBatchOp<'a> {
    fn from(op: &'a BatchOp) -> Self {
        match op {
            BatchOp::Put {
                key,
                value,
                expected,
            } => Self::Put {
                key: key.as_str().into(),
                value: value.as_slice().into(),
                expected: (*expected).into(),
            },
            BatchOp::Delete { key, expected } => Self::Delete {
                key: key.as_str().into(),
                expected: *expected,
            },
        }
    }
}

impl From<AbiBatchOp<'_>> for BatchOp {
    fn from(op: AbiBatchOp<'_>) -> Self {
        match op {
            AbiBatchOp::Put {
                key,
                value,
                expected,
            } => Self::Put {
                key: key.as_str().to_owned(),
                value: value.as_slice().to_vec(),
                expected: expected.into_option(),
            },
            AbiBatchOp::Delete { key, expected } => Self::Delete {
                key: key.as_str().to_owned(),
                expected,
            },
        }
    }
}

/// The ABI form of [`BatchStore`] (its batch method only; the
/// `SecretStore` methods go through the [`StoreBox`] beside it).
#[sabi_trait]
pub trait AbiBatchStore: Send + Sync {
    /// See [`BatchStore::apply_batch`].
    #[sabi(last_prefix_field)]
    fn apply_batch(&self, ops: RSlice<'_, AbiBatchOp<'_>>) -> AbiResult<RVec<ROption<u64>>>;
}

/// An owned batch object as it crosses the boundary.
pub type BatchBox = AbiBatchStore_TO<'static, RBox<()>>;

/// What the `new_store_parts` constructor returns: the store, and its batch
/// object when the store has the batch capability. Both act on one store.
#[repr(C)]
#[derive(StableAbi)]
pub struct AbiStoreParts {
    /// The `SecretStore` methods.
    pub store: StoreBox,
    /// `apply_batch`, for a store exported with the `batch` marker.
    pub batch: ROption<BatchBox>,
}

/// The plugin side of a [`BatchBox`]: `apply_batch` on a shared store.
pub(super) struct BatchAdapter<S>(Arc<S>);

impl<S: BatchStore> BatchAdapter<S> {
    /// The batch object of `store`.
    pub(super) fn boxed(store: Arc<S>) -> ROption<BatchBox> {
        ROption::RSome(AbiBatchStore_TO::from_value(BatchAdapter(store), TD_Opaque))
    }
}

impl<S: BatchStore> AbiBatchStore for BatchAdapter<S> {
    fn apply_batch(&self, ops: RSlice<'_, AbiBatchOp<'_>>) -> AbiResult<RVec<ROption<u64>>> {
        guarded("apply_batch", || {
            let ops: Vec<BatchOp> = ops.iter().map(|op| BatchOp::from(*op)).collect();
            Ok(self
                .0
                .apply_batch(&ops)?
                .into_iter()
                .map(ROption::from)
                .collect())
        })
    }
}

//! `SecretStore` across the boundary: the ABI trait object and the
//! plugin-side adapter around the author's store.

use abi_stable::{
    StableAbi, sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, ROption, RSlice, RStr, RString, RVec},
};

use super::error::{AbiResult, guarded};
use crate::store::{SecretStore, Versioned};

/// The ABI form of [`Versioned`].
#[repr(C)]
#[derive(StableAbi)]
pub struct AbiVersioned {
    /// The bytes.
    pub value: RVec<u8>,
    /// The version.
    pub version: u64,
}

impl From<Versioned> for AbiVersioned {
    fn from(v: Versioned) -> Self {
        Self {
            value: v.value.into(),
            version: v.version,
        }
    }
}

impl From<AbiVersioned> for Versioned {
    fn from(v: AbiVersioned) -> Self {
        Self {
            value: v.value.into_vec(),
            version: v.version,
        }
    }
}

/// The ABI form of [`SecretStore`].
#[sabi_trait]
pub trait AbiSecretStore: Send + Sync {
    /// See [`SecretStore::get`].
    fn get(&self, key: RStr<'_>) -> AbiResult<ROption<AbiVersioned>>;
    /// See [`SecretStore::put`].
    fn put(&self, key: RStr<'_>, value: RSlice<'_, u8>, expected: ROption<u64>) -> AbiResult<u64>;
    /// See [`SecretStore::delete`].
    fn delete(&self, key: RStr<'_>, expected: u64) -> AbiResult<()>;
    /// See [`SecretStore::list`].
    fn list(&self, prefix: RStr<'_>) -> AbiResult<RVec<RString>>;
    /// See [`SecretStore::quarantine`].
    #[sabi(last_prefix_field)]
    fn quarantine(&self, key: RStr<'_>) -> AbiResult<RString>;
}

/// An owned store object as it crosses the boundary.
pub type StoreBox = AbiSecretStore_TO<'static, RBox<()>>;

struct StoreAdapter<S>(S);

impl<S: SecretStore> AbiSecretStore for StoreAdapter<S> {
    fn get(&self, key: RStr<'_>) -> AbiResult<ROption<AbiVersioned>> {
        guarded("get", || {
            Ok(self.0.get(key.as_str())?.map(AbiVersioned::from).into())
        })
    }

    fn put(&self, key: RStr<'_>, value: RSlice<'_, u8>, expected: ROption<u64>) -> AbiResult<u64> {
        guarded("put", || {
            self.0
                .put(key.as_str(), value.as_slice(), expected.into_option())
        })
    }

    fn delete(&self, key: RStr<'_>, expected: u64) -> AbiResult<()> {
        guarded("delete", || self.0.delete(key.as_str(), expected))
    }

    fn list(&self, prefix: RStr<'_>) -> AbiResult<RVec<RString>> {
        guarded("list", || {
            Ok(self
                .0
                .list(prefix.as_str())?
                .into_iter()
                .map(RString::from)
                .collect())
        })
    }

    fn quarantine(&self, key: RStr<'_>) -> AbiResult<RString> {
        guarded("quarantine", || {
            self.0.quarantine(key.as_str()).map(RString::from)
        })
    }
}

/// Wraps an author's store for export.
pub fn export_store(store: impl SecretStore) -> StoreBox {
    AbiSecretStore_TO::from_value(StoreAdapter(store), TD_Opaque)
}

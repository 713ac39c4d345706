//! `SecretStore` across the boundary: the ABI trait object, the plugin-side
//! adapter around the author's store, and the host-side handle.

use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::{
    StableAbi, sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
};

use crate::PluginError;
use crate::error::panic_to_error;
use crate::store::{SecretStore, Version, Versioned};

/// A versioned value as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi)]
pub struct AbiVersioned {
    /// The bytes.
    pub value: RVec<u8>,
    /// The version.
    pub version: u64,
}

/// The ABI form of [`SecretStore`].
#[sabi_trait]
pub trait AbiSecretStore: Send + Sync {
    /// See [`SecretStore::get`].
    fn get(&self, key: RStr<'_>) -> RResult<ROption<AbiVersioned>, PluginError>;
    /// See [`SecretStore::put`].
    fn put(
        &self,
        key: RStr<'_>,
        value: RSlice<'_, u8>,
        expected: ROption<u64>,
    ) -> RResult<u64, PluginError>;
    /// See [`SecretStore::delete`].
    fn delete(&self, key: RStr<'_>, expected: u64) -> RResult<(), PluginError>;
    /// See [`SecretStore::list`].
    #[sabi(last_prefix_field)]
    fn list(&self, prefix: RStr<'_>) -> RResult<RVec<RString>, PluginError>;
}

/// An owned store object as it crosses the boundary.
pub type StoreBox = AbiSecretStore_TO<'static, RBox<()>>;

/// Runs `f`, turning a panic into an `Internal` error naming `what`.
pub(crate) fn guarded<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, PluginError>,
) -> RResult<T, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(payload) => RResult::RErr(panic_to_error(what, payload)),
    }
}

struct StoreAdapter<S>(S);

impl<S: SecretStore> AbiSecretStore for StoreAdapter<S> {
    fn get(&self, key: RStr<'_>) -> RResult<ROption<AbiVersioned>, PluginError> {
        guarded("get", || {
            Ok(self
                .0
                .get(key.as_str())?
                .map(|v| AbiVersioned {
                    value: v.value.into(),
                    version: v.version,
                })
                .into())
        })
    }

    fn put(
        &self,
        key: RStr<'_>,
        value: RSlice<'_, u8>,
        expected: ROption<u64>,
    ) -> RResult<u64, PluginError> {
        guarded("put", || {
            self.0
                .put(key.as_str(), value.as_slice(), expected.into_option())
        })
    }

    fn delete(&self, key: RStr<'_>, expected: u64) -> RResult<(), PluginError> {
        guarded("delete", || self.0.delete(key.as_str(), expected))
    }

    fn list(&self, prefix: RStr<'_>) -> RResult<RVec<RString>, PluginError> {
        guarded("list", || {
            Ok(self
                .0
                .list(prefix.as_str())?
                .into_iter()
                .map(RString::from)
                .collect())
        })
    }
}

/// Wraps an author's store for export.
pub fn export_store(store: impl SecretStore) -> StoreBox {
    AbiSecretStore_TO::from_value(StoreAdapter(store), TD_Opaque)
}

/// The host's handle on a store obtained through the ABI. It implements
/// [`SecretStore`], so host code cannot tell a built-in from a library.
pub struct StoreHandle(StoreBox);

impl StoreHandle {
    pub(crate) fn new(inner: StoreBox) -> Self {
        Self(inner)
    }
}

impl SecretStore for StoreHandle {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        let found = self.0.get(key.into()).into_result()?;
        Ok(found.into_option().map(|v| Versioned {
            value: v.value.into_vec(),
            version: v.version,
        }))
    }

    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        self.0
            .put(key.into(), value.into(), expected.into())
            .into_result()
    }

    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        self.0.delete(key.into(), expected).into_result()
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        let keys = self.0.list(prefix.into()).into_result()?;
        Ok(keys.into_iter().map(String::from).collect())
    }
}

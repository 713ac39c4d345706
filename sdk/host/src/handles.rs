//! The host's handles on plugins obtained through the ABI. Each implements
//! its SDK trait by converting to the ABI types, calling across, and
//! converting back, so host code cannot tell a built-in from a library.

use abi_stable::std_types::{ROption, RVec};
use keygate_sdk::abi::approval::{AbiApprovalRequest, ApprovalBox};
use keygate_sdk::abi::batch::{AbiBatchOp, AbiStoreParts, BatchBox};
use keygate_sdk::abi::error::from_abi;
use keygate_sdk::abi::store::{AbiVersioned, StoreBox};
use keygate_sdk::abi::transport::{TransportBox, host_box};
use keygate_sdk::abi::watch::{AbiWatchedParts, WatchBox};
use keygate_sdk::{
    ApprovalPolicy, ApprovalRequest, BatchOp, BatchStore, ConnectParams, ConnectionId, Decision,
    ListenParams, PluginError, SecretStore, StreamId, TlsIdentity, Transport, TransportHost,
    Version, Versioned, WatchStore,
};

/// A store obtained through the ABI, with the capabilities its library
/// exported it with.
///
/// A `StoreHandle` implements [`SecretStore`] only. When the store has the
/// batch capability ([`has_batch`](Self::has_batch)),
/// [`into_batch`](Self::into_batch) turns the handle into a
/// [`BatchStoreHandle`], which implements [`BatchStore`] as well; both
/// kinds of call then reach the one store the plugin built. Likewise
/// [`take_watch`](Self::take_watch) gives the store's [`WatchHandle`] when
/// it has the watch capability.
pub struct StoreHandle {
    store: StoreBox,
    batch: Option<BatchBox>,
    watch: Option<WatchBox>,
}

impl StoreHandle {
    /// A store from a library's `new_store` (no capabilities).
    pub(crate) fn new(store: StoreBox) -> Self {
        Self {
            store,
            batch: None,
            watch: None,
        }
    }

    /// A store from a library's `new_store_parts`.
    pub(crate) fn from_parts(parts: AbiStoreParts) -> Self {
        Self {
            store: parts.store,
            batch: parts.batch.into_option(),
            watch: None,
        }
    }

    /// A store from a library's `new_store_watched`.
    pub(crate) fn from_watched(all: AbiWatchedParts) -> Self {
        Self {
            watch: all.watch.into_option(),
            ..Self::from_parts(all.parts)
        }
    }

    /// Whether the plugin exported the store with the watch capability
    /// (`stores: [MyStore: watch]`) and its watch object was not taken
    /// yet. Always `false` for a library built before the capability
    /// existed.
    pub fn has_watch(&self) -> bool {
        self.watch.is_some()
    }

    /// The store's watch object, when it has the watch capability: it
    /// reaches the same store inside the plugin. Taken once (`None`
    /// afterwards), before [`into_batch`](Self::into_batch) if both are
    /// wanted.
    pub fn take_watch(&mut self) -> Option<WatchHandle> {
        self.watch.take().map(WatchHandle)
    }

    /// Whether the plugin exported the store with the batch capability
    /// (`stores: [MyStore: batch]`). Always `false` for a library built
    /// before the capability existed.
    pub fn has_batch(&self) -> bool {
        self.batch.is_some()
    }

    /// The same store as a [`BatchStoreHandle`] when it has the batch
    /// capability; otherwise the handle back, unchanged.
    pub fn into_batch(self) -> Result<BatchStoreHandle, StoreHandle> {
        match self.batch {
            Some(batch) => Ok(BatchStoreHandle {
                store: StoreHandle {
                    store: self.store,
                    batch: None,
                    watch: self.watch,
                },
                batch,
            }),
            None => Err(self),
        }
    }
}

/// A store's watch object, obtained through the ABI
/// ([`StoreHandle::take_watch`]).
pub struct WatchHandle(WatchBox);

impl std::fmt::Debug for WatchHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHandle").finish_non_exhaustive()
    }
}

impl WatchStore for WatchHandle {
    fn wait_for_writes(&self, seen: u64, timeout: std::time::Duration) -> Result<u64, PluginError> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        from_abi(self.0.wait_for_writes(seen, ms))
    }
}

/// A store with the batch capability, obtained through the ABI
/// ([`StoreHandle::into_batch`]). Its [`SecretStore`] and [`BatchStore`]
/// methods reach one and the same store inside the plugin.
pub struct BatchStoreHandle {
    store: StoreHandle,
    batch: BatchBox,
}

impl std::fmt::Debug for BatchStoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchStoreHandle").finish_non_exhaustive()
    }
}

impl SecretStore for BatchStoreHandle {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        self.store.get(key)
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        self.store.put(key, value, expected)
    }
    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        self.store.delete(key, expected)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        self.store.list(prefix)
    }
    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        self.store.quarantine(key)
    }
}

impl BatchStore for BatchStoreHandle {
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
        let ops: Vec<AbiBatchOp<'_>> = ops.iter().map(AbiBatchOp::from).collect();
        let versions: RVec<ROption<u64>> = from_abi(self.batch.apply_batch(ops.as_slice().into()))?;
        Ok(versions.into_iter().map(ROption::into_option).collect())
    }
}

impl SecretStore for StoreHandle {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        let found = from_abi::<_, ROption<AbiVersioned>>(self.store.get(key.into()))?;
        Ok(found.into_option().map(Versioned::from))
    }

    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        from_abi(self.store.put(key.into(), value.into(), expected.into()))
    }

    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        from_abi(self.store.delete(key.into(), expected))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        let keys: RVec<_> = from_abi(self.store.list(prefix.into()))?;
        Ok(keys.into_iter().map(|k| k.into_string()).collect())
    }

    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        let place: abi_stable::std_types::RString = from_abi(self.store.quarantine(key.into()))?;
        Ok(place.into_string())
    }
}

/// A policy obtained through the ABI.
pub struct ApprovalHandle(ApprovalBox);

impl ApprovalHandle {
    pub(crate) fn new(inner: ApprovalBox) -> Self {
        Self(inner)
    }
}

impl ApprovalPolicy for ApprovalHandle {
    fn evaluate(&self, request: &ApprovalRequest) -> Result<Decision, PluginError> {
        from_abi(self.0.evaluate(&AbiApprovalRequest::from(request)))
    }
}

/// A transport obtained through the ABI.
pub struct TransportHandle(TransportBox);

impl TransportHandle {
    pub(crate) fn new(inner: TransportBox) -> Self {
        Self(inner)
    }
}

impl Transport for TransportHandle {
    fn listen(&self, params: ListenParams, host: TransportHost) -> Result<String, PluginError> {
        let addr: abi_stable::std_types::RString =
            from_abi(self.0.listen(params.into(), host_box(host)))?;
        Ok(addr.into_string())
    }
    fn connect(
        &self,
        params: ConnectParams,
        host: TransportHost,
    ) -> Result<ConnectionId, PluginError> {
        from_abi(self.0.connect(params.into(), host_box(host)))
    }
    fn open_stream(&self, connection: ConnectionId) -> Result<StreamId, PluginError> {
        from_abi(self.0.open_stream(connection))
    }
    fn send_frame(
        &self,
        connection: ConnectionId,
        stream: StreamId,
        frame: &[u8],
    ) -> Result<(), PluginError> {
        from_abi(self.0.send_frame(connection, stream, frame.into()))
    }
    fn finish_stream(&self, connection: ConnectionId, stream: StreamId) -> Result<(), PluginError> {
        from_abi(self.0.finish_stream(connection, stream))
    }
    fn close_connection(
        &self,
        connection: ConnectionId,
        code: u32,
        reason: &str,
    ) -> Result<(), PluginError> {
        from_abi(self.0.close_connection(connection, code, reason.into()))
    }
    fn export_keying_material(
        &self,
        connection: ConnectionId,
        label: &[u8],
        context: &[u8],
        len: u32,
    ) -> Result<Vec<u8>, PluginError> {
        let bytes: RVec<u8> =
            from_abi(
                self.0
                    .export_keying_material(connection, label.into(), context.into(), len),
            )?;
        Ok(bytes.into_vec())
    }
    fn set_server_identity(&self, identity: TlsIdentity) -> Result<(), PluginError> {
        from_abi(self.0.set_server_identity(identity.into()))
    }
    fn shutdown(&self) -> Result<(), PluginError> {
        from_abi(self.0.shutdown())
    }
}

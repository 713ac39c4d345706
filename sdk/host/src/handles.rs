//! The host's handles on plugins obtained through the ABI. Each implements
//! its SDK trait by converting to the ABI types, calling across, and
//! converting back, so host code cannot tell a built-in from a library.

use abi_stable::std_types::RVec;
use keygate_sdk::abi::approval::{AbiApprovalRequest, ApprovalBox};
use keygate_sdk::abi::error::from_abi;
use keygate_sdk::abi::store::{AbiVersioned, StoreBox};
use keygate_sdk::abi::transport::{TransportBox, host_box};
use keygate_sdk::{
    ApprovalPolicy, ApprovalRequest, ConnectParams, ConnectionId, Decision, ListenParams,
    PluginError, SecretStore, StreamId, TlsIdentity, Transport, TransportHost, Version, Versioned,
};

/// A store obtained through the ABI.
pub struct StoreHandle(StoreBox);

impl StoreHandle {
    pub(crate) fn new(inner: StoreBox) -> Self {
        Self(inner)
    }
}

impl SecretStore for StoreHandle {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        let found =
            from_abi::<_, abi_stable::std_types::ROption<AbiVersioned>>(self.0.get(key.into()))?;
        Ok(found.into_option().map(Versioned::from))
    }

    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        from_abi(self.0.put(key.into(), value.into(), expected.into()))
    }

    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        from_abi(self.0.delete(key.into(), expected))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        let keys: RVec<_> = from_abi(self.0.list(prefix.into()))?;
        Ok(keys.into_iter().map(|k| k.into_string()).collect())
    }

    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        let place: abi_stable::std_types::RString = from_abi(self.0.quarantine(key.into()))?;
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

//! A constructed plugin together with its label, so every error it returns
//! names the slot and the plugin: `store(sqlite): …`.

use keygate_sdk::{
    ApprovalPolicy, ApprovalRequest, BatchOp, BatchStore, ConnectParams, ConnectionId, Decision,
    ListenParams, PluginError, SecretStore, StreamId, TlsIdentity, Transport, TransportHost,
    Version, Versioned, WatchStore,
};

/// A plugin handle labelled `slot(name)`.
pub struct Slot<T> {
    label: String,
    inner: T,
}

impl<T> Slot<T> {
    /// Wraps `inner` under `label`.
    pub fn new(label: String, inner: T) -> Self {
        Self { label, inner }
    }

    /// The same handle under another label.
    pub fn labelled(self, label: &str) -> Self {
        Self {
            label: label.to_owned(),
            inner: self.inner,
        }
    }

    /// `slot(name)`.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn ctx<R>(&self, result: Result<R, PluginError>) -> Result<R, PluginError> {
        result.map_err(|e| e.context(&self.label))
    }
}

impl<S: SecretStore> SecretStore for Slot<S> {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        self.ctx(self.inner.get(key))
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        self.ctx(self.inner.put(key, value, expected))
    }
    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        self.ctx(self.inner.delete(key, expected))
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        self.ctx(self.inner.list(prefix))
    }
    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        self.ctx(self.inner.quarantine(key))
    }
}

impl<S: BatchStore> BatchStore for Slot<S> {
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
        self.ctx(self.inner.apply_batch(ops))
    }
}

impl<W: WatchStore> WatchStore for Slot<W> {
    fn wait_for_writes(&self, seen: u64, timeout: std::time::Duration) -> Result<u64, PluginError> {
        self.ctx(self.inner.wait_for_writes(seen, timeout))
    }
}

impl<P: ApprovalPolicy> ApprovalPolicy for Slot<P> {
    fn evaluate(&self, request: &ApprovalRequest) -> Result<Decision, PluginError> {
        self.ctx(self.inner.evaluate(request))
    }
}

impl<T: Transport> Transport for Slot<T> {
    fn listen(&self, params: ListenParams, host: TransportHost) -> Result<String, PluginError> {
        self.ctx(self.inner.listen(params, host))
    }
    fn connect(
        &self,
        params: ConnectParams,
        host: TransportHost,
    ) -> Result<ConnectionId, PluginError> {
        self.ctx(self.inner.connect(params, host))
    }
    fn open_stream(&self, connection: ConnectionId) -> Result<StreamId, PluginError> {
        self.ctx(self.inner.open_stream(connection))
    }
    fn send_frame(
        &self,
        connection: ConnectionId,
        stream: StreamId,
        frame: &[u8],
    ) -> Result<(), PluginError> {
        self.ctx(self.inner.send_frame(connection, stream, frame))
    }
    fn finish_stream(&self, connection: ConnectionId, stream: StreamId) -> Result<(), PluginError> {
        self.ctx(self.inner.finish_stream(connection, stream))
    }
    fn close_connection(
        &self,
        connection: ConnectionId,
        code: u32,
        reason: &str,
    ) -> Result<(), PluginError> {
        self.ctx(self.inner.close_connection(connection, code, reason))
    }
    fn export_keying_material(
        &self,
        connection: ConnectionId,
        label: &[u8],
        context: &[u8],
        len: u32,
    ) -> Result<Vec<u8>, PluginError> {
        self.ctx(
            self.inner
                .export_keying_material(connection, label, context, len),
        )
    }
    fn set_server_identity(&self, identity: TlsIdentity) -> Result<(), PluginError> {
        self.ctx(self.inner.set_server_identity(identity))
    }
    fn shutdown(&self) -> Result<(), PluginError> {
        self.ctx(self.inner.shutdown())
    }
}

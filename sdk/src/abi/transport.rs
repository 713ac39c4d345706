//! `Transport` across the boundary, in both directions: the plugin object
//! the host calls, and the host callbacks the plugin calls.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use abi_stable::{
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RArc, RBox, RResult, RSlice, RStr, RString, RVec},
};

use super::store::guarded;
use crate::PluginError;
use crate::error::panic_to_error;
use crate::transport::{
    ConnectParams, ConnectionId, ListenParams, StreamId, TlsIdentity, Transport,
    TransportCallbacks, TransportEvent, TransportHost,
};

/// The ABI form of [`TransportCallbacks`] (host side).
#[sabi_trait]
pub trait AbiHostCallbacks: Send + Sync + Clone {
    /// See [`TransportCallbacks::verify_client`].
    fn verify_client(&self, chain: RSlice<'_, RVec<u8>>) -> RResult<(), PluginError>;
    /// See [`TransportCallbacks::on_event`].
    #[sabi(last_prefix_field)]
    fn on_event(&self, event: TransportEvent);
}

/// A shareable host-callbacks object.
pub type HostCallbacksBox = AbiHostCallbacks_TO<'static, RArc<()>>;

#[derive(Clone)]
struct CallbacksAdapter(Arc<dyn TransportCallbacks>);

impl AbiHostCallbacks for CallbacksAdapter {
    fn verify_client(&self, chain: RSlice<'_, RVec<u8>>) -> RResult<(), PluginError> {
        match catch_unwind(AssertUnwindSafe(|| self.0.verify_client(chain.as_slice()))) {
            Ok(r) => r.into(),
            Err(p) => RResult::RErr(panic_to_error("host verify_client", p)),
        }
    }

    fn on_event(&self, event: TransportEvent) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.0.on_event(event)));
    }
}

pub(crate) fn host_box(callbacks: impl TransportCallbacks) -> TransportHost {
    TransportHost(AbiHostCallbacks_TO::from_ptr(
        RArc::new(CallbacksAdapter(Arc::new(callbacks))),
        TD_Opaque,
    ))
}

/// The ABI form of [`Transport`].
#[sabi_trait]
pub trait AbiTransport: Send + Sync {
    /// See [`Transport::listen`].
    fn listen(&self, params: ListenParams, host: HostCallbacksBox)
    -> RResult<RString, PluginError>;
    /// See [`Transport::connect`].
    fn connect(&self, params: ConnectParams, host: HostCallbacksBox) -> RResult<u64, PluginError>;
    /// See [`Transport::open_stream`].
    fn open_stream(&self, connection: u64) -> RResult<u64, PluginError>;
    /// See [`Transport::send_frame`].
    fn send_frame(
        &self,
        connection: u64,
        stream: u64,
        frame: RSlice<'_, u8>,
    ) -> RResult<(), PluginError>;
    /// See [`Transport::finish_stream`].
    fn finish_stream(&self, connection: u64, stream: u64) -> RResult<(), PluginError>;
    /// See [`Transport::close_connection`].
    fn close_connection(
        &self,
        connection: u64,
        code: u32,
        reason: RStr<'_>,
    ) -> RResult<(), PluginError>;
    /// See [`Transport::export_keying_material`].
    fn export_keying_material(
        &self,
        connection: u64,
        label: RSlice<'_, u8>,
        context: RSlice<'_, u8>,
        len: u32,
    ) -> RResult<RVec<u8>, PluginError>;
    /// See [`Transport::set_server_identity`].
    fn set_server_identity(&self, identity: TlsIdentity) -> RResult<(), PluginError>;
    /// See [`Transport::shutdown`].
    #[sabi(last_prefix_field)]
    fn shutdown(&self) -> RResult<(), PluginError>;
}

/// An owned transport object as it crosses the boundary.
pub type TransportBox = AbiTransport_TO<'static, RBox<()>>;

struct TransportAdapter<T>(T);

impl<T: Transport> AbiTransport for TransportAdapter<T> {
    fn listen(
        &self,
        params: ListenParams,
        host: HostCallbacksBox,
    ) -> RResult<RString, PluginError> {
        guarded("listen", || {
            self.0
                .listen(params, TransportHost(host))
                .map(RString::from)
        })
    }
    fn connect(&self, params: ConnectParams, host: HostCallbacksBox) -> RResult<u64, PluginError> {
        guarded("connect", || self.0.connect(params, TransportHost(host)))
    }
    fn open_stream(&self, connection: u64) -> RResult<u64, PluginError> {
        guarded("open_stream", || self.0.open_stream(connection))
    }
    fn send_frame(
        &self,
        connection: u64,
        stream: u64,
        frame: RSlice<'_, u8>,
    ) -> RResult<(), PluginError> {
        guarded("send_frame", || {
            self.0.send_frame(connection, stream, frame.as_slice())
        })
    }
    fn finish_stream(&self, connection: u64, stream: u64) -> RResult<(), PluginError> {
        guarded("finish_stream", || self.0.finish_stream(connection, stream))
    }
    fn close_connection(
        &self,
        connection: u64,
        code: u32,
        reason: RStr<'_>,
    ) -> RResult<(), PluginError> {
        guarded("close_connection", || {
            self.0.close_connection(connection, code, reason.as_str())
        })
    }
    fn export_keying_material(
        &self,
        connection: u64,
        label: RSlice<'_, u8>,
        context: RSlice<'_, u8>,
        len: u32,
    ) -> RResult<RVec<u8>, PluginError> {
        guarded("export_keying_material", || {
            self.0
                .export_keying_material(connection, label.as_slice(), context.as_slice(), len)
                .map(RVec::from)
        })
    }
    fn set_server_identity(&self, identity: TlsIdentity) -> RResult<(), PluginError> {
        guarded("set_server_identity", || {
            self.0.set_server_identity(identity)
        })
    }
    fn shutdown(&self) -> RResult<(), PluginError> {
        guarded("shutdown", || self.0.shutdown())
    }
}

/// Wraps an author's transport for export.
pub fn export_transport(transport: impl Transport) -> TransportBox {
    AbiTransport_TO::from_value(TransportAdapter(transport), TD_Opaque)
}

/// The host's handle on a transport obtained through the ABI.
pub struct TransportHandle(TransportBox);

impl TransportHandle {
    pub(crate) fn new(inner: TransportBox) -> Self {
        Self(inner)
    }
}

impl Transport for TransportHandle {
    fn listen(&self, params: ListenParams, host: TransportHost) -> Result<String, PluginError> {
        self.0
            .listen(params, host.0)
            .into_result()
            .map(String::from)
    }
    fn connect(
        &self,
        params: ConnectParams,
        host: TransportHost,
    ) -> Result<ConnectionId, PluginError> {
        self.0.connect(params, host.0).into_result()
    }
    fn open_stream(&self, connection: ConnectionId) -> Result<StreamId, PluginError> {
        self.0.open_stream(connection).into_result()
    }
    fn send_frame(
        &self,
        connection: ConnectionId,
        stream: StreamId,
        frame: &[u8],
    ) -> Result<(), PluginError> {
        self.0
            .send_frame(connection, stream, frame.into())
            .into_result()
    }
    fn finish_stream(&self, connection: ConnectionId, stream: StreamId) -> Result<(), PluginError> {
        self.0.finish_stream(connection, stream).into_result()
    }
    fn close_connection(
        &self,
        connection: ConnectionId,
        code: u32,
        reason: &str,
    ) -> Result<(), PluginError> {
        self.0
            .close_connection(connection, code, reason.into())
            .into_result()
    }
    fn export_keying_material(
        &self,
        connection: ConnectionId,
        label: &[u8],
        context: &[u8],
        len: u32,
    ) -> Result<Vec<u8>, PluginError> {
        self.0
            .export_keying_material(connection, label.into(), context.into(), len)
            .into_result()
            .map(RVec::into_vec)
    }
    fn set_server_identity(&self, identity: TlsIdentity) -> Result<(), PluginError> {
        self.0.set_server_identity(identity).into_result()
    }
    fn shutdown(&self) -> Result<(), PluginError> {
        self.0.shutdown().into_result()
    }
}

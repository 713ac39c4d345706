//! `Transport` across the boundary, in both directions: the plugin object
//! the host calls, and the host callbacks the plugin calls.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use abi_stable::{
    StableAbi, sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RArc, RBox, ROption, RResult, RSlice, RStr, RString, RVec},
};

use super::error::{AbiResult, from_abi, guarded};
use super::{from_abi_chain, to_abi_chain};
use crate::PluginError;
use crate::error::panic_to_error;
use crate::transport::{
    ConnectParams, ConnectionInfo, FrameReceived, ListenParams, ServerTrust, TlsIdentity,
    Transport, TransportCallbacks, TransportEvent, TransportHost,
};

/// The ABI form of [`TlsIdentity`].
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct AbiTlsIdentity {
    cert_chain: RVec<RVec<u8>>,
    private_key_der: RVec<u8>,
}

impl From<TlsIdentity> for AbiTlsIdentity {
    fn from(i: TlsIdentity) -> Self {
        Self {
            cert_chain: to_abi_chain(&i.cert_chain),
            private_key_der: i.private_key_der.into(),
        }
    }
}

impl From<AbiTlsIdentity> for TlsIdentity {
    fn from(i: AbiTlsIdentity) -> Self {
        Self {
            cert_chain: from_abi_chain(i.cert_chain),
            private_key_der: i.private_key_der.into_vec(),
        }
    }
}

/// The ABI form of [`ServerTrust`].
#[repr(u8)]
#[derive(StableAbi, Clone)]
pub enum AbiServerTrust {
    /// [`ServerTrust::Roots`].
    Roots(RVec<RVec<u8>>),
    /// [`ServerTrust::PinnedCaSha256`].
    PinnedCaSha256([u8; 32]),
    /// [`ServerTrust::ChannelBoundLater`].
    ChannelBoundLater,
}

impl From<ServerTrust> for AbiServerTrust {
    fn from(t: ServerTrust) -> Self {
        match t {
            ServerTrust::Roots(roots) => Self::Roots(to_abi_chain(&roots)),
            ServerTrust::PinnedCaSha256(pin) => Self::PinnedCaSha256(pin),
            ServerTrust::ChannelBoundLater => Self::ChannelBoundLater,
        }
    }
}

impl From<AbiServerTrust> for ServerTrust {
    fn from(t: AbiServerTrust) -> Self {
        match t {
            AbiServerTrust::Roots(roots) => Self::Roots(from_abi_chain(roots)),
            AbiServerTrust::PinnedCaSha256(pin) => Self::PinnedCaSha256(pin),
            AbiServerTrust::ChannelBoundLater => Self::ChannelBoundLater,
        }
    }
}

/// The ABI form of [`ListenParams`].
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct AbiListenParams {
    addr: RString,
    identity: AbiTlsIdentity,
    client_ca_roots: RVec<RVec<u8>>,
    require_client_cert: bool,
    max_frame_len: u32,
}

impl From<ListenParams> for AbiListenParams {
    fn from(p: ListenParams) -> Self {
        Self {
            addr: p.addr.into(),
            identity: p.identity.into(),
            client_ca_roots: to_abi_chain(&p.client_ca_roots),
            require_client_cert: p.require_client_cert,
            max_frame_len: p.max_frame_len,
        }
    }
}

impl From<AbiListenParams> for ListenParams {
    fn from(p: AbiListenParams) -> Self {
        Self {
            addr: p.addr.into_string(),
            identity: p.identity.into(),
            client_ca_roots: from_abi_chain(p.client_ca_roots),
            require_client_cert: p.require_client_cert,
            max_frame_len: p.max_frame_len,
        }
    }
}

/// The ABI form of [`ConnectParams`].
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct AbiConnectParams {
    remote_addr: RString,
    server_name: RString,
    trust: AbiServerTrust,
    client_identity: ROption<AbiTlsIdentity>,
    max_frame_len: u32,
}

impl From<ConnectParams> for AbiConnectParams {
    fn from(p: ConnectParams) -> Self {
        Self {
            remote_addr: p.remote_addr.into(),
            server_name: p.server_name.into(),
            trust: p.trust.into(),
            client_identity: p.client_identity.map(AbiTlsIdentity::from).into(),
            max_frame_len: p.max_frame_len,
        }
    }
}

impl From<AbiConnectParams> for ConnectParams {
    fn from(p: AbiConnectParams) -> Self {
        Self {
            remote_addr: p.remote_addr.into_string(),
            server_name: p.server_name.into_string(),
            trust: p.trust.into(),
            client_identity: p.client_identity.into_option().map(TlsIdentity::from),
            max_frame_len: p.max_frame_len,
        }
    }
}

/// The ABI form of [`ConnectionInfo`].
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct AbiConnectionInfo {
    connection: u64,
    remote_addr: RString,
    peer_certificates: RVec<RVec<u8>>,
    outbound: bool,
}

/// The ABI form of [`FrameReceived`].
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct AbiFrameReceived {
    connection: u64,
    stream: u64,
    payload: RVec<u8>,
}

/// The ABI form of [`TransportEvent`].
#[repr(u8)]
#[derive(StableAbi, Clone)]
pub enum AbiTransportEvent {
    /// [`TransportEvent::Connected`].
    Connected(AbiConnectionInfo),
    /// [`TransportEvent::Frame`].
    Frame(AbiFrameReceived),
    /// [`TransportEvent::StreamFinished`].
    StreamFinished {
        /// The connection.
        connection: u64,
        /// The stream.
        stream: u64,
    },
    /// [`TransportEvent::Closed`].
    Closed {
        /// The connection.
        connection: u64,
        /// Why.
        reason: RString,
    },
}

impl From<TransportEvent> for AbiTransportEvent {
    fn from(e: TransportEvent) -> Self {
        match e {
            TransportEvent::Connected(i) => Self::Connected(AbiConnectionInfo {
                connection: i.connection,
                remote_addr: i.remote_addr.into(),
                peer_certificates: to_abi_chain(&i.peer_certificates),
                outbound: i.outbound,
            }),
            TransportEvent::Frame(f) => Self::Frame(AbiFrameReceived {
                connection: f.connection,
                stream: f.stream,
                payload: f.payload.into(),
            }),
            TransportEvent::StreamFinished { connection, stream } => {
                Self::StreamFinished { connection, stream }
            }
            TransportEvent::Closed { connection, reason } => Self::Closed {
                connection,
                reason: reason.into(),
            },
        }
    }
}

impl From<AbiTransportEvent> for TransportEvent {
    fn from(e: AbiTransportEvent) -> Self {
        match e {
            AbiTransportEvent::Connected(i) => Self::Connected(ConnectionInfo {
                connection: i.connection,
                remote_addr: i.remote_addr.into_string(),
                peer_certificates: from_abi_chain(i.peer_certificates),
                outbound: i.outbound,
            }),
            AbiTransportEvent::Frame(f) => Self::Frame(FrameReceived {
                connection: f.connection,
                stream: f.stream,
                payload: f.payload.into_vec(),
            }),
            AbiTransportEvent::StreamFinished { connection, stream } => {
                Self::StreamFinished { connection, stream }
            }
            AbiTransportEvent::Closed { connection, reason } => Self::Closed {
                connection,
                reason: reason.into_string(),
            },
        }
    }
}

/// The ABI form of [`TransportCallbacks`] (host side).
#[sabi_trait]
pub trait AbiHostCallbacks: Send + Sync + Clone {
    /// See [`TransportCallbacks::verify_client`].
    fn verify_client(&self, chain: RSlice<'_, RVec<u8>>) -> AbiResult<()>;
    /// See [`TransportCallbacks::on_event`].
    #[sabi(last_prefix_field)]
    fn on_event(&self, event: AbiTransportEvent);
}

/// A shareable host-callbacks object.
pub type HostCallbacksBox = AbiHostCallbacks_TO<'static, RArc<()>>;

/// The host's callbacks, exported.
#[derive(Clone)]
struct CallbacksAdapter(Arc<dyn TransportCallbacks>);

impl AbiHostCallbacks for CallbacksAdapter {
    fn verify_client(&self, chain: RSlice<'_, RVec<u8>>) -> AbiResult<()> {
        let chain: Vec<Vec<u8>> = chain.iter().map(|c| c.to_vec()).collect();
        match catch_unwind(AssertUnwindSafe(|| self.0.verify_client(&chain))) {
            Ok(r) => r.map_err(Into::into).into(),
            Err(p) => RResult::RErr(panic_to_error("host verify_client", p).into()),
        }
    }

    fn on_event(&self, event: AbiTransportEvent) {
        let _ = catch_unwind(AssertUnwindSafe(|| self.0.on_event(event.into())));
    }
}

/// Exported callbacks, as the plugin calls them.
struct CallbacksClient(HostCallbacksBox);

impl TransportCallbacks for CallbacksClient {
    fn verify_client(&self, chain: &[Vec<u8>]) -> Result<(), PluginError> {
        let chain = to_abi_chain(chain);
        from_abi(self.0.verify_client(chain.as_slice().into()))
    }

    fn on_event(&self, event: TransportEvent) {
        self.0.on_event(event.into());
    }
}

/// The host's [`TransportHost`] as it crosses the boundary.
pub fn host_box(host: TransportHost) -> HostCallbacksBox {
    AbiHostCallbacks_TO::from_ptr(RArc::new(CallbacksAdapter(host.0)), TD_Opaque)
}

/// A [`TransportHost`] for the plugin, calling back through `host`.
pub fn host_from_box(host: HostCallbacksBox) -> TransportHost {
    TransportHost(Arc::new(CallbacksClient(host)))
}

/// The ABI form of [`Transport`].
#[sabi_trait]
pub trait AbiTransport: Send + Sync {
    /// See [`Transport::listen`].
    fn listen(&self, params: AbiListenParams, host: HostCallbacksBox) -> AbiResult<RString>;
    /// See [`Transport::connect`].
    fn connect(&self, params: AbiConnectParams, host: HostCallbacksBox) -> AbiResult<u64>;
    /// See [`Transport::open_stream`].
    fn open_stream(&self, connection: u64) -> AbiResult<u64>;
    /// See [`Transport::send_frame`].
    fn send_frame(&self, connection: u64, stream: u64, frame: RSlice<'_, u8>) -> AbiResult<()>;
    /// See [`Transport::finish_stream`].
    fn finish_stream(&self, connection: u64, stream: u64) -> AbiResult<()>;
    /// See [`Transport::close_connection`].
    fn close_connection(&self, connection: u64, code: u32, reason: RStr<'_>) -> AbiResult<()>;
    /// See [`Transport::export_keying_material`].
    fn export_keying_material(
        &self,
        connection: u64,
        label: RSlice<'_, u8>,
        context: RSlice<'_, u8>,
        len: u32,
    ) -> AbiResult<RVec<u8>>;
    /// See [`Transport::set_server_identity`].
    fn set_server_identity(&self, identity: AbiTlsIdentity) -> AbiResult<()>;
    /// See [`Transport::shutdown`].
    #[sabi(last_prefix_field)]
    fn shutdown(&self) -> AbiResult<()>;
}

/// An owned transport object as it crosses the boundary.
pub type TransportBox = AbiTransport_TO<'static, RBox<()>>;

struct TransportAdapter<T>(T);

impl<T: Transport> AbiTransport for TransportAdapter<T> {
    fn listen(&self, params: AbiListenParams, host: HostCallbacksBox) -> AbiResult<RString> {
        guarded("listen", || {
            self.0
                .listen(params.into(), host_from_box(host))
                .map(RString::from)
        })
    }
    fn connect(&self, params: AbiConnectParams, host: HostCallbacksBox) -> AbiResult<u64> {
        guarded("connect", || {
            self.0.connect(params.into(), host_from_box(host))
        })
    }
    fn open_stream(&self, connection: u64) -> AbiResult<u64> {
        guarded("open_stream", || self.0.open_stream(connection))
    }
    fn send_frame(&self, connection: u64, stream: u64, frame: RSlice<'_, u8>) -> AbiResult<()> {
        guarded("send_frame", || {
            self.0.send_frame(connection, stream, frame.as_slice())
        })
    }
    fn finish_stream(&self, connection: u64, stream: u64) -> AbiResult<()> {
        guarded("finish_stream", || self.0.finish_stream(connection, stream))
    }
    fn close_connection(&self, connection: u64, code: u32, reason: RStr<'_>) -> AbiResult<()> {
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
    ) -> AbiResult<RVec<u8>> {
        guarded("export_keying_material", || {
            self.0
                .export_keying_material(connection, label.as_slice(), context.as_slice(), len)
                .map(RVec::from)
        })
    }
    fn set_server_identity(&self, identity: AbiTlsIdentity) -> AbiResult<()> {
        guarded("set_server_identity", || {
            self.0.set_server_identity(identity.into())
        })
    }
    fn shutdown(&self) -> AbiResult<()> {
        guarded("shutdown", || self.0.shutdown())
    }
}

/// Wraps an author's transport for export.
pub fn export_transport(transport: impl Transport) -> TransportBox {
    AbiTransport_TO::from_value(TransportAdapter(transport), TD_Opaque)
}

//! The `Transport` plugin kind: a frame-oriented, mutually authenticated
//! connection layer (the built-in one is QUIC).
//!
//! No future and no runtime crosses the boundary. The plugin owns its I/O
//! threads; the host calls in with plain blocking calls (send a frame, open a
//! stream, close a connection) and the plugin calls back through a
//! [`TransportHost`]: once per client certificate chain during the handshake
//! ([`TransportHost::verify_client`], where the host checks revocation) and
//! once per event (connection opened, frame received, stream finished,
//! connection closed).
//!
//! A frame is one message: the plugin delimits frames on its streams and
//! never delivers a partial one, nor one longer than the `max_frame_len` it
//! was given.

use std::sync::Arc;

use crate::PluginError;

/// A connection, numbered by the plugin, unique for the transport's life.
pub type ConnectionId = u64;
/// A stream within a connection, numbered by the plugin.
pub type StreamId = u64;

/// A certificate chain (leaf first, DER) and its PKCS#8 DER private key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// Leaf first, each certificate DER-encoded.
    pub cert_chain: Vec<Vec<u8>>,
    /// PKCS#8 DER private key of the leaf.
    pub private_key_der: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.cert_chain.len())
            .finish_non_exhaustive()
    }
}

/// How a client decides to trust the server it connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerTrust {
    /// The server chain must verify against these DER roots and name the
    /// server name.
    Roots(Vec<Vec<u8>>),
    /// The server chain must end in a CA certificate whose SHA-256 (of its
    /// DER) is this, and the leaf must be signed by that CA (QR pairing: the
    /// fingerprint comes from the QR code).
    PinnedCaSha256([u8; 32]),
    /// Any server certificate is accepted: the caller authenticates the
    /// connection afterwards by binding [`Transport::export_keying_material`]
    /// into a proof (PIN pairing). Never use this for anything else.
    ChannelBoundLater,
}

/// What a transport listens with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenParams {
    /// `ip:port` to bind; port 0 picks a free one.
    pub addr: String,
    /// The server's certificate chain and key.
    pub identity: TlsIdentity,
    /// DER roots that client certificates must chain to.
    pub client_ca_roots: Vec<Vec<u8>>,
    /// When false, clients without a certificate are let in (they may only
    /// pair); a certificate that is presented must still verify.
    pub require_client_cert: bool,
    /// Frames longer than this are refused and the stream reset.
    pub max_frame_len: u32,
}

/// What a client connects with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// `host:port` of the gateway.
    pub remote_addr: String,
    /// The name the server certificate must carry (DNS name or IP).
    pub server_name: String,
    /// How the server is authenticated.
    pub trust: ServerTrust,
    /// The client certificate, if the device has one.
    pub client_identity: Option<TlsIdentity>,
    /// Frames longer than this are refused.
    pub max_frame_len: u32,
}

/// A new connection, inbound or outbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Its id.
    pub connection: ConnectionId,
    /// The peer's `ip:port`.
    pub remote_addr: String,
    /// The peer's verified certificate chain (leaf first, DER); empty when
    /// the peer presented none.
    pub peer_certificates: Vec<Vec<u8>>,
    /// True when this side connected out.
    pub outbound: bool,
}

/// One frame received on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameReceived {
    /// The connection.
    pub connection: ConnectionId,
    /// The stream.
    pub stream: StreamId,
    /// The frame's bytes, without any length prefix.
    pub payload: Vec<u8>,
}

/// Something that happened on the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// A handshake completed.
    Connected(ConnectionInfo),
    /// A whole frame arrived.
    Frame(FrameReceived),
    /// The peer finished sending on a stream.
    StreamFinished {
        /// The connection.
        connection: ConnectionId,
        /// The stream.
        stream: StreamId,
    },
    /// The connection is gone; `reason` says why.
    Closed {
        /// The connection.
        connection: ConnectionId,
        /// Why it closed, for logs.
        reason: String,
    },
}

/// The host's side of a transport, implemented by the host.
pub trait TransportCallbacks: Send + Sync + 'static {
    /// Called during the handshake with a client chain (leaf first, DER)
    /// that already verified against the roots: the host refuses revoked or
    /// unknown certificates here. Returning an error aborts the handshake.
    ///
    /// A transport may also call it with a chain its own check refused
    /// (another CA, outside its validity), so the host sees every refusal
    /// by its cause; the handshake fails whatever the host answers. The
    /// host therefore checks the CA and the validity itself and never
    /// takes a chain as verified because it was called. Calling it only
    /// for verified chains, as before, is still correct: the host then
    /// sees only those.
    fn verify_client(&self, chain: &[Vec<u8>]) -> Result<(), PluginError>;
    /// Called for each event, from the plugin's threads, possibly from
    /// several at once (for different connections or streams; one
    /// connection's `Connected` comes before its other events, and a
    /// stream's frames come in order). Must not block for long: a
    /// transport may deliver events on its I/O threads. The host may call
    /// the transport from inside it.
    fn on_event(&self, event: TransportEvent);
}

/// The handle a transport plugin calls the host through. Cheap to clone.
#[derive(Clone)]
pub struct TransportHost(pub(crate) Arc<dyn TransportCallbacks>);

impl TransportHost {
    /// Wraps the host's callbacks (host side, and tests).
    pub fn new(callbacks: impl TransportCallbacks) -> Self {
        Self(Arc::new(callbacks))
    }

    /// See [`TransportCallbacks::verify_client`].
    pub fn verify_client(&self, chain: &[Vec<u8>]) -> Result<(), PluginError> {
        self.0.verify_client(chain)
    }

    /// See [`TransportCallbacks::on_event`].
    pub fn emit(&self, event: TransportEvent) {
        self.0.on_event(event);
    }
}

impl std::fmt::Debug for TransportHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransportHost")
    }
}

/// A transport, as its author implements it.
pub trait Transport: Send + Sync + 'static {
    /// Starts listening; returns the bound `ip:port`. Events for inbound
    /// connections go to `host`.
    fn listen(&self, params: ListenParams, host: TransportHost) -> Result<String, PluginError>;

    /// Connects out and completes the handshake; events for this connection
    /// go to `host`.
    fn connect(
        &self,
        params: ConnectParams,
        host: TransportHost,
    ) -> Result<ConnectionId, PluginError>;

    /// Opens a new bidirectional stream.
    fn open_stream(&self, connection: ConnectionId) -> Result<StreamId, PluginError>;

    /// Sends one frame on a stream.
    ///
    /// May return once the frame is queued, before it is written: a write
    /// that fails afterwards is reported by the next `send_frame` or
    /// [`finish_stream`](Self::finish_stream) on the same stream (or by the
    /// connection's `Closed` event). Frames of one stream go out in call
    /// order. See the plugin guide (`docs/plugin-guide.md`), "Transport".
    fn send_frame(
        &self,
        connection: ConnectionId,
        stream: StreamId,
        frame: &[u8],
    ) -> Result<(), PluginError>;

    /// Finishes this side of a stream.
    fn finish_stream(&self, connection: ConnectionId, stream: StreamId) -> Result<(), PluginError>;

    /// Closes a connection with an application code and a reason.
    fn close_connection(
        &self,
        connection: ConnectionId,
        code: u32,
        reason: &str,
    ) -> Result<(), PluginError>;

    /// RFC 5705 / RFC 8446 keying material exporter of a connection, for
    /// channel binding: both ends get the same bytes.
    fn export_keying_material(
        &self,
        connection: ConnectionId,
        label: &[u8],
        context: &[u8],
        len: u32,
    ) -> Result<Vec<u8>, PluginError>;

    /// Replaces the server certificate for new handshakes (renewal without a
    /// restart).
    fn set_server_identity(&self, identity: TlsIdentity) -> Result<(), PluginError>;

    /// Stops listening and closes every connection.
    fn shutdown(&self) -> Result<(), PluginError>;
}

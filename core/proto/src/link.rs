//! What both ends agree on about the connection beneath the messages: the
//! TLS exporter input that gives the channel binding, how messages map to
//! streams, and the codes a gateway closes a connection with.
//!
//! # Streams
//! - **Pairing**: the device opens a bidirectional stream and sends
//!   `PinHello`, `QrHello` or `Resume`; every gateway answer comes back on
//!   that stream, one message per frame, and the device's next message
//!   goes on it too. After a final answer (`Pending`, `Approved`,
//!   `Rejected`, `Expired` or `Refused`) the gateway finishes the stream.
//! - **Node requests** (`Register`, `Heartbeat`, `Renew`): a stream per
//!   request, one frame each way; each side finishes its half after its
//!   frame.
//! - **Invocations**: the gateway opens a stream and sends `Invoke`; the
//!   node answers `InvokeResult` on it.

/// The TLS exporter label (RFC 8446 §7.5) of the channel binding.
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-keygate-channel-binding-v1";
/// The exporter context of the channel binding (empty).
pub const CHANNEL_BINDING_CONTEXT: &[u8] = b"";
/// The channel binding's length, bytes.
pub const CHANNEL_BINDING_LEN: u32 = 32;

/// Application codes a gateway closes a connection with (QUIC
/// `CONNECTION_CLOSE`); the reason text says more, for people.
pub mod close {
    /// The gateway is shutting down: reconnect (to it or another gateway)
    /// after a short, jittered pause. The same code as the `quic`
    /// transport's own shutdown.
    pub const SHUTDOWN: u32 = 0x4b00;
    /// The device or the certificate the connection was made with was
    /// revoked: do not reconnect with it.
    pub const REVOKED: u32 = 0x4b10;
    /// The node missed three heartbeats: reconnect.
    pub const SILENT: u32 = 0x4b11;
}

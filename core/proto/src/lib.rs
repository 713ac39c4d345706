//! Keygate's pairing protocol, version 1: pure and sans-IO.
//!
//! Messages and time go in, messages come out; nothing here reads a clock,
//! opens a socket or touches a file. Randomness is a parameter (any
//! [`rand_core::CryptoRng`]), so tests can be deterministic.
//!
//! - [`wire`]: every [`Message`], its canonical encoding and the limits.
//! - [`pin`]: the PIN flow (SPAKE2, one candidate per live PIN code).
//! - [`qr`]: the QR flow (pinned CA, X25519 keyed by a one-time token).
//! - [`Resume`]: a device proving its key again on a new connection.
//! - Node RPC ([`Register`], [`Heartbeat`], [`Renew`], [`Invoke`] and their
//!   answers): what a paired device, connected with its certificate, says
//!   to the gateway and hears from it.
//!
//! - [`link`]: the channel binding's exporter label, which message goes
//!   on which stream, and the codes a gateway closes a connection with.
//!
//! Each flow is a chain of types: a step consumes its state and returns the
//! next one with the message to send, or an error that names what was
//! wrong. Both sides feed the transport's [`Binding`] (CA fingerprint and
//! TLS exporter value) into the transcript, so a relay between two TLS
//! sessions, or a gateway with another CA, fails key confirmation.
//!
//! The protocol is written down in `PROTOCOL.md` at the repository root.
//!
//! What the host (not this crate) does: counts one attempt per PIN
//! candidate (or one per QR session) *before* calling `on_confirm`, checks
//! that the claimed device id is the id of the device key, looks up the QR
//! token by session id, and applies expiry and rate limits.

#![forbid(unsafe_code)]

mod crypto;
mod error;
pub mod link;
pub mod pin;
pub mod qr;
mod renew;
mod resume;
mod session;
pub mod wire;

pub use crypto::{
    Binding, INFO_DEVICE_CONFIRM, INFO_GATEWAY_CONFIRM, LABEL_CHECK_CODE, LABEL_PIN, LABEL_QR,
    LABEL_RENEW, LABEL_RESUME, LABEL_SIGNATURE, SPAKE2_ID_DEVICE, SPAKE2_ID_GATEWAY, check_code,
};
pub use error::PairingError;
pub use pin::{
    DevicePin, DevicePinConfirmed, DevicePinSent, GatewayPin, GatewayPinChallenged, MAX_PIN_LEN,
    PinCandidate,
};
pub use qr::{
    DeviceQr, DeviceQrConfirmed, DeviceQrSent, GatewayQr, GatewayQrChallenged, QR_TOKEN_LEN,
};
pub use session::{ConfirmFailure, DeviceInfo, Paired, Verified};
pub use wire::{
    Approved, CHECK_CODE_LEN, CROCKFORD_ALPHABET, DecodeError, Expired, Heartbeat, Invoke,
    InvokeResult, MAX_CAPABILITIES, MAX_CAPABILITY_LEN, MAX_CERTIFICATE_LEN, MAX_CERTIFICATES,
    MAX_ID_LEN, MAX_MESSAGE_LEN, MAX_NAME_LEN, MAX_PAYLOAD_LEN, MAX_PIN_CANDIDATES, MAX_REASON_LEN,
    Message, PROTOCOL_VERSION, Pending, PinAccepted, PinCandidateMsg, PinChallenge, PinConfirm,
    PinConfirmMac, PinHello, QrAccepted, QrChallenge, QrConfirm, QrHello, RefusalCode, Refused,
    Register, Registered, Rejected, Renew, Renewed, Resume, SESSION_ID_LEN, SPAKE2_MESSAGE_LEN,
};

//! The wire encoding: [`Message`], its parts, the limits and [`DecodeError`].
//!
//! Every message is `version (u8) || type (u8) || fields`. A byte string or a
//! UTF-8 string is written as a big-endian `u16` length and its bytes; a list
//! as a `u8` count and its entries; a fixed-size array raw. Decoding is
//! canonical: exactly one byte string decodes to a given [`Message`], and
//! [`Message::encode`] writes that byte string back. `PROTOCOL.md` at the
//! repository root lists every message, field and limit.

use thiserror::Error;

/// The protocol version this crate speaks (the first byte of every message).
pub const PROTOCOL_VERSION: u8 = 1;
/// Longest encoded message, in bytes (16 KiB).
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// Longest device name, in bytes of UTF-8 (non-empty, no control characters).
pub const MAX_NAME_LEN: usize = 64;
/// Most capabilities a device may advertise.
pub const MAX_CAPABILITIES: usize = 16;
/// Longest capability, in bytes (each 1 to this many bytes of `[a-z0-9._-]`).
pub const MAX_CAPABILITY_LEN: usize = 32;
/// Most PIN candidates in one [`PinChallenge`].
pub const MAX_PIN_CANDIDATES: usize = 32;
/// Longest reason text (in [`Refused`] and [`Rejected`]), in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 256;
/// Longest device id or request id, in bytes (printable ASCII, no spaces).
pub const MAX_ID_LEN: usize = 128;
/// Length of a QR session id: this many lower-case hex digits.
pub const SESSION_ID_LEN: usize = 32;
/// Most certificates in an [`Approved`] chain.
pub const MAX_CERTIFICATES: usize = 4;
/// Longest DER certificate in an [`Approved`] chain, in bytes (8 KiB). The
/// whole message must still fit in [`MAX_MESSAGE_LEN`].
pub const MAX_CERTIFICATE_LEN: usize = 8 * 1024;
/// Length of a check code, in characters of Crockford base32.
pub const CHECK_CODE_LEN: usize = 6;
/// Length of a SPAKE2 message (Ed25519 group: one side byte and a point).
pub const SPAKE2_MESSAGE_LEN: usize = 33;
/// Longest payload of an [`Invoke`] or [`InvokeResult`], in bytes (8 KiB).
pub const MAX_PAYLOAD_LEN: usize = 8 * 1024;
/// Crockford's base32 alphabet, in which check codes are written.
pub const CROCKFORD_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Why bytes are not a valid message. Each variant names the message and
/// field it was reading, and the limit or version involved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty message")]
    Empty,
    /// The whole message is over [`MAX_MESSAGE_LEN`].
    #[error("message is {len} bytes, over the limit of {limit}")]
    MessageTooLong {
        /// Length received.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The first byte is not [`PROTOCOL_VERSION`].
    #[error("unsupported protocol version {got}; this side speaks version {speaks}")]
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
        /// The version this side speaks.
        speaks: u8,
    },
    /// The message type byte is none this version defines.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// The bytes ended inside a field.
    #[error("{message}.{field}: message ends inside this field")]
    Truncated {
        /// The message being read.
        message: &'static str,
        /// The field being read.
        field: &'static str,
    },
    /// Bytes left after the last field.
    #[error("{message}: {extra} trailing bytes after the last field")]
    TrailingBytes {
        /// The message read.
        message: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A string or byte string is longer than its limit.
    #[error("{message}.{field}: {len} bytes, over the limit of {limit}")]
    FieldTooLong {
        /// The message being read.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A list has more entries than its limit.
    #[error("{message}.{field}: {count} entries, over the limit of {limit}")]
    TooManyEntries {
        /// The message being read.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// Its count.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A text field is not UTF-8.
    #[error("{message}.{field}: not UTF-8")]
    NotUtf8 {
        /// The message being read.
        message: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field breaks a rule other than its length (its characters, empty,
    /// duplicates, a value this version forbids).
    #[error("{message}.{field}: {problem}")]
    Invalid {
        /// The message being read.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// A device's Ed25519 public key, raw (32 bytes).
pub type PublicKeyBytes = [u8; 32];
/// An 8-byte random tag naming one PIN candidate on the wire.
pub type Tag = [u8; 8];
/// A 32-byte HMAC-SHA256 key-confirmation MAC.
pub type Mac = [u8; 32];
/// A 64-byte Ed25519 signature.
pub type SignatureBytes = [u8; 64];

/// `PinHello` (device → gateway): the device's identity and SPAKE2 message A.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinHello {
    /// The device's Ed25519 public key.
    pub device_public_key: PublicKeyBytes,
    /// The device id as the device claims it (the host checks it against the key).
    pub device_id: String,
    /// Human-readable device name.
    pub name: String,
    /// Advertised capabilities.
    pub capabilities: Vec<String>,
    /// SPAKE2 message A (side byte `A` and a point).
    pub spake_a: [u8; SPAKE2_MESSAGE_LEN],
}

/// One PIN candidate in a [`PinChallenge`]: one live PIN code at the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinCandidateMsg {
    /// Random tag naming the candidate.
    pub tag: Tag,
    /// SPAKE2 message B for this candidate's PIN.
    pub spake_b: [u8; SPAKE2_MESSAGE_LEN],
}

/// `PinChallenge` (gateway → device): one SPAKE2 answer per live PIN code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinChallenge {
    /// 1 to [`MAX_PIN_CANDIDATES`] candidates with distinct tags.
    pub candidates: Vec<PinCandidateMsg>,
}

/// One device MAC in a [`PinConfirm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinConfirmMac {
    /// The candidate's tag.
    pub tag: Tag,
    /// HMAC-SHA256(k_dev, transcript hash || tag).
    pub mac: Mac,
}

/// `PinConfirm` (device → gateway): a MAC for every candidate and the
/// device's signature over the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinConfirm {
    /// One MAC per candidate, in the challenge's order.
    pub macs: Vec<PinConfirmMac>,
    /// Ed25519 signature of the device key (see `PROTOCOL.md`).
    pub signature: SignatureBytes,
}

/// `PinAccepted` (gateway → device): which candidate matched, and the
/// gateway's MAC proving it knows that PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinAccepted {
    /// The matching candidate's tag.
    pub tag: Tag,
    /// HMAC-SHA256(k_gw, transcript hash || tag).
    pub mac: Mac,
}

/// `QrHello` (device → gateway): the QR session, the device's identity and
/// its ephemeral X25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrHello {
    /// The QR code's session id ([`SESSION_ID_LEN`] lower-case hex digits).
    pub session_id: String,
    /// The device's Ed25519 public key.
    pub device_public_key: PublicKeyBytes,
    /// The device id as the device claims it.
    pub device_id: String,
    /// Human-readable device name.
    pub name: String,
    /// Advertised capabilities.
    pub capabilities: Vec<String>,
    /// The device's ephemeral X25519 public key.
    pub device_ephemeral: [u8; 32],
}

/// `QrChallenge` (gateway → device): the gateway's ephemeral X25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrChallenge {
    /// The gateway's ephemeral X25519 public key.
    pub gateway_ephemeral: [u8; 32],
}

/// `QrConfirm` (device → gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrConfirm {
    /// HMAC-SHA256(k_dev, transcript hash).
    pub mac: Mac,
    /// Ed25519 signature of the device key (see `PROTOCOL.md`).
    pub signature: SignatureBytes,
}

/// `QrAccepted` (gateway → device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrAccepted {
    /// HMAC-SHA256(k_gw, transcript hash).
    pub mac: Mac,
}

/// Why the gateway refused. Codes this version does not know decode to
/// [`RefusalCode::Other`] instead of failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalCode {
    /// No live code matches (wire code 1).
    UnknownCode,
    /// The code or request expired (2).
    Expired,
    /// The code was burned by failed attempts (3).
    NoAttemptsLeft,
    /// No MAC verified: wrong PIN or token, or a relay (4).
    ConfirmationFailed,
    /// The device's signature did not verify (5).
    BadSignature,
    /// The claimed device id is not the id of the key (6).
    DeviceIdMismatch,
    /// The device is revoked (7).
    DeviceRevoked,
    /// The operator or policy rejected the request (8).
    Rejected,
    /// Too many attempts from this source (9); the detail is the wait.
    RateLimited {
        /// Seconds to wait before trying again.
        retry_after_secs: u32,
    },
    /// The gateway could not decode what the device sent (10).
    Malformed,
    /// The gateway does not speak the device's version (11).
    UnsupportedVersion,
    /// Something failed inside the gateway (12).
    Internal,
    /// A node method on a connection without a client certificate (13).
    NoCertificate,
    /// The connection's certificate is not one issued to the device id the
    /// request names (14).
    CertificateMismatch,
    /// The connection's certificate has expired (15).
    CertificateExpired,
    /// The connection's certificate is revoked (16).
    CertificateRevoked,
    /// A node method that needs [`Register`] first (17).
    NotRegistered,
    /// No connected node offers the capability, or the node does not (18).
    UnknownCapability,
    /// The node did not answer an invocation in time (19).
    Timeout,
    /// The node left before it answered (20).
    NodeUnavailable,
    /// A code this version does not know, kept as received.
    Other {
        /// The wire code (never one of the codes above).
        code: u8,
        /// The 32-bit detail field as received.
        detail: u32,
    },
}

impl RefusalCode {
    /// The wire form: code byte and 32-bit detail.
    pub fn to_wire(self) -> (u8, u32) {
        match self {
            RefusalCode::UnknownCode => (1, 0),
            RefusalCode::Expired => (2, 0),
            RefusalCode::NoAttemptsLeft => (3, 0),
            RefusalCode::ConfirmationFailed => (4, 0),
            RefusalCode::BadSignature => (5, 0),
            RefusalCode::DeviceIdMismatch => (6, 0),
            RefusalCode::DeviceRevoked => (7, 0),
            RefusalCode::Rejected => (8, 0),
            RefusalCode::RateLimited { retry_after_secs } => (9, retry_after_secs),
            RefusalCode::Malformed => (10, 0),
            RefusalCode::UnsupportedVersion => (11, 0),
            RefusalCode::Internal => (12, 0),
            RefusalCode::NoCertificate => (13, 0),
            RefusalCode::CertificateMismatch => (14, 0),
            RefusalCode::CertificateExpired => (15, 0),
            RefusalCode::CertificateRevoked => (16, 0),
            RefusalCode::NotRegistered => (17, 0),
            RefusalCode::UnknownCapability => (18, 0),
            RefusalCode::Timeout => (19, 0),
            RefusalCode::NodeUnavailable => (20, 0),
            RefusalCode::Other { code, detail } => (code, detail),
        }
    }

    /// Reads the wire form. `None` when a known code that takes no detail
    /// has a non-zero one (not canonical).
    pub fn from_wire(code: u8, detail: u32) -> Option<RefusalCode> {
        let known = match code {
            1 => RefusalCode::UnknownCode,
            2 => RefusalCode::Expired,
            3 => RefusalCode::NoAttemptsLeft,
            4 => RefusalCode::ConfirmationFailed,
            5 => RefusalCode::BadSignature,
            6 => RefusalCode::DeviceIdMismatch,
            7 => RefusalCode::DeviceRevoked,
            8 => RefusalCode::Rejected,
            9 => {
                return Some(RefusalCode::RateLimited {
                    retry_after_secs: detail,
                });
            }
            10 => RefusalCode::Malformed,
            11 => RefusalCode::UnsupportedVersion,
            12 => RefusalCode::Internal,
            13 => RefusalCode::NoCertificate,
            14 => RefusalCode::CertificateMismatch,
            15 => RefusalCode::CertificateExpired,
            16 => RefusalCode::CertificateRevoked,
            17 => RefusalCode::NotRegistered,
            18 => RefusalCode::UnknownCapability,
            19 => RefusalCode::Timeout,
            20 => RefusalCode::NodeUnavailable,
            _ => return Some(RefusalCode::Other { code, detail }),
        };
        (detail == 0).then_some(known)
    }
}

/// `Refused` (gateway → device, at any step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub code: RefusalCode,
    /// Text for the person at the device (≤ [`MAX_REASON_LEN`] bytes).
    pub reason: String,
}

/// `Resume` (device → gateway): a device that proved its code on an earlier
/// connection asks for the answer to its request. See [`Resume::sign`] and
/// [`Resume::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The request id the gateway gave in [`Pending`].
    pub request_id: String,
    /// The device's Ed25519 public key.
    pub device_public_key: PublicKeyBytes,
    /// Signature over the request id and this connection's channel binding.
    pub signature: SignatureBytes,
}

/// `Pending` (gateway → device): the request waits for approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The request's id (used by [`Resume`]).
    pub request_id: String,
    /// The check code both sides derived.
    pub check_code: String,
}

/// `Approved` (gateway → device): the issued certificate chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    /// The request's id.
    pub request_id: String,
    /// DER certificates, leaf first, CA last (1 to [`MAX_CERTIFICATES`]).
    pub certificates: Vec<Vec<u8>>,
}

/// `Rejected` (gateway → device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The request's id.
    pub request_id: String,
    /// Why (≤ [`MAX_REASON_LEN`] bytes; may be empty).
    pub reason: String,
}

/// `Expired` (gateway → device): the request expired unanswered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The request's id.
    pub request_id: String,
}

/// `Register` (node → gateway): a paired device, on a connection with its
/// certificate, offers capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    /// The device id; the gateway checks the connection's certificate was
    /// issued to it.
    pub device_id: String,
    /// The capabilities it serves (0 to [`MAX_CAPABILITIES`], distinct).
    pub capabilities: Vec<String>,
}

/// `Registered` (gateway → node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// How often the node must send a [`Heartbeat`], in seconds (≥ 1).
    pub heartbeat_secs: u32,
}

/// `Heartbeat` (node → gateway): the node is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The device id.
    pub device_id: String,
}

/// `Renew` (node → gateway): asks for a new certificate for the same key.
/// See [`Renew::sign`] and [`Renew::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renew {
    /// The device id.
    pub device_id: String,
    /// The device key's signature over the device id and this
    /// connection's channel binding.
    pub signature: SignatureBytes,
}

/// `Renewed` (gateway → node): the new certificate chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    /// DER certificates, leaf first, CA last (1 to [`MAX_CERTIFICATES`]).
    pub certificates: Vec<Vec<u8>>,
}

/// `Invoke` (gateway → node, on a stream the gateway opens): run a
/// capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoke {
    /// Names this invocation; the answer repeats it.
    pub invocation_id: String,
    /// The capability, one the node registered.
    pub capability: String,
    /// Its input (≤ [`MAX_PAYLOAD_LEN`] bytes).
    pub payload: Vec<u8>,
}

/// `InvokeResult` (node → gateway): a capability's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeResult {
    /// The invocation answered.
    pub invocation_id: String,
    /// Whether the capability succeeded (`payload` is then its output;
    /// otherwise an error text).
    pub ok: bool,
    /// Output or error (≤ [`MAX_PAYLOAD_LEN`] bytes).
    pub payload: Vec<u8>,
}

/// Every message of protocol version 1.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Type 0x01.
    PinHello(PinHello),
    /// Type 0x02.
    PinChallenge(PinChallenge),
    /// Type 0x03.
    PinConfirm(PinConfirm),
    /// Type 0x04.
    PinAccepted(PinAccepted),
    /// Type 0x11.
    QrHello(QrHello),
    /// Type 0x12.
    QrChallenge(QrChallenge),
    /// Type 0x13.
    QrConfirm(QrConfirm),
    /// Type 0x14.
    QrAccepted(QrAccepted),
    /// Type 0x20.
    Refused(Refused),
    /// Type 0x21.
    Resume(Resume),
    /// Type 0x30.
    Pending(Pending),
    /// Type 0x31.
    Approved(Approved),
    /// Type 0x32.
    Rejected(Rejected),
    /// Type 0x33.
    Expired(Expired),
    /// Type 0x40.
    Register(Register),
    /// Type 0x41.
    Registered(Registered),
    /// Type 0x42.
    Heartbeat(Heartbeat),
    /// Type 0x43.
    HeartbeatAck,
    /// Type 0x44.
    Renew(Renew),
    /// Type 0x45.
    Renewed(Renewed),
    /// Type 0x46.
    Invoke(Invoke),
    /// Type 0x47.
    InvokeResult(InvokeResult),
}

const T_PIN_HELLO: u8 = 0x01;
const T_PIN_CHALLENGE: u8 = 0x02;
const T_PIN_CONFIRM: u8 = 0x03;
const T_PIN_ACCEPTED: u8 = 0x04;
const T_QR_HELLO: u8 = 0x11;
const T_QR_CHALLENGE: u8 = 0x12;
const T_QR_CONFIRM: u8 = 0x13;
const T_QR_ACCEPTED: u8 = 0x14;
const T_REFUSED: u8 = 0x20;
const T_RESUME: u8 = 0x21;
const T_PENDING: u8 = 0x30;
const T_APPROVED: u8 = 0x31;
const T_REJECTED: u8 = 0x32;
const T_EXPIRED: u8 = 0x33;
const T_REGISTER: u8 = 0x40;
const T_REGISTERED: u8 = 0x41;
const T_HEARTBEAT: u8 = 0x42;
const T_HEARTBEAT_ACK: u8 = 0x43;
const T_RENEW: u8 = 0x44;
const T_RENEWED: u8 = 0x45;
const T_INVOKE: u8 = 0x46;
const T_INVOKE_RESULT: u8 = 0x47;

impl Message {
    /// The message's name, as used in errors and `PROTOCOL.md`.
    pub fn name(&self) -> &'static str {
        match self {
            Message::PinHello(_) => "PinHello",
            Message::PinChallenge(_) => "PinChallenge",
            Message::PinConfirm(_) => "PinConfirm",
            Message::PinAccepted(_) => "PinAccepted",
            Message::QrHello(_) => "QrHello",
            Message::QrChallenge(_) => "QrChallenge",
            Message::QrConfirm(_) => "QrConfirm",
            Message::QrAccepted(_) => "QrAccepted",
            Message::Refused(_) => "Refused",
            Message::Resume(_) => "Resume",
            Message::Pending(_) => "Pending",
            Message::Approved(_) => "Approved",
            Message::Rejected(_) => "Rejected",
            Message::Expired(_) => "Expired",
            Message::Register(_) => "Register",
            Message::Registered(_) => "Registered",
            Message::Heartbeat(_) => "Heartbeat",
            Message::HeartbeatAck => "HeartbeatAck",
            Message::Renew(_) => "Renew",
            Message::Renewed(_) => "Renewed",
            Message::Invoke(_) => "Invoke",
            Message::InvokeResult(_) => "InvokeResult",
        }
    }

    fn type_byte(&self) -> u8 {
        match self {
            Message::PinHello(_) => T_PIN_HELLO,
            Message::PinChallenge(_) => T_PIN_CHALLENGE,
            Message::PinConfirm(_) => T_PIN_CONFIRM,
            Message::PinAccepted(_) => T_PIN_ACCEPTED,
            Message::QrHello(_) => T_QR_HELLO,
            Message::QrChallenge(_) => T_QR_CHALLENGE,
            Message::QrConfirm(_) => T_QR_CONFIRM,
            Message::QrAccepted(_) => T_QR_ACCEPTED,
            Message::Refused(_) => T_REFUSED,
            Message::Resume(_) => T_RESUME,
            Message::Pending(_) => T_PENDING,
            Message::Approved(_) => T_APPROVED,
            Message::Rejected(_) => T_REJECTED,
            Message::Expired(_) => T_EXPIRED,
            Message::Register(_) => T_REGISTER,
            Message::Registered(_) => T_REGISTERED,
            Message::Heartbeat(_) => T_HEARTBEAT,
            Message::HeartbeatAck => T_HEARTBEAT_ACK,
            Message::Renew(_) => T_RENEW,
            Message::Renewed(_) => T_RENEWED,
            Message::Invoke(_) => T_INVOKE,
            Message::InvokeResult(_) => T_INVOKE_RESULT,
        }
    }

    /// The canonical encoding.
    ///
    /// A message built by this crate's state machines, or decoded by
    /// [`Message::decode`], encodes to bytes that decode to itself. A
    /// message built by hand with fields over their limits encodes to bytes
    /// that [`Message::decode`] refuses (never a panic).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(128));
        w.0.push(PROTOCOL_VERSION);
        w.0.push(self.type_byte());
        match self {
            Message::PinHello(m) => {
                w.raw(&m.device_public_key);
                w.str(&m.device_id);
                w.str(&m.name);
                w.strs(&m.capabilities);
                w.raw(&m.spake_a);
            }
            Message::PinChallenge(m) => {
                w.count(m.candidates.len());
                for c in &m.candidates {
                    w.raw(&c.tag);
                    w.raw(&c.spake_b);
                }
            }
            Message::PinConfirm(m) => {
                w.count(m.macs.len());
                for c in &m.macs {
                    w.raw(&c.tag);
                    w.raw(&c.mac);
                }
                w.raw(&m.signature);
            }
            Message::PinAccepted(m) => {
                w.raw(&m.tag);
                w.raw(&m.mac);
            }
            Message::QrHello(m) => {
                w.str(&m.session_id);
                w.raw(&m.device_public_key);
                w.str(&m.device_id);
                w.str(&m.name);
                w.strs(&m.capabilities);
                w.raw(&m.device_ephemeral);
            }
            Message::QrChallenge(m) => w.raw(&m.gateway_ephemeral),
            Message::QrConfirm(m) => {
                w.raw(&m.mac);
                w.raw(&m.signature);
            }
            Message::QrAccepted(m) => w.raw(&m.mac),
            Message::Refused(m) => {
                let (code, detail) = m.code.to_wire();
                w.0.push(code);
                w.raw(&detail.to_be_bytes());
                w.str(&m.reason);
            }
            Message::Resume(m) => {
                w.str(&m.request_id);
                w.raw(&m.device_public_key);
                w.raw(&m.signature);
            }
            Message::Pending(m) => {
                w.str(&m.request_id);
                w.str(&m.check_code);
            }
            Message::Approved(m) => {
                w.str(&m.request_id);
                w.certificates(&m.certificates);
            }
            Message::Rejected(m) => {
                w.str(&m.request_id);
                w.str(&m.reason);
            }
            Message::Expired(m) => w.str(&m.request_id),
            Message::Register(m) => {
                w.str(&m.device_id);
                w.strs(&m.capabilities);
            }
            Message::Registered(m) => w.raw(&m.heartbeat_secs.to_be_bytes()),
            Message::Heartbeat(m) => w.str(&m.device_id),
            Message::HeartbeatAck => {}
            Message::Renew(m) => {
                w.str(&m.device_id);
                w.raw(&m.signature);
            }
            Message::Renewed(m) => w.certificates(&m.certificates),
            Message::Invoke(m) => {
                w.str(&m.invocation_id);
                w.str(&m.capability);
                w.bytes(&m.payload);
            }
            Message::InvokeResult(m) => {
                w.str(&m.invocation_id);
                w.0.push(u8::from(m.ok));
                w.bytes(&m.payload);
            }
        }
        w.0
    }

    /// Decodes one message, refusing anything but the canonical encoding of
    /// a valid message (see [`DecodeError`]).
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::MessageTooLong {
                len: bytes.len(),
                limit: MAX_MESSAGE_LEN,
            });
        }
        if bytes[0] != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                got: bytes[0],
                speaks: PROTOCOL_VERSION,
            });
        }
        let Some(&ty) = bytes.get(1) else {
            return Err(DecodeError::Truncated {
                message: "message",
                field: "type",
            });
        };
        let name = match ty {
            T_PIN_HELLO => "PinHello",
            T_PIN_CHALLENGE => "PinChallenge",
            T_PIN_CONFIRM => "PinConfirm",
            T_PIN_ACCEPTED => "PinAccepted",
            T_QR_HELLO => "QrHello",
            T_QR_CHALLENGE => "QrChallenge",
            T_QR_CONFIRM => "QrConfirm",
            T_QR_ACCEPTED => "QrAccepted",
            T_REFUSED => "Refused",
            T_RESUME => "Resume",
            T_PENDING => "Pending",
            T_APPROVED => "Approved",
            T_REJECTED => "Rejected",
            T_EXPIRED => "Expired",
            T_REGISTER => "Register",
            T_REGISTERED => "Registered",
            T_HEARTBEAT => "Heartbeat",
            T_HEARTBEAT_ACK => "HeartbeatAck",
            T_RENEW => "Renew",
            T_RENEWED => "Renewed",
            T_INVOKE => "Invoke",
            T_INVOKE_RESULT => "InvokeResult",
            other => return Err(DecodeError::UnknownType(other)),
        };
        let mut r = Reader {
            buf: &bytes[2..],
            message: name,
        };
        let msg = match ty {
            T_PIN_HELLO => Message::PinHello(PinHello {
                device_public_key: r.array("device_public_key")?,
                device_id: r.id("device_id")?,
                name: r.name("name")?,
                capabilities: r.capabilities("capabilities")?,
                spake_a: r.array("spake_a")?,
            }),
            T_PIN_CHALLENGE => {
                let n = r.count("candidates", MAX_PIN_CANDIDATES, 1)?;
                let mut candidates: Vec<PinCandidateMsg> = Vec::with_capacity(n);
                for _ in 0..n {
                    let tag = r.array("candidates.tag")?;
                    if candidates.iter().any(|c| c.tag == tag) {
                        return Err(r.invalid("candidates.tag", "duplicate tag"));
                    }
                    candidates.push(PinCandidateMsg {
                        tag,
                        spake_b: r.array("candidates.spake_b")?,
                    });
                }
                Message::PinChallenge(PinChallenge { candidates })
            }
            T_PIN_CONFIRM => {
                let n = r.count("macs", MAX_PIN_CANDIDATES, 1)?;
                let mut macs: Vec<PinConfirmMac> = Vec::with_capacity(n);
                for _ in 0..n {
                    let tag = r.array("macs.tag")?;
                    if macs.iter().any(|c| c.tag == tag) {
                        return Err(r.invalid("macs.tag", "duplicate tag"));
                    }
                    macs.push(PinConfirmMac {
                        tag,
                        mac: r.array("macs.mac")?,
                    });
                }
                Message::PinConfirm(PinConfirm {
                    macs,
                    signature: r.array("signature")?,
                })
            }
            T_PIN_ACCEPTED => Message::PinAccepted(PinAccepted {
                tag: r.array("tag")?,
                mac: r.array("mac")?,
            }),
            T_QR_HELLO => Message::QrHello(QrHello {
                session_id: r.session_id("session_id")?,
                device_public_key: r.array("device_public_key")?,
                device_id: r.id("device_id")?,
                name: r.name("name")?,
                capabilities: r.capabilities("capabilities")?,
                device_ephemeral: r.array("device_ephemeral")?,
            }),
            T_QR_CHALLENGE => Message::QrChallenge(QrChallenge {
                gateway_ephemeral: r.array("gateway_ephemeral")?,
            }),
            T_QR_CONFIRM => Message::QrConfirm(QrConfirm {
                mac: r.array("mac")?,
                signature: r.array("signature")?,
            }),
            T_QR_ACCEPTED => Message::QrAccepted(QrAccepted {
                mac: r.array("mac")?,
            }),
            T_REFUSED => {
                let [code] = r.array::<1>("code")?;
                let detail = u32::from_be_bytes(r.array("detail")?);
                let code = RefusalCode::from_wire(code, detail)
                    .ok_or_else(|| r.invalid("detail", "non-zero for a code that takes none"))?;
                Message::Refused(Refused {
                    code,
                    reason: r.reason("reason")?,
                })
            }
            T_RESUME => Message::Resume(Resume {
                request_id: r.id("request_id")?,
                device_public_key: r.array("device_public_key")?,
                signature: r.array("signature")?,
            }),
            T_PENDING => Message::Pending(Pending {
                request_id: r.id("request_id")?,
                check_code: r.check_code("check_code")?,
            }),
            T_APPROVED => Message::Approved(Approved {
                request_id: r.id("request_id")?,
                certificates: r.certificates("certificates")?,
            }),
            T_REJECTED => Message::Rejected(Rejected {
                request_id: r.id("request_id")?,
                reason: r.reason("reason")?,
            }),
            T_EXPIRED => Message::Expired(Expired {
                request_id: r.id("request_id")?,
            }),
            T_REGISTER => Message::Register(Register {
                device_id: r.id("device_id")?,
                capabilities: r.capabilities("capabilities")?,
            }),
            T_REGISTERED => {
                let heartbeat_secs = u32::from_be_bytes(r.array("heartbeat_secs")?);
                if heartbeat_secs == 0 {
                    return Err(r.invalid("heartbeat_secs", "zero"));
                }
                Message::Registered(Registered { heartbeat_secs })
            }
            T_HEARTBEAT => Message::Heartbeat(Heartbeat {
                device_id: r.id("device_id")?,
            }),
            T_HEARTBEAT_ACK => Message::HeartbeatAck,
            T_RENEW => Message::Renew(Renew {
                device_id: r.id("device_id")?,
                signature: r.array("signature")?,
            }),
            T_RENEWED => Message::Renewed(Renewed {
                certificates: r.certificates("certificates")?,
            }),
            T_INVOKE => Message::Invoke(Invoke {
                invocation_id: r.id("invocation_id")?,
                capability: r.capability("capability")?,
                payload: r.bytes("payload", MAX_PAYLOAD_LEN)?.to_vec(),
            }),
            // The match on `ty` above admits only the types listed here.
            _ => {
                let invocation_id = r.id("invocation_id")?;
                let ok = match r.array::<1>("ok")? {
                    [0] => false,
                    [1] => true,
                    _ => return Err(r.invalid("ok", "neither 0 nor 1")),
                };
                Message::InvokeResult(InvokeResult {
                    invocation_id,
                    ok,
                    payload: r.bytes("payload", MAX_PAYLOAD_LEN)?.to_vec(),
                })
            }
        };
        if !r.buf.is_empty() {
            return Err(DecodeError::TrailingBytes {
                message: name,
                extra: r.buf.len(),
            });
        }
        Ok(msg)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// A length-prefixed byte string. Over-long input is written with a
    /// length of `u16::MAX` and cut there: bytes that never decode to the
    /// same message, rather than a panic.
    fn bytes(&mut self, b: &[u8]) {
        let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
        self.raw(&len.to_be_bytes());
        self.raw(&b[..usize::from(len)]);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    /// A list count; over-long lists are written with a count of 255 (and
    /// all their entries): bytes that never decode to the same message.
    fn count(&mut self, n: usize) {
        self.0.push(u8::try_from(n).unwrap_or(u8::MAX));
    }
    fn certificates(&mut self, v: &[Vec<u8>]) {
        self.count(v.len());
        for c in v {
            self.bytes(c);
        }
    }
    fn strs(&mut self, v: &[String]) {
        self.count(v.len());
        for s in v {
            self.str(s);
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn invalid(&self, field: &'static str, problem: &'static str) -> DecodeError {
        DecodeError::Invalid {
            message: self.message,
            field,
            problem,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated {
                message: self.message,
                field,
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn bytes(&mut self, field: &'static str, limit: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(u16::from_be_bytes(self.array(field)?));
        if len > limit {
            return Err(DecodeError::FieldTooLong {
                message: self.message,
                field,
                len,
                limit,
            });
        }
        self.take(len, field)
    }

    fn text(&mut self, field: &'static str, limit: usize) -> Result<String, DecodeError> {
        let b = self.bytes(field, limit)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError::NotUtf8 {
                message: self.message,
                field,
            }),
        }
    }

    fn count(
        &mut self,
        field: &'static str,
        limit: usize,
        min: usize,
    ) -> Result<usize, DecodeError> {
        let [n] = self.array::<1>(field)?;
        let n = usize::from(n);
        if n > limit {
            return Err(DecodeError::TooManyEntries {
                message: self.message,
                field,
                count: n,
                limit,
            });
        }
        if n < min {
            return Err(self.invalid(field, "empty list"));
        }
        Ok(n)
    }

    fn checked(
        &mut self,
        field: &'static str,
        limit: usize,
        check: fn(&str) -> Result<(), &'static str>,
    ) -> Result<String, DecodeError> {
        let s = self.text(field, limit)?;
        check(&s).map_err(|problem| self.invalid(field, problem))?;
        Ok(s)
    }

    fn id(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.checked(field, MAX_ID_LEN, check_id)
    }

    fn name(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.checked(field, MAX_NAME_LEN, check_name)
    }

    fn reason(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.checked(field, MAX_REASON_LEN, check_reason)
    }

    fn session_id(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.checked(field, SESSION_ID_LEN, check_session_id)
    }

    fn check_code(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.checked(field, CHECK_CODE_LEN, check_check_code)
    }

    fn capabilities(&mut self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        let n = self.count(field, MAX_CAPABILITIES, 0)?;
        let mut caps: Vec<String> = Vec::with_capacity(n);
        for _ in 0..n {
            let c = self.checked(field, MAX_CAPABILITY_LEN, check_capability)?;
            if caps.contains(&c) {
                return Err(self.invalid(field, "duplicate capability"));
            }
            caps.push(c);
        }
        Ok(caps)
    }

    fn capability(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.checked(field, MAX_CAPABILITY_LEN, check_capability)
    }

    fn certificates(&mut self, field: &'static str) -> Result<Vec<Vec<u8>>, DecodeError> {
        let n = self.count(field, MAX_CERTIFICATES, 1)?;
        let mut certificates = Vec::with_capacity(n);
        for _ in 0..n {
            let c = self.bytes(field, MAX_CERTIFICATE_LEN)?;
            if c.is_empty() {
                return Err(self.invalid(field, "empty certificate"));
            }
            certificates.push(c.to_vec());
        }
        Ok(certificates)
    }
}

/// Device and request ids: 1 to [`MAX_ID_LEN`] bytes of printable ASCII
/// without spaces (`0x21..=0x7e`).
pub(crate) fn check_id(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > MAX_ID_LEN {
        return Err("too long");
    }
    if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err("not printable ASCII without spaces");
    }
    Ok(())
}

/// Device names: 1 to [`MAX_NAME_LEN`] bytes, no control characters.
pub(crate) fn check_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > MAX_NAME_LEN {
        return Err("too long");
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}

/// Reasons: up to [`MAX_REASON_LEN`] bytes (may be empty), no control characters.
pub(crate) fn check_reason(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_REASON_LEN {
        return Err("too long");
    }
    if s.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}

/// Capabilities: 1 to [`MAX_CAPABILITY_LEN`] bytes of `[a-z0-9._-]`.
pub(crate) fn check_capability(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty capability");
    }
    if s.len() > MAX_CAPABILITY_LEN {
        return Err("capability too long");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err("capability not of [a-z0-9._-]");
    }
    Ok(())
}

/// Session ids: exactly [`SESSION_ID_LEN`] lower-case hex digits.
pub(crate) fn check_session_id(s: &str) -> Result<(), &'static str> {
    if s.len() != SESSION_ID_LEN {
        return Err("not 32 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("not lower-case hex");
    }
    Ok(())
}

/// Check codes: exactly [`CHECK_CODE_LEN`] characters of [`CROCKFORD_ALPHABET`].
pub(crate) fn check_check_code(s: &str) -> Result<(), &'static str> {
    if s.len() != CHECK_CODE_LEN {
        return Err("not 6 characters");
    }
    if !s.bytes().all(|b| CROCKFORD_ALPHABET.contains(&b)) {
        return Err("not Crockford base32 (upper case)");
    }
    Ok(())
}

/// Capability lists: at most [`MAX_CAPABILITIES`], each valid, no duplicates.
pub(crate) fn check_capabilities(v: &[String]) -> Result<(), &'static str> {
    if v.len() > MAX_CAPABILITIES {
        return Err("more than 16 capabilities");
    }
    for (i, c) in v.iter().enumerate() {
        check_capability(c)?;
        if v[..i].contains(c) {
            return Err("duplicate capability");
        }
    }
    Ok(())
}

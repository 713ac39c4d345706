//! [`PairingError`]: why a step of a pairing run failed.

use thiserror::Error;

use crate::wire::{DecodeError, RefusalCode};

/// Why a step of a pairing run failed. Each variant says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PairingError {
    /// The bytes are not a valid message.
    #[error("decoding: {0}")]
    Decode(#[from] DecodeError),
    /// A valid message, but not the one this step expects.
    #[error("expected {expected}, got {got}")]
    UnexpectedMessage {
        /// The message this step expects.
        expected: &'static str,
        /// The message received.
        got: &'static str,
    },
    /// The gateway refused.
    #[error("refused by the gateway ({code:?}): {reason}")]
    Refused {
        /// The gateway's code.
        code: RefusalCode,
        /// The gateway's text.
        reason: String,
    },
    /// A field given to this side (not received) breaks its rule.
    #[error("{field}: {problem}")]
    InvalidInput {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The CA certificate the TLS server presented is not the one the QR
    /// code pinned; nothing was sent.
    #[error(
        "the gateway's CA fingerprint {} is not the pinned {}",
        hex(observed),
        hex(pinned)
    )]
    CaMismatch {
        /// The fingerprint from the QR code.
        pinned: [u8; 32],
        /// The fingerprint the TLS connection presented.
        observed: [u8; 32],
    },
    /// The gateway was given no live PIN code to answer with.
    #[error("no PIN candidates to answer with")]
    NoCandidates,
    /// More PIN candidates than one challenge can carry.
    #[error("{count} PIN candidates, over the limit of {limit}")]
    TooManyCandidates {
        /// How many were given.
        count: usize,
        /// [`crate::MAX_PIN_CANDIDATES`].
        limit: usize,
    },
    /// A SPAKE2 message is not a valid point for its side.
    #[error("{field}: invalid SPAKE2 message")]
    BadSpakeMessage {
        /// Which message field.
        field: &'static str,
    },
    /// The confirmation's tags are not the challenge's tags, in order.
    #[error("PinConfirm.macs: tags are not those of the challenge, in order")]
    TagMismatch,
    /// The gateway accepted a tag it never offered.
    #[error("PinAccepted.tag: not a candidate of the challenge")]
    UnknownTag,
    /// The X25519 shared secret is all zeroes (a low-order public key).
    #[error("{field}: non-contributory X25519 key")]
    NonContributory {
        /// Which key field.
        field: &'static str,
    },
    /// No confirmation MAC verified: a wrong PIN or token, a relay between
    /// two connections, or another CA.
    #[error("key confirmation failed")]
    ConfirmationFailed,
    /// The device public key is not a valid Ed25519 point.
    #[error("device_public_key: not a valid Ed25519 public key")]
    BadPublicKey,
    /// The device's Ed25519 signature does not verify.
    #[error("signature: does not verify under the device key")]
    BadSignature,
}

impl PairingError {
    /// The refusal code the gateway sends for this error.
    pub fn refusal_code(&self) -> RefusalCode {
        match self {
            PairingError::Decode(DecodeError::UnsupportedVersion { .. }) => {
                RefusalCode::UnsupportedVersion
            }
            PairingError::Decode(_)
            | PairingError::UnexpectedMessage { .. }
            | PairingError::BadSpakeMessage { .. }
            | PairingError::TagMismatch
            | PairingError::NonContributory { .. }
            | PairingError::BadPublicKey => RefusalCode::Malformed,
            PairingError::ConfirmationFailed => RefusalCode::ConfirmationFailed,
            PairingError::BadSignature => RefusalCode::BadSignature,
            PairingError::NoCandidates => RefusalCode::UnknownCode,
            PairingError::Refused { code, .. } => *code,
            _ => RefusalCode::Internal,
        }
    }
}

fn hex(b: &[u8; 32]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

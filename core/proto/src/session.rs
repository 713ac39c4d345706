//! Types both flows share: what the device says about itself, and what a
//! finished run gives each side.

use crate::error::PairingError;
use crate::wire::{
    MAX_REASON_LEN, Message, PublicKeyBytes, RefusalCode, Refused, Tag, check_capabilities,
    check_id, check_name,
};

/// What the device says about itself in its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device id as the device computes it from its key (the gateway's
    /// host checks it; this crate only carries it). 1 to
    /// [`crate::MAX_ID_LEN`] bytes of printable ASCII without spaces.
    pub device_id: String,
    /// Human-readable name: 1 to [`crate::MAX_NAME_LEN`] bytes, no control
    /// characters.
    pub name: String,
    /// Up to [`crate::MAX_CAPABILITIES`] distinct capabilities, each 1 to
    /// [`crate::MAX_CAPABILITY_LEN`] bytes of `[a-z0-9._-]`.
    pub capabilities: Vec<String>,
}

impl DeviceInfo {
    /// Checks every field against the limits the decoder enforces.
    pub fn check(&self) -> Result<(), PairingError> {
        let bad = |field| move |problem| PairingError::InvalidInput { field, problem };
        check_id(&self.device_id).map_err(bad("device_id"))?;
        check_name(&self.name).map_err(bad("name"))?;
        check_capabilities(&self.capabilities).map_err(bad("capabilities"))?;
        Ok(())
    }
}

/// What the device has once the gateway proved it knows the same PIN or
/// token: the check code to show while it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired {
    /// The check code (6 characters of Crockford base32).
    pub check_code: String,
    /// The matching candidate's tag (PIN flow), `None` in the QR flow.
    pub tag: Option<Tag>,
}

/// What the gateway has once the device proved the code and signed the
/// transcript: everything the host needs to create an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The host's id of the code that matched: the [`crate::PinCandidate`]'s
    /// `id`, or the QR hello's `session_id`.
    pub session_id: String,
    /// The device's Ed25519 public key (its signature verified).
    pub device_public_key: PublicKeyBytes,
    /// The device id as the device claims it: the host must check it is
    /// the id of `device_public_key`.
    pub device_id: String,
    /// The device's name.
    pub name: String,
    /// The device's capabilities.
    pub capabilities: Vec<String>,
    /// The check code (the device shows the same one).
    pub check_code: String,
    /// The message to send: `PinAccepted` or `QrAccepted`.
    pub reply: Message,
    /// PIN flow: the ids of the other candidates, whose guesses failed.
    /// Empty in the QR flow.
    pub failed_candidates: Vec<String>,
}

/// A failed gateway confirmation step, with what the host must count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct ConfirmFailure {
    /// What went wrong.
    pub error: PairingError,
    /// Ids of the candidates whose MAC was checked and did not verify: each
    /// one a failed guess at that code. Empty when no MAC was checked (the
    /// message was of the wrong kind or its tags did not match).
    pub failed_candidates: Vec<String>,
    /// The candidate whose MAC verified, when a later check (the device's
    /// signature) failed.
    pub matched: Option<String>,
}

impl ConfirmFailure {
    /// The `Refused` message to send to the device.
    pub fn reply(&self) -> Message {
        Message::Refused(Refused::new(
            self.error.refusal_code(),
            &self.error.to_string(),
        ))
    }
}

impl Refused {
    /// A refusal whose reason is made valid: control characters become
    /// spaces and the text is cut to [`MAX_REASON_LEN`] bytes (on a
    /// character boundary).
    pub fn new(code: RefusalCode, reason: &str) -> Refused {
        let mut out = String::new();
        for c in reason.chars() {
            let c = if c.is_control() { ' ' } else { c };
            if out.len() + c.len_utf8() > MAX_REASON_LEN {
                break;
            }
            out.push(c);
        }
        Refused { code, reason: out }
    }
}

/// Gives the device's view of an answer that is not the expected message.
pub(crate) fn unexpected(expected: &'static str, got: Message) -> PairingError {
    match got {
        Message::Refused(r) => PairingError::Refused {
            code: r.code,
            reason: r.reason,
        },
        other => PairingError::UnexpectedMessage {
            expected,
            got: other.name(),
        },
    }
}

//! The device's side of pairing over one connection, as a state machine:
//! it builds the hello for a PIN or a QR code, answers the gateway's
//! challenge, checks the gateway's confirmation, and keeps what the
//! gateway answers in the device's own state ([`DeviceIdentity`]):
//!
//! - pending: the request id and check code (shown to the operator while
//!   the device waits), so the device can ask again on a new connection
//!   ([`DevicePairing::resume`]);
//! - approved: the certificate and the CA's, kept only after they check out
//!   against the device's key and the CA it paired with;
//! - rejected or expired: the pending pairing is forgotten, and the reason
//!   returned.
//!
//! No socket and no clock: the transport supplies the channel binding and
//! the fingerprint of the CA the TLS server presented, and moves the bytes.

use keygate_proto::{
    Binding, DeviceInfo, DevicePin, DevicePinConfirmed, DevicePinSent, DeviceQr, DeviceQrConfirmed,
    DeviceQrSent, Message, PairingError, RefusalCode, Resume,
};
use rand::CryptoRng;
use zeroize::Zeroizing;

use super::identity::{Credentials, DeviceIdentity, DeviceIdentityError, PendingPairing};
use crate::identity::{CertFingerprint, DeviceKey};
use crate::pairing::{PairingUri, UriError};
use crate::state::pairing::MAX_LIVE_PIN_CODES;

/// A code as the device's operator gives it.
#[derive(Debug)]
pub enum PairingCode {
    /// PIN digits.
    Pin(Zeroizing<String>),
    /// A `keygate://` URI read from a QR code.
    Qr(PairingUri),
}

impl PairingCode {
    /// Reads a code: a `keygate://` URI, or a PIN (digits; spaces and
    /// dashes between them are ignored, as people type `4820-3917`).
    pub fn parse(text: &str) -> Result<PairingCode, DevicePairingError> {
        let text = text.trim();
        if text
            .get(..10)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("keygate://"))
        {
            return Ok(PairingCode::Qr(PairingUri::parse(text)?));
        }
        let digits: Zeroizing<String> =
            Zeroizing::new(text.chars().filter(|c| !matches!(c, ' ' | '-')).collect());
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DevicePairingError::NotACode);
        }
        Ok(PairingCode::Pin(digits))
    }
}

/// Why the device could not pair.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevicePairingError {
    /// The code is neither digits nor a pairing URI.
    #[error(
        "that is not a pairing code: give the PIN's digits or the keygate:// URI of the QR code"
    )]
    NotACode,
    /// The URI does not parse.
    #[error("the QR code's URI: {0}")]
    Uri(#[from] UriError),
    /// The protocol failed (a wrong PIN shows here as a failed
    /// confirmation).
    #[error(transparent)]
    Protocol(#[from] PairingError),
    /// The gateway refused.
    #[error("the gateway refused: {reason}")]
    Refused {
        /// Its code.
        code: RefusalCode,
        /// Its reason.
        reason: String,
    },
    /// The device's own state failed.
    #[error(transparent)]
    Identity(#[from] DeviceIdentityError),
    /// The gateway offered more PIN candidates than a gateway may have
    /// live codes: a rogue gateway testing several PINs at once.
    #[error(
        "the gateway offered {offered} PIN candidates, more than the {limit} a gateway may have: refusing to confirm any (is this the real gateway?)"
    )]
    TooManyCandidates {
        /// How many it offered.
        offered: usize,
        /// The most a gateway has.
        limit: usize,
    },
    /// There is no pending pairing to ask about.
    #[error("this device waits on no pairing request")]
    NothingPending,
    /// The gateway sent something out of turn.
    #[error("the gateway sent {got} where {expected} was expected")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: &'static str,
    },
}

/// What a step of pairing produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Send these bytes and give the answer to
    /// [`DevicePairing::on_message`].
    Send(Vec<u8>),
    /// The gateway proved it knows the code: its answer follows. Show the
    /// check code.
    Accepted {
        /// The check code the operator compares.
        check_code: String,
    },
    /// The request waits for a decision. Show
    /// the check code; ask again later with [`DevicePairing::resume`].
    Waiting {
        /// The request id.
        request_id: String,
        /// The check code the operator compares.
        check_code: String,
    },
    /// Approved: the credentials are kept.
    Paired(Credentials),
}

enum State {
    PinSent(DevicePinSent),
    QrSent(DeviceQrSent),
    PinConfirmed(DevicePinConfirmed),
    QrConfirmed(DeviceQrConfirmed),
    /// Waiting for an answer (after acceptance, or a resume).
    Answer,
    Done,
}

/// One connection's pairing, device side.
pub struct DevicePairing<'a> {
    identity: &'a DeviceIdentity,
    key: DeviceKey,
    gateways: Vec<String>,
    ca_fingerprint: CertFingerprint,
    check_code: Option<String>,
    state: State,
}

impl std::fmt::Debug for DevicePairing<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicePairing")
            .field("gateways", &self.gateways)
            .finish_non_exhaustive()
    }
}

impl<'a> DevicePairing<'a> {
    /// Starts pairing with `code`: returns the hello to send. `gateways`
    /// are where this gateway is reached (kept with the credentials; a QR
    /// code's own addresses come first). `binding` is what this
    /// connection's TLS showed: the CA's fingerprint and the exporter
    /// value.
    pub fn start<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &'a DeviceIdentity,
        code: &PairingCode,
        name: &str,
        capabilities: &[String],
        gateways: Vec<String>,
        binding: Binding,
    ) -> Result<(Self, Vec<u8>), DevicePairingError> {
        let key = identity.key()?;
        let info = DeviceInfo {
            device_id: key.device_id().to_string(),
            name: name.to_owned(),
            capabilities: capabilities.to_vec(),
        };
        let (state, hello, gateways) = match code {
            PairingCode::Pin(pin) => {
                let (state, hello) = DevicePin::start(rng, key.signing_key(), info, pin, binding)?;
                (State::PinSent(state), hello, gateways)
            }
            PairingCode::Qr(uri) => {
                let (state, hello) = DeviceQr::start(
                    rng,
                    key.signing_key(),
                    info,
                    &hex::encode(uri.session_id),
                    *uri.token,
                    uri.ca_fingerprint,
                    binding,
                )?;
                let mut all: Vec<String> = uri.gateways.iter().map(|g| g.to_string()).collect();
                for g in gateways {
                    if !all.contains(&g) {
                        all.push(g);
                    }
                }
                (State::QrSent(state), hello, all)
            }
        };
        let pairing = DevicePairing {
            identity,
            key,
            gateways,
            ca_fingerprint: CertFingerprint::from_bytes(binding.ca_fingerprint),
            check_code: None,
            state,
        };
        Ok((pairing, hello.encode()))
    }

    /// Asks again, on a new connection, for the answer to the request this
    /// device waits on: returns the message to send.
    pub fn resume(
        identity: &'a DeviceIdentity,
        channel_binding: &[u8; 32],
    ) -> Result<(Self, Vec<u8>), DevicePairingError> {
        let pending = identity
            .pending()?
            .ok_or(DevicePairingError::NothingPending)?;
        let key: DeviceKey = identity.key()?;
        let resume = Resume::sign(key.signing_key(), &pending.request_id, channel_binding)?;
        let pairing = DevicePairing {
            identity,
            key,
            gateways: pending.gateways,
            ca_fingerprint: pending.ca_fingerprint,
            check_code: Some(pending.check_code),
            state: State::Answer,
        };
        Ok((pairing, Message::Resume(resume).encode()))
    }

    /// The check code, once the gateway proved it knows the code.
    pub fn check_code(&self) -> Option<&str> {
        self.check_code.as_deref()
    }

    /// Handles one message from the gateway.
    pub fn on_message(&mut self, bytes: &[u8]) -> Result<Progress, DevicePairingError> {
        let msg = Message::decode(bytes).map_err(PairingError::from)?;
        if let Message::Refused(r) = &msg {
            self.state = State::Done;
            if matches!(r.code, RefusalCode::UnknownCode | RefusalCode::Expired)
                && self.check_code.is_some()
            {
                self.identity.clear_pending()?;
            }
            return Err(DevicePairingError::Refused {
                code: r.code,
                reason: r.reason.clone(),
            });
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::PinSent(sent) => {
                if let Message::PinChallenge(c) = &msg
                    && c.candidates.len() > MAX_LIVE_PIN_CODES
                {
                    // Each candidate the device confirms is one PIN the
                    // other side can test: a real gateway never offers more.
                    return Err(DevicePairingError::TooManyCandidates {
                        offered: c.candidates.len(),
                        limit: MAX_LIVE_PIN_CODES,
                    });
                }
                let (confirmed, reply) = sent.on_challenge(msg)?;
                self.check_code = Some(confirmed.check_code());
                self.state = State::PinConfirmed(confirmed);
                Ok(Progress::Send(reply.encode()))
            }
            State::QrSent(sent) => {
                let (confirmed, reply) = sent.on_challenge(msg)?;
                self.check_code = Some(confirmed.check_code());
                self.state = State::QrConfirmed(confirmed);
                Ok(Progress::Send(reply.encode()))
            }
            State::PinConfirmed(confirmed) => {
                confirmed.on_accepted(msg)?;
                self.state = State::Answer;
                Ok(Progress::Accepted {
                    check_code: self.check_code.clone().unwrap_or_default(),
                })
            }
            State::QrConfirmed(confirmed) => {
                confirmed.on_accepted(msg)?;
                self.state = State::Answer;
                Ok(Progress::Accepted {
                    check_code: self.check_code.clone().unwrap_or_default(),
                })
            }
            State::Answer => self.answer(msg),
            State::Done => Err(DevicePairingError::Unexpected {
                expected: "nothing (the pairing is over)",
                got: msg.name(),
            }),
        }
    }

    fn answer(&mut self, msg: Message) -> Result<Progress, DevicePairingError> {
        match msg {
            Message::Pending(p) => {
                self.identity.set_pending(&PendingPairing {
                    request_id: p.request_id.clone(),
                    gateways: self.gateways.clone(),
                    ca_fingerprint: self.ca_fingerprint,
                    check_code: p.check_code.clone(),
                })?;
                self.check_code = Some(p.check_code.clone());
                self.state = State::Answer;
                Ok(Progress::Waiting {
                    request_id: p.request_id,
                    check_code: p.check_code,
                })
            }
            Message::Approved(a) => {
                let mut certs = a.certificates.into_iter();
                let (Some(leaf), Some(ca)) = (certs.next(), certs.last()) else {
                    return Err(DevicePairingError::Unexpected {
                        expected: "a certificate and the CA's",
                        got: "fewer certificates",
                    });
                };
                let credentials = Credentials {
                    device_id: self.key.device_id(),
                    certificate_der: leaf,
                    ca_der: ca,
                    gateways: self.gateways.clone(),
                };
                self.identity.store_credentials_for(
                    &self.key,
                    &credentials,
                    &self.ca_fingerprint,
                )?;
                Ok(Progress::Paired(credentials))
            }
            Message::Rejected(r) => {
                self.identity.clear_pending()?;
                Err(DevicePairingError::Refused {
                    code: RefusalCode::Rejected,
                    reason: r.reason,
                })
            }
            Message::Expired(_) => {
                self.identity.clear_pending()?;
                Err(DevicePairingError::Refused {
                    code: RefusalCode::Expired,
                    reason: "the request expired before anyone decided: pair again with a new code"
                        .into(),
                })
            }
            other => Err(DevicePairingError::Unexpected {
                expected: "an answer (Pending, Approved, Rejected or Expired)",
                got: other.name(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_digits_or_a_pairing_uri_and_anything_else_is_refused() {
        assert!(
            matches!(PairingCode::parse(" 4820-3917 "), Ok(PairingCode::Pin(p)) if *p == "48203917")
        );
        for bad in [
            "",
            "  ",
            "12a4",
            "ééééééééééé",
            "keygate:",
            "ü23456789012",
            "--",
        ] {
            assert!(
                matches!(PairingCode::parse(bad), Err(DevicePairingError::NotACode)),
                "{bad:?}"
            );
        }
        let err = PairingCode::parse("KEYGATE://pair?v=9").unwrap_err();
        assert!(matches!(err, DevicePairingError::Uri(_)), "{err}");
    }
}

//! The QR flow: the QR code gives the device the CA fingerprint (pinned), a
//! session id and a 16-byte token; an ephemeral X25519 exchange keyed by the
//! token confirms the transcript.
//!
//! ```text
//! device                                  gateway
//! DeviceQr::start         -- QrHello -->  (host looks up the token by
//!                                          QrHello::session_id)
//!                                         GatewayQr::challenge
//! DeviceQrSent::on_challenge <-- QrChallenge --
//!                         -- QrConfirm -> GatewayQrChallenged::on_confirm
//! DeviceQrConfirmed::on_accepted <-- QrAccepted (or Refused) --
//! ```

use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use x25519_dalek::{EphemeralSecret, PublicKey};
use zeroize::Zeroizing;

use crate::crypto::{
    Binding, LABEL_QR, check_code, confirm_keys, mac, mac_eq, sign_transcript, signed_digest,
    transcript, verify, verifying_key,
};
use crate::error::PairingError;
use crate::session::{ConfirmFailure, DeviceInfo, Paired, Verified, unexpected};
use crate::wire::{Message, QrAccepted, QrChallenge, QrConfirm, QrHello, check_session_id};

/// Length of the QR token, in bytes.
pub const QR_TOKEN_LEN: usize = 16;

/// The device's side of the QR flow (start here).
#[derive(Debug)]
pub struct DeviceQr;

impl DeviceQr {
    /// Builds the `QrHello`.
    ///
    /// Fails, sending nothing, when the CA the TLS server presented
    /// (`binding.ca_fingerprint`) is not `pinned_ca` from the QR code
    /// ([`PairingError::CaMismatch`]), or when `info` or `session_id`
    /// breaks its rules.
    pub fn start<R: CryptoRng + ?Sized>(
        rng: &mut R,
        key: &SigningKey,
        info: DeviceInfo,
        session_id: &str,
        token: [u8; QR_TOKEN_LEN],
        pinned_ca: [u8; 32],
        binding: Binding,
    ) -> Result<(DeviceQrSent, Message), PairingError> {
        if binding.ca_fingerprint != pinned_ca {
            return Err(PairingError::CaMismatch {
                pinned: pinned_ca,
                observed: binding.ca_fingerprint,
            });
        }
        info.check()?;
        check_session_id(session_id).map_err(|problem| PairingError::InvalidInput {
            field: "session_id",
            problem,
        })?;
        let secret = EphemeralSecret::random_from_rng(rng);
        let hello = Message::QrHello(QrHello {
            session_id: session_id.to_owned(),
            device_public_key: key.verifying_key().to_bytes(),
            device_id: info.device_id,
            name: info.name,
            capabilities: info.capabilities,
            device_ephemeral: PublicKey::from(&secret).to_bytes(),
        });
        let state = DeviceQrSent {
            secret,
            key: key.clone(),
            hello: hello.encode(),
            token: Zeroizing::new(token),
            binding,
        };
        Ok((state, hello))
    }
}

/// The device sent its `QrHello` and waits for the `QrChallenge`.
pub struct DeviceQrSent {
    secret: EphemeralSecret,
    key: SigningKey,
    hello: Vec<u8>,
    token: Zeroizing<[u8; QR_TOKEN_LEN]>,
    binding: Binding,
}

impl std::fmt::Debug for DeviceQrSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceQrSent").finish_non_exhaustive()
    }
}

impl DeviceQrSent {
    /// Answers the gateway's ephemeral key with a MAC and a signature.
    pub fn on_challenge(self, msg: Message) -> Result<(DeviceQrConfirmed, Message), PairingError> {
        let challenge = match msg {
            Message::QrChallenge(c) => c,
            other => return Err(unexpected("QrChallenge", other)),
        };
        let shared = self
            .secret
            .diffie_hellman(&PublicKey::from(challenge.gateway_ephemeral));
        if !shared.was_contributory() {
            return Err(PairingError::NonContributory {
                field: "QrChallenge.gateway_ephemeral",
            });
        }
        let th = transcript(
            LABEL_QR,
            &self.hello,
            &Message::QrChallenge(challenge).encode(),
            &self.binding,
        );
        let keys = confirm_keys(self.token.as_slice(), shared.as_bytes(), &th);
        let confirm = Message::QrConfirm(QrConfirm {
            mac: mac(&keys.device, &th, b""),
            signature: sign_transcript(&self.key, &th),
        });
        Ok((
            DeviceQrConfirmed {
                transcript: th,
                k_gw: keys.gateway,
            },
            confirm,
        ))
    }
}

/// The device sent its `QrConfirm` and waits for `QrAccepted`.
pub struct DeviceQrConfirmed {
    transcript: [u8; 32],
    k_gw: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for DeviceQrConfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceQrConfirmed").finish_non_exhaustive()
    }
}

impl DeviceQrConfirmed {
    /// The check code of this run.
    pub fn check_code(&self) -> String {
        check_code(&self.transcript)
    }

    /// Checks the gateway's MAC (only a gateway that knows the token and
    /// saw this device's ephemeral key can produce it).
    pub fn on_accepted(self, msg: Message) -> Result<Paired, PairingError> {
        let accepted = match msg {
            Message::QrAccepted(a) => a,
            other => return Err(unexpected("QrAccepted", other)),
        };
        if !mac_eq(&mac(&self.k_gw, &self.transcript, b""), &accepted.mac) {
            return Err(PairingError::ConfirmationFailed);
        }
        Ok(Paired {
            check_code: check_code(&self.transcript),
            tag: None,
        })
    }
}

/// The gateway's side of the QR flow (start here, after the host decoded
/// the `QrHello` and looked up the token of its `session_id`).
#[derive(Debug)]
pub struct GatewayQr;

impl GatewayQr {
    /// Answers `hello` with an ephemeral X25519 key. `token` is the token
    /// the host holds for `hello.session_id`.
    ///
    /// Checks the hello's public key and ephemeral key; no token is tested
    /// here.
    pub fn challenge<R: CryptoRng + ?Sized>(
        rng: &mut R,
        hello: &QrHello,
        token: &[u8; QR_TOKEN_LEN],
        binding: Binding,
    ) -> Result<(GatewayQrChallenged, Message), PairingError> {
        verifying_key(&hello.device_public_key)?;
        let secret = EphemeralSecret::random_from_rng(rng);
        let challenge = Message::QrChallenge(QrChallenge {
            gateway_ephemeral: PublicKey::from(&secret).to_bytes(),
        });
        let shared = secret.diffie_hellman(&PublicKey::from(hello.device_ephemeral));
        if !shared.was_contributory() {
            return Err(PairingError::NonContributory {
                field: "QrHello.device_ephemeral",
            });
        }
        let th = transcript(
            LABEL_QR,
            &Message::QrHello(hello.clone()).encode(),
            &challenge.encode(),
            &binding,
        );
        let keys = confirm_keys(token, shared.as_bytes(), &th);
        Ok((
            GatewayQrChallenged {
                hello: hello.clone(),
                transcript: th,
                k_dev: keys.device,
                k_gw: keys.gateway,
            },
            challenge,
        ))
    }
}

/// The gateway sent its `QrChallenge` and waits for `QrConfirm`.
pub struct GatewayQrChallenged {
    hello: QrHello,
    transcript: [u8; 32],
    k_dev: Zeroizing<[u8; 32]>,
    k_gw: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for GatewayQrChallenged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayQrChallenged")
            .field("session_id", &self.hello.session_id)
            .finish_non_exhaustive()
    }
}

impl GatewayQrChallenged {
    /// Checks the device's MAC (one attempt at the token), then, only when
    /// it verified, the device's signature.
    pub fn on_confirm(self, msg: Message) -> Result<Verified, ConfirmFailure> {
        let id = self.hello.session_id.clone();
        let fail = |error, tried: bool, matched: bool| ConfirmFailure {
            error,
            failed_candidates: if tried { vec![id.clone()] } else { Vec::new() },
            matched: matched.then(|| id.clone()),
        };
        let confirm = match msg {
            Message::QrConfirm(c) => c,
            other => {
                let error = PairingError::UnexpectedMessage {
                    expected: "QrConfirm",
                    got: other.name(),
                };
                return Err(fail(error, false, false));
            }
        };
        if !mac_eq(&mac(&self.k_dev, &self.transcript, b""), &confirm.mac) {
            return Err(fail(PairingError::ConfirmationFailed, true, false));
        }
        let checked = verifying_key(&self.hello.device_public_key)
            .and_then(|key| verify(&key, &signed_digest(&self.transcript), &confirm.signature));
        if let Err(error) = checked {
            return Err(fail(error, false, true));
        }
        let reply = Message::QrAccepted(QrAccepted {
            mac: mac(&self.k_gw, &self.transcript, b""),
        });
        Ok(Verified {
            session_id: self.hello.session_id,
            device_public_key: self.hello.device_public_key,
            device_id: self.hello.device_id,
            name: self.hello.name,
            capabilities: self.hello.capabilities,
            check_code: check_code(&self.transcript),
            reply,
            failed_candidates: Vec::new(),
        })
    }
}

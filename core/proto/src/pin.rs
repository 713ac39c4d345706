//! The PIN flow: SPAKE2 keyed by the PIN, one candidate per live code.
//!
//! ```text
//! device                                   gateway
//! DevicePin::start        -- PinHello -->  GatewayPin::on_hello
//! DevicePinSent::on_challenge <-- PinChallenge --
//!                         -- PinConfirm -> GatewayPinChallenged::on_confirm
//! DevicePinConfirmed::on_accepted <-- PinAccepted (or Refused) --
//! ```
//!
//! Each candidate the gateway puts in its challenge is one guess at that
//! code: the host reserves one attempt per candidate before it calls
//! [`GatewayPinChallenged::on_confirm`].

use ed25519_dalek::SigningKey;
use rand_core::CryptoRng;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use zeroize::Zeroizing;

use crate::crypto::{
    Binding, LABEL_PIN, Rng06, SPAKE2_ID_DEVICE, SPAKE2_ID_GATEWAY, SeedRng, check_code,
    confirm_keys, mac, mac_eq, sign_transcript, signed_digest, transcript, verify, verifying_key,
};
use crate::error::PairingError;
use crate::session::{ConfirmFailure, DeviceInfo, Paired, Verified, unexpected};
use crate::wire::{
    MAX_PIN_CANDIDATES, Message, PinAccepted, PinCandidateMsg, PinChallenge, PinConfirm,
    PinConfirmMac, PinHello, SPAKE2_MESSAGE_LEN, Tag,
};

/// Longest PIN accepted, in digits.
pub const MAX_PIN_LEN: usize = 32;

fn check_pin(pin: &str) -> Result<(), PairingError> {
    let problem = if pin.is_empty() {
        "empty"
    } else if pin.len() > MAX_PIN_LEN {
        "longer than 32 digits"
    } else if !pin.bytes().all(|b| b.is_ascii_digit()) {
        "not only ASCII digits"
    } else {
        return Ok(());
    };
    Err(PairingError::InvalidInput {
        field: "pin",
        problem,
    })
}

fn spake_start_a(pin: &str, seed: &[u8; 32]) -> (Spake2<Ed25519Group>, Vec<u8>) {
    Spake2::<Ed25519Group>::start_a_with_rng(
        &Password::new(pin.as_bytes()),
        &Identity::new(SPAKE2_ID_DEVICE),
        &Identity::new(SPAKE2_ID_GATEWAY),
        SeedRng::new(seed),
    )
}

fn spake_array(
    msg: Vec<u8>,
    field: &'static str,
) -> Result<[u8; SPAKE2_MESSAGE_LEN], PairingError> {
    msg.try_into()
        .map_err(|_| PairingError::BadSpakeMessage { field })
}

/// The device's side of the PIN flow (start here).
#[derive(Debug)]
pub struct DevicePin;

impl DevicePin {
    /// Builds the `PinHello` for `pin` (1 to [`MAX_PIN_LEN`] ASCII digits).
    ///
    /// Fails, sending nothing, when `info` or `pin` breaks its rules.
    pub fn start<R: CryptoRng + ?Sized>(
        rng: &mut R,
        key: &SigningKey,
        info: DeviceInfo,
        pin: &str,
        binding: Binding,
    ) -> Result<(DevicePinSent, Message), PairingError> {
        info.check()?;
        check_pin(pin)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut_slice());
        let (_, spake_a) = spake_start_a(pin, &seed);
        let hello = Message::PinHello(PinHello {
            device_public_key: key.verifying_key().to_bytes(),
            device_id: info.device_id,
            name: info.name,
            capabilities: info.capabilities,
            spake_a: spake_array(spake_a, "PinHello.spake_a")?,
        });
        let state = DevicePinSent {
            seed,
            pin: Zeroizing::new(pin.to_owned()),
            key: key.clone(),
            hello: hello.encode(),
            binding,
        };
        Ok((state, hello))
    }
}

/// The device sent its `PinHello` and waits for the `PinChallenge`.
pub struct DevicePinSent {
    /// Replays the SPAKE2 scalar once per candidate.
    seed: Zeroizing<[u8; 32]>,
    pin: Zeroizing<String>,
    key: SigningKey,
    hello: Vec<u8>,
    binding: Binding,
}

impl std::fmt::Debug for DevicePinSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicePinSent").finish_non_exhaustive()
    }
}

impl DevicePinSent {
    /// Answers the gateway's candidates with one MAC each and a signature.
    ///
    /// A `Refused` answer gives [`PairingError::Refused`].
    pub fn on_challenge(self, msg: Message) -> Result<(DevicePinConfirmed, Message), PairingError> {
        let challenge = match msg {
            Message::PinChallenge(c) => c,
            other => return Err(unexpected("PinChallenge", other)),
        };
        let n = challenge.candidates.len();
        if n == 0 || n > MAX_PIN_CANDIDATES {
            return Err(PairingError::InvalidInput {
                field: "PinChallenge.candidates",
                problem: "not 1 to 32 candidates",
            });
        }
        for (i, c) in challenge.candidates.iter().enumerate() {
            if challenge.candidates[..i].iter().any(|d| d.tag == c.tag) {
                return Err(PairingError::InvalidInput {
                    field: "PinChallenge.candidates.tag",
                    problem: "duplicate tag",
                });
            }
        }
        let th = transcript(
            LABEL_PIN,
            &self.hello,
            &Message::PinChallenge(challenge.clone()).encode(),
            &self.binding,
        );
        let mut macs = Vec::with_capacity(n);
        let mut gateway_keys = Vec::with_capacity(n);
        for c in &challenge.candidates {
            let (spake, _) = spake_start_a(&self.pin, &self.seed);
            let shared = Zeroizing::new(spake.finish(&c.spake_b).map_err(|_| {
                PairingError::BadSpakeMessage {
                    field: "PinChallenge.candidates.spake_b",
                }
            })?);
            let keys = confirm_keys(&th, &shared, b"");
            macs.push(PinConfirmMac {
                tag: c.tag,
                mac: mac(&keys.device, &th, &c.tag),
            });
            gateway_keys.push((c.tag, keys.gateway));
        }
        let confirm = Message::PinConfirm(PinConfirm {
            macs,
            signature: sign_transcript(&self.key, &th),
        });
        Ok((
            DevicePinConfirmed {
                transcript: th,
                gateway_keys,
            },
            confirm,
        ))
    }
}

/// The device sent its `PinConfirm` and waits for `PinAccepted`.
pub struct DevicePinConfirmed {
    transcript: [u8; 32],
    gateway_keys: Vec<(Tag, Zeroizing<[u8; 32]>)>,
}

impl std::fmt::Debug for DevicePinConfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicePinConfirmed").finish_non_exhaustive()
    }
}

impl DevicePinConfirmed {
    /// The check code of this run (the same on both sides when the run is
    /// not relayed).
    pub fn check_code(&self) -> String {
        check_code(&self.transcript)
    }

    /// Checks the gateway's MAC: only a gateway that knows the PIN the
    /// device typed can produce it.
    pub fn on_accepted(self, msg: Message) -> Result<Paired, PairingError> {
        let accepted = match msg {
            Message::PinAccepted(a) => a,
            other => return Err(unexpected("PinAccepted", other)),
        };
        let Some((_, k_gw)) = self.gateway_keys.iter().find(|(t, _)| *t == accepted.tag) else {
            return Err(PairingError::UnknownTag);
        };
        let expected = mac(k_gw, &self.transcript, &accepted.tag);
        if !mac_eq(&expected, &accepted.mac) {
            return Err(PairingError::ConfirmationFailed);
        }
        Ok(Paired {
            check_code: check_code(&self.transcript),
            tag: Some(accepted.tag),
        })
    }
}

/// One live PIN code the gateway answers with.
#[derive(Clone)]
pub struct PinCandidate {
    /// The host's id for this code (never sent).
    pub id: String,
    /// The PIN, as ASCII digits.
    pub pin: Zeroizing<String>,
}

impl std::fmt::Debug for PinCandidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinCandidate")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The gateway's side of the PIN flow (start here).
#[derive(Debug)]
pub struct GatewayPin;

struct GatewayCandidate {
    id: String,
    tag: Tag,
    k_dev: Zeroizing<[u8; 32]>,
    k_gw: Zeroizing<[u8; 32]>,
}

impl GatewayPin {
    /// Answers a `PinHello` with one SPAKE2 message per live code in
    /// `candidates` (1 to [`MAX_PIN_CANDIDATES`]), each under a random tag.
    ///
    /// Checks the hello's public key and SPAKE2 message; no PIN is tested
    /// here, so no attempt is spent on a failure.
    pub fn on_hello<R: CryptoRng + ?Sized>(
        rng: &mut R,
        msg: Message,
        candidates: &[PinCandidate],
        binding: Binding,
    ) -> Result<(GatewayPinChallenged, Message), PairingError> {
        let hello = match msg {
            Message::PinHello(h) => h,
            other => {
                return Err(PairingError::UnexpectedMessage {
                    expected: "PinHello",
                    got: other.name(),
                });
            }
        };
        verifying_key(&hello.device_public_key)?;
        if candidates.is_empty() {
            return Err(PairingError::NoCandidates);
        }
        if candidates.len() > MAX_PIN_CANDIDATES {
            return Err(PairingError::TooManyCandidates {
                count: candidates.len(),
                limit: MAX_PIN_CANDIDATES,
            });
        }
        let mut states = Vec::with_capacity(candidates.len());
        let mut wire = Vec::with_capacity(candidates.len());
        for c in candidates {
            check_pin(&c.pin)?;
            let tag = loop {
                let mut tag = [0u8; 8];
                rng.fill_bytes(&mut tag);
                if !wire.iter().any(|w: &PinCandidateMsg| w.tag == tag) {
                    break tag;
                }
            };
            let (state, spake_b) = Spake2::<Ed25519Group>::start_b_with_rng(
                &Password::new(c.pin.as_bytes()),
                &Identity::new(SPAKE2_ID_DEVICE),
                &Identity::new(SPAKE2_ID_GATEWAY),
                Rng06(rng),
            );
            wire.push(PinCandidateMsg {
                tag,
                spake_b: spake_array(spake_b, "PinChallenge.candidates.spake_b")?,
            });
            states.push((c.id.clone(), tag, state));
        }
        let challenge = Message::PinChallenge(PinChallenge { candidates: wire });
        let th = transcript(
            LABEL_PIN,
            &Message::PinHello(hello.clone()).encode(),
            &challenge.encode(),
            &binding,
        );
        let mut out = Vec::with_capacity(states.len());
        for (id, tag, state) in states {
            let shared = Zeroizing::new(state.finish(&hello.spake_a).map_err(|_| {
                PairingError::BadSpakeMessage {
                    field: "PinHello.spake_a",
                }
            })?);
            let keys = confirm_keys(&th, &shared, b"");
            out.push(GatewayCandidate {
                id,
                tag,
                k_dev: keys.device,
                k_gw: keys.gateway,
            });
        }
        Ok((
            GatewayPinChallenged {
                hello,
                transcript: th,
                candidates: out,
            },
            challenge,
        ))
    }
}

/// The gateway sent its `PinChallenge` and waits for `PinConfirm`.
pub struct GatewayPinChallenged {
    hello: PinHello,
    transcript: [u8; 32],
    candidates: Vec<GatewayCandidate>,
}

impl std::fmt::Debug for GatewayPinChallenged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayPinChallenged")
            .field("candidates", &self.candidate_ids())
            .finish_non_exhaustive()
    }
}

impl GatewayPinChallenged {
    /// The ids of the candidates in the challenge, in order: the host
    /// reserves one attempt at each before calling [`Self::on_confirm`].
    pub fn candidate_ids(&self) -> Vec<String> {
        self.candidates.iter().map(|c| c.id.clone()).collect()
    }

    /// The hello this run answered.
    pub fn hello(&self) -> &PinHello {
        &self.hello
    }

    /// Checks every candidate's MAC (each one guess at that code), then,
    /// only when one verified, the device's signature.
    pub fn on_confirm(self, msg: Message) -> Result<Verified, ConfirmFailure> {
        let fail = |error, failed_candidates, matched| ConfirmFailure {
            error,
            failed_candidates,
            matched,
        };
        let confirm = match msg {
            Message::PinConfirm(c) => c,
            other => {
                let error = PairingError::UnexpectedMessage {
                    expected: "PinConfirm",
                    got: other.name(),
                };
                return Err(fail(error, Vec::new(), None));
            }
        };
        let tags_match = confirm.macs.len() == self.candidates.len()
            && confirm
                .macs
                .iter()
                .zip(&self.candidates)
                .all(|(m, c)| m.tag == c.tag);
        if !tags_match {
            return Err(fail(PairingError::TagMismatch, Vec::new(), None));
        }
        let mut matched = None;
        let mut failed = Vec::new();
        for (m, c) in confirm.macs.iter().zip(&self.candidates) {
            let expected = mac(&c.k_dev, &self.transcript, &c.tag);
            if mac_eq(&expected, &m.mac) && matched.is_none() {
                matched = Some(c);
            } else {
                failed.push(c.id.clone());
            }
        }
        let Some(c) = matched else {
            return Err(fail(PairingError::ConfirmationFailed, failed, None));
        };
        let checked = verifying_key(&self.hello.device_public_key)
            .and_then(|key| verify(&key, &signed_digest(&self.transcript), &confirm.signature));
        if let Err(error) = checked {
            return Err(fail(error, failed, Some(c.id.clone())));
        }
        let reply = Message::PinAccepted(PinAccepted {
            tag: c.tag,
            mac: mac(&c.k_gw, &self.transcript, &c.tag),
        });
        Ok(Verified {
            session_id: c.id.clone(),
            device_public_key: self.hello.device_public_key,
            device_id: self.hello.device_id,
            name: self.hello.name,
            capabilities: self.hello.capabilities,
            check_code: check_code(&self.transcript),
            reply,
            failed_candidates: failed,
        })
    }
}

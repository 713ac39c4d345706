//! The gateway's side of pairing, one connection at a time: a state
//! machine that takes the device's messages (bytes) and the time, and
//! returns the messages to send. No socket and no clock: the transport
//! supplies the device's address and the connection's channel binding (a
//! TLS exporter value), and moves the bytes.
//!
//! What it adds to `keygate-proto`, whose flows are pure cryptography:
//!
//! - before any proof is checked, an attempt is taken on every code the
//!   proof will be checked against (each live PIN code, or the QR code the
//!   hello names), and each checked proof is reported, so no code is ever
//!   tested more often than it allows; an attempt whose proof was never
//!   checked (the device went away) is given back;
//! - failed proofs count against the device's source address, which must
//!   wait once it failed too often ([`crate::state::ratelimit`]);
//! - the claimed device id must be the id of the device's key;
//! - a proof that held uses the code and files the request in one
//!   mutation, then the approval policy decides (or leaves it to an
//!   operator), and the device gets its answer: pending with the check
//!   code, approved with its certificate and the CA's, rejected with the
//!   reason, or expired;
//! - a device that lost its connection proves its key again (`Resume`) and
//!   gets the answer for its request; nobody else does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keygate_proto::{
    Binding, ConfirmFailure, GatewayPin, GatewayPinChallenged, GatewayQr, GatewayQrChallenged,
    Message, PairingError, PinCandidate, QR_TOKEN_LEN, RefusalCode, Refused, Resume, Verified,
    wire,
};
use keygate_sdk::{ApprovalPolicy, ApprovalRequest, Decision};
use rand::CryptoRng;

use crate::identity::{DeviceId, DevicePublicKey};
use crate::metrics::{Metrics, PairingOutcome};
use crate::state::pairing::{
    ApprovalRecord, ApprovalState, Attempt, Method, NewApproval, RequestStatus, SessionRefusal,
    Verdict,
};
use crate::state::ratelimit::RateLimitSettings;
use crate::state::{Actor, IdentityError, IdentityManager};
use crate::time::unix_secs;

/// What the gateway's pairing needs besides the state.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// How long a request waits for a decision.
    pub request_ttl: Duration,
    /// Failed attempts per source address.
    pub rate_limit: RateLimitSettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            request_ttl: super::DEFAULT_REQUEST_TTL,
            rate_limit: RateLimitSettings::default(),
        }
    }
}

impl From<&super::PairingSettings> for ServiceSettings {
    fn from(settings: &super::PairingSettings) -> Self {
        Self {
            request_ttl: settings.request_ttl,
            rate_limit: settings.rate_limit,
        }
    }
}

/// The configured approval policy and the name decisions are recorded
/// under (`policy(<name>)`).
#[derive(Clone)]
pub struct PolicySlot {
    /// The plugin's name.
    pub name: String,
    /// The policy.
    pub policy: Arc<dyn ApprovalPolicy>,
}

impl std::fmt::Debug for PolicySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySlot")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The gateway's pairing: state, policy and settings, shared by every
/// connection.
#[derive(Debug, Clone)]
pub struct PairingService {
    identity: Arc<IdentityManager>,
    policy: Option<PolicySlot>,
    settings: ServiceSettings,
    metrics: Arc<Metrics>,
}

impl PairingService {
    /// Pairing on `identity`. Without a policy every request waits for an
    /// operator.
    pub fn new(
        identity: Arc<IdentityManager>,
        policy: Option<PolicySlot>,
        settings: ServiceSettings,
    ) -> Self {
        Self {
            identity,
            policy,
            settings,
            metrics: Arc::default(),
        }
    }

    /// The same service, counting its attempts into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The identity state it pairs into.
    pub fn identity(&self) -> &IdentityManager {
        &self.identity
    }

    /// A conversation with the device at `peer` on a connection whose TLS
    /// exporter value is `channel_binding`.
    /// The conversation holds its own handle on the service (cheap: shared
    /// state behind `Arc`s), so a connection table can keep it.
    pub fn conversation(&self, peer: SocketAddr, channel_binding: [u8; 32]) -> Conversation {
        Conversation {
            service: self.clone(),
            peer,
            binding: Binding {
                ca_fingerprint: *self.identity.ca().fingerprint().as_bytes(),
                channel_binding,
            },
            state: State::Ready,
        }
    }
}

enum State {
    /// Waiting for a hello or a resume.
    Ready,
    /// A PIN challenge was sent; one attempt is taken on each candidate.
    Pin {
        run: GatewayPinChallenged,
        attempts: Vec<Attempt>,
    },
    /// A QR challenge was sent; one attempt is taken on its code.
    Qr {
        run: GatewayQrChallenged,
        attempt: Attempt,
    },
    /// Refused: nothing more is answered on this connection.
    Closed,
}

/// One connection's pairing (see the [module docs](self)).
pub struct Conversation {
    service: PairingService,
    peer: SocketAddr,
    binding: Binding,
    state: State,
}

impl std::fmt::Debug for Conversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// A refusal: what the device is told; the conversation ends.
struct Refusal(Refused);

impl Refusal {
    fn new(code: RefusalCode, reason: impl std::fmt::Display) -> Self {
        Self(Refused::new(code, &reason.to_string()))
    }

    fn internal(e: &IdentityError) -> Self {
        tracing::error!(error = %e, "pairing failed inside the gateway");
        Self::new(
            RefusalCode::Internal,
            "the gateway could not complete the pairing",
        )
    }
}

impl From<PairingError> for Refusal {
    fn from(e: PairingError) -> Self {
        Self::new(e.refusal_code(), &e)
    }
}

impl From<IdentityError> for Refusal {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::DeviceRevoked { device_id, reason } => Self::new(
                RefusalCode::DeviceRevoked,
                format!("device {device_id} is revoked ({reason}): it cannot pair again"),
            ),
            other => Self::internal(&other),
        }
    }
}

/// How an attempt's step ended: `None` while it goes on (a challenge was
/// sent).
fn outcome_of(out: &Result<Vec<Message>, Refusal>) -> Option<PairingOutcome> {
    Some(match out {
        Ok(messages) => match messages.last()? {
            Message::Pending(_) => PairingOutcome::Pending,
            Message::Approved(_) => PairingOutcome::Approved,
            Message::Rejected(_) => PairingOutcome::Rejected,
            Message::Expired(_) => PairingOutcome::Expired,
            _ => return None,
        },
        Err(Refusal(refused)) => match refused.code {
            RefusalCode::ConfirmationFailed => PairingOutcome::WrongCode,
            RefusalCode::RateLimited { .. } | RefusalCode::NoAttemptsLeft => {
                PairingOutcome::LockedOut
            }
            RefusalCode::Expired => PairingOutcome::Expired,
            RefusalCode::UnknownCode => PairingOutcome::UnknownCode,
            RefusalCode::Rejected => PairingOutcome::Rejected,
            _ => PairingOutcome::Refused,
        },
    })
}

fn session_refusal(r: SessionRefusal) -> Refusal {
    let code = match r {
        SessionRefusal::Expired(_) => RefusalCode::Expired,
        SessionRefusal::NoAttemptsLeft(_) => RefusalCode::NoAttemptsLeft,
        _ => RefusalCode::UnknownCode,
    };
    Refusal::new(code, r)
}

impl Conversation {
    /// Whether the conversation ended (a refusal was sent).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Handles one message from the device at `now`: returns the encoded
    /// messages to send, in order. Never fails: whatever goes wrong is a
    /// `Refused` message to the device (and, inside the gateway, a log
    /// line), after which the conversation is closed.
    pub fn on_message<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        bytes: &[u8],
        now: SystemTime,
    ) -> Vec<Vec<u8>> {
        let out = match Message::decode(bytes) {
            Ok(msg) => {
                let attempt = self.attempt_method(&msg);
                let out = self.step(rng, msg, now);
                if let (Some(method), Some(outcome)) = (attempt, outcome_of(&out)) {
                    self.service.metrics.pairing_attempt(method, outcome);
                }
                out
            }
            Err(e) => {
                let code = match e {
                    wire::DecodeError::UnsupportedVersion { .. } => RefusalCode::UnsupportedVersion,
                    _ => RefusalCode::Malformed,
                };
                self.abandon();
                Err(Refusal::new(code, e))
            }
        };
        match out {
            Ok(messages) => messages.iter().map(Message::encode).collect(),
            Err(Refusal(refused)) => {
                self.abandon();
                self.state = State::Closed;
                vec![Message::Refused(refused).encode()]
            }
        }
    }

    /// The device went away (or the transport gave up on it): attempts
    /// whose proof was never checked are given back.
    pub fn abandon(&mut self) {
        let (method, held) = match std::mem::replace(&mut self.state, State::Closed) {
            State::Pin { attempts, .. } => ("pin", attempts),
            State::Qr { attempt, .. } => ("qr", vec![attempt]),
            State::Ready | State::Closed => return,
        };
        (self.service.metrics).pairing_attempt(method, PairingOutcome::Abandoned);
        if let Err(error) = self.service.identity.release_attempts(&held) {
            tracing::warn!(%error, "giving back unused pairing attempts failed; they stay counted");
        }
    }

    /// The method of the pairing attempt `msg` starts or proves (`pin` or
    /// `qr`); `None` for a message that is no attempt (a resume).
    fn attempt_method(&self, msg: &Message) -> Option<&'static str> {
        match (&self.state, msg) {
            (State::Pin { .. }, _) | (State::Ready, Message::PinHello(_)) => Some("pin"),
            (State::Qr { .. }, _) | (State::Ready, Message::QrHello(_)) => Some("qr"),
            _ => None,
        }
    }

    fn step<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        msg: Message,
        now: SystemTime,
    ) -> Result<Vec<Message>, Refusal> {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Ready => match msg {
                Message::PinHello(_) => self.pin_hello(rng, msg, now),
                Message::QrHello(hello) => self.qr_hello(rng, &hello, now),
                Message::Resume(resume) => {
                    let answer = self.resume(&resume, now)?;
                    self.state = State::Ready;
                    Ok(vec![answer])
                }
                other => Err(Refusal::new(
                    RefusalCode::Malformed,
                    format!("expected PinHello, QrHello or Resume, got {}", other.name()),
                )),
            },
            State::Pin { run, attempts } => {
                let result = run.on_confirm(msg);
                self.confirmed(result, attempts, Method::Pin, now)
            }
            State::Qr { run, attempt } => {
                let result = run.on_confirm(msg);
                self.confirmed(result, vec![attempt], Method::Qr, now)
            }
            State::Closed => Err(Refusal::new(
                RefusalCode::Malformed,
                "this pairing conversation is over",
            )),
        }
    }

    fn refuse_if_rate_limited(&self, now: SystemTime) -> Result<(), Refusal> {
        if let Some(wait) = self.service.identity.rate_limit_wait(self.peer, now)? {
            let secs = u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX);
            return Err(Refusal::new(
                RefusalCode::RateLimited {
                    retry_after_secs: secs,
                },
                format!("too many failed attempts from this address: try again in {secs} s"),
            ));
        }
        Ok(())
    }

    fn pin_hello<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        msg: Message,
        now: SystemTime,
    ) -> Result<Vec<Message>, Refusal> {
        self.refuse_if_rate_limited(now)?;
        let identity = &self.service.identity;
        let attempts = identity.begin_pin_attempts(now)?;
        if attempts.is_empty() {
            return Err(Refusal::new(
                RefusalCode::UnknownCode,
                "no PIN code is live: ask the operator for a new one",
            ));
        }
        let candidates: Vec<PinCandidate> = attempts
            .iter()
            .map(|a| PinCandidate {
                id: a.session.id.clone(),
                pin: a.session.secret.clone(),
            })
            .collect();
        match GatewayPin::on_hello(rng, msg, &candidates, self.binding) {
            Ok((run, challenge)) => {
                self.state = State::Pin { run, attempts };
                Ok(vec![challenge])
            }
            Err(e) => {
                // No guess was tested: the attempts go back.
                self.give_back(&attempts);
                Err(e.into())
            }
        }
    }

    fn give_back(&self, attempts: &[Attempt]) {
        if let Err(error) = self.service.identity.release_attempts(attempts) {
            tracing::warn!(%error, "giving back unused pairing attempts failed; they stay counted");
        }
    }

    fn qr_hello<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        hello: &wire::QrHello,
        now: SystemTime,
    ) -> Result<Vec<Message>, Refusal> {
        self.refuse_if_rate_limited(now)?;
        let identity = &self.service.identity;
        let attempt = identity
            .begin_attempt(&hello.session_id, now)?
            .map_err(session_refusal)?;
        let token = match (
            attempt.session.method,
            hex::decode(&*attempt.session.secret),
        ) {
            (Method::Qr, Ok(bytes)) => <[u8; QR_TOKEN_LEN]>::try_from(bytes.as_slice()).ok(),
            _ => None,
        };
        let Some(token) = token else {
            // A PIN code's id presented as a QR code (or a token that is
            // not 16 bytes): no proof is checked against it.
            self.give_back(std::slice::from_ref(&attempt));
            return Err(Refusal::new(
                RefusalCode::UnknownCode,
                format!("{} is not a QR pairing code", hello.session_id),
            ));
        };
        match GatewayQr::challenge(rng, hello, &token, self.binding) {
            Ok((run, challenge)) => {
                self.state = State::Qr { run, attempt };
                Ok(vec![challenge])
            }
            Err(e) => {
                self.give_back(std::slice::from_ref(&attempt));
                Err(e.into())
            }
        }
    }

    /// Reports every checked attempt, then completes the pairing whose
    /// proof held.
    fn confirmed(
        &mut self,
        result: Result<Verified, ConfirmFailure>,
        attempts: Vec<Attempt>,
        method: Method,
        now: SystemTime,
    ) -> Result<Vec<Message>, Refusal> {
        let identity = &self.service.identity;
        let (checked_and_failed, matched): (Vec<String>, Option<String>) = match &result {
            Ok(v) => (v.failed_candidates.clone(), Some(v.session_id.clone())),
            Err(f) => {
                let mut failed = f.failed_candidates.clone();
                failed.extend(f.matched.clone());
                (failed, None)
            }
        };
        let mut unchecked = Vec::new();
        let mut the_match = None;
        for attempt in attempts {
            let id = &attempt.session.id;
            if matched.as_ref() == Some(id) {
                the_match = Some(attempt);
            } else if checked_and_failed.contains(id) {
                identity.fail_attempt(&attempt)?;
            } else {
                unchecked.push(attempt);
            }
        }
        self.give_back(&unchecked);
        let verified = match result {
            Ok(v) => v,
            Err(failure) => {
                if !checked_and_failed.is_empty() {
                    identity.record_failed_pairing(
                        self.peer,
                        &self.service.settings.rate_limit,
                        now,
                    )?;
                }
                return Err(Refusal(match failure.reply() {
                    Message::Refused(r) => r,
                    _ => Refused::new(RefusalCode::ConfirmationFailed, "confirmation failed"),
                }));
            }
        };
        let Some(attempt) = the_match else {
            return Err(Refusal::new(
                RefusalCode::Internal,
                "the code that matched was not one this gateway offered",
            ));
        };
        match self.complete(&verified, &attempt, method, now) {
            Ok(answer) => {
                self.state = State::Ready;
                Ok(vec![verified.reply, answer])
            }
            Err(refusal) => {
                // The proof held but the pairing cannot go on: the
                // attempt is spent (the code stays for its other tries).
                if let Err(error) = identity.fail_attempt(&attempt) {
                    tracing::warn!(%error, "reporting a refused pairing attempt failed");
                }
                Err(refusal)
            }
        }
    }

    /// Uses the code, files the request, asks the policy; the answer.
    fn complete(
        &self,
        verified: &Verified,
        attempt: &Attempt,
        method: Method,
        now: SystemTime,
    ) -> Result<Message, Refusal> {
        let identity = &self.service.identity;
        let public_key = DevicePublicKey::from_bytes(&verified.device_public_key)
            .map_err(|e| Refusal::new(RefusalCode::Malformed, format!("device public key: {e}")))?;
        let device_id = public_key.device_id();
        if verified.device_id != device_id.to_string() {
            return Err(Refusal::new(
                RefusalCode::DeviceIdMismatch,
                format!(
                    "device id {:?} is not the id of its key ({device_id})",
                    verified.device_id
                ),
            ));
        }
        let request = NewApproval {
            public_key,
            device_name: verified.name.clone(),
            method,
            remote_addr: self.peer.to_string(),
            capabilities: verified.capabilities.clone(),
            check_code: verified.check_code.clone(),
            ttl: self.service.settings.request_ttl,
        };
        let verdict = self.verdict(&request, device_id, now);
        let record = identity
            .complete_pairing(attempt, request, verdict, now)?
            .map_err(session_refusal)?;
        tracing::info!(
            request = %record.id,
            device = %record.device_id,
            name = %record.device_name.escape_debug(),
            check_code = %record.check_code,
            from = %self.peer,
            status = %record.status(now),
            "pairing request filed"
        );
        self.answer(&record, now)
    }

    /// Asks the policy, if one is configured, about a request about to be
    /// filed; its verdict is recorded with the request, in the same
    /// mutation (a policy that fails rejects the request).
    fn verdict(&self, request: &NewApproval, device_id: DeviceId, now: SystemTime) -> Verdict {
        let Some(slot) = &self.service.policy else {
            return Verdict::Pending;
        };
        let capabilities: Vec<&str> = request.capabilities.iter().map(String::as_str).collect();
        let asked = ApprovalRequest::new(
            device_id,
            &request.device_name,
            request.method.into(),
            &request.remote_addr,
            &capabilities,
            unix_secs(now),
        );
        let by = Actor::policy(&slot.name);
        match slot.policy.evaluate(&asked) {
            Ok(Decision::Pending) => Verdict::Pending,
            Ok(Decision::Approve) => Verdict::Approve { by },
            Ok(Decision::Deny(reason)) => Verdict::Reject { by, reason },
            Err(error) => {
                tracing::warn!(%error, device = %device_id, "the approval policy failed: request rejected");
                Verdict::Reject {
                    by,
                    reason: "the approval policy failed".into(),
                }
            }
        }
    }

    /// A device asks again for the answer to its request.
    fn resume(&self, resume: &Resume, now: SystemTime) -> Result<Message, Refusal> {
        resume.verify(&self.binding.channel_binding)?;
        let not_yours = || {
            Refusal::new(
                RefusalCode::UnknownCode,
                format!(
                    "there is no pairing request {} for this key",
                    resume.request_id
                ),
            )
        };
        let record = self
            .service
            .identity
            .approval(&resume.request_id)?
            .ok_or_else(not_yours)?;
        if record.public_key.as_bytes() != &resume.device_public_key {
            return Err(not_yours());
        }
        self.answer(&record, now)
    }

    /// The message that tells the device where its request stands.
    fn answer(&self, record: &ApprovalRecord, now: SystemTime) -> Result<Message, Refusal> {
        let request_id = record.id.clone();
        Ok(match record.status(now) {
            RequestStatus::Pending => Message::Pending(wire::Pending {
                request_id,
                check_code: record.check_code.clone(),
            }),
            RequestStatus::Expired => Message::Expired(wire::Expired { request_id }),
            RequestStatus::Rejected => {
                let reason = match &record.decision {
                    ApprovalState::Rejected { reason, .. } => reason.clone(),
                    _ => String::new(),
                };
                Message::Rejected(wire::Rejected {
                    request_id,
                    reason: Refused::new(RefusalCode::Rejected, &reason).reason,
                })
            }
            RequestStatus::Approved => {
                let cert = record.certificate.as_ref().ok_or_else(|| {
                    Refusal::new(
                        RefusalCode::Internal,
                        "an approved request has no certificate",
                    )
                })?;
                let leaf = pem::parse(&cert.pem)
                    .map_err(|e| Refusal::new(RefusalCode::Internal, format!("certificate: {e}")))?
                    .into_contents();
                let ca = self.service.identity.ca().certificate_der().to_vec();
                Message::Approved(wire::Approved {
                    request_id,
                    certificates: vec![leaf, ca],
                })
            }
        })
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        self.abandon();
    }
}

//! Pairing sessions and approval records: the state the pairing flow keeps
//! between "the operator minted a code" and "the device got its
//! certificate".
//!
//! - A pairing session (`identity/pairing/<id>`) holds one minted code (the
//!   PIN digits or the QR token) until it expires, is used once, or is
//!   burned after its allowed failed attempts. The secret is stored only
//!   inside the store's encrypted record, never in a file or a log.
//! - An approval record (`identity/approvals/<id>`) is created when a device
//!   has proved a code; it stays `pending` until the approval policy or an
//!   operator decides, and keeps the decision.
//!
//! Time is always a parameter. Each operation writes one record and one
//! change entry.

use std::time::{Duration, SystemTime};

use keygate_sdk::{PairingMethod, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::IdentityError;
use super::audit::{Actor, AuditAction, AuditEvent};
use super::manager::{IdentityManager, Listing, NewDevice, Write};
use super::plan::Planner;
use super::records::{DeviceRecord, device_key};
use crate::ca::IssuedCertificate;
use crate::identity::{CertFingerprint, DeviceId, DevicePublicKey};
use crate::time::unix_secs;

/// Prefix of pairing sessions.
pub const PAIRING_PREFIX: &str = "identity/pairing/";
/// Prefix of approval records.
pub const APPROVALS_PREFIX: &str = "identity/approvals/";

/// The most PIN codes live at once. A device cannot say which PIN it
/// typed without giving the PIN away, so the gateway answers it with one
/// PAKE message per live PIN code (each a guess at that code). The same
/// number bounds what a device accepts: a rogue gateway offering more
/// candidates would test that many PINs per attempt of the device, so a
/// device refuses a challenge with more than this many (see
/// `device::pairing`).
pub const MAX_LIVE_PIN_CODES: usize = 8;

/// How a code is proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A numeric PIN, through a PAKE.
    Pin,
    /// A QR code's one-time token.
    Qr,
}

impl From<Method> for keygate_sdk::PairingMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::Pin => Self::Pin,
            Method::Qr => Self::Qr,
        }
    }
}

/// A minted pairing code.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingSession {
    /// Random id, 32 hex digits.
    pub id: String,
    /// PIN or QR.
    pub method: Method,
    /// The PIN digits or the QR token (hex).
    pub secret: Zeroizing<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; the code is refused from then on.
    pub expires_at: u64,
    /// Attempts left before the code is burned (an attempt is counted
    /// when it begins, see [`Attempt`]).
    pub attempts_left: u32,
    /// Attempts begun and not yet reported failed (or successful).
    #[serde(default)]
    pub in_flight: u32,
}

impl std::fmt::Debug for PairingSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingSession")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("expires_at", &self.expires_at)
            .field("attempts_left", &self.attempts_left)
            .finish_non_exhaustive()
    }
}

/// One attempt at a code, counted before its proof is checked.
///
/// [`IdentityManager::begin_attempt`] takes one of the code's attempts and
/// hands out the secret to check the proof against; the caller then either
/// [`consume_pairing_session`](IdentityManager::consume_pairing_session)s
/// the code (the proof held) or reports
/// [`fail_attempt`](IdentityManager::fail_attempt). Because the count is
/// taken first, concurrent attempts on one code, in one process or several,
/// never test more guesses than the code allows: the attempt after the last
/// one is refused before any proof is looked at. An attempt whose caller
/// vanishes (a dropped connection) stays counted.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The session, with its secret; `attempts_left` already counts this
    /// attempt.
    pub session: PairingSession,
}

/// What a failed attempt did to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The code stays usable for this many more attempts.
    Remaining(u32),
    /// That was the last allowed attempt: the code is gone.
    Burned,
}

/// Where an approval stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase", deny_unknown_fields)]
pub enum ApprovalState {
    /// Waiting for the policy or an operator.
    Pending,
    /// Approved at `at` (unix seconds) by `by` (`policy(<name>)` or
    /// `operator`).
    Approved {
        /// Unix seconds.
        at: u64,
        /// Who decided.
        by: String,
    },
    /// Rejected, with the reason the device is told.
    Rejected {
        /// Unix seconds.
        at: u64,
        /// Who decided.
        by: String,
        /// Why.
        reason: String,
    },
}

/// Where a request stands, as listings show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Waiting for the policy or an operator, and not expired.
    Pending,
    /// Approved: its certificate is issued.
    Approved,
    /// Rejected, with a reason.
    Rejected,
    /// Still undecided when its lifetime ended: it can no longer be
    /// approved; the device must pair again with a new code.
    Expired,
}

impl RequestStatus {
    /// `pending`, `approved`, `rejected` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }
}

impl std::fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The certificate an approved request was issued, kept with the request
/// so a device that lost its connection gets the same one again (a
/// certificate is public: it holds no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestCertificate {
    /// SHA-256 of the DER.
    pub fingerprint: CertFingerprint,
    /// The certificate, PEM.
    pub pem: String,
}

/// A record that never expires, for records written before requests had
/// a lifetime.
fn never() -> u64 {
    u64::MAX
}

/// A device's request for a certificate after proving a code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRecord {
    /// Random id, 32 hex digits.
    pub id: String,
    /// The device.
    pub device_id: DeviceId,
    /// Its public key (the key its certificate will carry).
    pub public_key: DevicePublicKey,
    /// The name it gave (untrusted).
    pub device_name: String,
    /// How it proved the code.
    pub method: Method,
    /// Where the request came from.
    pub remote_addr: String,
    /// Capabilities it asked for.
    pub capabilities: Vec<String>,
    /// Unix seconds.
    pub requested_at: u64,
    /// Unix seconds; undecided from then on, the request is expired.
    #[serde(default = "never")]
    pub expires_at: u64,
    /// The short code both sides derived from the pairing transcript: the
    /// device shows it while it waits, so the operator approves the
    /// request in front of them and not a look-alike.
    #[serde(default)]
    pub check_code: String,
    /// The decision so far.
    pub decision: ApprovalState,
    /// The certificate issued when it was approved.
    #[serde(default)]
    pub certificate: Option<RequestCertificate>,
    /// The pairing code (session) the device proved, which filing the
    /// request used up.
    #[serde(default)]
    pub session_id: Option<String>,
}

impl ApprovalRecord {
    /// Its status at `now`.
    pub fn status(&self, now: SystemTime) -> RequestStatus {
        match self.decision {
            ApprovalState::Approved { .. } => RequestStatus::Approved,
            ApprovalState::Rejected { .. } => RequestStatus::Rejected,
            ApprovalState::Pending if unix_secs(now) >= self.expires_at => RequestStatus::Expired,
            ApprovalState::Pending => RequestStatus::Pending,
        }
    }
}

/// Everything an approval request carries, before it has an id.
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// The device's public key (its id is derived from it).
    pub public_key: DevicePublicKey,
    /// The name it gave.
    pub device_name: String,
    /// How it proved the code.
    pub method: Method,
    /// Where it came from.
    pub remote_addr: String,
    /// Capabilities it asks for.
    pub capabilities: Vec<String>,
    /// The check code derived from its pairing transcript.
    pub check_code: String,
    /// How long it may wait for a decision.
    pub ttl: Duration,
}

/// Why `Planner::pending_request` found no pending request.
enum RequestDecided {
    /// It was decided already.
    Already(Box<ApprovalRecord>),
    /// It cannot be decided at all.
    Refused(RequestRefusal),
}

/// What the approval policy decided on a request before it was filed
/// (see [`IdentityManager::complete_pairing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No decision: the request waits for an operator.
    Pending,
    /// Approved by `by` (a policy).
    Approve {
        /// Who decided.
        by: Actor,
    },
    /// Rejected by `by`, with the reason the device is told.
    Reject {
        /// Who decided.
        by: Actor,
        /// Why.
        reason: String,
    },
}

fn new_record(request: NewApproval, method: Method, now: SystemTime) -> ApprovalRecord {
    ApprovalRecord {
        id: random_id(),
        device_id: request.public_key.device_id(),
        public_key: request.public_key,
        device_name: request.device_name,
        method,
        remote_addr: request.remote_addr,
        capabilities: request.capabilities,
        requested_at: unix_secs(now),
        expires_at: unix_secs(now + request.ttl),
        check_code: request.check_code,
        decision: ApprovalState::Pending,
        certificate: None,
        session_id: None,
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// Whether `id` has the shape of the ids this module makes (32 lower-case
/// hex digits). Ids from a device or the command line are checked before
/// they name a store key, so garbage is "unknown", never a store error.
fn is_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The audit event of a request filed, by the device that filed it.
fn filed(record: &ApprovalRecord) -> AuditEvent {
    AuditEvent::new(
        &Actor::device(&record.device_id),
        AuditAction::RequestFiled,
        record.id.clone(),
    )
    .with("device_id", record.device_id.to_string())
    .with("name", record.device_name.clone())
    .with("method", PairingMethod::from(record.method).as_str())
    .with("remote_addr", record.remote_addr.clone())
}

/// The audit event of a request rejected.
fn rejected(record: &ApprovalRecord, by: &Actor, reason: &str) -> AuditEvent {
    AuditEvent::new(by, AuditAction::RequestRejected, record.id.clone())
        .with("device_id", record.device_id.to_string())
        .with("reason", reason)
}

fn session_key(id: &str) -> String {
    format!("{PAIRING_PREFIX}{id}")
}

fn approval_key(id: &str) -> String {
    format!("{APPROVALS_PREFIX}{id}")
}

fn json<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, IdentityError> {
    serde_json::to_vec(value).map_err(|e| IdentityError::corrupt(key, e))
}

/// Why a pairing session cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionRefusal {
    /// No such code (never minted, used, burned or expired and removed).
    #[error("pairing code {0} does not exist (never minted, already used, or burned)")]
    Unknown(String),
    /// Past its expiry.
    #[error("pairing code {0} has expired")]
    Expired(String),
    /// Every attempt it allows is taken (by attempts still in progress).
    #[error("pairing code {0} has no attempts left")]
    NoAttemptsLeft(String),
}

/// Why a request cannot be decided as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestRefusal {
    /// No such request.
    #[error("there is no pairing request {0}")]
    Unknown(String),
    /// Its lifetime ended undecided.
    #[error("pairing request {0} has expired: the device must pair again with a new code")]
    Expired(String),
    /// Decided the other way already; a decision is final.
    #[error("pairing request {id} is already {status}: a decision is final")]
    AlreadyDecided {
        /// The request.
        id: String,
        /// What it was decided.
        status: RequestStatus,
    },
    /// Its device was revoked meanwhile: the request is rejected.
    #[error(
        "pairing request {id} is for device {device_id}, which is revoked ({reason}): rejected"
    )]
    DeviceRevoked {
        /// The request.
        id: String,
        /// The device.
        device_id: DeviceId,
        /// Why it was revoked.
        reason: String,
    },
}

impl IdentityManager {
    /// Mints a pairing session for `secret` (PIN digits or QR token) that
    /// expires after `ttl` and burns after `max_attempts` failures.
    pub fn create_pairing_session(
        &self,
        method: Method,
        secret: Zeroizing<String>,
        ttl: Duration,
        max_attempts: u32,
        now: SystemTime,
        actor: &Actor,
    ) -> Result<PairingSession, IdentityError> {
        let session = PairingSession {
            id: random_id(),
            method,
            secret,
            created_at: unix_secs(now),
            expires_at: unix_secs(now + ttl),
            attempts_left: max_attempts.max(1),
            in_flight: 0,
        };
        self.mutate("pairing mint", |m| {
            if method == Method::Pin {
                let live = m.live_sessions(Method::Pin, now)?.len();
                if live >= MAX_LIVE_PIN_CODES {
                    return Err(IdentityError::TooManyLiveCodes {
                        method: "PIN",
                        live,
                    });
                }
            }
            let key = session_key(&session.id);
            let mut writes = vec![Write::put(key.clone(), json(&key, &session)?, None)];
            let event = AuditEvent::new(actor, AuditAction::CodeMinted, session.id.clone())
                .with("method", PairingMethod::from(method).as_str())
                .with("expires_at", session.expires_at.to_string());
            m.audit(vec![event], now, &mut writes)?;
            Ok((writes, ()))
        })?;
        Ok(session)
    }

    /// A live session: `Unknown` if it does not exist, `Expired` (and
    /// removed) if past its expiry.
    pub fn pairing_session(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<Result<PairingSession, SessionRefusal>, IdentityError> {
        if !is_id(id) {
            return Ok(Err(SessionRefusal::Unknown(id.to_owned())));
        }
        self.mutate("pairing lookup", |m| {
            let key = session_key(id);
            match m.get_record::<PairingSession>(&key)? {
                None => Ok((Vec::new(), Err(SessionRefusal::Unknown(id.to_owned())))),
                Some((s, version)) if unix_secs(now) >= s.expires_at => Ok((
                    vec![Write::delete(key, version)],
                    Err(SessionRefusal::Expired(id.to_owned())),
                )),
                Some((s, _)) => Ok((Vec::new(), Ok(s))),
            }
        })
    }

    /// Takes one attempt at a session's code before its proof is checked
    /// (see [`Attempt`]): refused when the code is unknown, expired (and
    /// then removed) or has no attempt left.
    pub fn begin_attempt(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<Result<Attempt, SessionRefusal>, IdentityError> {
        if !is_id(id) {
            return Ok(Err(SessionRefusal::Unknown(id.to_owned())));
        }
        self.mutate("pairing attempt", |m| {
            let key = session_key(id);
            let refuse = |refusal| Ok((Vec::new(), Err(refusal)));
            let Some((mut session, version)) = m.get_record::<PairingSession>(&key)? else {
                return refuse(SessionRefusal::Unknown(id.to_owned()));
            };
            if unix_secs(now) >= session.expires_at {
                return Ok((
                    vec![Write::delete(key, version)],
                    Err(SessionRefusal::Expired(id.to_owned())),
                ));
            }
            if session.attempts_left == 0 {
                return refuse(SessionRefusal::NoAttemptsLeft(id.to_owned()));
            }
            session.attempts_left -= 1;
            session.in_flight = session.in_flight.saturating_add(1);
            let value = json(&key, &session)?;
            Ok((
                vec![Write::put(key, value, Some(version))],
                Ok(Attempt { session }),
            ))
        })
    }

    /// Takes one attempt at every live PIN code, in one mutation: a device
    /// proves "a PIN", and the gateway checks its proof against each live
    /// code (see [`MAX_LIVE_PIN_CODES`]). Expired codes met on the way are
    /// removed; codes with no attempt left are skipped. Empty when no PIN
    /// code can be tried.
    pub fn begin_pin_attempts(&self, now: SystemTime) -> Result<Vec<Attempt>, IdentityError> {
        self.mutate("pairing attempt", |m| {
            let mut writes = Vec::new();
            let mut attempts = Vec::new();
            for (mut session, version) in m.sessions_with_versions()? {
                let key = session_key(&session.id);
                if session.method != Method::Pin {
                    continue;
                }
                if unix_secs(now) >= session.expires_at {
                    writes.push(Write::delete(key, version));
                    continue;
                }
                if session.attempts_left == 0 {
                    continue;
                }
                session.attempts_left -= 1;
                session.in_flight = session.in_flight.saturating_add(1);
                writes.push(Write::put(
                    key.clone(),
                    json(&key, &session)?,
                    Some(version),
                ));
                attempts.push(Attempt { session });
            }
            Ok((writes, attempts))
        })
    }

    /// Gives attempts back whose proof was never checked (the device went
    /// away, or its hello was refused before any guess was tested): each
    /// code that still exists regains the attempt. An attempt whose proof
    /// was checked must be reported with [`fail_attempt`](Self::fail_attempt)
    /// or completed instead.
    pub fn release_attempts(&self, attempts: &[Attempt]) -> Result<(), IdentityError> {
        if attempts.is_empty() {
            return Ok(());
        }
        self.mutate("pairing attempt released", |m| {
            let mut writes = Vec::new();
            for attempt in attempts {
                let key = session_key(&attempt.session.id);
                let Some((mut s, version)) = m.get_record::<PairingSession>(&key)? else {
                    continue;
                };
                if s.in_flight == 0 {
                    continue;
                }
                s.in_flight -= 1;
                s.attempts_left = s.attempts_left.saturating_add(1);
                writes.push(Write::put(key.clone(), json(&key, &s)?, Some(version)));
            }
            Ok((writes, ()))
        })
    }

    /// Reports that an attempt's proof failed. The attempt was counted when
    /// it began; once no attempt is left and none is still in flight (one
    /// of those could yet succeed), the code is deleted (burned).
    pub fn fail_attempt(&self, attempt: &Attempt) -> Result<AttemptOutcome, IdentityError> {
        let id = &attempt.session.id;
        self.mutate("pairing failed attempt", |m| {
            let key = session_key(id);
            let Some((mut s, version)) = m.get_record::<PairingSession>(&key)? else {
                // Used by another attempt, expired, or burned already.
                return Ok((Vec::new(), AttemptOutcome::Burned));
            };
            s.in_flight = s.in_flight.saturating_sub(1);
            if s.attempts_left == 0 && s.in_flight == 0 {
                return Ok((vec![Write::delete(key, version)], AttemptOutcome::Burned));
            }
            let left = s.attempts_left;
            let value = json(&key, &s)?;
            Ok((
                vec![Write::put(key, value, Some(version))],
                AttemptOutcome::Remaining(left),
            ))
        })
    }

    /// Completes a pairing whose proof held: uses the attempt's code (it is
    /// deleted: single use) and files the device's request with the
    /// policy's `verdict` already applied (approved: its device enrolled
    /// and its certificate issued; rejected: with the reason), all in one
    /// mutation. So no code is both used and usable, no request exists
    /// without its code being used, and an auto-approved request is never
    /// seen pending. Refused when another attempt used the code first; an
    /// error (and nothing written) when the device is revoked.
    pub fn complete_pairing(
        &self,
        attempt: &Attempt,
        request: NewApproval,
        verdict: Verdict,
        now: SystemTime,
    ) -> Result<Result<ApprovalRecord, SessionRefusal>, IdentityError> {
        let record = ApprovalRecord {
            session_id: Some(attempt.session.id.clone()),
            ..new_record(request, attempt.session.method, now)
        };
        let issued = match verdict {
            Verdict::Approve { .. } => Some(self.issue_ahead(&record.public_key, now)?),
            Verdict::Pending | Verdict::Reject { .. } => None,
        };
        self.mutate("pairing complete", |m| {
            let id = &attempt.session.id;
            let key = session_key(id);
            let Some((_, version)) = m.get_record::<PairingSession>(&key)? else {
                return Ok((Vec::new(), Err(SessionRefusal::Unknown(id.clone()))));
            };
            m.refuse_revoked(&record.device_id)?;
            let mut record = record.clone();
            let mut writes = vec![Write::delete(key, version)];
            let mut events = vec![filed(&record)];
            match &verdict {
                Verdict::Pending => {}
                Verdict::Approve { by } => m.approve_into(
                    &mut record,
                    by,
                    now,
                    issued.clone(),
                    &mut events,
                    &mut writes,
                )?,
                Verdict::Reject { by, reason } => {
                    record.decision = ApprovalState::Rejected {
                        at: unix_secs(now),
                        by: by.to_string(),
                        reason: reason.clone(),
                    };
                    events.push(rejected(&record, by, reason));
                }
            }
            let akey = approval_key(&record.id);
            writes.push(Write::put(akey.clone(), json(&akey, &record)?, None));
            m.audit(events, now, &mut writes)?;
            Ok((writes, Ok(record)))
        })
    }

    /// Uses a session's code: returns it and deletes it (single use), or
    /// refuses an unknown or expired one.
    pub fn consume_pairing_session(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<Result<PairingSession, SessionRefusal>, IdentityError> {
        if !is_id(id) {
            return Ok(Err(SessionRefusal::Unknown(id.to_owned())));
        }
        self.mutate("pairing consume", |m| {
            let key = session_key(id);
            match m.get_record::<PairingSession>(&key)? {
                None => Ok((Vec::new(), Err(SessionRefusal::Unknown(id.to_owned())))),
                Some((s, version)) => {
                    let outcome = if unix_secs(now) >= s.expires_at {
                        Err(SessionRefusal::Expired(id.to_owned()))
                    } else {
                        Ok(s)
                    };
                    Ok((vec![Write::delete(key, version)], outcome))
                }
            }
        })
    }

    /// Files a pending approval request.
    pub fn create_approval(
        &self,
        request: NewApproval,
        now: SystemTime,
    ) -> Result<ApprovalRecord, IdentityError> {
        let method = request.method;
        let record = new_record(request, method, now);
        self.mutate("approval request", |m| {
            m.refuse_revoked(&record.device_id)?;
            let key = approval_key(&record.id);
            let mut writes = vec![Write::put(key.clone(), json(&key, &record)?, None)];
            m.audit(vec![filed(&record)], now, &mut writes)?;
            Ok((writes, ()))
        })?;
        Ok(record)
    }

    /// Approves a pending request: enrols its device (unless enrolled
    /// already), issues the certificate for the device's own key and
    /// records it with the request, all in one mutation. Approving an
    /// approved request returns it unchanged: nothing is issued twice for
    /// one request. `by` names who decided (`operator:NAME`,
    /// `policy(NAME)`).
    pub fn approve_request(
        &self,
        id: &str,
        by: &Actor,
        now: SystemTime,
    ) -> Result<Result<ApprovalRecord, RequestRefusal>, IdentityError> {
        self.mutate("pairing approve", |m| {
            let (mut record, version) = match m.pending_request(id, now)? {
                Err(RequestDecided::Already(record)) => {
                    let outcome = match record.decision {
                        ApprovalState::Approved { .. } => Ok(*record),
                        _ => Err(RequestRefusal::AlreadyDecided {
                            id: id.to_owned(),
                            status: RequestStatus::Rejected,
                        }),
                    };
                    return Ok((Vec::new(), outcome));
                }
                Err(RequestDecided::Refused(refusal)) => return Ok((Vec::new(), Err(refusal))),
                Ok(found) => found,
            };
            let key = approval_key(id);
            let mut writes = Vec::with_capacity(8);
            let mut events = Vec::with_capacity(3);
            match m.approve_into(&mut record, by, now, None, &mut events, &mut writes) {
                Ok(()) => {
                    writes.push(Write::put(key.clone(), json(&key, &record)?, Some(version)));
                    m.audit(events, now, &mut writes)?;
                    Ok((writes, Ok(record)))
                }
                Err(IdentityError::DeviceRevoked { device_id, reason }) => {
                    let why = format!("the device is revoked ({reason})");
                    record.decision = ApprovalState::Rejected {
                        at: unix_secs(now),
                        by: by.to_string(),
                        reason: why.clone(),
                    };
                    let value = json(&key, &record)?;
                    let mut writes = vec![Write::put(key, value, Some(version))];
                    m.audit(vec![rejected(&record, by, &why)], now, &mut writes)?;
                    Ok((
                        writes,
                        Err(RequestRefusal::DeviceRevoked {
                            id: id.to_owned(),
                            device_id,
                            reason,
                        }),
                    ))
                }
                Err(e) => Err(e),
            }
        })
    }

    /// Rejects a pending request with `reason`, which the device is told.
    /// Rejecting a rejected request returns it unchanged.
    pub fn reject_request(
        &self,
        id: &str,
        by: &Actor,
        reason: &str,
        now: SystemTime,
    ) -> Result<Result<ApprovalRecord, RequestRefusal>, IdentityError> {
        self.mutate("pairing reject", |m| {
            let (mut record, version) = match m.pending_request(id, now)? {
                Err(RequestDecided::Already(record)) => {
                    let outcome = match record.decision {
                        ApprovalState::Rejected { .. } => Ok(*record),
                        _ => Err(RequestRefusal::AlreadyDecided {
                            id: id.to_owned(),
                            status: RequestStatus::Approved,
                        }),
                    };
                    return Ok((Vec::new(), outcome));
                }
                Err(RequestDecided::Refused(refusal)) => return Ok((Vec::new(), Err(refusal))),
                Ok(found) => found,
            };
            record.decision = ApprovalState::Rejected {
                at: unix_secs(now),
                by: by.to_string(),
                reason: reason.to_owned(),
            };
            let key = approval_key(id);
            let value = json(&key, &record)?;
            let mut writes = vec![Write::put(key, value, Some(version))];
            m.audit(vec![rejected(&record, by, reason)], now, &mut writes)?;
            Ok((writes, Ok(record)))
        })
    }

    /// One approval record.
    pub fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>, IdentityError> {
        if !is_id(id) {
            return Ok(None);
        }
        Ok(self
            .get_record::<ApprovalRecord>(&approval_key(id))?
            .map(|(r, _)| r))
    }

    /// Every pairing session (minted code) that reads, expired ones
    /// included; unreadable ones are left out (`keygate state check`
    /// names them).
    pub fn pairing_sessions(&self) -> Result<Vec<PairingSession>, IdentityError> {
        Ok(self
            .all(PAIRING_PREFIX, |id, s: &PairingSession| id == s.id)?
            .records)
    }

    /// Every approval record, and the ones that cannot be read.
    pub fn approvals(&self) -> Result<Listing<ApprovalRecord>, IdentityError> {
        self.all(APPROVALS_PREFIX, |id, r: &ApprovalRecord| id == r.id)
    }
}

impl Planner<'_> {
    /// Inside a mutation: approves `record` (enrols its device unless
    /// enrolled, issues the certificate for the device's own key and keeps
    /// it with the record), adding the device and certificate writes; the
    /// caller writes the record. A revoked device is an error.
    fn approve_into(
        &self,
        record: &mut ApprovalRecord,
        by: &Actor,
        now: SystemTime,
        issued: Option<IssuedCertificate>,
        events: &mut Vec<AuditEvent>,
        writes: &mut Vec<Write>,
    ) -> Result<(), IdentityError> {
        events.push(
            AuditEvent::new(by, AuditAction::RequestApproved, record.id.clone())
                .with("device_id", record.device_id.to_string()),
        );
        let enrolled = self.plan_enroll(
            NewDevice {
                public_key: &record.public_key,
                name: &record.device_name,
                capabilities: &record.capabilities,
            },
            now,
            issued,
            (by, events),
            writes,
        )?;
        record.decision = ApprovalState::Approved {
            at: unix_secs(now),
            by: by.to_string(),
        };
        record.certificate = Some(RequestCertificate {
            fingerprint: enrolled.certificate.fingerprint,
            pem: enrolled.certificate.pem,
        });
        Ok(())
    }

    /// Inside a mutation: an error if `device_id` is revoked.
    fn refuse_revoked(&self, device_id: &DeviceId) -> Result<(), IdentityError> {
        match self
            .get_record::<DeviceRecord>(&device_key(device_id))?
            .and_then(|(d, _)| d.revoked)
        {
            Some(r) => Err(IdentityError::DeviceRevoked {
                device_id: *device_id,
                reason: r.reason,
            }),
            None => Ok(()),
        }
    }

    /// Every pairing session with its version (unreadable ones are left
    /// out: `keygate state check` names them).
    pub(super) fn sessions_with_versions(
        &self,
    ) -> Result<Vec<(PairingSession, Version)>, IdentityError> {
        let mut found = Vec::new();
        for key in self.store_list(PAIRING_PREFIX)? {
            if let Ok(Some(entry)) = self.get_record::<PairingSession>(&key) {
                found.push(entry);
            }
        }
        Ok(found)
    }

    /// The live sessions of `method` (not expired, attempts left).
    fn live_sessions(
        &self,
        method: Method,
        now: SystemTime,
    ) -> Result<Vec<PairingSession>, IdentityError> {
        Ok(self
            .sessions_with_versions()?
            .into_iter()
            .map(|(s, _)| s)
            .filter(|s| s.method == method && unix_secs(now) < s.expires_at && s.attempts_left > 0)
            .collect())
    }

    /// Inside a mutation: the request `id` if it is pending and live.
    fn pending_request(
        &self,
        id: &str,
        now: SystemTime,
    ) -> Result<Result<(ApprovalRecord, Version), RequestDecided>, IdentityError> {
        if !is_id(id) {
            return Ok(Err(RequestDecided::Refused(RequestRefusal::Unknown(
                id.to_owned(),
            ))));
        }
        let key = approval_key(id);
        let Some((record, version)) = self.get_record::<ApprovalRecord>(&key)? else {
            return Ok(Err(RequestDecided::Refused(RequestRefusal::Unknown(
                id.to_owned(),
            ))));
        };
        Ok(match record.status(now) {
            RequestStatus::Pending => Ok((record, version)),
            RequestStatus::Expired => Err(RequestDecided::Refused(RequestRefusal::Expired(
                id.to_owned(),
            ))),
            RequestStatus::Approved | RequestStatus::Rejected => {
                Err(RequestDecided::Already(Box::new(record)))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn manager(dir: &std::path::Path) -> IdentityManager {
        let store = Arc::new(keygate_store_memory::MemoryStore::new());
        IdentityManager::open(store, dir, Default::default(), SystemTime::now()).unwrap()
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn an_unreadable_approval_met_by_a_listing_is_counted_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        assert_eq!(m.unreadable_met(), 0);
        m.store
            .put(&format!("{APPROVALS_PREFIX}junk"), b"not json", None)
            .unwrap();
        assert_eq!(m.approvals().unwrap().unreadable.len(), 1);
        assert_eq!(m.unreadable_met(), 1);
        m.approvals().unwrap();
        assert_eq!(m.unreadable_met(), 2);
    }

    fn mint(m: &IdentityManager, attempts: u32, now: SystemTime) -> PairingSession {
        m.create_pairing_session(
            Method::Pin,
            Zeroizing::new("48203917".into()),
            10 * MINUTE,
            attempts,
            now,
            &crate::state::Actor::cli(),
        )
        .unwrap()
    }

    #[test]
    fn a_code_burns_after_its_allowed_failed_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let s = mint(&m, 3, now);
        for left in [2, 1] {
            let attempt = m.begin_attempt(&s.id, now).unwrap().unwrap();
            assert_eq!(attempt.session.secret.as_str(), "48203917");
            assert_eq!(attempt.session.attempts_left, left);
            assert_eq!(
                m.fail_attempt(&attempt).unwrap(),
                AttemptOutcome::Remaining(left)
            );
        }
        let last = m.begin_attempt(&s.id, now).unwrap().unwrap();
        assert_eq!(m.fail_attempt(&last).unwrap(), AttemptOutcome::Burned);
        assert_eq!(
            m.begin_attempt(&s.id, now).unwrap().unwrap_err(),
            SessionRefusal::Unknown(s.id.clone())
        );
        assert_eq!(
            m.consume_pairing_session(&s.id, now).unwrap().unwrap_err(),
            SessionRefusal::Unknown(s.id)
        );
    }

    #[test]
    fn an_attempt_is_counted_before_its_proof_so_the_last_may_still_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let s = mint(&m, 2, now);
        let first = m.begin_attempt(&s.id, now).unwrap().unwrap();
        let second = m.begin_attempt(&s.id, now).unwrap().unwrap();
        assert_eq!(second.session.attempts_left, 0);
        // Both attempts are in flight: a third is refused before any proof.
        assert_eq!(
            m.begin_attempt(&s.id, now).unwrap().unwrap_err(),
            SessionRefusal::NoAttemptsLeft(s.id.clone())
        );
        assert_eq!(
            m.fail_attempt(&first).unwrap(),
            AttemptOutcome::Remaining(0)
        );
        // The last counted attempt proves the code and uses it.
        assert!(m.consume_pairing_session(&s.id, now).unwrap().is_ok());
        assert_eq!(m.fail_attempt(&second).unwrap(), AttemptOutcome::Burned);
        assert_eq!(
            m.begin_attempt(&s.id, now).unwrap().unwrap_err(),
            SessionRefusal::Unknown(s.id)
        );
    }

    #[test]
    fn concurrent_attempts_never_test_more_guesses_than_the_code_allows() {
        let dir = tempfile::tempdir().unwrap();
        let m = Arc::new(manager(dir.path()));
        let now = SystemTime::now();
        let s = mint(&m, 5, now);
        let outcomes: Vec<Result<Attempt, SessionRefusal>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| scope.spawn(|| m.begin_attempt(&s.id, now).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let granted = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(granted, 5, "exactly the allowed attempts are granted");
        for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert_eq!(*refused, SessionRefusal::NoAttemptsLeft(s.id.clone()));
        }
    }

    #[test]
    fn an_attempt_on_an_expired_code_is_refused_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let s = mint(&m, 5, now);
        assert_eq!(
            m.begin_attempt(&s.id, now + 10 * MINUTE)
                .unwrap()
                .unwrap_err(),
            SessionRefusal::Expired(s.id.clone())
        );
        assert_eq!(
            m.begin_attempt(&s.id, now).unwrap().unwrap_err(),
            SessionRefusal::Unknown(s.id)
        );
    }

    #[test]
    fn codes_are_kept_apart_and_never_print_their_secret() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let a = mint(&m, 5, now);
        let b = mint(&m, 5, now);
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 32);
        assert!(m.consume_pairing_session(&a.id, now).unwrap().is_ok());
        assert_eq!(
            m.pairing_session(&b.id, now).unwrap().unwrap().id,
            b.id,
            "using one code leaves the other"
        );
        let shown = format!("{b:?}");
        assert!(shown.contains(&b.id), "{shown}");
        assert!(!shown.contains("48203917"), "{shown}");
    }

    #[test]
    fn a_lookup_of_an_expired_code_refuses_and_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let s = mint(&m, 5, now);
        assert_eq!(
            m.pairing_session(&s.id, now + 10 * MINUTE)
                .unwrap()
                .unwrap_err(),
            SessionRefusal::Expired(s.id.clone())
        );
        assert_eq!(
            m.pairing_session(&s.id, now).unwrap().unwrap_err(),
            SessionRefusal::Unknown(s.id)
        );
    }

    #[test]
    fn a_code_is_single_use_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let s = m
            .create_pairing_session(
                Method::Qr,
                Zeroizing::new("ab".repeat(16)),
                10 * MINUTE,
                5,
                now,
                &crate::state::Actor::cli(),
            )
            .unwrap();
        assert_eq!(
            m.consume_pairing_session(&s.id, now + MINUTE)
                .unwrap()
                .unwrap()
                .secret
                .as_str(),
            "ab".repeat(16)
        );
        assert_eq!(
            m.consume_pairing_session(&s.id, now + MINUTE)
                .unwrap()
                .unwrap_err(),
            SessionRefusal::Unknown(s.id.clone()),
            "second use refused"
        );

        let s = m
            .create_pairing_session(
                Method::Pin,
                Zeroizing::new("11223344".into()),
                10 * MINUTE,
                5,
                now,
                &crate::state::Actor::cli(),
            )
            .unwrap();
        assert!(m.pairing_session(&s.id, now + 9 * MINUTE).unwrap().is_ok());
        assert_eq!(
            m.consume_pairing_session(&s.id, now + 10 * MINUTE)
                .unwrap()
                .unwrap_err(),
            SessionRefusal::Expired(s.id.clone())
        );
        assert_eq!(
            m.pairing_session(&s.id, now).unwrap().unwrap_err(),
            SessionRefusal::Unknown(s.id),
            "expired code removed"
        );
    }

    fn file(m: &IdentityManager, seed: u8, now: SystemTime) -> ApprovalRecord {
        let key = crate::identity::DeviceKey::from_seed(&[seed; 32]);
        let request = NewApproval {
            public_key: key.public_key(),
            device_name: "kitchen-pi".into(),
            method: Method::Pin,
            remote_addr: "127.0.0.1:5000".into(),
            capabilities: vec!["shell".into()],
            check_code: "7KQ2XM".into(),
            ttl: 10 * MINUTE,
        };
        m.create_approval(request, now).unwrap()
    }

    fn certificates_of(m: &IdentityManager, device: &DeviceId) -> usize {
        let all = m.certificates().unwrap().records;
        all.iter().filter(|c| c.device_id == *device).count()
    }

    #[test]
    fn approving_enrols_the_device_and_issues_its_certificate_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let a = file(&m, 9, now);
        assert_eq!(a.status(now), RequestStatus::Pending);
        assert_eq!(a.check_code, "7KQ2XM");
        assert!(
            m.device(&a.device_id).unwrap().is_none(),
            "not enrolled yet"
        );

        let approved = m
            .approve_request(&a.id, &crate::state::Actor::operator("alice"), now)
            .unwrap()
            .unwrap();
        assert_eq!(approved.status(now), RequestStatus::Approved);
        let cert = approved.certificate.clone().expect("a certificate");
        let record = m
            .certificate(&cert.fingerprint)
            .unwrap()
            .expect("cert record");
        assert_eq!(record.device_id, a.device_id);
        let device = m.device(&a.device_id).unwrap().expect("enrolled");
        assert_eq!(device.public_key, a.public_key);
        assert_eq!(device.capabilities, vec!["shell".to_owned()]);
        let der = pem::parse(&cert.pem).unwrap().into_contents();
        assert_eq!(CertFingerprint::of_der(&der), cert.fingerprint);

        // A retry (a device that lost its connection, a second click) gets
        // the same certificate; nothing new is issued.
        let again = m
            .approve_request(&a.id, &crate::state::Actor::operator("bob"), now)
            .unwrap()
            .unwrap();
        assert_eq!(again, approved);
        assert_eq!(certificates_of(&m, &a.device_id), 1);
        assert_eq!(m.approval(&a.id).unwrap().unwrap(), approved);
    }

    #[test]
    fn a_decision_is_final_and_a_rejection_keeps_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let a = file(&m, 1, now);
        let rejected = m
            .reject_request(
                &a.id,
                &crate::state::Actor::operator("alice"),
                "not ours",
                now,
            )
            .unwrap()
            .unwrap();
        assert_eq!(rejected.status(now), RequestStatus::Rejected);
        assert!(matches!(
            &rejected.decision,
            ApprovalState::Rejected { reason, by, .. } if reason == "not ours" && by == "operator:alice"
        ));
        assert_eq!(
            m.approve_request(&a.id, &crate::state::Actor::operator("bob"), now)
                .unwrap()
                .unwrap_err(),
            RequestRefusal::AlreadyDecided {
                id: a.id.clone(),
                status: RequestStatus::Rejected
            }
        );
        assert!(
            m.device(&a.device_id).unwrap().is_none(),
            "nothing enrolled"
        );
        assert_eq!(certificates_of(&m, &a.device_id), 0);
        assert_eq!(
            m.reject_request(&a.id, &crate::state::Actor::operator("x"), "again", now)
                .unwrap()
                .unwrap(),
            rejected,
            "rejecting again changes nothing"
        );

        let b = file(&m, 2, now);
        m.approve_request(&b.id, &crate::state::Actor::policy("pin-qr"), now)
            .unwrap()
            .unwrap();
        assert_eq!(
            m.reject_request(&b.id, &crate::state::Actor::operator("alice"), "late", now)
                .unwrap()
                .unwrap_err(),
            RequestRefusal::AlreadyDecided {
                id: b.id.clone(),
                status: RequestStatus::Approved
            }
        );
        assert_eq!(m.approvals().unwrap().records.len(), 2);
    }

    #[test]
    fn an_expired_or_unknown_request_cannot_be_decided() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let a = file(&m, 3, now);
        let later = now + 10 * MINUTE;
        assert_eq!(
            a.status(later - Duration::from_secs(1)),
            RequestStatus::Pending
        );
        assert_eq!(a.status(later), RequestStatus::Expired);
        assert_eq!(
            m.approve_request(&a.id, &crate::state::Actor::operator("alice"), later)
                .unwrap()
                .unwrap_err(),
            RequestRefusal::Expired(a.id.clone())
        );
        assert_eq!(
            m.reject_request(&a.id, &crate::state::Actor::operator("alice"), "x", later)
                .unwrap()
                .unwrap_err(),
            RequestRefusal::Expired(a.id.clone())
        );
        assert!(m.device(&a.device_id).unwrap().is_none());
        let unknown = "0".repeat(32);
        assert_eq!(
            m.approve_request(&unknown, &crate::state::Actor::operator("alice"), now)
                .unwrap()
                .unwrap_err(),
            RequestRefusal::Unknown(unknown)
        );
    }

    #[test]
    fn approving_a_request_of_a_device_revoked_meanwhile_rejects_it_and_issues_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let a = file(&m, 4, now);
        // The device was enrolled before and is revoked after filing.
        let key = crate::identity::DeviceKey::from_seed(&[4; 32]);
        m.enroll(
            &key.public_key(),
            "old",
            &[],
            now,
            &crate::state::Actor::cli(),
        )
        .unwrap();
        m.revoke_device(&a.device_id, "stolen", now, &crate::state::Actor::cli())
            .unwrap();
        let before = certificates_of(&m, &a.device_id);

        let refusal = m
            .approve_request(&a.id, &crate::state::Actor::operator("alice"), now)
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&refusal, RequestRefusal::DeviceRevoked { reason, .. } if reason == "stolen"),
            "{refusal}"
        );
        assert_eq!(certificates_of(&m, &a.device_id), before, "nothing issued");
        let record = m.approval(&a.id).unwrap().unwrap();
        assert_eq!(record.status(now), RequestStatus::Rejected);
        assert!(record.certificate.is_none());
    }

    fn new_request(seed: u8) -> NewApproval {
        NewApproval {
            public_key: crate::identity::DeviceKey::from_seed(&[seed; 32]).public_key(),
            device_name: "sensor".into(),
            method: Method::Pin,
            remote_addr: "127.0.0.1:9".into(),
            capabilities: vec![],
            check_code: "ABCDEF".into(),
            ttl: 10 * MINUTE,
        }
    }

    #[test]
    fn a_pin_attempt_is_taken_on_every_live_pin_code_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let a = mint(&m, 5, now);
        let b = mint(&m, 1, now);
        let qr = m
            .create_pairing_session(
                Method::Qr,
                Zeroizing::new("00".repeat(16)),
                MINUTE,
                5,
                now,
                &crate::state::Actor::cli(),
            )
            .unwrap();
        let short = m
            .create_pairing_session(
                Method::Pin,
                Zeroizing::new("11".into()),
                MINUTE,
                5,
                now,
                &crate::state::Actor::cli(),
            )
            .unwrap();

        let mut ids: Vec<String> = m
            .begin_pin_attempts(now)
            .unwrap()
            .into_iter()
            .map(|t| t.session.id)
            .collect();
        ids.sort();
        let mut expected = vec![a.id.clone(), b.id.clone(), short.id.clone()];
        expected.sort();
        assert_eq!(ids, expected, "every live PIN code, no QR code");
        let left = |id: &str| m.pairing_session(id, now).unwrap().unwrap().attempts_left;
        assert_eq!((left(&a.id), left(&b.id), left(&qr.id)), (4, 0, 5));

        // Two minutes on: `short` expired (and is removed), `b` has no
        // attempt left (one still in flight), `a` is tried again.
        let later = now + 2 * MINUTE;
        let ids: Vec<String> = m
            .begin_pin_attempts(later)
            .unwrap()
            .into_iter()
            .map(|t| t.session.id)
            .collect();
        assert_eq!(ids, vec![a.id.clone()]);
        assert_eq!(
            m.pairing_session(&short.id, now).unwrap().unwrap_err(),
            SessionRefusal::Unknown(short.id.clone())
        );
    }

    #[test]
    fn ids_that_are_not_ours_are_unknown_and_touch_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        file(&m, 1, now);
        let before = m.approvals().unwrap().records;
        for bad in [
            "",
            "../identity/ca",
            "ü".repeat(16).as_str(),
            &"A".repeat(32),
            "x/y",
        ] {
            assert_eq!(
                m.begin_attempt(bad, now).unwrap().unwrap_err(),
                SessionRefusal::Unknown(bad.to_owned())
            );
            assert!(m.pairing_session(bad, now).unwrap().is_err());
            assert!(m.consume_pairing_session(bad, now).unwrap().is_err());
            assert_eq!(m.approval(bad).unwrap(), None);
            assert_eq!(
                m.approve_request(bad, &crate::state::Actor::operator("x"), now)
                    .unwrap()
                    .unwrap_err(),
                RequestRefusal::Unknown(bad.to_owned())
            );
            assert_eq!(
                m.reject_request(bad, &crate::state::Actor::operator("x"), "r", now)
                    .unwrap()
                    .unwrap_err(),
                RequestRefusal::Unknown(bad.to_owned())
            );
        }
        assert_eq!(m.approvals().unwrap().records, before, "nothing written");
    }

    #[test]
    fn an_attempt_whose_proof_was_never_checked_is_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let s = mint(&m, 1, now);
        let taken = m.begin_pin_attempts(now).unwrap();
        assert_eq!(taken.len(), 1);
        assert!(
            m.begin_pin_attempts(now).unwrap().is_empty(),
            "its only attempt is taken"
        );
        m.release_attempts(&taken).unwrap();
        let back = m.pairing_session(&s.id, now).unwrap().unwrap();
        assert_eq!((back.attempts_left, back.in_flight), (1, 0));
        // Releasing twice gives nothing more back.
        m.release_attempts(&taken).unwrap();
        assert_eq!(
            m.pairing_session(&s.id, now)
                .unwrap()
                .unwrap()
                .attempts_left,
            1
        );
        // A failed attempt is not given back.
        let again = m.begin_pin_attempts(now).unwrap();
        assert_eq!(m.fail_attempt(&again[0]).unwrap(), AttemptOutcome::Burned);
        m.release_attempts(&again).unwrap();
        assert!(
            m.pairing_session(&s.id, now).unwrap().is_err(),
            "burned stays burned"
        );
    }

    #[test]
    fn no_more_pin_codes_are_minted_than_one_attempt_can_try() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        for _ in 0..MAX_LIVE_PIN_CODES {
            mint(&m, 5, now);
        }
        let err = m
            .create_pairing_session(
                Method::Pin,
                Zeroizing::new("1".into()),
                MINUTE,
                5,
                now,
                &crate::state::Actor::cli(),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                IdentityError::TooManyLiveCodes {
                    live: MAX_LIVE_PIN_CODES,
                    ..
                }
            ),
            "{err}"
        );
        // QR codes are looked up by id: no such limit.
        m.create_pairing_session(
            Method::Qr,
            Zeroizing::new("1".into()),
            MINUTE,
            5,
            now,
            &crate::state::Actor::cli(),
        )
        .unwrap();
        // Once the PIN codes expire, minting works again.
        m.create_pairing_session(
            Method::Pin,
            Zeroizing::new("1".into()),
            MINUTE,
            5,
            now + 11 * MINUTE,
            &crate::state::Actor::cli(),
        )
        .unwrap();
    }

    #[test]
    fn completing_uses_the_code_and_files_the_request_together_once() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        mint(&m, 5, now);
        let attempts = m.begin_pin_attempts(now).unwrap();
        let first = &attempts[0];
        // Two attempts that both proved the code (two connections racing):
        // only the first completes.
        let record = m
            .complete_pairing(first, new_request(1), Verdict::Pending, now)
            .unwrap()
            .unwrap();
        assert_eq!(record.status(now), RequestStatus::Pending);
        assert_eq!(record.method, Method::Pin);
        assert_eq!(
            m.pairing_session(&first.session.id, now)
                .unwrap()
                .unwrap_err(),
            SessionRefusal::Unknown(first.session.id.clone()),
            "the code is used"
        );
        assert_eq!(
            m.complete_pairing(first, new_request(2), Verdict::Pending, now)
                .unwrap()
                .unwrap_err(),
            SessionRefusal::Unknown(first.session.id.clone())
        );
        assert_eq!(m.approvals().unwrap().records, vec![record]);
    }

    #[test]
    fn a_verdict_is_filed_with_the_request_in_the_same_mutation() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        mint(&m, 5, now);
        mint(&m, 5, now);
        let attempts = m.begin_pin_attempts(now).unwrap();
        let by = crate::state::Actor::policy("pin-qr");
        let approved = m
            .complete_pairing(
                &attempts[0],
                new_request(4),
                Verdict::Approve { by: by.clone() },
                now,
            )
            .unwrap()
            .unwrap();
        assert_eq!(approved.status(now), RequestStatus::Approved);
        assert!(
            matches!(&approved.decision, ApprovalState::Approved { by: b, .. } if b == by.as_str())
        );
        let cert = approved
            .certificate
            .as_ref()
            .expect("issued with the request");
        let record = m.certificate(&cert.fingerprint).unwrap().expect("kept");
        assert_eq!(record.device_id, approved.device_id);
        assert!(m.device(&approved.device_id).unwrap().is_some(), "enrolled");
        // Approving it again returns the same: nothing is issued twice.
        let again = m
            .approve_request(&approved.id, &crate::state::Actor::operator("x"), now)
            .unwrap();
        assert_eq!(again.unwrap(), approved);
        assert_eq!(m.certificates().unwrap().records.len(), 1);

        let rejected = m
            .complete_pairing(
                &attempts[1],
                new_request(5),
                Verdict::Reject {
                    by: by.clone(),
                    reason: "not on the list".into(),
                },
                now,
            )
            .unwrap()
            .unwrap();
        assert_eq!(rejected.status(now), RequestStatus::Rejected);
        assert!(matches!(
            &rejected.decision,
            ApprovalState::Rejected { reason, .. } if reason == "not on the list"
        ));
        assert!(rejected.certificate.is_none());
        assert!(m.device(&rejected.device_id).unwrap().is_none());
        assert_eq!(m.approvals().unwrap().records.len(), 2);
    }

    #[test]
    fn a_revoked_device_that_proved_a_code_files_nothing_and_uses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let now = SystemTime::now();
        let key = crate::identity::DeviceKey::from_seed(&[3; 32]);
        m.enroll(
            &key.public_key(),
            "old",
            &[],
            now,
            &crate::state::Actor::cli(),
        )
        .unwrap();
        m.revoke_device(&key.device_id(), "stolen", now, &crate::state::Actor::cli())
            .unwrap();
        let s = mint(&m, 5, now);
        let attempts = m.begin_pin_attempts(now).unwrap();
        let err = m
            .complete_pairing(&attempts[0], new_request(3), Verdict::Pending, now)
            .unwrap_err();
        assert!(matches!(err, IdentityError::DeviceRevoked { .. }), "{err}");
        assert!(m.approvals().unwrap().records.is_empty());
        assert!(
            m.pairing_session(&s.id, now).unwrap().is_ok(),
            "code not used"
        );
    }

    #[test]
    fn a_revoked_device_cannot_file_an_approval_request() {
        let dir = tempfile::tempdir().unwrap();
        let m = manager(dir.path());
        let key = crate::identity::DeviceKey::from_seed(&[7; 32]);
        let now = SystemTime::now();
        m.enroll(
            &key.public_key(),
            "old",
            &[],
            now,
            &crate::state::Actor::cli(),
        )
        .unwrap();
        m.revoke_device(&key.device_id(), "stolen", now, &crate::state::Actor::cli())
            .unwrap();
        let request = NewApproval {
            public_key: key.public_key(),
            device_name: "again".into(),
            method: Method::Qr,
            remote_addr: "127.0.0.1:1".into(),
            capabilities: vec![],
            check_code: "AAAAAA".into(),
            ttl: MINUTE,
        };
        let err = m.create_approval(request, now).unwrap_err();
        assert!(matches!(err, IdentityError::DeviceRevoked { .. }), "{err}");
        assert!(m.approvals().unwrap().records.is_empty(), "nothing filed");
    }
}

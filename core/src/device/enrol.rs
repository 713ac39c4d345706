//! Pairing over the network: [`DevicePairing`] driven over a [`Link`].
//!
//! - **PIN**: the connection trusts any server certificate
//!   ([`ServerTrust::ChannelBoundLater`]); the PAKE binds the CA the
//!   server showed and the connection's channel binding into its proof.
//! - **QR**: the connection pins the CA fingerprint of the URI and goes to
//!   the addresses the URI carries (then to any given ones).
//!
//! The device opens a stream and sends its hello; the gateway answers on
//! that stream, one message per frame, and the device's confirmation goes
//! on it too. When the request waits for an operator, the device shows
//! the check code and asks again every [`EnrolSettings::poll_interval`]
//! with a signed `Resume` on a new stream (reconnecting, to the CA it
//! paired with, if the connection dropped) until the request is approved,
//! rejected or expired, or the gateway refuses. A gateway that asks the
//! device's address to wait (`RateLimited`) is waited for, then the same
//! code is tried again.

use std::sync::Arc;
use std::time::Duration;

use keygate_proto::{Binding, RefusalCode};
use keygate_sdk::{ServerTrust, Transport};

use super::identity::{Credentials, DeviceIdentity, DeviceIdentityError, PendingPairing};
use super::link::{Link, LinkError, connect_params};
use super::pairing::{DevicePairing, DevicePairingError, PairingCode, Progress};
use crate::identity::DeviceId;

/// How a device pairs.
#[derive(Debug, Clone)]
pub struct EnrolSettings {
    /// The device's name, as the operator sees it.
    pub name: String,
    /// The capabilities it asks for.
    pub capabilities: Vec<String>,
    /// `HOST:PORT` of the gateway (required for a PIN; for a QR code,
    /// tried after the URI's own addresses).
    pub gateways: Vec<String>,
    /// How often a waiting request is asked about.
    pub poll_interval: Duration,
    /// How long an answer may take.
    pub answer_timeout: Duration,
}

impl EnrolSettings {
    /// Defaults: ask every 2 s, wait 30 s for an answer.
    pub fn new(name: String, capabilities: Vec<String>, gateways: Vec<String>) -> Self {
        Self {
            name,
            capabilities,
            gateways,
            poll_interval: Duration::from_secs(2),
            answer_timeout: Duration::from_secs(30),
        }
    }
}

/// What the device tells its operator while it pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The gateway proved it knows the code: show the check code.
    CheckCode {
        /// Six characters the operator compares with their listing.
        check_code: String,
    },
    /// The request waits for an operator's decision.
    Waiting {
        /// The request id.
        request_id: String,
        /// Its check code.
        check_code: String,
    },
    /// The gateway asks this address to wait after failed attempts; the
    /// device waits, then tries again.
    RateLimited {
        /// How long.
        wait: Duration,
    },
    /// The connection failed while waiting; the device tries again.
    Retrying {
        /// Why.
        reason: String,
    },
}

/// Why pairing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrolError {
    /// This device already has credentials.
    #[error("this device is already paired as {device_id}")]
    AlreadyPaired {
        /// Its id.
        device_id: DeviceId,
    },
    /// A PIN needs the gateway's address.
    #[error("no gateway address: give --gateway HOST:PORT (a QR code carries its own)")]
    NoGateway,
    /// No gateway address could be reached.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The gateway refused, rejected, or the request expired.
    #[error("{}", refusal_text(*code, reason))]
    Refused {
        /// Why.
        code: RefusalCode,
        /// The gateway's words.
        reason: String,
    },
    /// The pairing protocol failed (a wrong PIN shows here).
    #[error(transparent)]
    Pairing(DevicePairingError),
    /// The device's own state failed.
    #[error(transparent)]
    Identity(#[from] DeviceIdentityError),
}

impl From<DevicePairingError> for EnrolError {
    fn from(e: DevicePairingError) -> Self {
        match e {
            DevicePairingError::Refused { code, reason } => EnrolError::Refused { code, reason },
            DevicePairingError::Identity(e) => EnrolError::Identity(e),
            other => EnrolError::Pairing(other),
        }
    }
}

/// The sentence a refusal becomes for the person at the device.
pub fn refusal_text(code: RefusalCode, reason: &str) -> String {
    let said = |what: &str| {
        if reason.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {reason}")
        }
    };
    match code {
        RefusalCode::Rejected => said("the pairing request was rejected"),
        RefusalCode::Expired => said("the pairing code or request expired"),
        RefusalCode::DeviceRevoked => said("this device is revoked"),
        RefusalCode::UnknownCode => said("the gateway knows no such pairing code"),
        RefusalCode::NoAttemptsLeft => said("the pairing code was burned by failed attempts"),
        RefusalCode::ConfirmationFailed => {
            said("the pairing code did not match (wrong PIN or QR code?)")
        }
        RefusalCode::RateLimited { retry_after_secs } => said(&format!(
            "the gateway asks this address to wait {retry_after_secs} s"
        )),
        _ => said("the gateway refused"),
    }
}

/// Pairs with `code`, or, when `code` is `None`, waits on the pairing
/// this device proved a code for earlier (its pending request). Returns
/// the kept credentials.
pub fn pair(
    transport: &Arc<dyn Transport>,
    identity: &DeviceIdentity,
    code: Option<&PairingCode>,
    settings: &EnrolSettings,
    notify: &mut dyn FnMut(Notice),
) -> Result<Credentials, EnrolError> {
    if let Some(credentials) = identity.credentials()? {
        return Err(EnrolError::AlreadyPaired {
            device_id: credentials.device_id,
        });
    }
    let Some(code) = code else {
        return wait_for_answer(transport, identity, None, settings, notify);
    };
    let (addrs, trust) = match code {
        PairingCode::Pin(_) => (settings.gateways.clone(), ServerTrust::ChannelBoundLater),
        PairingCode::Qr(uri) => {
            let mut addrs: Vec<String> = uri.gateways.iter().map(|g| g.to_string()).collect();
            for g in &settings.gateways {
                if !addrs.contains(g) {
                    addrs.push(g.clone());
                }
            }
            (addrs, ServerTrust::PinnedCaSha256(uri.ca_fingerprint))
        }
    };
    if addrs.is_empty() {
        return Err(EnrolError::NoGateway);
    }
    let mut link: Option<Link> = None;
    loop {
        let current = match link.take() {
            Some(l) if l.closed().is_none() => l,
            _ => connect_any(transport, &addrs, &trust)?,
        };
        match prove(&current, identity, code, settings, notify) {
            Ok(Some(credentials)) => return Ok(credentials),
            Ok(None) => {
                return wait_for_answer(transport, identity, Some(current), settings, notify);
            }
            Err(EnrolError::Refused {
                code: RefusalCode::RateLimited { retry_after_secs },
                ..
            }) => {
                let wait = Duration::from_secs(retry_after_secs.into());
                notify(Notice::RateLimited { wait });
                std::thread::sleep(wait);
                link = Some(current);
            }
            Err(e) => return Err(e),
        }
    }
}

/// One attempt with the code on `link`: `Some` when approved at once,
/// `None` when the request waits for a decision.
fn prove(
    link: &Link,
    identity: &DeviceIdentity,
    code: &PairingCode,
    settings: &EnrolSettings,
    notify: &mut dyn FnMut(Notice),
) -> Result<Option<Credentials>, EnrolError> {
    let binding = Binding {
        ca_fingerprint: link.ca_fingerprint(),
        channel_binding: link.channel_binding(),
    };
    let (mut pairing, hello) = DevicePairing::start(
        &mut rand::rng(),
        identity,
        code,
        &settings.name,
        &settings.capabilities,
        settings.gateways.clone(),
        binding,
    )?;
    let exchange = link.exchange()?;
    exchange.send(&hello)?;
    loop {
        let frame = exchange.recv(settings.answer_timeout)?;
        match pairing.on_message(&frame)? {
            Progress::Send(reply) => {
                exchange.send(&reply)?;
                // The confirmation is the device's last word on this stream.
                exchange.finish()?;
            }
            Progress::Accepted { check_code } => notify(Notice::CheckCode { check_code }),
            Progress::Waiting {
                request_id,
                check_code,
            } => {
                notify(Notice::Waiting {
                    request_id,
                    check_code,
                });
                return Ok(None);
            }
            Progress::Paired(credentials) => return Ok(Some(credentials)),
        }
    }
}

/// Asks about the pending request until it is decided. `link` is the
/// connection the code was proved on, if still at hand.
fn wait_for_answer(
    transport: &Arc<dyn Transport>,
    identity: &DeviceIdentity,
    mut link: Option<Link>,
    settings: &EnrolSettings,
    notify: &mut dyn FnMut(Notice),
) -> Result<Credentials, EnrolError> {
    let pending = identity
        .pending()?
        .ok_or(EnrolError::Pairing(DevicePairingError::NothingPending))?;
    if link.is_none() {
        // Resuming an earlier run: show what the operator compares.
        notify(Notice::Waiting {
            request_id: pending.request_id.clone(),
            check_code: pending.check_code.clone(),
        });
    }
    let (addrs, trust) = resume_route(&pending, settings);
    let mut first = link.is_none();
    loop {
        if !first {
            std::thread::sleep(settings.poll_interval);
        }
        first = false;
        let current = match link.take() {
            Some(l) if l.closed().is_none() => l,
            _ => match connect_any(transport, &addrs, &trust) {
                Ok(l) => l,
                Err(e) => {
                    notify(Notice::Retrying {
                        reason: e.to_string(),
                    });
                    continue;
                }
            },
        };
        match ask(&current, identity, settings) {
            Ok(Some(credentials)) => return Ok(credentials),
            Ok(None) => link = Some(current),
            Err(EnrolError::Refused {
                code: RefusalCode::RateLimited { retry_after_secs },
                ..
            }) => {
                let wait = Duration::from_secs(retry_after_secs.into());
                notify(Notice::RateLimited { wait });
                std::thread::sleep(wait);
                link = Some(current);
            }
            Err(EnrolError::Link(e)) => notify(Notice::Retrying {
                reason: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
}

/// Where a pending request is asked about: the gateways kept with it
/// (then any given), pinning the CA the device paired with.
fn resume_route(pending: &PendingPairing, settings: &EnrolSettings) -> (Vec<String>, ServerTrust) {
    let mut addrs = pending.gateways.clone();
    for g in &settings.gateways {
        if !addrs.contains(g) {
            addrs.push(g.clone());
        }
    }
    (
        addrs,
        ServerTrust::PinnedCaSha256(*pending.ca_fingerprint.as_bytes()),
    )
}

/// One `Resume` on a new stream: `Some` when approved, `None` while the
/// request waits.
fn ask(
    link: &Link,
    identity: &DeviceIdentity,
    settings: &EnrolSettings,
) -> Result<Option<Credentials>, EnrolError> {
    let (mut pairing, resume) = DevicePairing::resume(identity, &link.channel_binding())?;
    let answer = link.request(&resume, settings.answer_timeout)?;
    match pairing.on_message(&answer)? {
        Progress::Paired(credentials) => Ok(Some(credentials)),
        Progress::Waiting { .. } => Ok(None),
        Progress::Send(_) | Progress::Accepted { .. } => {
            Err(EnrolError::Pairing(DevicePairingError::Unexpected {
                expected: "an answer to Resume",
                got: "a pairing step",
            }))
        }
    }
}

/// Connects to the first of `addrs` that answers.
fn connect_any(
    transport: &Arc<dyn Transport>,
    addrs: &[String],
    trust: &ServerTrust,
) -> Result<Link, LinkError> {
    let mut last = None;
    for addr in addrs {
        let params = connect_params(addr, trust.clone(), None)?;
        match Link::connect(transport.clone(), params) {
            Ok(link) => return Ok(link),
            Err(e) => {
                tracing::debug!(gateway = %addr, error = %e, "cannot reach this gateway address");
                last = Some(e);
            }
        }
    }
    Err(
        last.unwrap_or(LinkError::Transport(keygate_sdk::PluginError::invalid(
            "no gateway address to connect to",
        ))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_sentences_with_the_gateways_words() {
        assert_eq!(
            refusal_text(RefusalCode::Rejected, ""),
            "the pairing request was rejected"
        );
        assert_eq!(
            refusal_text(RefusalCode::Rejected, "not ours"),
            "the pairing request was rejected: not ours"
        );
        assert!(refusal_text(RefusalCode::Expired, "").contains("expired"));
        assert!(refusal_text(RefusalCode::DeviceRevoked, "").contains("revoked"));
        assert!(
            refusal_text(
                RefusalCode::RateLimited {
                    retry_after_secs: 9
                },
                ""
            )
            .contains("wait 9 s")
        );
        assert_eq!(
            refusal_text(RefusalCode::Internal, "boom"),
            "the gateway refused: boom"
        );
    }

    #[test]
    fn a_pending_request_is_asked_about_at_its_own_gateways_pinning_its_ca() {
        let pending = PendingPairing {
            request_id: "r".into(),
            gateways: vec!["10.0.0.1:7443".into()],
            ca_fingerprint: crate::identity::CertFingerprint::from_bytes([9; 32]),
            check_code: "ABCDEF".into(),
        };
        let settings = EnrolSettings::new(
            "n".into(),
            vec![],
            vec!["10.0.0.1:7443".into(), "gw.example:7443".into()],
        );
        let (addrs, trust) = resume_route(&pending, &settings);
        assert_eq!(addrs, ["10.0.0.1:7443", "gw.example:7443"]);
        assert_eq!(trust, ServerTrust::PinnedCaSha256([9; 32]));
    }
}

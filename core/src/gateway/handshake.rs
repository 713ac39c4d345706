//! The host's check of a client certificate during the TLS handshake, with
//! the reason for each refusal as a [`HandshakeOutcome`] (for metrics).
//!
//! The transport checks the chain against the CA first and then asks the
//! host ([`TransportCallbacks::verify_client`](keygate_sdk::TransportCallbacks::verify_client)).
//! The built-in QUIC transport also asks about a chain its own check
//! refused, so the host sees every refusal; the host therefore never
//! assumes the chain verified, and decides the CA and the validity window
//! itself, before the identity state ([`check_client`]):
//!
//! 1. a certificate the revocation index does not know must be signed by
//!    this gateway's CA (else `unknown_ca`), checked before anything reads
//!    the change log, so a stranger's certificate costs no store read;
//! 2. the certificate must be within its validity window now (else
//!    `expired`);
//! 3. the identity state must know it, and neither it nor its device may
//!    be revoked or unreadable (else `revoked`, or `unknown_certificate`
//!    for one signed by this CA that the state has no record of).

use std::time::SystemTime;

use x509_parser::prelude::{FromDer, X509Certificate};

use super::check_client;
use crate::identity::CertFingerprint;
use crate::metrics::HandshakeOutcome;
use crate::state::{CertStatus, IdentityManager, RevocationEvent};

/// Checks the leaf `der` a client presented at `now`; a refusal says its
/// outcome and why. `revoked` gets the revocations a read of the change
/// log finds on the way, as in [`check_client`].
///
/// # Errors
/// The refusal: its [`HandshakeOutcome`] and a sentence for the log.
pub fn check_presented(
    identity: &IdentityManager,
    der: &[u8],
    now: SystemTime,
    revoked: impl FnMut(RevocationEvent),
) -> Result<(), (HandshakeOutcome, String)> {
    let fingerprint = CertFingerprint::of_der(der);
    let unknown_ca = |why: &str| {
        Err((
            HandshakeOutcome::UnknownCa,
            format!("certificate {fingerprint} {why}"),
        ))
    };
    let Ok((rest, cert)) = X509Certificate::from_der(der) else {
        return unknown_ca("does not parse");
    };
    if !rest.is_empty() {
        return unknown_ca("has trailing bytes");
    }
    if matches!(
        identity.certificate_status(&fingerprint),
        CertStatus::Unknown
    ) {
        let signed_here = X509Certificate::from_der(identity.ca().certificate_der())
            .is_ok_and(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok());
        if !signed_here {
            return unknown_ca("is not signed by this gateway's CA");
        }
    }
    let secs = i64::try_from(crate::time::unix_secs(now)).unwrap_or(i64::MAX);
    let validity = cert.validity();
    if secs > validity.not_after.timestamp() || secs < validity.not_before.timestamp() {
        return Err((
            HandshakeOutcome::Expired,
            format!(
                "certificate {fingerprint} is valid from {} to {}, not now",
                validity.not_before, validity.not_after
            ),
        ));
    }
    check_client(identity, &fingerprint, revoked).map_err(|why| {
        let outcome = match identity.certificate_status(&fingerprint) {
            CertStatus::Unknown | CertStatus::DeviceUnknown(_) => {
                HandshakeOutcome::UnknownCertificate
            }
            _ => HandshakeOutcome::Revoked,
        };
        (outcome, why)
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::DeviceKey;
    use crate::state::Actor;

    fn outcome(r: Result<(), (HandshakeOutcome, String)>) -> Option<HandshakeOutcome> {
        r.err().map(|(o, _)| o)
    }

    #[test]
    fn each_refusal_is_named_for_its_cause_and_a_valid_certificate_passes() {
        let now = SystemTime::now();
        let three_days_ago = now - Duration::from_secs(3 * 24 * 3600);
        let (_dir, m) = crate::node::testing::identity(three_days_ago);
        let (_other_dir, other) = crate::node::testing::identity(now);
        let issue = |m: &IdentityManager, seed: u8, at: SystemTime| {
            let key = DeviceKey::from_seed(&[seed; 32]);
            let e = m
                .enroll(&key.public_key(), "n", &[], at, &Actor::cli())
                .unwrap();
            (e.device.device_id, e.certificate.der)
        };
        let check = |der: &[u8]| outcome(check_presented(&m, der, now, |_| {}));
        let (_, foreign) = issue(&other, 1, now);
        assert_eq!(check(&foreign), Some(HandshakeOutcome::UnknownCa));
        assert_eq!(check(b"garbage"), Some(HandshakeOutcome::UnknownCa));
        let (_, old) = issue(&m, 2, three_days_ago);
        m.refresh().unwrap();
        assert_eq!(check(&old), Some(HandshakeOutcome::Expired));
        let (device, good) = issue(&m, 3, now);
        assert_eq!(check(&good), None);
        m.revoke_device(&device, "lost", now, &Actor::cli())
            .unwrap();
        m.refresh().unwrap();
        assert_eq!(check(&good), Some(HandshakeOutcome::Revoked));
    }
}

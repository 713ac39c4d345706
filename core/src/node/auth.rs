//! The checks every node request passes before anything else.

use std::time::SystemTime;

use keygate_proto::RefusalCode;
use x509_parser::prelude::{ASN1Time, FromDer, X509Certificate};

use crate::identity::{CertFingerprint, DeviceId};
use crate::state::{CertStatus, IdentityManager};

/// How a connection authenticates its node requests.
#[derive(Debug, Clone, Copy)]
pub enum NodeCredential<'a> {
    /// The leaf certificate the peer presented in the TLS handshake, if
    /// any, as [`PresentedLeaf::check`] found it.
    Certificate(Option<&'a PresentedLeaf>),
    /// No certificate needed: `--insecure-node-rpc-opt-out` on a loopback
    /// listen address (development only). Revoked devices are still refused.
    OptOut,
}

/// A node request refused: the wire code and a reason for the node and the
/// logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    /// The code sent in `Refused`.
    pub code: RefusalCode,
    /// Why, naming the device or certificate.
    pub reason: String,
}

fn refuse(code: RefusalCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// Checks that a node request naming device `named` may be served on a
/// connection with `credential`, at `now`:
///
/// 1. a certificate was presented (unless [`NodeCredential::OptOut`]);
/// 2. it is signed by this gateway's CA and valid at `now`;
/// 3. it was issued to `named` (its fingerprint is bound to that device id
///    in the identity state);
/// 4. neither it nor the device is revoked (from the revocation index,
///    which the gateway keeps current).
///
/// Returns the device id the request may act as.
pub fn authorize(
    identity: &IdentityManager,
    credential: NodeCredential<'_>,
    named: &str,
    now: SystemTime,
) -> Result<DeviceId, Refusal> {
    let device = DeviceId::parse(named).map_err(|e| {
        refuse(
            RefusalCode::CertificateMismatch,
            format!("{named:?} is not a device id: {e}"),
        )
    })?;
    let leaf = match credential {
        NodeCredential::OptOut => {
            return if identity.is_device_revoked(&device) {
                Err(refuse(
                    RefusalCode::DeviceRevoked,
                    format!("device {device} is revoked"),
                ))
            } else {
                Ok(device)
            };
        }
        NodeCredential::Certificate(None) => {
            return Err(refuse(
                RefusalCode::NoCertificate,
                "node methods need the client certificate this device was issued",
            ));
        }
        NodeCredential::Certificate(Some(leaf)) => leaf,
    };
    let leaf = leaf.0.as_ref().map_err(Clone::clone)?;
    leaf.check_current(now)?;
    let fingerprint = leaf.fingerprint;
    match identity.certificate_status(&fingerprint) {
        CertStatus::Valid(owner) if owner == device => Ok(device),
        CertStatus::Valid(owner) => Err(refuse(
            RefusalCode::CertificateMismatch,
            format!("certificate {fingerprint} was issued to device {owner}, not {device}"),
        )),
        CertStatus::CertificateRevoked(_) => Err(refuse(
            RefusalCode::CertificateRevoked,
            format!("certificate {fingerprint} is revoked"),
        )),
        CertStatus::DeviceRevoked(owner) => Err(refuse(
            RefusalCode::DeviceRevoked,
            format!("device {owner} is revoked"),
        )),
        CertStatus::Unreadable(_) => Err(refuse(
            RefusalCode::Internal,
            format!(
                "the record of certificate {fingerprint} or of its device cannot be read; \
                 refused until it can"
            ),
        )),
        CertStatus::DeviceUnknown(owner) => Err(refuse(
            RefusalCode::CertificateMismatch,
            format!("device {owner}, to which certificate {fingerprint} was issued, has no record"),
        )),
        CertStatus::Unknown => Err(refuse(
            RefusalCode::CertificateMismatch,
            format!("certificate {fingerprint} is not one this gateway issued"),
        )),
    }
}

/// A leaf certificate a peer presented, parsed and checked against the
/// gateway's CA once, when its connection starts (the certificate of a
/// connection never changes): every node request on the connection is then
/// authorized with it, its validity window against the request's time, its
/// fingerprint against the identity state.
#[derive(Debug, Clone)]
pub struct PresentedLeaf(Result<CheckedLeaf, Refusal>);

/// A leaf that parses and is signed by the gateway's CA.
#[derive(Debug, Clone)]
struct CheckedLeaf {
    fingerprint: CertFingerprint,
    not_before: ASN1Time,
    not_after: ASN1Time,
}

impl PresentedLeaf {
    /// Parses `der` and checks its signature against `identity`'s CA; a
    /// leaf that fails keeps the refusal every request will get.
    pub fn check(identity: &IdentityManager, der: &[u8]) -> PresentedLeaf {
        PresentedLeaf(CheckedLeaf::check(identity, der))
    }
}

impl CheckedLeaf {
    fn check(identity: &IdentityManager, der: &[u8]) -> Result<CheckedLeaf, Refusal> {
        let mismatch = |why: String| refuse(RefusalCode::CertificateMismatch, why);
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| mismatch(format!("the certificate does not parse: {e}")))?;
        if !rest.is_empty() {
            return Err(mismatch("trailing bytes after the certificate".into()));
        }
        let (_, ca) = X509Certificate::from_der(identity.ca().certificate_der())
            .map_err(|e| refuse(RefusalCode::Internal, format!("the CA does not parse: {e}")))?;
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| mismatch("the certificate is not signed by this gateway's CA".into()))?;
        let validity = cert.validity();
        Ok(CheckedLeaf {
            fingerprint: CertFingerprint::of_der(der),
            not_before: validity.not_before,
            not_after: validity.not_after,
        })
    }

    /// The leaf is valid at `now` (both ends of its window included).
    fn check_current(&self, now: SystemTime) -> Result<(), Refusal> {
        let secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if secs > self.not_after.timestamp() {
            return Err(refuse(
                RefusalCode::CertificateExpired,
                format!("the certificate expired at {}", self.not_after),
            ));
        }
        if secs < self.not_before.timestamp() {
            return Err(refuse(
                RefusalCode::CertificateExpired,
                format!("the certificate is not valid before {}", self.not_before),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ca::CertificateAuthority;
    use crate::identity::DeviceKey;

    struct Setup {
        _dir: tempfile::TempDir,
        m: IdentityManager,
        now: SystemTime,
    }

    fn setup() -> Setup {
        let now = SystemTime::now();
        let (dir, m) = super::super::testing::identity(now);
        Setup { _dir: dir, m, now }
    }

    fn device(s: &Setup, seed: u8) -> (DeviceId, Vec<u8>) {
        let key = DeviceKey::from_seed(&[seed; 32]);
        let enrolled =
            s.m.enroll(
                &key.public_key(),
                "n",
                &[],
                s.now,
                &crate::state::Actor::cli(),
            )
            .unwrap();
        s.m.refresh().unwrap();
        (enrolled.device.device_id, enrolled.certificate.der)
    }

    fn code(r: Result<DeviceId, Refusal>) -> RefusalCode {
        r.unwrap_err().code
    }

    #[test]
    fn a_certificate_issued_to_the_named_device_may_act_as_it() {
        let s = setup();
        let (id, der) = device(&s, 1);
        let leaf = PresentedLeaf::check(&s.m, &der);
        let cred = NodeCredential::Certificate(Some(&leaf));
        assert_eq!(authorize(&s.m, cred, &id.to_string(), s.now), Ok(id));
    }

    #[test]
    fn no_certificate_is_refused_unless_opted_out() {
        let s = setup();
        let (id, _) = device(&s, 1);
        let named = id.to_string();
        let none = NodeCredential::Certificate(None);
        assert_eq!(
            code(authorize(&s.m, none, &named, s.now)),
            RefusalCode::NoCertificate
        );
        assert_eq!(
            authorize(&s.m, NodeCredential::OptOut, &named, s.now),
            Ok(id)
        );
        s.m.revoke_device(&id, "lost", s.now, &crate::state::Actor::cli())
            .unwrap();
        s.m.refresh().unwrap();
        assert_eq!(
            code(authorize(&s.m, NodeCredential::OptOut, &named, s.now)),
            RefusalCode::DeviceRevoked,
            "opting out of certificates does not let a revoked device in"
        );
    }

    #[test]
    fn a_request_naming_another_device_is_refused() {
        let s = setup();
        let (_, der) = device(&s, 1);
        let (other, _) = device(&s, 2);
        let r = authorize(
            &s.m,
            NodeCredential::Certificate(Some(&PresentedLeaf::check(&s.m, &der))),
            &other.to_string(),
            s.now,
        );
        let refusal = r.unwrap_err();
        assert_eq!(refusal.code, RefusalCode::CertificateMismatch);
        assert!(refusal.reason.contains(&other.to_string()), "{refusal}");
        let r = authorize(
            &s.m,
            NodeCredential::Certificate(Some(&PresentedLeaf::check(&s.m, &der))),
            "not-an-id",
            s.now,
        );
        assert_eq!(code(r), RefusalCode::CertificateMismatch);
    }

    #[test]
    fn revoked_certificates_and_devices_are_refused() {
        let s = setup();
        let (id, der) = device(&s, 1);
        let named = id.to_string();
        let fp = CertFingerprint::of_der(&der);
        s.m.revoke_certificate(&fp, "leaked", s.now, &crate::state::Actor::cli())
            .unwrap();
        s.m.refresh().unwrap();
        let leaf = PresentedLeaf::check(&s.m, &der);
        let cred = NodeCredential::Certificate(Some(&leaf));
        assert_eq!(
            code(authorize(&s.m, cred, &named, s.now)),
            RefusalCode::CertificateRevoked
        );

        let (id2, der2) = device(&s, 2);
        s.m.revoke_device(&id2, "stolen", s.now, &crate::state::Actor::cli())
            .unwrap();
        s.m.refresh().unwrap();
        let leaf = PresentedLeaf::check(&s.m, &der2);
        let cred = NodeCredential::Certificate(Some(&leaf));
        assert_eq!(
            code(authorize(&s.m, cred, &id2.to_string(), s.now)),
            RefusalCode::DeviceRevoked
        );
    }

    #[test]
    fn an_expired_or_not_yet_valid_certificate_is_refused() {
        let s = setup();
        let (id, der) = device(&s, 1);
        let named = id.to_string();
        let leaf = PresentedLeaf::check(&s.m, &der);
        let cred = NodeCredential::Certificate(Some(&leaf));
        let validity = s.m.settings().client_validity;
        let late = s.now + validity + Duration::from_secs(1);
        assert_eq!(
            code(authorize(&s.m, cred, &named, late)),
            RefusalCode::CertificateExpired
        );
        let early = s.now - Duration::from_secs(3600);
        assert_eq!(
            code(authorize(&s.m, cred, &named, early)),
            RefusalCode::CertificateExpired
        );
    }

    #[test]
    fn the_validity_window_includes_both_of_its_ends() {
        let s = setup();
        let key = DeviceKey::from_seed(&[1; 32]);
        let enrolled =
            s.m.enroll(
                &key.public_key(),
                "n",
                &[],
                s.now,
                &crate::state::Actor::cli(),
            )
            .unwrap();
        s.m.refresh().unwrap();
        let cert = enrolled.certificate;
        let named = enrolled.device.device_id.to_string();
        let leaf = PresentedLeaf::check(&s.m, &cert.der);
        let cred = NodeCredential::Certificate(Some(&leaf));
        let second = Duration::from_secs(1);
        for at in [cert.not_before, cert.not_after] {
            assert!(authorize(&s.m, cred, &named, at).is_ok(), "{at:?}");
        }
        for at in [cert.not_before - second, cert.not_after + second] {
            assert_eq!(
                code(authorize(&s.m, cred, &named, at)),
                RefusalCode::CertificateExpired
            );
        }
    }

    #[test]
    fn a_certificate_from_another_ca_or_garbage_is_refused() {
        let s = setup();
        let (id, _) = device(&s, 1);
        let key = DeviceKey::from_seed(&[1; 32]);
        let foreign = CertificateAuthority::generate("other", Duration::from_secs(86_400), s.now)
            .unwrap()
            .issue_client(&key.public_key(), &id, Duration::from_secs(3600), s.now)
            .unwrap();
        let named = id.to_string();
        let r = authorize(
            &s.m,
            NodeCredential::Certificate(Some(&PresentedLeaf::check(&s.m, &foreign.der))),
            &named,
            s.now,
        );
        let refusal = r.unwrap_err();
        assert_eq!(refusal.code, RefusalCode::CertificateMismatch);
        assert!(
            refusal.reason.contains("not signed by this gateway's CA"),
            "{refusal}"
        );
        let leaf = PresentedLeaf::check(&s.m, b"\x30\x03abc");
        let garbage = NodeCredential::Certificate(Some(&leaf));
        assert_eq!(
            code(authorize(&s.m, garbage, &named, s.now)),
            RefusalCode::CertificateMismatch
        );
    }

    #[test]
    fn a_certificate_the_index_does_not_know_is_refused() {
        let s = setup();
        let (id, _) = device(&s, 1);
        let key = DeviceKey::from_seed(&[1; 32]);
        // Signed by this CA, but never recorded (as if issued and lost).
        let unrecorded =
            s.m.ca()
                .issue_client(&key.public_key(), &id, Duration::from_secs(3600), s.now)
                .unwrap();
        let r = authorize(
            &s.m,
            NodeCredential::Certificate(Some(&PresentedLeaf::check(&s.m, &unrecorded.der))),
            &id.to_string(),
            s.now,
        );
        assert_eq!(code(r), RefusalCode::CertificateMismatch);
    }
}

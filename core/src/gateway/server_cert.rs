//! The gateway's own TLS server certificate: issued by its CA at start for
//! the `[gateway] advertise` names, kept in memory only (its key is never
//! written anywhere), and re-issued at two thirds of its validity without
//! a restart.

use std::time::{Duration, SystemTime};

use keygate_sdk::TlsIdentity;

use crate::ca::{CaError, CertificateAuthority};
use crate::identity::CertFingerprint;
use crate::pairing::{GatewayAddr, Host};

/// The server certificate in use and when to replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCert {
    /// Its fingerprint, for logs.
    pub fingerprint: CertFingerprint,
    /// When it was issued.
    pub issued_at: SystemTime,
    /// When it stops being valid.
    pub not_after: SystemTime,
    /// When the gateway replaces it: two thirds of the way from issue to
    /// expiry.
    pub renew_at: SystemTime,
}

/// The SAN list for `advertise`: each host once, in order (ports do not
/// go into certificates).
pub fn subject_alt_names(advertise: &[GatewayAddr]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for addr in advertise {
        let name = match &addr.host {
            Host::Dns(name) => name.clone(),
            Host::Ip(ip) => ip.to_string(),
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// When a certificate issued at `issued_at` and valid until `not_after`
/// is replaced: two thirds of the way there.
pub fn renew_at(issued_at: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after
        .duration_since(issued_at)
        .unwrap_or(Duration::ZERO);
    issued_at + life * 2 / 3
}

/// Issues a server certificate for `names`, valid for `validity` from
/// `now`: what to give the transport (leaf and CA) and its schedule.
///
/// # Errors
/// The CA's, for a name that is neither a DNS name nor an IP address, or a
/// validity the CA refuses.
pub fn issue(
    ca: &CertificateAuthority,
    names: &[String],
    validity: Duration,
    now: SystemTime,
) -> Result<(TlsIdentity, ServerCert), CaError> {
    let issued = ca.issue_server(names, validity, now)?;
    let cert = &issued.certificate;
    let schedule = ServerCert {
        fingerprint: cert.fingerprint,
        issued_at: now,
        not_after: cert.not_after,
        renew_at: renew_at(now, cert.not_after),
    };
    let identity = TlsIdentity {
        cert_chain: vec![cert.der.clone(), ca.certificate_der().to_vec()],
        private_key_der: issued.private_key_pkcs8_der.to_vec(),
    };
    Ok((identity, schedule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_two_thirds_of_the_life() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            renew_at(t0, t0 + Duration::from_secs(30)),
            t0 + Duration::from_secs(20)
        );
        assert_eq!(renew_at(t0, t0), t0);
        assert_eq!(renew_at(t0, t0 - Duration::from_secs(5)), t0);
    }

    #[test]
    fn names_come_once_each_without_ports() {
        let addrs: Vec<GatewayAddr> = [
            "gw.example.net:1",
            "gw.example.net:2",
            "10.0.0.1",
            "[::1]:9",
        ]
        .iter()
        .map(|a| GatewayAddr::parse_with_default_port(a, Some(7443)).unwrap())
        .collect();
        assert_eq!(
            subject_alt_names(&addrs),
            vec!["gw.example.net", "10.0.0.1", "::1"]
        );
    }

    #[test]
    fn an_issued_certificate_chains_to_the_ca_and_carries_its_key() {
        let now = SystemTime::now();
        let ca =
            CertificateAuthority::generate("Test CA", Duration::from_secs(86_400), now).unwrap();
        let (identity, schedule) =
            issue(&ca, &["127.0.0.1".into()], Duration::from_secs(60), now).unwrap();
        assert_eq!(identity.cert_chain.len(), 2);
        assert_eq!(identity.cert_chain[1], ca.certificate_der());
        assert_eq!(
            schedule.fingerprint,
            CertFingerprint::of_der(&identity.cert_chain[0])
        );
        assert!(!identity.private_key_der.is_empty());
        assert!(schedule.renew_at > now && schedule.renew_at < schedule.not_after);
    }
}

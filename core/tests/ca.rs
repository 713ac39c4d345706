//! The certificate authority: what it issues, parsed back with x509-parser.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keygate_core::ca::{
    CLIENT_SAN_URI_PREFIX, CLOCK_SKEW_ALLOWANCE, CaError, CertFingerprint, CertificateAuthority,
    DEFAULT_CA_VALIDITY, DEFAULT_CLIENT_VALIDITY, DEFAULT_SERVER_VALIDITY,
};
use keygate_core::identity::{DeviceKey, DevicePublicKey};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// 2026-01-01T00:00:00Z: every test runs at a fixed `now`.
const NOW_UNIX: u64 = 1_767_225_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_UNIX)
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn new_ca() -> CertificateAuthority {
    CertificateAuthority::generate("Keygate test CA", DEFAULT_CA_VALIDITY, now()).unwrap()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = X509Certificate::from_der(der).unwrap();
    assert!(rest.is_empty());
    cert
}

fn device() -> (DeviceKey, DevicePublicKey) {
    let key = DeviceKey::generate(&mut rand::rng());
    let public = key.public_key();
    (key, public)
}

/// The leaf verifies under the CA certificate's public key.
fn assert_signed_by(leaf_der: &[u8], ca: &CertificateAuthority) {
    let ca_cert = parse(ca.certificate_der());
    let leaf = parse(leaf_der);
    leaf.verify_signature(Some(ca_cert.public_key()))
        .expect("leaf signature verifies under the CA key");
    assert_eq!(leaf.issuer().as_raw(), ca_cert.subject().as_raw());
}

#[test]
fn ca_is_a_self_signed_ed25519_root_with_ca_constraints() {
    let ca = new_ca();
    let cert = parse(ca.certificate_der());
    cert.verify_signature(None).expect("self-signed");
    assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
    assert_eq!(ca.subject(), "CN=Keygate test CA");
    assert_eq!(cert.subject().to_string(), "CN=Keygate test CA");

    let bc = cert
        .basic_constraints()
        .unwrap()
        .expect("basic constraints");
    assert!(bc.critical);
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));

    let ku = cert.key_usage().unwrap().expect("key usage").value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert!(!ku.digital_signature());

    assert_eq!(
        cert.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ED25519
    );
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        ca.public_key().as_slice()
    );
    assert_eq!(
        ca.fingerprint(),
        CertFingerprint::of_der(ca.certificate_der())
    );
    assert!(
        ca.certificate_pem()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
}

#[test]
fn ca_validity_runs_from_now_minus_skew_to_now_plus_validity() {
    let ca = new_ca();
    let cert = parse(ca.certificate_der());
    let skew = CLOCK_SKEW_ALLOWANCE.as_secs() as i64;
    let validity = DEFAULT_CA_VALIDITY.as_secs() as i64;
    assert_eq!(
        cert.validity().not_before.timestamp(),
        NOW_UNIX as i64 - skew
    );
    assert_eq!(
        cert.validity().not_after.timestamp(),
        NOW_UNIX as i64 + validity
    );
    assert_eq!(unix(ca.not_before()), NOW_UNIX as i64 - skew);
    assert_eq!(unix(ca.not_after()), NOW_UNIX as i64 + validity);
    assert_eq!(validity, 3650 * 86_400);
}

#[test]
fn ca_serial_is_a_random_positive_128_bit_number() {
    let a = parse(new_ca().certificate_der()).raw_serial().to_vec();
    let b = parse(new_ca().certificate_der()).raw_serial().to_vec();
    assert_eq!(a.len(), 16);
    assert_eq!(a[0] & 0x80, 0, "positive");
    assert_ne!(a, b);
}

#[test]
fn client_certificate_is_for_the_devices_own_key_with_client_auth_only() {
    let ca = new_ca();
    let (key, public) = device();
    let id = key.device_id();
    let issued = ca
        .issue_client(&public, &id, DEFAULT_CLIENT_VALIDITY, now())
        .unwrap();
    let cert = parse(&issued.der);

    // The certificate's key is the device's key, byte for byte.
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        public.as_bytes().as_slice()
    );
    assert_eq!(
        cert.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ED25519
    );

    let eku = cert.extended_key_usage().unwrap().expect("EKU").value;
    assert!(eku.client_auth);
    assert!(!eku.server_auth && !eku.any && !eku.code_signing);
    assert!(eku.other.is_empty());

    let bc = cert
        .basic_constraints()
        .unwrap()
        .expect("basic constraints");
    assert!(!bc.value.ca);

    assert_eq!(cert.subject().to_string(), format!("CN={id}"));
    let san = cert.subject_alternative_name().unwrap().expect("SAN").value;
    assert_eq!(
        san.general_names,
        vec![GeneralName::URI(&format!("keygate://device/{id}"))]
    );
    assert_eq!(CLIENT_SAN_URI_PREFIX, "keygate://device/");

    assert_signed_by(&issued.der, &ca);
    assert_eq!(issued.fingerprint, CertFingerprint::of_der(&issued.der));
    assert_eq!(issued.serial_hex, hex::encode(cert.raw_serial()));
    let (_, pem) = x509_parser::pem::parse_x509_pem(issued.pem.as_bytes()).unwrap();
    assert_eq!(pem.contents, issued.der);
}

#[test]
fn client_validity_is_what_was_asked_with_a_five_minute_backdate() {
    let ca = new_ca();
    let (key, public) = device();
    let later = now() + Duration::from_secs(3600);
    let issued = ca
        .issue_client(&public, &key.device_id(), DEFAULT_CLIENT_VALIDITY, later)
        .unwrap();
    let cert = parse(&issued.der);
    let at = NOW_UNIX as i64 + 3600;
    assert_eq!(cert.validity().not_before.timestamp(), at - 300);
    assert_eq!(cert.validity().not_after.timestamp(), at + 86_400);
    assert_eq!(unix(issued.not_before), at - 300);
    assert_eq!(unix(issued.not_after), at + 86_400);
    assert_eq!(DEFAULT_CLIENT_VALIDITY, Duration::from_secs(86_400));
    assert!(issued.is_valid_at(later));
}

#[test]
fn sub_second_now_is_truncated_to_whole_seconds() {
    let ca = new_ca();
    let (key, public) = device();
    let issued = ca
        .issue_client(
            &public,
            &key.device_id(),
            Duration::from_secs(600),
            now() + Duration::from_millis(1999),
        )
        .unwrap();
    assert_eq!(unix(issued.not_after), NOW_UNIX as i64 + 1 + 600);
    let cert = parse(&issued.der);
    assert_eq!(
        cert.validity().not_after.timestamp(),
        unix(issued.not_after)
    );
}

#[test]
fn leaf_never_outlives_the_ca() {
    let ca = CertificateAuthority::generate("short CA", Duration::from_secs(3600), now()).unwrap();
    let (key, public) = device();
    let issued = ca
        .issue_client(&public, &key.device_id(), DEFAULT_CLIENT_VALIDITY, now())
        .unwrap();
    assert_eq!(issued.not_after, ca.not_after());
    assert_eq!(
        parse(&issued.der).validity().not_after.timestamp(),
        unix(ca.not_after())
    );
}

#[test]
fn an_expired_ca_refuses_to_issue() {
    let ca = CertificateAuthority::generate("short CA", Duration::from_secs(3600), now()).unwrap();
    let (key, public) = device();
    let err = ca
        .issue_client(
            &public,
            &key.device_id(),
            DEFAULT_CLIENT_VALIDITY,
            now() + Duration::from_secs(7200),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::CaExpired { .. }), "{err}");
    assert!(err.to_string().contains("2026-01-01T01:00:00Z"), "{err}");

    let err = ca
        .issue_client(
            &public,
            &key.device_id(),
            DEFAULT_CLIENT_VALIDITY,
            now() - Duration::from_secs(86_400),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::CaNotYetValid { .. }), "{err}");
}

#[test]
fn an_expired_leaf_is_detectable_given_now() {
    let ca = new_ca();
    let (key, public) = device();
    let issued = ca
        .issue_client(&public, &key.device_id(), Duration::from_secs(60), now())
        .unwrap();
    let later = now() + Duration::from_secs(61);
    assert!(issued.is_valid_at(now()));
    assert!(!issued.is_valid_at(later));
    assert!(!issued.is_valid_at(now() - Duration::from_secs(301)));
    // x509-parser agrees, from the certificate itself.
    let cert = parse(&issued.der);
    let at = |t: SystemTime| x509_parser::time::ASN1Time::from_timestamp(unix(t)).unwrap();
    assert!(cert.validity().is_valid_at(at(now())));
    assert!(!cert.validity().is_valid_at(at(later)));
}

#[test]
fn a_device_id_that_is_not_the_keys_id_is_refused() {
    let ca = new_ca();
    let (_, public) = device();
    let (other, _) = device();
    let err = ca
        .issue_client(&public, &other.device_id(), DEFAULT_CLIENT_VALIDITY, now())
        .unwrap_err();
    match &err {
        CaError::DeviceIdMismatch {
            device_id,
            key_device_id,
        } => {
            assert_eq!(*device_id, other.device_id());
            assert_eq!(*key_device_id, public.device_id());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_zero_validity_is_refused() {
    let ca = new_ca();
    let (key, public) = device();
    assert!(matches!(
        ca.issue_client(&public, &key.device_id(), Duration::ZERO, now()),
        Err(CaError::InvalidValidity { .. })
    ));
    assert!(matches!(
        CertificateAuthority::generate("x", Duration::ZERO, now()),
        Err(CaError::InvalidValidity { .. })
    ));
    assert!(matches!(
        CertificateAuthority::generate("x", Duration::from_secs(u64::MAX), now()),
        Err(CaError::InvalidValidity { .. })
    ));
}

#[test]
fn a_time_before_1970_is_refused() {
    let err = CertificateAuthority::generate(
        "x",
        DEFAULT_CA_VALIDITY,
        UNIX_EPOCH - Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(matches!(err, CaError::InvalidTime(_)), "{err}");
    assert!(err.to_string().contains("before 1970"), "{err}");
}

#[test]
fn bad_ca_names_are_refused() {
    for name in ["", "   ", &"x".repeat(65), "line\nbreak"] {
        assert!(
            matches!(
                CertificateAuthority::generate(name, DEFAULT_CA_VALIDITY, now()),
                Err(CaError::InvalidCommonName { .. })
            ),
            "{name:?}"
        );
    }
}

#[test]
fn serials_are_random_128_bit_and_distinct_across_100_issuances() {
    let ca = new_ca();
    let (key, public) = device();
    let id = key.device_id();
    let mut serials = HashSet::new();
    let mut fingerprints = HashSet::new();
    for _ in 0..100 {
        let issued = ca
            .issue_client(&public, &id, DEFAULT_CLIENT_VALIDITY, now())
            .unwrap();
        let cert = parse(&issued.der);
        let serial = cert.raw_serial();
        assert_eq!(serial.len(), 16, "16 bytes, no padding");
        assert_eq!(serial[0] & 0xc0, 0x40, "positive, top bits 01");
        assert_eq!(issued.serial_hex.len(), 32);
        serials.insert(serial.to_vec());
        fingerprints.insert(issued.fingerprint);
    }
    assert_eq!(serials.len(), 100);
    assert_eq!(fingerprints.len(), 100);
}

#[test]
fn server_certificate_has_server_auth_and_dns_and_ip_sans() {
    let ca = new_ca();
    let names: Vec<String> = [
        "gateway.example.com",
        "localhost",
        "127.0.0.1",
        "::1",
        "*.gw.example.com",
    ]
    .map(String::from)
    .to_vec();
    let issued = ca
        .issue_server(&names, DEFAULT_SERVER_VALIDITY, now())
        .unwrap();
    let cert = parse(&issued.certificate.der);

    let eku = cert.extended_key_usage().unwrap().expect("EKU").value;
    assert!(eku.server_auth);
    assert!(!eku.client_auth && !eku.any);
    assert!(!cert.basic_constraints().unwrap().expect("bc").value.ca);

    let san = cert.subject_alternative_name().unwrap().expect("SAN").value;
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    let v6: IpAddr = "::1".parse().unwrap();
    let v4_bytes = match v4 {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(_) => unreachable!(),
    };
    let v6_bytes = match v6 {
        IpAddr::V6(a) => a.octets().to_vec(),
        IpAddr::V4(_) => unreachable!(),
    };
    assert_eq!(
        san.general_names,
        vec![
            GeneralName::DNSName("gateway.example.com"),
            GeneralName::DNSName("localhost"),
            GeneralName::IPAddress(&v4_bytes),
            GeneralName::IPAddress(&v6_bytes),
            GeneralName::DNSName("*.gw.example.com"),
        ]
    );
    assert_eq!(cert.subject().to_string(), "CN=gateway.example.com");

    assert_signed_by(&issued.certificate.der, &ca);
    assert_eq!(
        unix(issued.certificate.not_after),
        NOW_UNIX as i64 + 7 * 86_400
    );
    assert_eq!(issued.subject_alt_names, names);
}

#[test]
fn server_key_is_fresh_pkcs8_and_matches_the_certificate() {
    let ca = new_ca();
    let names = vec!["localhost".to_string()];
    let a = ca
        .issue_server(&names, DEFAULT_SERVER_VALIDITY, now())
        .unwrap();
    let b = ca
        .issue_server(&names, DEFAULT_SERVER_VALIDITY, now())
        .unwrap();
    let key_a = rcgen::KeyPair::try_from(a.private_key_pkcs8_der.as_slice()).unwrap();
    let key_b = rcgen::KeyPair::try_from(b.private_key_pkcs8_der.as_slice()).unwrap();
    assert_ne!(key_a.public_key_raw(), key_b.public_key_raw());
    assert_eq!(
        parse(&a.certificate.der)
            .public_key()
            .subject_public_key
            .data
            .as_ref(),
        key_a.public_key_raw()
    );
    assert_ne!(key_a.public_key_raw(), ca.public_key().as_slice());
    // The key never shows in Debug output.
    let shown = format!("{a:?}");
    assert!(shown.contains("elided"));
    assert!(!shown.contains(&format!("{:?}", &a.private_key_pkcs8_der[..8])));
}

#[test]
fn bad_server_names_are_refused() {
    let ca = new_ca();
    assert!(matches!(
        ca.issue_server(&[], DEFAULT_SERVER_VALIDITY, now()),
        Err(CaError::NoSubjectAltNames)
    ));
    for bad in [
        "",
        "has space.com",
        "a..b",
        "ünïcode.example",
        "-lead.example",
        "x/y",
    ] {
        let err = ca
            .issue_server(&[bad.to_string()], DEFAULT_SERVER_VALIDITY, now())
            .unwrap_err();
        match &err {
            CaError::InvalidSubjectAltName { name, .. } => assert_eq!(name, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
        assert!(err.to_string().contains(bad), "{err}");
    }
}

#[test]
fn a_ca_reloaded_from_pem_is_the_same_ca_and_its_leaves_verify() {
    let ca = new_ca();
    let (cert_pem, key_pem) = ca.to_pem();
    assert!(key_pem.contains("PRIVATE KEY"));
    let reloaded = CertificateAuthority::from_pem(&cert_pem, &key_pem).unwrap();
    assert_eq!(reloaded.fingerprint(), ca.fingerprint());
    assert_eq!(reloaded.certificate_der(), ca.certificate_der());
    assert_eq!(reloaded.certificate_pem(), ca.certificate_pem());
    assert_eq!(reloaded.subject(), ca.subject());
    assert_eq!(reloaded.not_before(), ca.not_before());
    assert_eq!(reloaded.not_after(), ca.not_after());
    assert_eq!(reloaded.public_key(), ca.public_key());

    let (key, public) = device();
    let issued = reloaded
        .issue_client(&public, &key.device_id(), DEFAULT_CLIENT_VALIDITY, now())
        .unwrap();
    assert_signed_by(&issued.der, &ca);
    assert_signed_by(&issued.der, &reloaded);

    // Leaves of the original and of the reloaded CA carry the same
    // authority key identifier.
    let aki = |der: &[u8]| {
        let cert = parse(der);
        let ext = cert
            .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
            .unwrap()
            .expect("AKI");
        ext.value.to_vec()
    };
    let before = ca
        .issue_client(&public, &key.device_id(), DEFAULT_CLIENT_VALIDITY, now())
        .unwrap();
    assert_eq!(aki(&before.der), aki(&issued.der));

    // And the reloaded CA exports the same data again.
    let (cert_pem2, key_pem2) = reloaded.to_pem();
    assert_eq!(cert_pem2, cert_pem);
    assert_eq!(*key_pem2, *key_pem);
}

#[test]
fn a_key_that_does_not_match_the_ca_certificate_is_refused() {
    let ca = new_ca();
    let other = new_ca();
    let (cert_pem, _) = ca.to_pem();
    let (_, other_key) = other.to_pem();
    let err = CertificateAuthority::from_pem(&cert_pem, &other_key).unwrap_err();
    match &err {
        CaError::KeyMismatch {
            subject,
            fingerprint,
        } => {
            assert_eq!(subject, "CN=Keygate test CA");
            assert_eq!(*fingerprint, ca.fingerprint());
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn a_leaf_certificate_is_refused_as_a_ca() {
    let ca = new_ca();
    let names = vec!["localhost".to_string()];
    let server = ca
        .issue_server(&names, DEFAULT_SERVER_VALIDITY, now())
        .unwrap();
    let key = rcgen::KeyPair::try_from(server.private_key_pkcs8_der.as_slice()).unwrap();
    let err =
        CertificateAuthority::from_pem(&server.certificate.pem, &key.serialize_pem()).unwrap_err();
    assert!(matches!(err, CaError::NotACa { .. }), "{err}");
}

#[test]
fn garbage_and_non_ed25519_keys_are_refused() {
    let ca = new_ca();
    let (cert_pem, key_pem) = ca.to_pem();
    assert!(matches!(
        CertificateAuthority::from_pem("not pem", &key_pem),
        Err(CaError::InvalidCertificate { .. })
    ));
    assert!(matches!(
        CertificateAuthority::from_pem(&key_pem, &key_pem),
        Err(CaError::InvalidCertificate { .. })
    ));
    assert!(matches!(
        CertificateAuthority::from_pem(&cert_pem, "not a key"),
        Err(CaError::InvalidKey { .. })
    ));
    let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    assert!(matches!(
        CertificateAuthority::from_pem(&cert_pem, &p256.serialize_pem()),
        Err(CaError::UnsupportedKeyAlgorithm { .. })
    ));
}

#[test]
fn a_tampered_ca_certificate_is_refused() {
    let ca = new_ca();
    let (_, key_pem) = ca.to_pem();
    let mut der = ca.certificate_der().to_vec();
    // Flip a byte inside the signed part (in the subject name).
    let at = der
        .windows(b"Keygate test CA".len())
        .position(|w| w == b"Keygate test CA")
        .unwrap();
    der[at] = b'k';
    let pem = pem_of(&der);
    let err = CertificateAuthority::from_pem(&pem, &key_pem).unwrap_err();
    assert!(matches!(err, CaError::NotSelfSigned { .. }), "{err}");
}

#[test]
fn debug_output_never_shows_the_ca_key() {
    let ca = new_ca();
    let (_, key_pem) = ca.to_pem();
    let shown = format!("{ca:?}");
    assert!(shown.contains("elided"));
    let body: String = key_pem.lines().nth(1).unwrap().chars().take(20).collect();
    assert!(!shown.contains(&body));
}

fn pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

// --- Path validation as rustls does it (rustls-webpki, ring) ---

fn webpki_verify(
    leaf_der: &[u8],
    ca: &CertificateAuthority,
    at: SystemTime,
    usage: webpki::KeyUsage,
) -> Result<(), webpki::Error> {
    use rustls_pki_types::{CertificateDer, UnixTime};
    let ca_der = CertificateDer::from(ca.certificate_der());
    let anchor = webpki::anchor_from_trusted_cert(&ca_der)?;
    let leaf_der = CertificateDer::from(leaf_der);
    let leaf = webpki::EndEntityCert::try_from(&leaf_der)?;
    let time = UnixTime::since_unix_epoch(at.duration_since(UNIX_EPOCH).unwrap());
    leaf.verify_for_usage(
        &[webpki::ring::ED25519],
        &[anchor],
        &[],
        time,
        usage,
        None,
        None,
    )
    .map(|_| ())
}

#[test]
fn webpki_accepts_a_client_certificate_for_client_auth_only() {
    let ca = new_ca();
    let (key, public) = device();
    let issued = ca
        .issue_client(&public, &key.device_id(), DEFAULT_CLIENT_VALIDITY, now())
        .unwrap();
    webpki_verify(&issued.der, &ca, now(), webpki::KeyUsage::client_auth()).unwrap();
    // A peer whose clock is 4 minutes behind still accepts it.
    webpki_verify(
        &issued.der,
        &ca,
        now() - Duration::from_secs(240),
        webpki::KeyUsage::client_auth(),
    )
    .unwrap();
    let err = webpki_verify(&issued.der, &ca, now(), webpki::KeyUsage::server_auth()).unwrap_err();
    assert!(
        matches!(err, webpki::Error::RequiredEkuNotFoundContext(_)),
        "{err:?}"
    );
}

#[test]
fn webpki_accepts_a_server_certificate_for_its_names() {
    use rustls_pki_types::{CertificateDer, ServerName};
    let ca = new_ca();
    let names = vec!["gateway.example.com".to_string(), "127.0.0.1".to_string()];
    let issued = ca
        .issue_server(&names, DEFAULT_SERVER_VALIDITY, now())
        .unwrap();
    let der = &issued.certificate.der;
    webpki_verify(der, &ca, now(), webpki::KeyUsage::server_auth()).unwrap();
    let err = webpki_verify(der, &ca, now(), webpki::KeyUsage::client_auth()).unwrap_err();
    assert!(
        matches!(err, webpki::Error::RequiredEkuNotFoundContext(_)),
        "{err:?}"
    );

    let cert_der = CertificateDer::from(der.as_slice());
    let leaf = webpki::EndEntityCert::try_from(&cert_der).unwrap();
    for ok in ["gateway.example.com", "127.0.0.1"] {
        leaf.verify_is_valid_for_subject_name(&ServerName::try_from(ok).unwrap())
            .unwrap();
    }
    for wrong in ["other.example.com", "127.0.0.2"] {
        assert!(matches!(
            leaf.verify_is_valid_for_subject_name(&ServerName::try_from(wrong).unwrap()),
            Err(webpki::Error::CertNotValidForName(_))
        ));
    }
}

#[test]
fn webpki_refuses_an_expired_leaf_and_a_leaf_of_another_ca() {
    let ca = new_ca();
    let other = new_ca();
    let (key, public) = device();
    let issued = ca
        .issue_client(&public, &key.device_id(), Duration::from_secs(60), now())
        .unwrap();
    let err = webpki_verify(
        &issued.der,
        &ca,
        now() + Duration::from_secs(120),
        webpki::KeyUsage::client_auth(),
    )
    .unwrap_err();
    assert!(matches!(err, webpki::Error::CertExpired { .. }), "{err:?}");

    // Another CA with the same name: the signature check refuses it.
    let err =
        webpki_verify(&issued.der, &other, now(), webpki::KeyUsage::client_auth()).unwrap_err();
    assert!(
        matches!(err, webpki::Error::InvalidSignatureForPublicKey),
        "{err:?}"
    );
    // Another CA with another name is not even a candidate issuer.
    let stranger =
        CertificateAuthority::generate("Some other CA", DEFAULT_CA_VALIDITY, now()).unwrap();
    let err = webpki_verify(
        &issued.der,
        &stranger,
        now(),
        webpki::KeyUsage::client_auth(),
    )
    .unwrap_err();
    assert!(matches!(err, webpki::Error::UnknownIssuer), "{err:?}");
}

#[test]
fn webpki_accepts_leaves_of_a_reloaded_ca_against_the_original_root() {
    let ca = new_ca();
    let (cert_pem, key_pem) = ca.to_pem();
    let reloaded = CertificateAuthority::from_pem(&cert_pem, &key_pem).unwrap();
    let (key, public) = device();
    let issued = reloaded
        .issue_client(&public, &key.device_id(), DEFAULT_CLIENT_VALIDITY, now())
        .unwrap();
    webpki_verify(&issued.der, &ca, now(), webpki::KeyUsage::client_auth()).unwrap();
}

//! The gateway's certificate authority.
//!
//! A self-signed Ed25519 root ([`CertificateAuthority`]) that issues
//!
//! - **client certificates** for a device's own Ed25519 public key
//!   ([`CertificateAuthority::issue_client`]): the CA never makes, sees or
//!   stores a device private key. It signs a certificate for the public key
//!   the device proved it holds, and refuses a device id that is not the id
//!   of that key;
//! - **server certificates** for the gateway itself
//!   ([`CertificateAuthority::issue_server`]), with a fresh Ed25519 key.
//!
//! The module is pure: no file system, no clock. The caller passes `now`,
//! and stores the CA through its SecretStore as the two PEM strings of
//! [`CertificateAuthority::to_pem`], reloaded with
//! [`CertificateAuthority::from_pem`].
//!
//! # What the certificates contain
//!
//! | | CA | client | server |
//! |---|---|---|---|
//! | key | Ed25519, made here | the device's Ed25519 key | Ed25519, made here |
//! | subject | `CN=<common name>` | `CN=<device id>` | `CN=<first SAN>` (if ≤ 64 chars) |
//! | SAN | — | URI `keygate://device/<device id>` | each name: DNS, or IP if it parses as an IP address |
//! | basic constraints | CA, path length 0 (critical) | not a CA | not a CA |
//! | key usage | keyCertSign, cRLSign | digitalSignature | digitalSignature |
//! | extended key usage | — | clientAuth only | serverAuth only |
//! | validity | `now − 5 min` … `now + validity` | same | same |
//! | serial | 128 bits, random | 128 bits, random | 128 bits, random |
//!
//! - **Serials** are 16 bytes from the thread-local CSPRNG with the top two
//!   bits set to `01`: always positive, always 16 bytes long in DER (no
//!   padding byte, no shortening), 126 random bits.
//! - **Clock skew**: every certificate's `notBefore` is
//!   [`CLOCK_SKEW_ALLOWANCE`] (5 minutes) before `now`, so a peer whose clock
//!   is a little behind accepts a certificate issued a moment ago. A leaf's
//!   `notBefore` is never before the CA's, and a leaf's `notAfter` is capped
//!   at the CA's `notAfter` (the returned [`IssuedCertificate`] states the
//!   actual window). Times are whole seconds: `now` is truncated.
//! - Leaves carry the authority key identifier of the CA, so a verifier
//!   picks the right root after a CA rotation.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ED25519, PublicKeyData, SanType, SerialNumber,
    SignatureAlgorithm, SigningKey, string::Ia5String,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::{Zeroize, Zeroizing};

use crate::identity::{DeviceId, DevicePublicKey};
use crate::time::rfc3339_secs as rfc3339;

pub use crate::identity::CertFingerprint;

/// Default validity of a new CA: 10 years (3,650 days).
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);

/// Default validity of a client certificate: 24 hours. Devices renew before
/// it runs out.
pub const DEFAULT_CLIENT_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

/// Default validity of the gateway's server certificate: 7 days. The gateway
/// re-issues it before it runs out, without a restart.
pub const DEFAULT_SERVER_VALIDITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How far before `now` every certificate's `notBefore` is set, so a peer
/// whose clock runs up to this much behind still accepts it: 5 minutes.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);

/// The client certificate's URI SAN is this prefix followed by the device
/// id: `keygate://device/kgd1…`.
pub const CLIENT_SAN_URI_PREFIX: &str = "keygate://device/";

/// The longest common name X.509 allows (`ub-common-name`).
const MAX_COMMON_NAME: usize = 64;

/// Latest instant an X.509 time can express here (9999-12-31T23:59:59Z).
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

/// The CA's signing key. rcgen's `KeyPair` can be wiped but does not wipe
/// itself: this wrapper does it on drop.
struct CaKey(KeyPair);

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        PublicKeyData::algorithm(&self.0)
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

impl Drop for CaKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A raw Ed25519 public key, as rcgen needs it to sign a certificate for a
/// key whose private half it does not have.
struct Ed25519Public<'a>(&'a [u8; 32]);

impl PublicKeyData for Ed25519Public<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ED25519
    }
}

/// The gateway's certificate authority: a self-signed Ed25519 root and its
/// key.
///
/// The rcgen issuer is built once (at [`generate`](Self::generate) or
/// [`from_pem`](Self::from_pem)) and reused for every certificate. The type
/// is `Send + Sync`: share it behind an `Arc`. `Debug` never shows the key.
pub struct CertificateAuthority {
    issuer: Issuer<'static, CaKey>,
    cert_der: Vec<u8>,
    cert_pem: String,
    fingerprint: CertFingerprint,
    subject: String,
    public_key: [u8; 32],
    not_before: i64,
    not_after: i64,
}

impl CertificateAuthority {
    /// Makes a new self-signed Ed25519 root named `CN=<common_name>`, valid
    /// from `now` − [`CLOCK_SKEW_ALLOWANCE`] to `now + validity`
    /// ([`DEFAULT_CA_VALIDITY`] is 10 years).
    ///
    /// # Errors
    /// [`CaError::InvalidCommonName`] for an empty name, one longer than 64
    /// characters or with control characters; [`CaError::InvalidValidity`]
    /// for a zero validity or one past the year 9999;
    /// [`CaError::InvalidTime`] for a `now` before 1970;
    /// [`CaError::Generation`] if key generation or signing fails.
    pub fn generate(
        common_name: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<Self, CaError> {
        check_common_name(common_name)?;
        let now = unix_seconds(now)?;
        let not_before = now.saturating_sub(skew_seconds());
        let not_after = add_validity(now, validity)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        params.not_before = to_datetime(not_before)?;
        params.not_after = to_datetime(not_after)?;

        let key = KeyPair::generate_for(&PKCS_ED25519)
            .map_err(|e| CaError::generation("generating the CA key", e))?;
        let key = CaKey(key);
        let cert = params
            .self_signed(&key)
            .map_err(|e| CaError::generation("self-signing the CA certificate", e))?;
        let cert_der = cert.der().to_vec();
        let cert_pem = cert.pem();
        let issuer = Issuer::new(params, key);
        Self::assemble(issuer, cert_der, cert_pem)
    }

    /// Reloads a CA from the PEM strings [`to_pem`](Self::to_pem) wrote.
    ///
    /// Checks that the certificate is a self-signed CA certificate (basic
    /// constraints `cA`, signature verifies under its own key), that the key
    /// is an Ed25519 PKCS#8 key, and that the key is the certificate's key.
    /// An expired CA loads (so `keygate ca show` can say it expired);
    /// issuing from it fails.
    ///
    /// # Errors
    /// [`CaError::InvalidCertificate`], [`CaError::NotACa`],
    /// [`CaError::NotSelfSigned`], [`CaError::InvalidKey`],
    /// [`CaError::UnsupportedKeyAlgorithm`], [`CaError::KeyMismatch`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::InvalidKey {
            reason: e.to_string(),
        })?;
        let key = CaKey(key);
        if PublicKeyData::algorithm(&key) != &PKCS_ED25519 {
            return Err(CaError::UnsupportedKeyAlgorithm {
                found: format!("{:?}", PublicKeyData::algorithm(&key)),
            });
        }

        let block = pem::parse(cert_pem).map_err(|e| CaError::InvalidCertificate {
            reason: format!("not PEM: {e}"),
        })?;
        if block.tag() != "CERTIFICATE" {
            return Err(CaError::InvalidCertificate {
                reason: format!("PEM block is {:?}, expected \"CERTIFICATE\"", block.tag()),
            });
        }
        let cert_der = block.into_contents();
        {
            let cert = parse_der(&cert_der)?;
            let subject = cert.subject().to_string();
            let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
            if !is_ca {
                return Err(CaError::NotACa { subject });
            }
            if cert.verify_signature(None).is_err() {
                return Err(CaError::NotSelfSigned { subject });
            }
            if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
                return Err(CaError::KeyMismatch {
                    subject,
                    fingerprint: CertFingerprint::of_der(&cert_der),
                });
            }
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key).map_err(|e| {
            CaError::InvalidCertificate {
                reason: e.to_string(),
            }
        })?;
        let cert_pem = pem_encode(&cert_der);
        Self::assemble(issuer, cert_der, cert_pem)
    }

    /// Fills in the metadata from the certificate itself, so a generated and
    /// a reloaded CA report exactly the same.
    fn assemble(
        issuer: Issuer<'static, CaKey>,
        cert_der: Vec<u8>,
        cert_pem: String,
    ) -> Result<Self, CaError> {
        let cert = parse_der(&cert_der)?;
        let subject = cert.subject().to_string();
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        let public_key: [u8; 32] = cert
            .public_key()
            .subject_public_key
            .data
            .as_ref()
            .try_into()
            .map_err(|_| CaError::InvalidCertificate {
                reason: "the public key is not a 32-byte Ed25519 key".into(),
            })?;
        let fingerprint = CertFingerprint::of_der(&cert_der);
        Ok(Self {
            issuer,
            cert_der,
            cert_pem,
            fingerprint,
            subject,
            public_key,
            not_before,
            not_after,
        })
    }

    /// The CA as data, for the caller's SecretStore: the certificate PEM and
    /// the private key as PKCS#8 PEM (in a buffer wiped on drop).
    pub fn to_pem(&self) -> (String, Zeroizing<String>) {
        (
            self.cert_pem.clone(),
            Zeroizing::new(self.issuer.key().0.serialize_pem()),
        )
    }

    /// Issues a client certificate for a device's own public key.
    ///
    /// `device_id` must be the id of `device_public_key`: the id is in the
    /// subject (`CN`) and in a URI SAN (`keygate://device/<id>`), and the
    /// certificate's key is the device's key, so a certificate can never
    /// bind an id to another key. ClientAuth is the only extended key usage.
    /// Validity: see the [module docs](self); [`DEFAULT_CLIENT_VALIDITY`] is
    /// 24 hours.
    ///
    /// # Errors
    /// [`CaError::DeviceIdMismatch`] when the id is not the key's;
    /// [`CaError::InvalidValidity`], [`CaError::InvalidTime`],
    /// [`CaError::CaNotYetValid`], [`CaError::CaExpired`] for the time
    /// window; [`CaError::Generation`] if signing fails.
    pub fn issue_client(
        &self,
        device_public_key: &DevicePublicKey,
        device_id: &DeviceId,
        validity: Duration,
        now: SystemTime,
    ) -> Result<IssuedCertificate, CaError> {
        if !device_id.matches(device_public_key) {
            return Err(CaError::DeviceIdMismatch {
                device_id: *device_id,
                key_device_id: DeviceId::from_public_key(device_public_key),
            });
        }
        let (not_before, not_after) = self.leaf_window(validity, now)?;
        let serial = random_serial();

        let id_text = device_id.to_string();
        let mut params = leaf_params(serial, not_before, not_after)?;
        params
            .distinguished_name
            .push(DnType::CommonName, id_text.as_str());
        let uri = Ia5String::try_from(format!("{CLIENT_SAN_URI_PREFIX}{id_text}"))
            .map_err(|e| CaError::generation("encoding the device URI", e))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];

        let cert = params
            .signed_by(&Ed25519Public(device_public_key.as_bytes()), &self.issuer)
            .map_err(|e| CaError::generation("signing the client certificate", e))?;
        Ok(IssuedCertificate::new(
            cert.der().to_vec(),
            cert.pem(),
            &serial,
            not_before,
            not_after,
        ))
    }

    /// Issues a server certificate for the gateway, with a fresh Ed25519 key.
    ///
    /// Each name becomes a SAN: an IP SAN if it parses as an IPv4 or IPv6
    /// address, a DNS SAN otherwise (letters, digits, `-` and `.`, labels of
    /// 1–63 characters, a leading `*.` wildcard allowed). ServerAuth is the
    /// only extended key usage. [`DEFAULT_SERVER_VALIDITY`] is 7 days.
    ///
    /// # Errors
    /// [`CaError::NoSubjectAltNames`] for an empty list,
    /// [`CaError::InvalidSubjectAltName`] for a name that is neither an IP
    /// address nor a DNS name; the time-window errors of
    /// [`issue_client`](Self::issue_client); [`CaError::Generation`].
    pub fn issue_server(
        &self,
        subject_alt_names: &[String],
        validity: Duration,
        now: SystemTime,
    ) -> Result<IssuedServerCertificate, CaError> {
        if subject_alt_names.is_empty() {
            return Err(CaError::NoSubjectAltNames);
        }
        let sans = subject_alt_names
            .iter()
            .map(|name| parse_server_name(name))
            .collect::<Result<Vec<_>, _>>()?;
        let (not_before, not_after) = self.leaf_window(validity, now)?;
        let serial = random_serial();

        let mut params = leaf_params(serial, not_before, not_after)?;
        let first = &subject_alt_names[0];
        if first.chars().count() <= MAX_COMMON_NAME {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

        let key = KeyPair::generate_for(&PKCS_ED25519)
            .map_err(|e| CaError::generation("generating the server key", e))?;
        let key = CaKey(key);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CaError::generation("signing the server certificate", e))?;
        let private_key_pkcs8_der = Zeroizing::new(key.0.serialize_der());
        Ok(IssuedServerCertificate {
            certificate: IssuedCertificate::new(
                cert.der().to_vec(),
                cert.pem(),
                &serial,
                not_before,
                not_after,
            ),
            subject_alt_names: subject_alt_names.to_vec(),
            private_key_pkcs8_der,
        })
    }

    /// The `(notBefore, notAfter)` of a leaf issued at `now`, in unix
    /// seconds; see the module docs.
    fn leaf_window(&self, validity: Duration, now: SystemTime) -> Result<(i64, i64), CaError> {
        let now_s = unix_seconds(now)?;
        if now_s < self.not_before {
            return Err(CaError::CaNotYetValid {
                now: rfc3339(now_s),
                not_before: rfc3339(self.not_before),
            });
        }
        if now_s > self.not_after {
            return Err(CaError::CaExpired {
                now: rfc3339(now_s),
                not_after: rfc3339(self.not_after),
            });
        }
        let not_after = add_validity(now_s, validity)?.min(self.not_after);
        let not_before = now_s.saturating_sub(skew_seconds()).max(self.not_before);
        Ok((not_before, not_after))
    }

    /// SHA-256 of the CA certificate's DER: what devices pin (in QR codes
    /// and the pairing transcript).
    pub fn fingerprint(&self) -> CertFingerprint {
        self.fingerprint
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The CA certificate's subject, RFC 4514 style (e.g. `CN=Keygate CA`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Start of the CA's validity.
    pub fn not_before(&self) -> SystemTime {
        to_system_time(self.not_before)
    }

    /// End of the CA's validity (after it, issuing fails).
    pub fn not_after(&self) -> SystemTime {
        to_system_time(self.not_after)
    }
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.subject)
            .field("fingerprint", &self.fingerprint)
            .field("not_before", &rfc3339(self.not_before))
            .field("not_after", &rfc3339(self.not_after))
            .field("key", &"[elided]")
            .finish()
    }
}

/// A certificate the CA issued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssuedCertificate {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The certificate, PEM.
    pub pem: String,
    /// SHA-256 of `der`.
    pub fingerprint: CertFingerprint,
    /// The serial number, 32 lower-case hex digits (16 bytes).
    pub serial_hex: String,
    /// Start of validity (whole seconds).
    pub not_before: SystemTime,
    /// End of validity (whole seconds).
    pub not_after: SystemTime,
}

impl IssuedCertificate {
    fn new(der: Vec<u8>, pem: String, serial: &[u8; 16], not_before: i64, not_after: i64) -> Self {
        let fingerprint = CertFingerprint::of_der(&der);
        Self {
            der,
            pem,
            fingerprint,
            serial_hex: hex::encode(serial),
            not_before: to_system_time(not_before),
            not_after: to_system_time(not_after),
        }
    }

    /// Whether `now` lies in the certificate's validity window
    /// (`not_before ≤ now ≤ not_after`, as X.509 defines it).
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// A server certificate and its freshly made private key.
#[non_exhaustive]
pub struct IssuedServerCertificate {
    /// The certificate and its metadata.
    pub certificate: IssuedCertificate,
    /// The names it was issued for, as given.
    pub subject_alt_names: Vec<String>,
    /// The server's private key, PKCS#8 v2 DER (what rustls loads), wiped
    /// on drop.
    pub private_key_pkcs8_der: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for IssuedServerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedServerCertificate")
            .field("certificate", &self.certificate)
            .field("subject_alt_names", &self.subject_alt_names)
            .field("private_key_pkcs8_der", &"[elided]")
            .finish()
    }
}

/// Why the CA could not be made, loaded, or could not issue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The CA common name is empty, too long or has control characters.
    #[error("CA common name {name:?} is invalid: {reason}")]
    InvalidCommonName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A validity that is zero or ends after the year 9999.
    #[error("certificate validity {validity:?} is invalid: {reason}")]
    InvalidValidity {
        /// The refused validity.
        validity: Duration,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `now` that X.509 cannot express (before 1970 or after 9999).
    #[error("time {} is outside what a certificate can express (1970 to 9999)", crate::time::rfc3339(*.0))]
    InvalidTime(SystemTime),
    /// `now` is before the CA's `notBefore` (a clock set back?).
    #[error("the CA is not valid yet: now is {now}, the CA is valid from {not_before}")]
    CaNotYetValid {
        /// `now`, RFC 3339.
        now: String,
        /// The CA's `notBefore`, RFC 3339.
        not_before: String,
    },
    /// `now` is after the CA's `notAfter`: the CA must be renewed.
    #[error("the CA expired at {not_after} (now is {now}): create a new CA")]
    CaExpired {
        /// `now`, RFC 3339.
        now: String,
        /// The CA's `notAfter`, RFC 3339.
        not_after: String,
    },
    /// The device id is not the id of the public key to certify.
    #[error(
        "device id {device_id} is not the id of the public key to certify (that key's id is {key_device_id})"
    )]
    DeviceIdMismatch {
        /// The id given.
        device_id: DeviceId,
        /// The id of the key given.
        key_device_id: DeviceId,
    },
    /// `issue_server` was given no name.
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoSubjectAltNames,
    /// A server name that is neither an IP address nor a DNS name.
    #[error("server name {name:?} is neither an IP address nor a DNS name: {reason}")]
    InvalidSubjectAltName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The CA certificate PEM/DER could not be read.
    #[error("CA certificate is invalid: {reason}")]
    InvalidCertificate {
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate is not a CA certificate (no basic constraints `cA`).
    #[error("certificate {subject} is not a CA certificate (basic constraints do not say cA)")]
    NotACa {
        /// Its subject.
        subject: String,
    },
    /// The certificate is not signed by its own key.
    #[error(
        "CA certificate {subject} is not self-signed (its signature does not verify under its own key)"
    )]
    NotSelfSigned {
        /// Its subject.
        subject: String,
    },
    /// The CA private key could not be read.
    #[error("CA private key is invalid: {reason}")]
    InvalidKey {
        /// What the PKCS#8 reader said.
        reason: String,
    },
    /// The CA private key is not Ed25519.
    #[error("CA private key is {found}, only Ed25519 CA keys are supported")]
    UnsupportedKeyAlgorithm {
        /// The algorithm found.
        found: String,
    },
    /// The private key is not the key of the CA certificate.
    #[error(
        "the private key does not belong to CA certificate {subject} (fingerprint {fingerprint})"
    )]
    KeyMismatch {
        /// The certificate's subject.
        subject: String,
        /// The certificate's fingerprint.
        fingerprint: CertFingerprint,
    },
    /// Key generation or signing failed inside rcgen.
    #[error("{what} failed: {source}")]
    Generation {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl CaError {
    fn generation(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        CaError::Generation {
            what,
            source: Box::new(e),
        }
    }
}

/// Parameters every leaf shares.
fn leaf_params(
    serial: [u8; 16],
    not_before: i64,
    not_after: i64,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = to_datetime(not_before)?;
    params.not_after = to_datetime(not_after)?;
    Ok(params)
}

/// 16 random bytes with the top bits `01`: positive, exactly 16 DER bytes.
fn random_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut serial);
    serial[0] = (serial[0] & 0x3f) | 0x40;
    serial
}

fn check_common_name(name: &str) -> Result<(), CaError> {
    let reason = if name.trim().is_empty() {
        Some("it is empty")
    } else if name.chars().count() > MAX_COMMON_NAME {
        Some("it is longer than 64 characters")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(CaError::InvalidCommonName {
            name: name.chars().take(80).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

fn parse_server_name(name: &str) -> Result<SanType, CaError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let refuse = |reason| CaError::InvalidSubjectAltName {
        name: name.chars().take(80).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("it is empty"));
    }
    if name.len() > 253 {
        return Err(refuse("a DNS name has at most 253 characters"));
    }
    let rest = name.strip_prefix("*.").unwrap_or(name);
    for label in rest.split('.') {
        if label.is_empty() {
            return Err(refuse(
                "it has an empty label (two dots in a row, or a leading or trailing dot)",
            ));
        }
        if label.len() > 63 {
            return Err(refuse("a DNS label has at most 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(refuse(
                "a DNS name has only letters, digits, '-' and '.' (and a leading \"*.\")",
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(refuse("a DNS label does not start or end with '-'"));
        }
    }
    let ia5 = Ia5String::try_from(name).map_err(|_| refuse("it is not ASCII"))?;
    Ok(SanType::DnsName(ia5))
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, CaError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CaError::InvalidCertificate {
        reason: format!("not an X.509 certificate: {e}"),
    })?;
    if !rest.is_empty() {
        return Err(CaError::InvalidCertificate {
            reason: format!(
                "{} bytes of trailing data after the certificate",
                rest.len()
            ),
        });
    }
    Ok(cert)
}

fn pem_encode(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn skew_seconds() -> i64 {
    CLOCK_SKEW_ALLOWANCE.as_secs() as i64
}

/// Whole unix seconds of `t` (truncated), refusing times X.509 cannot hold.
fn unix_seconds(t: SystemTime) -> Result<i64, CaError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| CaError::InvalidTime(t))?
        .as_secs();
    i64::try_from(secs)
        .ok()
        .filter(|s| *s <= MAX_UNIX_SECONDS)
        .ok_or(CaError::InvalidTime(t))
}

fn add_validity(now: i64, validity: Duration) -> Result<i64, CaError> {
    if validity.as_secs() == 0 {
        return Err(CaError::InvalidValidity {
            validity,
            reason: "it must be at least one second",
        });
    }
    i64::try_from(validity.as_secs())
        .ok()
        .and_then(|v| now.checked_add(v))
        .filter(|end| *end <= MAX_UNIX_SECONDS)
        .ok_or(CaError::InvalidValidity {
            validity,
            reason: "it ends after the year 9999",
        })
}

fn to_datetime(secs: i64) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(secs)
        .map_err(|_| CaError::InvalidTime(to_system_time(secs)))
}

fn to_system_time(secs: i64) -> SystemTime {
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<CertificateAuthority>();
    }

    #[test]
    fn serial_is_positive_and_sixteen_bytes() {
        for _ in 0..1000 {
            let s = random_serial();
            assert_eq!(s[0] & 0xc0, 0x40);
        }
    }

    #[test]
    fn server_names_are_checked() {
        assert!(matches!(
            parse_server_name("10.0.0.1"),
            Ok(SanType::IpAddress(_))
        ));
        assert!(matches!(
            parse_server_name("::1"),
            Ok(SanType::IpAddress(_))
        ));
        assert!(matches!(
            parse_server_name("gw.example.com"),
            Ok(SanType::DnsName(_))
        ));
        assert!(matches!(
            parse_server_name("*.example.com"),
            Ok(SanType::DnsName(_))
        ));
        for bad in ["", "a..b", "-a.b", "a b", "é.com", "a.*.b", ".a"] {
            assert!(
                matches!(
                    parse_server_name(bad),
                    Err(CaError::InvalidSubjectAltName { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }
}

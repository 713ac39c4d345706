//! The TLS side of the transport: rustls configs for both ends, built on
//! the *ring* provider, TLS 1.3 only (QUIC allows nothing else), ALPN
//! [`ALPN`].
//!
//! Server side:
//! - [`SwappableCert`] serves the current certificate chain and key, and
//!   [`Transport::set_server_identity`](keygate_sdk::Transport::set_server_identity)
//!   swaps it for the handshakes that follow.
//! - [`HostCheckedClientVerifier`] wraps rustls' `WebPkiClientVerifier`
//!   (client certificates optional unless required): a chain that is
//!   presented must verify against the client CA roots *and* pass the
//!   host's check ([`TransportHost::verify_client`]: revocation) before the
//!   handshake completes. A chain the roots refuse (another CA, expired)
//!   is still shown to the host, whose answer cannot let it in, so the
//!   host sees every refusal by its cause (Keygate counts them in its
//!   metrics); the client gets the roots' alert (`unknown_ca`, ...).
//! - Session resumption is off (no tickets, no session cache): every
//!   connection runs a full handshake, so the host's check runs on every
//!   connection and a certificate revoked since an earlier connection
//!   cannot come back in on a resumed session.
//!
//! Client side, one verifier per [`ServerTrust`]:
//! - `Roots`: rustls' webpki verifier (chain and server name);
//! - `PinnedCaSha256`: [`CustomServerVerifier`], the last certificate of the
//!   chain must hash to the pin and the leaf must verify, with the server
//!   name, against that certificate as the only root;
//! - `ChannelBoundLater`: [`CustomServerVerifier`] too, taking any certificate
//!   (the handshake signature is still checked against it). For PIN pairing
//!   only, where the caller binds the exported keying material into its
//!   proof.

use std::fmt;
use std::sync::{Arc, RwLock};

use keygate_sdk::{PluginContext, PluginError, ServerTrust, TlsIdentity, TransportHost};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

/// The ALPN protocol both ends must offer.
pub const ALPN: &[u8] = b"keygate/1";

/// The crypto provider of every config here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn chain_der(chain: &[Vec<u8>]) -> Vec<CertificateDer<'static>> {
    chain
        .iter()
        .map(|c| CertificateDer::from(c.clone()))
        .collect()
}

/// Loads an identity into the form rustls serves.
///
/// # Errors
/// [`ErrorKind::Invalid`](keygate_sdk::ErrorKind::Invalid) for an empty
/// chain, a key rustls cannot load, or a key that does not match the leaf.
pub fn certified_key(identity: &TlsIdentity) -> Result<Arc<CertifiedKey>, PluginError> {
    if identity.cert_chain.is_empty() {
        return Err(PluginError::invalid("identity: empty certificate chain"));
    }
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.private_key_der.clone()));
    CertifiedKey::from_der(chain_der(&identity.cert_chain), key, &provider())
        .map(Arc::new)
        .map_err(|e| PluginError::invalid(format!("identity: {e}")))
}

/// The server's certificate, replaceable while the server runs.
#[derive(Debug)]
pub struct SwappableCert(RwLock<Arc<CertifiedKey>>);

impl SwappableCert {
    /// Serves `key` until [`swap`](Self::swap).
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self(RwLock::new(key))
    }

    /// Serves `key` from the next handshake on.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// rustls' webpki client verifier, then the host's check. See the
/// [module docs](self).
pub struct HostCheckedClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    host: TransportHost,
    log: PluginContext,
}

impl fmt::Debug for HostCheckedClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostCheckedClientVerifier")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl HostCheckedClientVerifier {
    /// Verifies client chains against `roots`, then with `host`; clients
    /// without a certificate get in unless `required`. A refusal by the
    /// host is logged through `log` (the client only sees a
    /// `certificate_revoked` alert).
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](keygate_sdk::ErrorKind::Invalid) for a root
    /// that does not parse, or no roots at all.
    pub fn new(
        roots: &[Vec<u8>],
        required: bool,
        host: TransportHost,
        log: PluginContext,
    ) -> Result<Self, PluginError> {
        let mut store = RootCertStore::empty();
        for (i, root) in roots.iter().enumerate() {
            store
                .add(CertificateDer::from(root.clone()))
                .map_err(|e| PluginError::invalid(format!("client CA root {i}: {e}")))?;
        }
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider());
        let builder = if required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let inner = builder
            .build()
            .map_err(|e| PluginError::invalid(format!("client CA roots: {e}")))?;
        Ok(Self { inner, host, log })
    }
}

impl ClientCertVerifier for HostCheckedClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref().to_vec())
            .collect();
        let verified = match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(verified) => verified,
            Err(error) => {
                // Refused here whatever the host says; the host is still
                // asked, so it sees (and counts) every refused chain by its
                // cause. The client gets this check's alert.
                let _ = self.host.verify_client(&chain);
                return Err(error);
            }
        };
        match self.host.verify_client(&chain) {
            Ok(()) => Ok(verified),
            Err(refusal) => {
                self.log.info(&format!(
                    "client certificate refused by the host: {}",
                    refusal.message()
                ));
                Err(Error::InvalidCertificate(CertificateError::Revoked))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

/// The rustls server config of a listener.
///
/// # Errors
/// [`ErrorKind::Invalid`](keygate_sdk::ErrorKind::Invalid) for bad roots.
pub fn server_config(
    verifier: HostCheckedClientVerifier,
    cert: Arc<SwappableCert>,
) -> Result<rustls::ServerConfig, PluginError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| PluginError::internal(format!("TLS 1.3: {e}")))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![ALPN.to_vec()];
    // No resumption: every connection is a full handshake, so the host's
    // check runs every time (see the module docs).
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.max_early_data_size = 0;
    Ok(config)
}

/// The rustls client config of one outbound connection.
///
/// # Errors
/// [`ErrorKind::Invalid`](keygate_sdk::ErrorKind::Invalid) for bad roots
/// or a bad client identity.
pub fn client_config(
    trust: &ServerTrust,
    identity: Option<&TlsIdentity>,
) -> Result<rustls::ClientConfig, PluginError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| PluginError::internal(format!("TLS 1.3: {e}")))?;
    let builder =
        match trust {
            ServerTrust::Roots(roots) => {
                let mut store = RootCertStore::empty();
                for (i, root) in roots.iter().enumerate() {
                    store
                        .add(CertificateDer::from(root.clone()))
                        .map_err(|e| PluginError::invalid(format!("server root {i}: {e}")))?;
                }
                builder.with_root_certificates(store)
            }
            ServerTrust::PinnedCaSha256(pin) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CustomServerVerifier {
                    check: ServerCheck::PinnedCa(*pin),
                    provider,
                })),
            ServerTrust::ChannelBoundLater => {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(CustomServerVerifier {
                        check: ServerCheck::Any,
                        provider,
                    }))
            }
        };
    let mut config = match identity {
        Some(identity) => {
            let key = certified_key(identity)?;
            builder
                .with_client_auth_cert(
                    key.cert.clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                        identity.private_key_der.clone(),
                    )),
                )
                .map_err(|e| PluginError::invalid(format!("client identity: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

fn algorithms(provider: &CryptoProvider) -> &WebPkiSupportedAlgorithms {
    &provider.signature_verification_algorithms
}

/// The server chain's last certificate must hash to the pin.
struct PinMismatch;

// rustls shows the cause of a certificate error with `Debug`.
impl fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("server CA does not match the pinned SHA-256 fingerprint")
    }
}

impl std::error::Error for PinMismatch {}

/// What a [`CustomServerVerifier`] accepts.
#[derive(Debug, Clone, Copy)]
pub enum ServerCheck {
    /// `ServerTrust::PinnedCaSha256`: the chain's last certificate hashes
    /// to this, and the leaf verifies against it with the server name.
    PinnedCa([u8; 32]),
    /// `ServerTrust::ChannelBoundLater`: any certificate, for PIN pairing
    /// only (the handshake signature is still checked against it).
    Any,
}

/// The client's verifier for the trusts rustls has none for. See the
/// [module docs](self).
#[derive(Debug)]
pub struct CustomServerVerifier {
    check: ServerCheck,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CustomServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let pin = match self.check {
            ServerCheck::Any => return Ok(ServerCertVerified::assertion()),
            ServerCheck::PinnedCa(pin) => pin,
        };
        let mismatch = || {
            Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(PinMismatch))))
        };
        let (ca, between) = intermediates.split_last().ok_or_else(mismatch)?;
        let digest: [u8; 32] = Sha256::digest(ca.as_ref()).into();
        if digest != pin {
            return Err(mismatch());
        }
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| Error::General(format!("pinned CA: {e}")))?;
        webpki.verify_server_cert(end_entity, between, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms(&self.provider))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms(&self.provider))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms(&self.provider).supported_schemes()
    }
}

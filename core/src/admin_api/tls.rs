//! HTTPS for the admin API (`[admin] tls`): a server certificate from the
//! gateway's CA, re-issued at two thirds of its life without a restart,
//! or a chain and key the operator configured. TLS 1.2 and 1.3 with
//! rustls' safe defaults (ring), HTTP/1.1 only.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::AdminTls;
use crate::gateway::server_cert::{self, ServerCert};
use crate::pairing::GatewayAddr;
use crate::state::IdentityManager;

/// Why HTTPS cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A configured file cannot be read or holds no usable PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// The CA would not issue the certificate.
    #[error("cannot issue the admin API's certificate: {0}")]
    Issue(String),
    /// rustls refused the chain or key.
    #[error("the admin API's certificate and key do not make a TLS server: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What the listener serves with, and how it renews.
pub(super) struct Tls {
    /// The live config (axum-server swaps it on renewal).
    pub config: RustlsConfig,
    /// For a CA-issued certificate: its names and schedule.
    pub renewal: Option<Renewal>,
}

/// A CA-issued certificate's names and when to replace it.
pub(super) struct Renewal {
    names: Vec<String>,
    validity: Duration,
    current: ServerCert,
}

/// The names a CA-issued certificate is issued for when `[admin] names`
/// is empty: the listen address, or the advertised hosts when it listens
/// on every address.
pub fn default_names(listen: SocketAddr, advertise: &[GatewayAddr]) -> Vec<String> {
    let ip = listen.ip();
    if ip.is_unspecified() {
        let mut names = server_cert::subject_alt_names(advertise);
        if names.is_empty() {
            names.push(match ip {
                IpAddr::V4(_) => "127.0.0.1".into(),
                IpAddr::V6(_) => "::1".into(),
            });
        }
        names
    } else {
        vec![ip.to_string()]
    }
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The chain and key of `[admin] tls_cert_file` / `tls_key_file`.
fn from_files(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(file_error(cert, "holds no CERTIFICATE block"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error(key, format!("no PEM private key: {e}")))?;
    server_config(chain, key_der)
}

/// A fresh certificate from the CA for `names`, valid `validity` from `now`.
fn issue(
    identity: &IdentityManager,
    names: &[String],
    validity: Duration,
    now: SystemTime,
) -> Result<(Arc<rustls::ServerConfig>, ServerCert), TlsSetupError> {
    let (tls, schedule) = server_cert::issue(identity.ca(), names, validity, now)
        .map_err(|e| TlsSetupError::Issue(e.to_string()))?;
    let chain = tls
        .cert_chain
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let key = PrivateKeyDer::try_from(tls.private_key_der)
        .map_err(|e| TlsSetupError::Issue(e.to_string()))?;
    Ok((server_config(chain, key)?, schedule))
}

/// The TLS the settings ask for, `None` for plain HTTP.
pub(super) fn setup(
    tls: &AdminTls,
    listen: SocketAddr,
    identity: &IdentityManager,
    advertise: &[GatewayAddr],
    validity: Duration,
) -> Result<Option<Tls>, TlsSetupError> {
    match tls {
        AdminTls::Off => Ok(None),
        AdminTls::Files { cert, key } => Ok(Some(Tls {
            config: RustlsConfig::from_config(from_files(cert, key)?),
            renewal: None,
        })),
        AdminTls::GatewayCa { names } => {
            let names = if names.is_empty() {
                default_names(listen, advertise)
            } else {
                names.clone()
            };
            let (config, current) = issue(identity, &names, validity, SystemTime::now())?;
            tracing::info!(
                fingerprint = %current.fingerprint,
                names = ?names,
                "admin API certificate issued by the gateway's CA"
            );
            Ok(Some(Tls {
                config: RustlsConfig::from_config(config),
                renewal: Some(Renewal {
                    names,
                    validity,
                    current,
                }),
            }))
        }
    }
}

/// Replaces a CA-issued certificate at two thirds of its life, for as
/// long as the runtime runs; a failed issue is retried a minute later
/// while the old certificate still serves.
pub(super) async fn renew(
    config: RustlsConfig,
    mut renewal: Renewal,
    identity: Arc<IdentityManager>,
) {
    loop {
        let wait = renewal
            .current
            .renew_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::time::sleep(wait).await;
        let (names, validity) = (renewal.names.clone(), renewal.validity);
        let id = identity.clone();
        let issued =
            tokio::task::spawn_blocking(move || issue(&id, &names, validity, SystemTime::now()))
                .await;
        match issued {
            Ok(Ok((fresh, schedule))) => {
                config.reload_from_config(fresh);
                tracing::info!(fingerprint = %schedule.fingerprint, "admin API certificate renewed");
                renewal.current = schedule;
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot renew the admin API certificate; retrying in a minute");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_the_listen_address_or_the_advertised_hosts() {
        let advertise: Vec<GatewayAddr> = ["gw.example.net", "192.0.2.7:9"]
            .iter()
            .map(|a| GatewayAddr::parse_with_default_port(a, Some(7443)).unwrap())
            .collect();
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            default_names(at("192.0.2.8:7800"), &advertise),
            vec!["192.0.2.8"]
        );
        assert_eq!(
            default_names(at("0.0.0.0:7800"), &advertise),
            vec!["gw.example.net", "192.0.2.7"]
        );
        assert_eq!(default_names(at("[::]:7800"), &[]), vec!["::1"]);
        assert_eq!(default_names(at("0.0.0.0:7800"), &[]), vec!["127.0.0.1"]);
    }

    #[test]
    fn a_ca_issued_certificate_is_replaced_at_two_thirds_of_its_life() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(keygate_store_memory::MemoryStore::new());
        let identity = Arc::new(
            IdentityManager::open(store, dir.path(), Default::default(), SystemTime::now())
                .unwrap(),
        );
        let tls = AdminTls::GatewayCa { names: vec![] };
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let validity = Duration::from_secs(3);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let set_up = setup(&tls, listen, &identity, &[], validity)
                .unwrap()
                .unwrap();
            let renewal = set_up.renewal.unwrap();
            let first = renewal.current.clone();
            let config = set_up.config.clone();
            let before = config.get_inner();
            tokio::spawn(renew(set_up.config, renewal, identity.clone()));
            // Renewal is due 2 s after issue: not at 1 s, done by 3 s.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            assert!(Arc::ptr_eq(&before, &config.get_inner()), "renewed early");
            tokio::time::sleep(Duration::from_millis(2000)).await;
            assert!(!Arc::ptr_eq(&before, &config.get_inner()), "not renewed");
            assert!(first.renew_at <= SystemTime::now());
        });
    }

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let err = from_files(&cert, &key).unwrap_err().to_string();
        assert!(err.starts_with(&cert.display().to_string()), "{err}");
        std::fs::write(&cert, "not pem\n").unwrap();
        let err = from_files(&cert, &key).unwrap_err().to_string();
        assert!(err.contains("no CERTIFICATE"), "{err}");
    }
}

//! TLS to the database: rustls on the ring provider (as the rest of
//! Keygate), through `tokio-postgres-rustls`.
//!
//! With `sslmode=require`, `verify-ca` or `verify-full` the server's
//! certificate chain is verified against `ca_file` (every certificate in
//! the PEM file is trusted) or, without it, against the Mozilla roots
//! (`webpki-roots`), and its name against the URL's host. This is stricter
//! than libpq's `require`, which encrypts without verifying: a store that
//! holds sealed CA keys does not talk to a database it cannot identify.

use std::path::Path;
use std::sync::Arc;

use keygate_sdk::PluginError;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::invalid;
use crate::connect::TlsMode;

/// The roots to trust: every certificate of `ca_file`, or the Mozilla roots.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, PluginError> {
    let mut roots = RootCertStore::empty();
    let Some(path) = ca_file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            invalid(
                "ca_file",
                format_args!("cannot read PEM certificates from {}: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(invalid(
            "ca_file",
            format_args!("{} holds no PEM certificate", path.display()),
        ));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| {
            invalid(
                "ca_file",
                format_args!("a certificate in {} is not usable: {e}", path.display()),
            )
        })?;
    }
    Ok(roots)
}

/// The connector for `mode`. In plain mode the client config says
/// `sslmode=disable`, so the connector is never used: it exists so that
/// the pool has one connection type.
pub(crate) fn connector(
    mode: TlsMode,
    ca_file: Option<&Path>,
) -> Result<MakeRustlsConnect, PluginError> {
    let roots = match mode {
        TlsMode::Plain => RootCertStore::empty(),
        TlsMode::Verified => roots(ca_file)?,
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PluginError::internal(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

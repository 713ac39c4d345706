//! The certificates both paths use, made once per run with rcgen: an
//! Ed25519 CA, an Ed25519 server leaf for `127.0.0.1` and an Ed25519
//! client leaf, as in `tests/transport_quic.rs`.

use keygate_sdk::TlsIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};

/// The server's name in its certificate, and the address both paths use.
pub const SERVER_NAME: &str = "127.0.0.1";

/// A CA and the two leaves it signed.
pub struct Certs {
    /// The CA certificate (DER): the client roots and the server roots.
    pub ca: Vec<u8>,
    /// Server leaf and CA, with the leaf's key.
    pub server: TlsIdentity,
    /// Client leaf and CA, with the leaf's key.
    pub client: TlsIdentity,
}

impl Certs {
    /// A fresh CA and leaves.
    pub fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Keygate bench CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&key).expect("CA").der().to_vec();
        let issuer = Issuer::new(params, key);
        let leaf = |name: &str, usage| {
            let key = KeyPair::generate_for(&PKCS_ED25519).expect("leaf key");
            let mut params = CertificateParams::new(vec![name.to_owned()]).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("leaf");
            TlsIdentity {
                cert_chain: vec![cert.der().to_vec(), ca.clone()],
                private_key_der: key.serialize_der(),
            }
        };
        let server = leaf(SERVER_NAME, ExtendedKeyUsagePurpose::ServerAuth);
        let client = leaf("device", ExtendedKeyUsagePurpose::ClientAuth);
        Self { ca, server, client }
    }
}

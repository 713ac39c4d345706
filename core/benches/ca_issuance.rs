//! Client certificate issuance: `CertificateAuthority::issue_client` against
//! a bare rcgen loop doing the same work (same parameters, same CA key and
//! name, a fresh random serial each time), in the same run.
//!
//! `cargo bench -p keygate-core --bench ca_issuance`
//!
//! After criterion's figures, prints issuances per second of both and the
//! ratio keygate / bare (target ≥ 90 %), measured in interleaved rounds so
//! machine noise moves both sides alike.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, Throughput};
use keygate_core::ca::{CertificateAuthority, DEFAULT_CA_VALIDITY, DEFAULT_CLIENT_VALIDITY};
use keygate_core::identity::{DeviceId, DeviceKey, DevicePublicKey};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
    string::Ia5String,
};
use time::OffsetDateTime;

struct RawKey([u8; 32]);

impl PublicKeyData for RawKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ED25519
    }
}

struct Setup {
    ca: CertificateAuthority,
    bare_issuer: Issuer<'static, KeyPair>,
    public: DevicePublicKey,
    id: DeviceId,
    now: SystemTime,
}

fn setup() -> Setup {
    let now = SystemTime::now();
    let ca =
        CertificateAuthority::generate("Keygate bench CA", DEFAULT_CA_VALIDITY, now).expect("CA");
    let (cert_pem, key_pem) = ca.to_pem();
    let bare_issuer =
        Issuer::from_ca_cert_pem(&cert_pem, KeyPair::from_pem(&key_pem).expect("key"))
            .expect("issuer");
    let device = DeviceKey::generate(&mut rand::rng());
    Setup {
        ca,
        bare_issuer,
        public: device.public_key(),
        id: device.device_id(),
        now,
    }
}

fn keygate_issue(s: &Setup) -> usize {
    let issued =
        s.ca.issue_client(&s.public, &s.id, DEFAULT_CLIENT_VALIDITY, s.now)
            .expect("issue");
    issued.der.len()
}

/// What issuing a client certificate costs in rcgen alone: the same
/// parameters `issue_client` builds, signed by an issuer for the same CA.
fn bare_issue(s: &Setup) -> usize {
    let mut serial = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut serial);
    serial[0] = (serial[0] & 0x3f) | 0x40;
    let now = OffsetDateTime::from(s.now);
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let id_text = s.id.to_string();
    params
        .distinguished_name
        .push(DnType::CommonName, id_text.as_str());
    params.subject_alt_names = vec![SanType::URI(
        Ia5String::try_from(format!("keygate://device/{id_text}")).expect("uri"),
    )];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = now - Duration::from_secs(300);
    params.not_after = now + DEFAULT_CLIENT_VALIDITY;
    let cert = params
        .signed_by(&RawKey(*s.public.as_bytes()), &s.bare_issuer)
        .expect("sign");
    cert.der().len()
}

fn criterion_benches(c: &mut Criterion, s: &Setup) {
    let mut group = c.benchmark_group("ca_issuance");
    group.throughput(Throughput::Elements(1));
    group.bench_function("keygate_issue_client", |b| {
        b.iter(|| black_box(keygate_issue(black_box(s))))
    });
    group.bench_function("bare_rcgen", |b| {
        b.iter(|| black_box(bare_issue(black_box(s))))
    });
    group.finish();
}

/// Best-of-`rounds` rates of keygate and bare issuance, interleaved, in
/// issuances/s.
fn interleaved_rates(s: &Setup, per_round: u32, rounds: u32) -> (f64, f64) {
    let mut best_keygate = Duration::MAX;
    let mut best_bare = Duration::MAX;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round {
            black_box(keygate_issue(s));
        }
        best_keygate = best_keygate.min(start.elapsed());
        let start = Instant::now();
        for _ in 0..per_round {
            black_box(bare_issue(s));
        }
        best_bare = best_bare.min(start.elapsed());
    }
    let rate = |d: Duration| f64::from(per_round) / d.as_secs_f64();
    (rate(best_keygate), rate(best_bare))
}

fn main() {
    let s = setup();
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c, &s);
    c.final_summary();

    // `cargo test --benches` runs this binary without `--bench`: criterion
    // then only smoke-tests each function, and so do we.
    if !std::env::args().any(|a| a == "--bench") {
        let (keygate, bare) = interleaved_rates(&s, 10, 1);
        println!("ca_issuance: smoke test only ({keygate:.0}/s vs {bare:.0}/s, not a measurement)");
        return;
    }
    let (per_round, rounds) = (500, 41);
    let (keygate, bare) = interleaved_rates(&s, per_round, rounds);
    println!(
        "ca_issuance: keygate issue_client {keygate:.0}/s ({:.1} µs), bare rcgen {bare:.0}/s ({:.1} µs), \
         ratio {:.1} % (target >= 90 %), best of {rounds} interleaved rounds of {per_round}",
        1e6 / keygate,
        1e6 / bare,
        100.0 * keygate / bare
    );
}

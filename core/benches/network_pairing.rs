//! Complete pairings per second over the network, against bare mTLS
//! handshakes per second in the same run.
//!
//! `cargo bench -p keygate-core --bench network_pairing` (`-- --pairings N
//! --in-flight N`)
//!
//! One process, both ends on this machine: a [`Gateway`] on the built-in
//! `quic` transport listening on 127.0.0.1, the durable filesystem store,
//! the `pin-qr` policy with `auto_approve = true`; devices on one client
//! transport (as a load generator would be), each pairing a QR code over
//! its own connection: connect pinning the CA, hello, challenge,
//! confirmation, request filed and approved, certificate issued and
//! checked, connection closed. Codes are minted and device keys made
//! before the clock starts.
//!
//! The baseline: full mTLS handshakes (a device certificate, checked by
//! the gateway's handshake check), connect and close, through the same two
//! transports, with as many in flight.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use keygate_approval_pin_qr::{PinQrConfig, PinQrPolicy};
use keygate_core::device::DeviceIdentity;
use keygate_core::device::link::{Link, connect_params};
use keygate_core::device::pairing::{DevicePairing, PairingCode, Progress};
use keygate_core::gateway::{Gateway, GatewayOptions};
use keygate_core::identity::DeviceKey;
use keygate_core::pairing::gateway::{PairingService, PolicySlot, ServiceSettings};
use keygate_core::pairing::{GatewayAddr, PairingUri};
use keygate_core::state::pairing::Method;
use keygate_core::state::{IdentityManager, IdentitySettings, StateStore};
use keygate_proto::Binding;
use keygate_sdk::{ServerTrust, StorePlugin, TlsIdentity, Transport};
use keygate_store_fs::FsStore;
use keygate_transport_quic::QuicTransport;
use zeroize::Zeroizing;

const HOUR: Duration = Duration::from_secs(3600);

fn transport(dir: &Path, label: &str) -> Arc<dyn Transport> {
    let ctx = keygate_sdk_testing::test_context(label, dir);
    Arc::new(QuicTransport::new(Default::default(), ctx).expect("quic transport"))
}

fn mint(manager: &IdentityManager, addr: &str, n: usize) -> Vec<Zeroizing<String>> {
    (0..n)
        .map(|_| {
            let mut token = Zeroizing::new([0u8; 16]);
            rand::Rng::fill_bytes(&mut rand::rng(), &mut *token);
            let session = manager
                .create_pairing_session(
                    Method::Qr,
                    Zeroizing::new(hex::encode(*token)),
                    HOUR,
                    5,
                    SystemTime::now(),
                    &keygate_core::state::Actor::cli(),
                )
                .expect("mint");
            let mut session_id = [0u8; 16];
            hex::decode_to_slice(&session.id, &mut session_id).expect("session id");
            PairingUri {
                gateways: vec![GatewayAddr::parse(addr).expect("address")],
                ca_fingerprint: *manager.ca().fingerprint().as_bytes(),
                session_id,
                token,
            }
            .to_uri()
        })
        .collect()
}

/// One QR pairing over its own connection; panics unless it ends paired.
fn pair(client: &Arc<dyn Transport>, addr: &str, ca: [u8; 32], uri: &str, dev: &DeviceIdentity) {
    let params = connect_params(addr, ServerTrust::PinnedCaSha256(ca), None).expect("params");
    let link = Link::connect(client.clone(), params).expect("connect");
    let binding = Binding {
        ca_fingerprint: link.ca_fingerprint(),
        channel_binding: link.channel_binding(),
    };
    let code = PairingCode::parse(uri).expect("code");
    let (mut pairing, hello) =
        DevicePairing::start(&mut rand::rng(), dev, &code, "bench", &[], vec![], binding)
            .expect("hello");
    let exchange = link.exchange().expect("stream");
    exchange.send(&hello).expect("send");
    loop {
        let answer = exchange.recv(Duration::from_secs(60)).expect("answer");
        match pairing.on_message(&answer).expect("pairing step") {
            Progress::Send(next) => exchange.send(&next).expect("send"),
            Progress::Accepted { .. } => {}
            Progress::Paired(_) => break,
            Progress::Waiting { .. } => panic!("auto-approve left the request waiting"),
        }
    }
    link.close(0, "paired");
}

/// Runs `job(i)` for i in 0..n on `threads` threads; the wall time.
fn run(n: usize, threads: usize, job: impl Fn(usize) + Sync) -> Duration {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    job(i);
                }
            });
        }
    });
    start.elapsed()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let pairings = arg("--pairings", 2000);
    let in_flight = arg("--in-flight", 64);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(
        FsStore::from_config(
            "",
            keygate_sdk_testing::test_context("store(filesystem)", dir.path()),
        )
        .expect("store"),
    );
    let settings = IdentitySettings {
        lock_timeout: Duration::from_secs(120),
        ..IdentitySettings::default()
    };
    // The store's batch capability, as the plugin host finds it: a commit
    // is one batch and one sync, so concurrent pairings share syncs.
    let identity = Arc::new(
        IdentityManager::open(
            StateStore::batched(store),
            dir.path(),
            settings,
            SystemTime::now(),
        )
        .unwrap(),
    );
    let policy = PolicySlot {
        name: "pin-qr".into(),
        policy: Arc::new(PinQrPolicy::new(PinQrConfig { auto_approve: true })),
    };
    let service = PairingService::new(identity.clone(), Some(policy), ServiceSettings::default());
    let options = GatewayOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: vec![GatewayAddr::parse("127.0.0.1:7443").unwrap()],
        max_frame_len: 1 << 20,
        heartbeat: Duration::from_secs(15),
        invoke_timeout: Duration::from_secs(30),
        server_validity: HOUR,
        node_rpc_opt_out: false,
        workers: keygate_core::gateway::DEFAULT_WORKERS,
        metrics: Default::default(),
    };
    let gateway = Gateway::start(
        identity.clone(),
        service,
        transport(dir.path(), "transport(quic)"),
        options,
    )
    .expect("gateway");
    let addr = gateway.local_addr().to_string();
    let ca = *identity.ca().fingerprint().as_bytes();
    let client = transport(dir.path(), "client(quic)");

    // Setup, off the clock: codes, device keys, one enrolled device.
    let uris = mint(&identity, &addr, pairings);
    let devices: Vec<DeviceIdentity> = (0..pairings)
        .map(|_| {
            let d = DeviceIdentity::new(Arc::new(keygate_store_memory::MemoryStore::new()));
            d.key().expect("key");
            d
        })
        .collect();
    let key = DeviceKey::from_seed(&[7; 32]);
    let enrolled = identity
        .enroll(
            &key.public_key(),
            "bench",
            &[],
            SystemTime::now(),
            &keygate_core::state::Actor::cli(),
        )
        .expect("enrol");
    let tls = TlsIdentity {
        cert_chain: vec![
            enrolled.certificate.der.clone(),
            identity.ca().certificate_der().to_vec(),
        ],
        private_key_der: key.to_pkcs8_der().expect("pkcs8").to_vec(),
    };
    let roots = vec![identity.ca().certificate_der().to_vec()];

    println!(
        "network pairing: {pairings} QR pairings and as many mTLS handshakes in 3 alternating \
         rounds, {in_flight} in flight"
    );
    let mut rows = Vec::new();
    for round in 0..3 {
        let start = round * pairings / 3;
        let end = (round + 1) * pairings / 3;
        let handshakes = run(end - start, in_flight, |_| {
            let params =
                connect_params(&addr, ServerTrust::Roots(roots.clone()), Some(tls.clone()))
                    .expect("params");
            let link = Link::connect(client.clone(), params).expect("mTLS handshake");
            link.close(0, "done");
        });
        let paired = run(end - start, in_flight, |i| {
            let i = start + i;
            pair(&client, &addr, ca, &uris[i], &devices[i]);
        });
        let hs = (end - start) as f64 / handshakes.as_secs_f64();
        let ps = (end - start) as f64 / paired.as_secs_f64();
        println!(
            "round {round}: mTLS handshakes {hs:>7.0}/s   complete pairings {ps:>6.0}/s   ratio {:.1} %",
            100.0 * ps / hs
        );
        rows.push((hs, ps));
    }
    let mut ratios: Vec<f64> = rows.iter().map(|(h, p)| p / h).collect();
    ratios.sort_by(f64::total_cmp);
    let mut paired: Vec<f64> = rows.iter().map(|(_, p)| *p).collect();
    paired.sort_by(f64::total_cmp);
    println!(
        "median: complete pairings {:.0}/s (target >= 500/s), {:.1} % of bare mTLS handshakes/s",
        paired[1],
        100.0 * ratios[1]
    );
    gateway.shutdown();
}

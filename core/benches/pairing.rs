//! Complete pairings per second at the state-machine level, and what one
//! costs against its primitives timed bare in the same run.
//!
//! `cargo bench -p keygate-core --bench pairing` (`-- cpu` or `-- durable`
//! for one part alone, e.g. under `perf record`)
//!
//! A pairing here is everything but the network: the device's QR or PIN
//! hello, the gateway's attempt, challenge, confirmation, request filed,
//! `pin-qr` policy with `auto_approve = true`, certificate issued, answer,
//! and the device checking and keeping its credentials. Codes are minted
//! and device keys made before the clock starts (operator's and device's
//! setup).
//!
//! 1. CPU: pairings on the in-memory store, against the sum of their
//!    primitives (the protocol run alone, which holds the PAKE or X25519,
//!    HKDF/HMAC and the Ed25519 signature and verification, plus one
//!    certificate issued), each the median of rounds run alternately.
//! 2. Durable: pairings on the filesystem store (every commit durable: one
//!    batch, one journal sync), one at a time and 64 in flight, against one
//!    bare durable 2 KiB write.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use keygate_approval_pin_qr::{PinQrConfig, PinQrPolicy};
use keygate_core::device::DeviceIdentity;
use keygate_core::device::pairing::{DevicePairing, PairingCode, Progress};
use keygate_core::identity::DeviceKey;
use keygate_core::pairing::gateway::{PairingService, PolicySlot, ServiceSettings};
use keygate_core::pairing::{GatewayAddr, PairingUri};
use keygate_core::state::pairing::Method;
use keygate_core::state::{IdentityManager, IdentitySettings, StateStore};
use keygate_proto::{Binding, DeviceInfo, DeviceQr, GatewayQr, Message};
use keygate_sdk::{SecretStore, StorePlugin};
use keygate_store_fs::FsStore;
use zeroize::Zeroizing;

const HOUR: Duration = Duration::from_secs(3600);

fn settings() -> IdentitySettings {
    IdentitySettings {
        lock_timeout: Duration::from_secs(120),
        ..IdentitySettings::default()
    }
}

fn fs_store(dir: &Path) -> Arc<FsStore> {
    Arc::new(
        FsStore::from_config(
            "",
            keygate_sdk_testing::test_context("store(filesystem)", dir),
        )
        .expect("store"),
    )
}

fn memory_store() -> Arc<dyn SecretStore> {
    Arc::new(keygate_store_memory::MemoryStore::new())
}

fn service(store: impl Into<StateStore>, dir: &Path) -> PairingService {
    let manager = IdentityManager::open(store, dir, settings(), SystemTime::now()).unwrap();
    let policy = PolicySlot {
        name: "pin-qr".into(),
        policy: Arc::new(PinQrPolicy::new(PinQrConfig { auto_approve: true })),
    };
    PairingService::new(Arc::new(manager), Some(policy), ServiceSettings::default())
}

/// Mints `n` QR codes; their URIs.
fn mint(manager: &IdentityManager, n: usize) -> Vec<Zeroizing<String>> {
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
                .unwrap();
            let mut session_id = [0u8; 16];
            hex::decode_to_slice(&session.id, &mut session_id).unwrap();
            PairingUri {
                gateways: vec![GatewayAddr::parse("127.0.0.1:7443").unwrap()],
                ca_fingerprint: *manager.ca().fingerprint().as_bytes(),
                session_id,
                token,
            }
            .to_uri()
        })
        .collect()
}

/// A device with its key made (a device's setup, not part of pairing).
fn device() -> DeviceIdentity {
    let dev = DeviceIdentity::new(memory_store());
    dev.key().unwrap();
    dev
}

/// One complete pairing of `dev` with `uri`; panics unless it ends paired.
fn pair(service: &PairingService, ca: [u8; 32], uri: &str, n: u64, dev: &DeviceIdentity) {
    let cb = [(n % 251) as u8; 32];
    let binding = Binding {
        ca_fingerprint: ca,
        channel_binding: cb,
    };
    let code = PairingCode::parse(uri).unwrap();
    let (mut pairing, hello) =
        DevicePairing::start(&mut rand::rng(), dev, &code, "bench", &[], vec![], binding).unwrap();
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000 + (n % 20_000) as u16));
    let mut conv = service.conversation(peer, cb);
    let mut next = Some(hello);
    while let Some(bytes) = next.take() {
        for reply in conv.on_message(&mut rand::rng(), &bytes, SystemTime::now()) {
            match pairing.on_message(&reply).unwrap() {
                Progress::Send(b) => next = Some(b),
                Progress::Accepted { .. } => {}
                Progress::Paired(_) => return,
                Progress::Waiting { .. } => panic!("auto_approve left a request pending"),
            }
        }
    }
    panic!("no answer");
}

/// The protocol run alone (QR: X25519, HKDF, HMACs, Ed25519 sign and
/// verify), no state.
fn protocol_only(key: &DeviceKey, ca: [u8; 32]) {
    let binding = Binding {
        ca_fingerprint: ca,
        channel_binding: [1; 32],
    };
    let info = DeviceInfo {
        device_id: key.device_id().to_string(),
        name: "bench".into(),
        capabilities: vec![],
    };
    let signing = ed25519_dalek::SigningKey::from_bytes(&key.seed());
    let token = [7u8; 16];
    let (sent, hello) = DeviceQr::start(
        &mut rand::rng(),
        &signing,
        info,
        &"ab".repeat(16),
        token,
        ca,
        binding,
    )
    .unwrap();
    let Message::QrHello(h) = Message::decode(&hello.encode()).unwrap() else {
        unreachable!()
    };
    let (challenged, challenge) =
        GatewayQr::challenge(&mut rand::rng(), &h, &token, binding).unwrap();
    let (confirmed, confirm) = sent
        .on_challenge(Message::decode(&challenge.encode()).unwrap())
        .unwrap();
    let verified = challenged
        .on_confirm(Message::decode(&confirm.encode()).unwrap())
        .unwrap();
    confirmed
        .on_accepted(Message::decode(&verified.reply.encode()).unwrap())
        .unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per operation of `f` run `n` times.
fn per_op(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn main() {
    // `KEYGATE_BENCH_DIR` puts the stores elsewhere (another filesystem).
    let dir = std::env::var("KEYGATE_BENCH_DIR");
    let tmp = dir.as_deref().unwrap_or(env!("CARGO_TARGET_TMPDIR"));

    if !std::env::args().any(|a| a == "durable") {
        cpu(tmp);
    }
    if std::env::args().any(|a| a == "cpu") {
        return;
    }
    durable(tmp);
}

/// Part 1: CPU, on the memory store, against the primitives.
fn cpu(tmp: &str) {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let mem = service(memory_store(), dir.path());
    let manager =
        IdentityManager::open(memory_store(), dir.path(), settings(), SystemTime::now()).unwrap();
    let ca = *manager.ca().fingerprint().as_bytes();
    let key = DeviceKey::generate(&mut rand::rng());
    let mem_ca = ca_of(&mem);
    // One pairing first, so lazily made state is not in the first round.
    pair(&mem, mem_ca, &mint(mem.identity(), 1)[0], 0, &device());
    let (rounds, per_round) = (15, 40);
    let (mut pairing_t, mut protocol_t, mut issue_t) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let uris = mint(mem.identity(), per_round);
        let devices: Vec<DeviceIdentity> = (0..per_round).map(|_| device()).collect();
        pairing_t.push(per_op(per_round, |i| {
            pair(
                &mem,
                mem_ca,
                &uris[i],
                (round * per_round + i) as u64,
                &devices[i],
            )
        }));
        protocol_t.push(per_op(per_round, |_| protocol_only(&key, ca)));
        issue_t.push(per_op(per_round, |_| {
            manager
                .ca()
                .issue_client(
                    &key.public_key(),
                    &key.device_id(),
                    Duration::from_secs(86_400),
                    SystemTime::now(),
                )
                .unwrap();
        }));
    }
    let (p, proto, issue) = (median(pairing_t), median(protocol_t), median(issue_t));
    println!("CPU (in-memory store, median of {rounds} rounds of {per_round}):");
    println!("  complete pairing              {:8.1} µs", p * 1e6);
    println!("  protocol run alone            {:8.1} µs", proto * 1e6);
    println!("  certificate issued            {:8.1} µs", issue * 1e6);
    println!(
        "  pairing / (protocol + issue)  {:8.2}",
        p / (proto + issue)
    );
}

/// Part 2: durable, on the filesystem store.
fn durable(tmp: &str) {
    let mut dir = tempfile::tempdir_in(tmp).unwrap();
    // `KEYGATE_BENCH_KEEP=1` leaves the store behind (and says where): on
    // ext4 without a journal, as on these machines, thousands of files
    // deleted at the end of one run make creating files slower for minutes,
    // so back-to-back runs would each measure the one before's cleanup.
    if std::env::var_os("KEYGATE_BENCH_KEEP").is_some() {
        dir.disable_cleanup(true);
        println!("store kept in {}", dir.path().display());
    }
    let store = fs_store(dir.path());
    let durable = service(StateStore::batched(store.clone()), dir.path());
    let dca = ca_of(&durable);
    let value = vec![0x5a; 2048];
    let write = per_op(50, |i| {
        let key = format!("bench/write-{i}");
        store.put(&key, &value, None).unwrap();
    });
    let n1 = 100;
    let uris = mint(durable.identity(), n1);
    let devices: Vec<DeviceIdentity> = (0..n1).map(|_| device()).collect();
    let start = Instant::now();
    for (i, uri) in uris.iter().enumerate() {
        pair(&durable, dca, uri, i as u64, &devices[i]);
    }
    let one = start.elapsed().as_secs_f64() / n1 as f64;

    let (flights, each) = (64, 16);
    let uris = mint(durable.identity(), flights * each);
    let devices: Vec<DeviceIdentity> = (0..flights * each).map(|_| device()).collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..flights {
            let (durable, uris, devices) = (&durable, &uris, &devices);
            s.spawn(move || {
                for i in 0..each {
                    let n = t * each + i;
                    pair(durable, dca, &uris[n], n as u64, &devices[n]);
                }
            });
        }
    });
    let many = start.elapsed().as_secs_f64() / (flights * each) as f64;
    println!("durable (filesystem store, every commit synced):");
    println!("  one bare durable 2 KiB write  {:8.2} ms", write * 1e3);
    println!(
        "  1 in flight                   {:8.1} pairings/s  ({:.2} ms each, {:.1} durable writes' worth)",
        1.0 / one,
        one * 1e3,
        one / write
    );
    println!(
        "  {flights} in flight                  {:8.1} pairings/s",
        1.0 / many
    );
}

fn ca_of(s: &PairingService) -> [u8; 32] {
    *s.identity().ca().fingerprint().as_bytes()
}

//! Identity state at scale, in one run:
//! 1. revocation lookup with 1,000,000 revoked fingerprints (median ns per
//!    lookup), against a bare `HashSet` lookup of the same keys;
//! 2. durable mutation latency on the filesystem store with 1,000 and with
//!    100,000 enrolled devices (median of revocations and enrolments), and
//!    the ratio of the two;
//! 3. loading the state of 100,000 devices: a full scan of every record
//!    (first start), and from the index snapshot (every later start).
//!
//! The devices are written through the store's bench-only fast path (no
//! fsync) and flushed with `sync` before anything is measured; every
//! measured mutation is the real durable path.
//!
//! Run: `cargo bench -p keygate-core --bench identity_state`

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use keygate_core::identity::{CertFingerprint, DeviceId, DeviceKey};
use keygate_core::state::index::{CertBinding, CertState, FingerprintHasher};
use keygate_core::state::records::{CertRecord, DeviceRecord, cert_key, device_key};
use keygate_core::state::{IdentityManager, IdentitySettings, RevocationIndex};
use keygate_sdk::{SecretStore, StorePlugin};
use keygate_store_fs::FsStore;
use sha2::{Digest, Sha256};

fn fingerprint(tag: &str, i: u64) -> CertFingerprint {
    CertFingerprint::from_bytes(
        Sha256::new()
            .chain_update(tag)
            .chain_update(i.to_le_bytes())
            .finalize()
            .into(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn lookups() {
    const N: u64 = 1_000_000;
    let devices: Vec<DeviceId> = (0..1000u64)
        .map(|i| {
            DeviceKey::from_seed(&[
                i as u8,
                (i >> 8) as u8,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
                7,
            ])
            .device_id()
        })
        .collect();
    let mut index = RevocationIndex::new();
    index.reserve(N as usize);
    let mut bare = HashSet::with_capacity(N as usize);
    let mut plain: HashSet<[u8; 32], BuildHasherDefault<FingerprintHasher>> =
        HashSet::with_capacity_and_hasher(N as usize, Default::default());
    for i in 0..N {
        let fp = fingerprint("revoked", i);
        index.set_cert(
            &fp,
            Some(CertBinding {
                device: Some(devices[(i % 1000) as usize]),
                state: CertState::Revoked,
                not_after: u64::MAX,
            }),
        );
        bare.insert(*fp.as_bytes());
        plain.insert(*fp.as_bytes());
    }
    // Probe keys in a scrambled order, so lookups miss the cache as they
    // would in a gateway.
    let probes: Vec<CertFingerprint> = (0..100_000u64)
        .map(|i| fingerprint("revoked", (i * 7_919) % N))
        .collect();
    let unknown: Vec<CertFingerprint> =
        (0..100_000u64).map(|i| fingerprint("unknown", i)).collect();
    let time = |f: &dyn Fn(&CertFingerprint) -> bool, keys: &[CertFingerprint]| -> f64 {
        let mut per_batch = Vec::new();
        for _ in 0..5 {
            for chunk in keys.chunks(1000) {
                let start = Instant::now();
                for fp in chunk {
                    black_box(f(black_box(fp)));
                }
                per_batch.push(start.elapsed().as_nanos() as f64 / chunk.len() as f64);
            }
        }
        median(per_batch)
    };
    let ours = time(
        &|fp| {
            matches!(
                index.status(fp),
                keygate_core::state::CertStatus::CertificateRevoked(_)
            )
        },
        &probes,
    );
    let base = time(&|fp| bare.contains(fp.as_bytes()), &probes);
    let floor = time(&|fp| plain.contains(fp.as_bytes()), &probes);
    let miss = time(
        &|fp| {
            matches!(
                index.status(fp),
                keygate_core::state::CertStatus::CertificateRevoked(_)
            )
        },
        &unknown,
    );
    println!("revocation lookup, 1,000,000 revoked fingerprints:");
    println!("  index.status (revoked)  median {ours:6.1} ns");
    println!("  index.status (unknown)  median {miss:6.1} ns");
    println!(
        "  HashSet<[u8;32]>, SipHash   median {base:6.1} ns   (ours / this: {:.2})",
        ours / base
    );
    println!(
        "  HashSet<[u8;32]>, same hash median {floor:6.1} ns   (ours / this: {:.2})",
        ours / floor
    );
}

struct State {
    manager: IdentityManager,
    store: Arc<FsStore>,
    keys: Vec<DeviceKey>,
    dir: tempfile::TempDir,
}

fn settings() -> IdentitySettings {
    IdentitySettings {
        lock_timeout: Duration::from_secs(60),
        ..IdentitySettings::default()
    }
}

fn open_store(dir: &Path) -> Arc<FsStore> {
    Arc::new(
        FsStore::from_config(
            "",
            keygate_sdk_testing::test_context("store(filesystem)", dir),
        )
        .expect("store"),
    )
}

/// A state dir with `n` enrolled devices, one certificate each.
fn populated(n: u64) -> State {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = open_store(dir.path());
    let manager =
        IdentityManager::open(store.clone(), dir.path(), settings(), SystemTime::now()).unwrap();
    let started = Instant::now();
    let keys: Vec<DeviceKey> = (0..n)
        .map(|i| {
            let seed: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            DeviceKey::from_seed(&seed)
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (store, keys) = (&store, &keys);
            s.spawn(move || {
                for i in (t..n).step_by(2) {
                    let key = &keys[i as usize];
                    let id = key.device_id();
                    let device = DeviceRecord {
                        device_id: id,
                        public_key: key.public_key(),
                        name: format!("device-{i}"),
                        capabilities: vec!["shell".into()],
                        enrolled_at: 1_795_000_000,
                        revoked: None,
                    };
                    let fp = fingerprint("cert", i);
                    let cert = CertRecord {
                        fingerprint: fp,
                        device_id: id,
                        serial_hex: hex::encode(&fp.as_bytes()[..16]),
                        not_before: 1_795_000_000,
                        not_after: 1_795_086_400,
                        revoked: None,
                    };
                    store
                        .insert_unsynced_for_bench(
                            &device_key(&id),
                            &serde_json::to_vec(&device).unwrap(),
                        )
                        .unwrap();
                    store
                        .insert_unsynced_for_bench(
                            &cert_key(&fp),
                            &serde_json::to_vec(&cert).unwrap(),
                        )
                        .unwrap();
                }
            });
        }
    });
    let _ = std::process::Command::new("sync").status();
    eprintln!(
        "populated {n} devices in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    State {
        manager,
        store,
        keys,
        dir,
    }
}

/// Median durable latency of revocations and enrolments, in ms.
fn mutations(state: &State, rounds: usize, offset: u64) -> (f64, f64) {
    let now = SystemTime::now();
    let mut revokes = Vec::new();
    for i in 0..rounds {
        let id = state.keys[i * 7 % state.keys.len()].device_id();
        let start = Instant::now();
        state
            .manager
            .revoke_device(&id, "bench", now, &keygate_core::state::Actor::cli())
            .unwrap();
        revokes.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let mut enrols = Vec::new();
    for i in 0..rounds as u64 {
        let seed: [u8; 32] = Sha256::new()
            .chain_update(b"new")
            .chain_update((offset + i).to_le_bytes())
            .finalize()
            .into();
        let key = DeviceKey::from_seed(&seed);
        let start = Instant::now();
        state
            .manager
            .enroll(
                &key.public_key(),
                "new",
                &[],
                now,
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
        enrols.push(start.elapsed().as_secs_f64() * 1e3);
    }
    (median(revokes), median(enrols))
}

fn main() {
    // `cargo bench -p keygate-core --bench identity_state -- lookups` runs
    // only the lookup part (cargo passes `--bench` too).
    lookups();
    if std::env::args().skip(1).any(|a| a == "lookups") {
        return;
    }

    let small = populated(1_000);
    let large = populated(100_000);
    // Interleave the two sizes so the disk's background load hits both.
    let mut small_r = Vec::new();
    let mut large_r = Vec::new();
    for round in 0..4u64 {
        small_r.push(mutations(&small, 50, round * 1000));
        large_r.push(mutations(&large, 50, round * 1000));
    }
    let avg =
        |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let (sr, se) = (avg(&small_r, |x| x.0), avg(&small_r, |x| x.1));
    let (lr, le) = (avg(&large_r, |x| x.0), avg(&large_r, |x| x.1));
    println!("durable mutation latency, filesystem store (median of 50, mean of 4 rounds):");
    println!(
        "  revoke device   1,000 devices {sr:6.2} ms   100,000 devices {lr:6.2} ms   ratio {:.2}",
        lr / sr
    );
    println!(
        "  enroll device   1,000 devices {se:6.2} ms   100,000 devices {le:6.2} ms   ratio {:.2}",
        le / se
    );

    // Loading the state of 100,000 devices.
    let _ = black_box(large.store.list("identity/index/").unwrap());
    let load = |what: &str| {
        let store = open_store(large.dir.path());
        let start = Instant::now();
        let manager =
            IdentityManager::open(store, large.dir.path(), settings(), SystemTime::now()).unwrap();
        manager.refresh().unwrap();
        let took = start.elapsed();
        println!("  {what:<28} {:6.3} s", took.as_secs_f64());
        manager
    };
    println!("loading the state of 100,000 devices (open + revocation index):");
    // The writer's own process has no snapshot yet: remove any, scan.
    if let Some(v) = large.store.get("identity/index/snapshot").unwrap() {
        large
            .store
            .delete("identity/index/snapshot", v.version)
            .unwrap();
    }
    let _ = std::process::Command::new("sync").status();
    load("full scan (first start)");
    load("from the snapshot");
    drop(small);
}

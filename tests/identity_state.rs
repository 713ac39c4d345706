//! Identity state under real processes and real files: crash consistency
//! under SIGKILL, many writers on one state dir, O(1) writes per mutation,
//! revocation semantics, and the watch API seeing other processes' changes.
//!
//! Child processes are this test binary run again with an environment
//! variable naming their job (`child_*` tests return at once otherwise).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use keygate_core::identity::{CertFingerprint, DeviceId, DeviceKey};
use keygate_core::state::{
    CertStatus, IdentityError, IdentityManager, IdentitySettings, RevokeOutcome,
};
use keygate_sdk::{PluginError, SecretStore, Version, Versioned};
use keygate_tests::{fs_config, open_identity};
use sha2::{Digest, Sha256};
// Link the built-in stores so their registrations are present.
use keygate_store_fs as _;
use keygate_store_memory as _;

const CHILD_ENV: &str = "KEYGATE_TEST_CHILD";

/// A device key unique to this process and counter.
fn device_key(tag: &str, n: u64) -> DeviceKey {
    let seed: [u8; 32] = Sha256::new()
        .chain_update(tag.as_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .chain_update(n.to_le_bytes())
        .chain_update(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
                .to_le_bytes(),
        )
        .finalize()
        .into();
    DeviceKey::from_seed(&seed)
}

fn child_command(test: &str, job: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, job);
    cmd
}

/// Child: enrols devices in a loop on the state of `$KEYGATE_TEST_CHILD`
/// (`loop:<config>` forever, `count:<n>:<config>` n times), printing
/// `committed <device_id> <fingerprint>` after each returns.
#[test]
fn child_enroller() {
    let Ok(job) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (limit, config) = if let Some(c) = job.strip_prefix("loop:") {
        (u64::MAX, c.to_owned())
    } else if let Some(rest) = job.strip_prefix("count:") {
        let (n, c) = rest.split_once(':').unwrap();
        (n.parse().unwrap(), c.to_owned())
    } else {
        return;
    };
    let (_host, manager) = open_identity(Path::new(&config));
    let mut out = std::io::stdout().lock();
    for n in 0..limit {
        let key = device_key("child", n);
        let enrolled = manager
            .enroll(
                &key.public_key(),
                &format!("d{n}"),
                &[],
                SystemTime::now(),
                &keygate_core::state::Actor::cli(),
            )
            .expect("enroll");
        writeln!(
            out,
            "committed {} {}",
            enrolled.device.device_id, enrolled.certificate.fingerprint
        )
        .unwrap();
        out.flush().unwrap();
    }
}

fn committed_lines(text: &str) -> Vec<(DeviceId, CertFingerprint)> {
    text.lines()
        // libtest may print its "test child_enroller ... " on the same line.
        .filter_map(|l| l.find("committed ").map(|at| &l[at + "committed ".len()..]))
        .filter_map(|rest| {
            let (d, f) = rest.split_once(' ')?;
            Some((
                DeviceId::parse(d).ok()?,
                CertFingerprint::parse(f.trim()).ok()?,
            ))
        })
        .collect()
}

/// A deterministic pseudo-random sequence for kill delays (xorshift).
struct Jitter(u64);
impl Jitter {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

#[test]
fn sigkill_at_random_moments_never_loses_a_committed_mutation() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    keygate_tests::build_artifacts();
    let dir = tempfile::tempdir().unwrap();
    let config = fs_config(dir.path());
    // Create the CA and key file first, so kills land in mutations.
    drop(open_identity(&config));
    let mut jitter = Jitter(0x9E37_79B9_7F4A_7C15);
    let mut committed: Vec<(DeviceId, CertFingerprint)> = Vec::new();
    for round in 0..50 {
        let mut child = child_command("child_enroller", &format!("loop:{}", config.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Wait for the child to be mutating, then kill it at a random moment.
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        loop {
            first.clear();
            assert!(
                reader.read_line(&mut first).unwrap() > 0,
                "round {round}: child exited early"
            );
            if first.contains("committed ") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(jitter.next_ms(1, 60)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        committed.extend(committed_lines(&first));
        committed.extend(committed_lines(&rest));

        // After every kill the state loads and holds every reported mutation.
        let (_host, manager) = open_identity(&config);
        manager
            .refresh()
            .unwrap_or_else(|e| panic!("round {round}: index does not load: {e}"));
        for (device, fp) in &committed {
            let record = manager
                .device(device)
                .unwrap()
                .unwrap_or_else(|| panic!("round {round}: device {device} lost"));
            assert_eq!(record.device_id, *device);
            assert_eq!(
                manager.certificate_status(fp),
                CertStatus::Valid(*device),
                "round {round}: cert {fp}"
            );
        }
        // Every record on disk decodes: no garbage from a torn write.
        let devices = manager
            .devices()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(devices.records.len() >= committed.len());
        manager
            .certificates()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert!(
        committed.len() >= 50,
        "only {} mutations committed in 50 rounds",
        committed.len()
    );
}

#[test]
fn four_processes_of_250_mutations_end_with_exactly_1000_records() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = fs_config(dir.path());
    drop(open_identity(&config));
    let children: Vec<_> = (0..4)
        .map(|_| {
            child_command("child_enroller", &format!("count:250:{}", config.display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut committed = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        committed.extend(committed_lines(&String::from_utf8_lossy(&out.stdout)));
    }
    assert_eq!(committed.len(), 1000);
    let (host, manager) = open_identity(&config);
    assert_eq!(manager.devices().unwrap().records.len(), 1000);
    assert_eq!(manager.certificates().unwrap().records.len(), 1000);
    // One change entry per mutation, numbered without gaps.
    let changes: Vec<String> = host
        .store
        .list("identity/changes/")
        .unwrap()
        .into_iter()
        .filter(|k| {
            k.rsplit('/')
                .next()
                .is_some_and(|s| s.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    assert_eq!(changes.len(), 1000);
    assert_eq!(
        changes.last().unwrap(),
        "identity/changes/00000000000000001000"
    );
    manager.refresh().unwrap();
    for (device, fp) in &committed {
        assert_eq!(manager.certificate_status(fp), CertStatus::Valid(*device));
    }
}

/// Counts the writes a store receives.
struct Counting<S> {
    inner: S,
    puts: AtomicUsize,
    deletes: AtomicUsize,
}

impl<S: SecretStore> SecretStore for Counting<S> {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        self.inner.get(key)
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(key, value, expected)
    }
    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key, expected)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        self.inner.list(prefix)
    }
}

#[test]
fn each_mutation_writes_a_constant_number_of_records_whatever_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Counting {
        inner: keygate_store_memory::MemoryStore::new(),
        puts: AtomicUsize::new(0),
        deletes: AtomicUsize::new(0),
    });
    let manager = IdentityManager::open(
        store.clone(),
        dir.path(),
        Default::default(),
        SystemTime::now(),
    )
    .unwrap();
    let mut per_enroll = Vec::new();
    let mut last = None;
    for n in 0..300 {
        let before = store.puts.load(Ordering::SeqCst);
        let e = manager
            .enroll(
                &device_key("o1", n).public_key(),
                "d",
                &[],
                SystemTime::now(),
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
        per_enroll.push(store.puts.load(Ordering::SeqCst) - before);
        last = Some(e);
    }
    // device record + certificate record + change entry + audit entry +
    // the audit head, at 1 device as at 300.
    assert!(per_enroll.iter().all(|n| *n == 5), "{per_enroll:?}");
    let before = store.puts.load(Ordering::SeqCst);
    manager
        .revoke_device(
            &last.unwrap().device.device_id,
            "lost",
            SystemTime::now(),
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    assert_eq!(
        store.puts.load(Ordering::SeqCst) - before,
        4,
        "device record + change entry + audit entry + audit head"
    );
    assert_eq!(store.deletes.load(Ordering::SeqCst), 0);
}

#[test]
fn revoked_device_never_enrolls_again_but_a_revoked_certificate_allows_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(keygate_store_memory::MemoryStore::new());
    let manager =
        IdentityManager::open(store, dir.path(), Default::default(), SystemTime::now()).unwrap();
    let now = SystemTime::now();

    let a = device_key("rv", 1);
    let first = manager
        .enroll(
            &a.public_key(),
            "a",
            &[],
            now,
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    let fp1 = first.certificate.fingerprint;
    match manager
        .revoke_certificate(&fp1, "key rotated", now, &keygate_core::state::Actor::cli())
        .unwrap()
    {
        RevokeOutcome::Revoked(r) => assert_eq!(r.reason, "key rotated"),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(manager.revoke_certificate(&fp1, "again", now, &keygate_core::state::Actor::cli()).unwrap(), RevokeOutcome::AlreadyRevoked(r) if r.reason == "key rotated")
    );
    let second = manager
        .issue_certificate(&first.device.device_id, now)
        .expect("device may get a new certificate");
    manager.refresh().unwrap();
    assert_eq!(
        manager.certificate_status(&fp1),
        CertStatus::CertificateRevoked(first.device.device_id)
    );
    assert_eq!(
        manager.certificate_status(&second.fingerprint),
        CertStatus::Valid(first.device.device_id)
    );

    let id = first.device.device_id;
    manager
        .revoke_device(&id, "stolen", now, &keygate_core::state::Actor::cli())
        .unwrap();
    manager.refresh().unwrap();
    assert_eq!(
        manager.certificate_status(&second.fingerprint),
        CertStatus::DeviceRevoked(id)
    );
    let err = manager
        .enroll(
            &a.public_key(),
            "a",
            &[],
            now,
            &keygate_core::state::Actor::cli(),
        )
        .unwrap_err();
    assert!(matches!(err, IdentityError::DeviceRevoked { .. }), "{err}");
    assert!(err.to_string().contains("stolen"), "{err}");
    let err = manager.issue_certificate(&id, now).unwrap_err();
    assert!(matches!(err, IdentityError::DeviceRevoked { .. }), "{err}");
    // Nothing was written for the refused requests.
    assert_eq!(manager.certificates().unwrap().records.len(), 2);

    let unknown = device_key("rv", 2).public_key().device_id();
    assert!(matches!(
        manager
            .revoke_device(&unknown, "", now, &keygate_core::state::Actor::cli())
            .unwrap_err(),
        IdentityError::UnknownDevice(_)
    ));
    assert_eq!(
        manager.certificate_status(&CertFingerprint::of_der(b"not ours")),
        CertStatus::Unknown
    );
}

#[test]
fn state_of_another_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(keygate_store_memory::MemoryStore::new());
    store.put("identity/schema", b"v2", None).unwrap();
    let err = IdentityManager::open(
        store.clone(),
        dir.path(),
        Default::default(),
        SystemTime::now(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "identity state has schema \"v2\", this keygate reads \"v1\": refusing to touch it"
    );
    assert!(
        store.get("identity/ca").unwrap().is_none(),
        "nothing written"
    );
}

#[test]
fn a_writer_idle_through_a_compaction_still_appends_after_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(keygate_store_memory::MemoryStore::new());
    let now = SystemTime::now();
    let settings = IdentitySettings {
        snapshot_interval: 8,
        change_retention: 8,
        ..Default::default()
    };
    let open = || IdentityManager::open(store.clone(), dir.path(), settings.clone(), now).unwrap();
    let (idle, busy, reader) = (open(), open(), open());
    idle.enroll(
        &device_key("idle", 0).public_key(),
        "i",
        &[],
        now,
        &keygate_core::state::Actor::cli(),
    )
    .unwrap();
    // Enough changes for a reader to snapshot and compact past the idle
    // writer's last known head.
    for n in 0..40 {
        busy.enroll(
            &device_key("busy", n).public_key(),
            "b",
            &[],
            now,
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    }
    reader.refresh().unwrap();
    let floor = store
        .get("identity/changes/floor")
        .unwrap()
        .expect("compacted");
    let floor: u64 = String::from_utf8(floor.value).unwrap().parse().unwrap();
    assert!(
        floor > 1,
        "the log was compacted past the idle writer's head (floor {floor})"
    );

    let late = idle
        .enroll(
            &device_key("idle", 1).public_key(),
            "i2",
            &[],
            now,
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    reader.refresh().unwrap();
    assert_eq!(
        reader.certificate_status(&late.certificate.fingerprint),
        CertStatus::Valid(late.device.device_id),
        "the reader missed a change appended below the head"
    );
}

//! Several gateways on one store: two `IdentityManager`s over the same
//! records, each with its own state lock (as on two hosts, where the lock
//! file excludes nothing), so only the store's compare-and-swap and the
//! change log keep them correct.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use keygate_sdk::{BatchOp, BatchStore, PluginError, SecretStore, Version, Versioned};
use keygate_store_memory::MemoryStore;

use super::audit::AuditVerdict;
use super::changelog::{CHANGES_PREFIX, FLOOR_KEY};
use super::manager::RACE_ATTEMPTS;
use super::records::device_key;
use super::{
    Actor, AuditAction, AuditEvent, IdentityError, IdentityManager, RevocationEvent, StateStore,
    Watcher,
};
use crate::identity::{DeviceId, DeviceKey};

type Hook = Box<dyn FnMut() + Send>;

/// The shared store as one gateway sees it, with a hook that runs another
/// gateway's mutation each time this one has read `key` (before the value
/// is returned): the moment between a plan's read and its commit.
struct Interleaved {
    inner: Arc<MemoryStore>,
    hook: Mutex<Option<(String, Hook)>>,
}

impl Interleaved {
    fn new(inner: Arc<MemoryStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            hook: Mutex::new(None),
        })
    }

    /// Runs `hook` whenever `key` is read, until disarmed.
    fn arm(&self, key: String, hook: impl FnMut() + Send + 'static) {
        *self.hook.lock().unwrap() = Some((key, Box::new(hook)));
    }

    fn disarm(&self) {
        *self.hook.lock().unwrap() = None;
    }
}

impl SecretStore for Interleaved {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        let read = self.inner.get(key);
        if let Some((armed, hook)) = &mut *self.hook.lock().unwrap()
            && armed == key
        {
            hook();
        }
        read
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        self.inner.put(key, value, expected)
    }
    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        self.inner.delete(key, expected)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        self.inner.list(prefix)
    }
}

impl BatchStore for Interleaved {
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
        self.inner.apply_batch(ops)
    }
}

fn gateway(store: Arc<dyn BatchStore>, lock_dir: &std::path::Path) -> IdentityManager {
    IdentityManager::open(
        StateStore::batched(store),
        lock_dir,
        Default::default(),
        SystemTime::now(),
    )
    .unwrap()
}

/// Two gateways on one memory store, locks in separate folders; A reads
/// through an [`Interleaved`] view.
fn two_gateways() -> (
    Arc<MemoryStore>,
    Arc<Interleaved>,
    IdentityManager,
    Arc<IdentityManager>,
    tempfile::TempDir,
) {
    let dirs = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let view = Interleaved::new(store.clone());
    let b = Arc::new(gateway(store.clone(), &dirs.path().join("b")));
    let a = gateway(view.clone(), &dirs.path().join("a"));
    (store, view, a, b, dirs)
}

fn enroll(m: &IdentityManager, seed: u8) -> DeviceId {
    let key = DeviceKey::from_seed(&[seed; 32]);
    m.enroll(
        &key.public_key(),
        "phone",
        &[],
        SystemTime::now(),
        &Actor::cli(),
    )
    .unwrap()
    .device
    .device_id
}

/// The change log's sequence numbers, checked gapless from the floor.
fn gapless_log(store: &MemoryStore) -> Vec<u64> {
    let seqs: Vec<u64> = store
        .list(CHANGES_PREFIX)
        .unwrap()
        .iter()
        .filter(|k| k.as_str() != FLOOR_KEY)
        .map(|k| k[CHANGES_PREFIX.len()..].parse().unwrap())
        .collect();
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a gap in the change log: {seqs:?}");
    }
    seqs
}

fn certificates_of(m: &IdentityManager, device: &DeviceId) -> usize {
    let all = m.certificates().unwrap().records;
    all.iter().filter(|c| c.device_id == *device).count()
}

#[test]
fn a_plan_overtaken_by_another_gateways_commit_is_planned_again_and_sees_it() {
    let (store, view, a, b, _dirs) = two_gateways();
    let device = enroll(&b, 1);
    let head_before = *gapless_log(&store).last().unwrap();
    // Gateway A reads the device (not revoked) to issue it a certificate;
    // before A commits, gateway B revokes it. A's commit must not land on
    // what it read: it is planned again, sees the revocation, refuses.
    let revoker = b.clone();
    let fired = Arc::new(Mutex::new(0));
    let count = fired.clone();
    view.arm(device_key(&device), move || {
        let mut n = count.lock().unwrap();
        if *n == 0 {
            revoker
                .revoke_device(&device, "lost", SystemTime::now(), &Actor::cli())
                .unwrap();
        }
        *n += 1;
    });
    let err = a.issue_certificate(&device, SystemTime::now()).unwrap_err();
    view.disarm();
    assert!(
        matches!(err, IdentityError::DeviceRevoked { device_id, .. } if device_id == device),
        "{err}"
    );
    assert_eq!(*fired.lock().unwrap(), 2, "A planned twice");
    assert_eq!(certificates_of(&a, &device), 1, "only the enrolment's");
    // B's revocation is the one entry written since.
    assert_eq!(*gapless_log(&store).last().unwrap(), head_before + 1);
}

#[test]
fn a_mutation_overtaken_every_time_gives_up_naming_the_key_and_writes_nothing() {
    let (store, view, a, b, _dirs) = two_gateways();
    let device = enroll(&b, 1);
    let other = enroll(&b, 2);
    let before = store.list("").unwrap();
    let writer = b.clone();
    view.arm(device_key(&device), move || {
        writer
            .record_audit(
                vec![AuditEvent::new(&Actor::cli(), AuditAction::CodeMinted, "x")],
                SystemTime::now(),
            )
            .unwrap();
    });
    let err = a.issue_certificate(&device, SystemTime::now()).unwrap_err();
    view.disarm();
    let IdentityError::Raced { key } = &err else {
        panic!("{err}");
    };
    assert!(key.starts_with("identity/"), "{key}");
    assert!(
        err.to_string()
            .contains(&format!("gave up after {RACE_ATTEMPTS} tries")),
        "{err}"
    );
    assert_eq!(certificates_of(&a, &device), 1, "A issued nothing");
    // Only B's audit entries (and their log entries) were added.
    let after = store.list("").unwrap();
    let added: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert!(
        added
            .iter()
            .all(|k| k.starts_with("identity/audit/") || k.starts_with(CHANGES_PREFIX)),
        "{added:?}"
    );
    assert_eq!(certificates_of(&a, &other), 1);
}

#[test]
fn two_gateways_writing_at_once_lose_nothing_and_keep_one_gapless_log() {
    let (store, _view, a, b, _dirs) = two_gateways();
    let a = Arc::new(a);
    let entries_before = match a.verify_audit().unwrap() {
        AuditVerdict::Intact { entries, .. } => entries,
        AuditVerdict::Broken(b) => panic!("{b:?}"),
    };
    const THREADS: u8 = 3;
    const EACH: u8 = 8;
    let threads: Vec<_> = (0..THREADS)
        .flat_map(|t| [(a.clone(), t), (b.clone(), t + THREADS)])
        .map(|(m, t)| {
            std::thread::spawn(move || {
                for i in 0..EACH {
                    // One enrolment (one audit entry of two events:
                    // enrolled, issued) and one plain entry per round.
                    let seed = 10 + t * EACH + i;
                    enroll(&m, seed);
                    m.record_audit(
                        vec![AuditEvent::new(
                            &Actor::cli(),
                            AuditAction::CodeMinted,
                            seed.to_string(),
                        )],
                        SystemTime::now(),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = u64::from(THREADS) * 2 * u64::from(EACH);
    match a.verify_audit().unwrap() {
        AuditVerdict::Intact { entries, .. } => assert_eq!(entries, entries_before + 2 * total),
        AuditVerdict::Broken(b) => panic!("{b:?}"),
    }
    assert_eq!(a.devices().unwrap().records.len() as u64, total);
    assert_eq!(b.certificates().unwrap().records.len() as u64, total);
    gapless_log(&store);
}

/// A store whose watch side always answers that it cannot watch now.
struct WatchDown;

impl keygate_sdk::WatchStore for WatchDown {
    fn wait_for_writes(&self, _: u64, timeout: Duration) -> Result<u64, PluginError> {
        std::thread::sleep(timeout);
        Err(PluginError::unavailable("the notification channel is down"))
    }
}

/// Gateway A on a store that reports writes through `watch`, gateway B
/// writing beside it; A's revocation watcher polls every `interval`.
fn watched_pair(
    watch: Arc<dyn keygate_sdk::WatchStore>,
    store: Arc<MemoryStore>,
    interval: Duration,
) -> (
    Arc<IdentityManager>,
    IdentityManager,
    Watcher,
    tempfile::TempDir,
) {
    let dirs = tempfile::tempdir().unwrap();
    let a = Arc::new(
        IdentityManager::open(
            StateStore::batched(store.clone()).with_watch(Some(watch)),
            &dirs.path().join("a"),
            Default::default(),
            SystemTime::now(),
        )
        .unwrap(),
    );
    let b = gateway(store, &dirs.path().join("b"));
    // The index loaded first, so what B does next arrives as events.
    a.refresh().unwrap();
    let watcher = Watcher::start(a.clone(), interval).unwrap();
    (a, b, watcher, dirs)
}

#[test]
fn a_store_that_reports_writes_brings_another_gateways_revocation_without_waiting_for_the_poll() {
    let store = Arc::new(MemoryStore::new());
    // Polling alone would take a minute: only the store's report can
    // bring the revocation within the ten seconds allowed below.
    let (a, b, watcher, _dirs) =
        watched_pair(store.clone(), store.clone(), Duration::from_secs(60));
    assert!(a.store_watch().is_some());
    let device = enroll(&b, 1);
    b.revoke_device(&device, "lost", SystemTime::now(), &Actor::cli())
        .unwrap();
    let event = watcher
        .events()
        .recv_timeout(Duration::from_secs(10))
        .expect("the revocation reached gateway A");
    assert_eq!(event, RevocationEvent::Device(device));
    assert!(a.is_device_revoked(&device));
}

#[test]
fn a_store_that_cannot_watch_now_is_polled_instead() {
    let store = Arc::new(MemoryStore::new());
    let (a, b, watcher, _dirs) = watched_pair(
        Arc::new(WatchDown),
        store.clone(),
        Duration::from_millis(50),
    );
    let device = enroll(&b, 1);
    b.revoke_device(&device, "lost", SystemTime::now(), &Actor::cli())
        .unwrap();
    let event = watcher
        .events()
        .recv_timeout(Duration::from_secs(10))
        .expect("the revocation reached gateway A by polling");
    assert_eq!(event, RevocationEvent::Device(device));
    assert!(a.is_device_revoked(&device));
}

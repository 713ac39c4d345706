//! The revocation follower under faults: a refresh is all or nothing, one
//! unreadable record never stops it, a reader that fell behind the
//! compacted log catches up and reports what it missed, and the knobs that
//! make compaction happen are settings.
//!
//! These drive `IdentityManager` in-process over a store that can be made
//! to fail (`FaultyStore`); the same paths over real files and processes
//! are in `cli_identity.rs` and `faults.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use keygate_core::identity::DeviceKey;
use keygate_core::state::changelog::{FLOOR_KEY, change_key};
use keygate_core::state::index::SNAPSHOT_KEY;
use keygate_core::state::records::{cert_key, device_key};
use keygate_core::state::{
    CertStatus, Enrolled, IdentityManager, IdentitySettings, RevocationEvent,
};
use keygate_sdk::SecretStore;
use keygate_tests::FaultyStore;

const HOUR: Duration = Duration::from_secs(3600);

fn key(n: u8) -> DeviceKey {
    DeviceKey::from_seed(&[n; 32])
}

/// A writer and a reader on one store and state dir (as the CLI and a
/// gateway are), plus the devices enrolled so far.
struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<FaultyStore>,
    settings: IdentitySettings,
    writer: IdentityManager,
    reader: IdentityManager,
    now: SystemTime,
}

impl Setup {
    fn new(settings: IdentitySettings) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FaultyStore::new());
        let now = SystemTime::now();
        // The CA dates from before any certificate a test backdates.
        let open = || {
            IdentityManager::open(store.clone(), dir.path(), settings.clone(), now - 3 * HOUR)
                .unwrap()
        };
        let (writer, reader) = (open(), open());
        Setup {
            store,
            writer,
            reader,
            now,
            settings,
            _dir: dir,
        }
    }

    /// Another manager on the same state (a process that starts later).
    fn open(&self) -> IdentityManager {
        IdentityManager::open(
            self.store.clone(),
            self._dir.path(),
            self.settings.clone(),
            self.now,
        )
        .unwrap()
    }

    fn enroll(&self, n: u8) -> Enrolled {
        self.writer
            .enroll(
                &key(n).public_key(),
                &format!("d{n}"),
                &[],
                self.now,
                &keygate_core::state::Actor::cli(),
            )
            .unwrap()
    }

    fn revoke_device(&self, e: &Enrolled) {
        self.writer
            .revoke_device(
                &e.device.device_id,
                "test",
                self.now,
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
    }

    fn revoke_cert(&self, e: &Enrolled) {
        self.writer
            .revoke_certificate(
                &e.certificate.fingerprint,
                "test",
                self.now,
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
    }

    fn head(&self) -> u64 {
        let entries = self.store.list("identity/changes/").unwrap();
        entries
            .iter()
            .filter_map(|k| k.strip_prefix("identity/changes/")?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
    }

    fn floor(&self) -> u64 {
        self.store.get(FLOOR_KEY).unwrap().map_or(0, |v| {
            String::from_utf8(v.value).unwrap().trim().parse().unwrap()
        })
    }
}

fn small(snapshot_interval: u64, change_retention: u64) -> IdentitySettings {
    IdentitySettings {
        snapshot_interval,
        change_retention,
        ..Default::default()
    }
}

fn device_event(e: &Enrolled) -> RevocationEvent {
    RevocationEvent::Device(e.device.device_id)
}

fn cert_event(e: &Enrolled) -> RevocationEvent {
    RevocationEvent::Certificate {
        fingerprint: e.certificate.fingerprint,
        device_id: e.device.device_id,
    }
}

/// Asserts `seen` holds each of `expected` exactly once and nothing else.
fn assert_exactly_once(seen: &[RevocationEvent], expected: &[RevocationEvent], context: &str) {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for event in seen {
        *counts.entry(format!("{event:?}")).or_default() += 1;
    }
    for event in expected {
        assert_eq!(
            counts.remove(&format!("{event:?}")),
            Some(1),
            "{context}: {event:?} not reported exactly once in {seen:?}"
        );
    }
    assert!(counts.is_empty(), "{context}: unexpected events {counts:?}");
}

fn status(m: &IdentityManager, e: &Enrolled) -> CertStatus {
    m.certificate_status(&e.certificate.fingerprint)
}

#[test]
fn a_refresh_that_fails_part_way_applies_nothing_and_the_next_reports_each_revocation_once() {
    let mut fail_at = 1;
    loop {
        let s = Setup::new(IdentitySettings::default());
        let devices: Vec<Enrolled> = (0..6).map(|n| s.enroll(n)).collect();
        s.reader.refresh().unwrap();
        // Five entries: three device revocations, two certificate ones.
        for e in &devices[..3] {
            s.revoke_device(e);
        }
        for e in &devices[3..5] {
            s.revoke_cert(e);
        }
        let expected: Vec<RevocationEvent> = devices[..3]
            .iter()
            .map(device_event)
            .chain(devices[3..5].iter().map(cert_event))
            .collect();

        // Late enough that the upkeep after the batch (re-reading
        // unreadable records, looking for gaps) runs too.
        let later = s.now + Duration::from_secs(31);
        s.store.fail_read(fail_at);
        let first = s.reader.refresh_at(later);
        let reads = s.store.reads();
        s.store.fail_read(0);
        let failed = first.is_err();
        if let Err(e) = &first {
            assert!(e.to_string().contains("unreachable"), "{e}");
            // Nothing was applied: every certificate still acts.
            for e in &devices {
                assert_eq!(status(&s.reader, e), CertStatus::Valid(e.device.device_id));
            }
        }
        let mut seen = first.unwrap_or_default();
        seen.extend(s.reader.refresh_at(later).unwrap());
        assert_exactly_once(&seen, &expected, &format!("read {fail_at} failed"));
        assert_eq!(
            status(&s.reader, &devices[0]),
            CertStatus::DeviceRevoked(devices[0].device.device_id)
        );
        assert_eq!(
            status(&s.reader, &devices[3]),
            CertStatus::CertificateRevoked(devices[3].device.device_id)
        );
        assert_eq!(
            status(&s.reader, &devices[5]),
            CertStatus::Valid(devices[5].device.device_id)
        );
        if !failed && reads < fail_at {
            break;
        }
        fail_at += 1;
    }
    // Every read of the refresh (entries, records, and the upkeep after
    // them) was made to fail once.
    assert!(fail_at > 13, "only {fail_at} reads were tried");
}

#[test]
fn a_first_load_that_fails_is_tried_again_whole() {
    let s = Setup::new(IdentitySettings::default());
    let devices: Vec<Enrolled> = (0..3).map(|n| s.enroll(n)).collect();
    s.revoke_device(&devices[0]);
    s.store.fail_read(3);
    let err = s.reader.refresh().unwrap_err();
    assert!(err.to_string().contains("injected at read 3"), "{err}");
    assert_eq!(status(&s.reader, &devices[1]), CertStatus::Unknown);
    s.store.fail_read(0);
    assert_eq!(
        s.reader.refresh().unwrap(),
        [],
        "a first load reports nothing"
    );
    assert!(s.reader.is_device_revoked(&devices[0].device.device_id));
    assert_eq!(
        status(&s.reader, &devices[1]),
        CertStatus::Valid(devices[1].device.device_id)
    );
}

#[test]
fn snapshots_and_compaction_happen_at_the_configured_interval() {
    let s = Setup::new(small(4, 3));
    s.reader.refresh().unwrap();
    let devices: Vec<Enrolled> = (0..10).map(|n| s.enroll(n)).collect();
    s.revoke_cert(&devices[2]);
    let head = s.head();
    assert_eq!(head, 11);
    s.reader.refresh().unwrap();

    let snapshot: serde_json::Value = serde_json::from_slice(
        &s.store
            .get(SNAPSHOT_KEY)
            .unwrap()
            .expect("a snapshot")
            .value,
    )
    .unwrap();
    assert_eq!(
        snapshot["seq"], head,
        "the snapshot is at the reader's position"
    );
    let floor = s.floor();
    assert_eq!(floor, head - 3, "all but the newest 3 entries compacted");
    for seq in 1..=floor {
        assert!(
            s.store.get(&change_key(seq)).unwrap().is_none(),
            "entry {seq} kept"
        );
    }
    for seq in floor + 1..=head {
        assert!(
            s.store.get(&change_key(seq)).unwrap().is_some(),
            "entry {seq} lost"
        );
    }

    // The next snapshot comes `snapshot_interval` changes later, not before.
    let snapshot_seq = |s: &Setup| -> u64 {
        let v = s.store.get(SNAPSHOT_KEY).unwrap().unwrap();
        serde_json::from_slice::<serde_json::Value>(&v.value).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    for n in 20..23 {
        s.enroll(n);
    }
    s.reader.refresh().unwrap();
    assert_eq!(snapshot_seq(&s), head, "3 changes after it: not yet");
    s.enroll(23);
    s.reader.refresh().unwrap();
    assert_eq!(snapshot_seq(&s), head + 4, "4 changes after it: a new one");

    // A process starting now loads the snapshot, not every record.
    let late = s.open();
    s.store.fail_read(0);
    assert_eq!(late.refresh().unwrap(), []);
    assert!(
        s.store.reads() < devices.len(),
        "a snapshot load read {} records",
        s.store.reads()
    );
    assert_eq!(
        status(&late, &devices[2]),
        CertStatus::CertificateRevoked(devices[2].device.device_id)
    );
    assert_eq!(
        status(&late, &devices[9]),
        CertStatus::Valid(devices[9].device.device_id)
    );
}

#[test]
fn writers_alone_keep_the_change_log_bounded() {
    let s = Setup::new(small(4, 3));
    for n in 0..30 {
        s.enroll(n);
    }
    let entries = s
        .store
        .list("identity/changes/")
        .unwrap()
        .into_iter()
        .filter(|k| k != FLOOR_KEY)
        .count();
    assert!(
        entries <= 3 + 4,
        "{entries} entries kept after 30 changes with no reader"
    );
    assert!(s.floor() >= 30 - 3 - 4, "floor {}", s.floor());
    // A reader starting after all that still sees everything.
    s.reader.refresh().unwrap();
    assert_eq!(s.reader.indexed_certificates(), 30);
}

#[test]
fn a_reader_that_fell_behind_the_compacted_log_reloads_and_reports_what_it_missed() {
    for with_snapshot in [false, true] {
        let s = Setup::new(small(4, 2));
        let devices: Vec<Enrolled> = (0..3).map(|n| s.enroll(n)).collect();
        s.reader.refresh().unwrap();
        let behind = s.head();
        s.revoke_device(&devices[0]);
        s.revoke_cert(&devices[1]);
        let later: Vec<Enrolled> = (10..30).map(|n| s.enroll(n)).collect();
        s.revoke_device(&later[4]);
        if with_snapshot {
            s.open().refresh().unwrap();
            assert!(s.store.get(SNAPSHOT_KEY).unwrap().is_some());
        }
        assert!(
            s.floor() > behind + 1,
            "the reader's next entry was compacted away (floor {}, reader at {behind})",
            s.floor()
        );
        let events = s.reader.refresh().unwrap();
        assert_exactly_once(
            &events,
            &[
                device_event(&devices[0]),
                cert_event(&devices[1]),
                device_event(&later[4]),
            ],
            &format!("snapshot: {with_snapshot}"),
        );
        assert_eq!(
            status(&s.reader, &devices[0]),
            CertStatus::DeviceRevoked(devices[0].device.device_id)
        );
        assert_eq!(
            status(&s.reader, &later[19]),
            CertStatus::Valid(later[19].device.device_id)
        );
        // And it follows the log from there.
        s.revoke_device(&later[19]);
        assert_eq!(s.reader.refresh().unwrap(), [device_event(&later[19])]);
    }
}

#[test]
fn expired_certificates_leave_the_index_without_an_event() {
    let settings = IdentitySettings {
        client_validity: HOUR,
        ..Default::default()
    };
    let s = Setup::new(settings);
    let fresh = s.enroll(1);
    // Issued two hours ago: already expired when the reader first sees it.
    let old = s
        .writer
        .enroll(
            &key(2).public_key(),
            "old",
            &[],
            s.now - 2 * HOUR,
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    assert_eq!(s.reader.refresh_at(s.now).unwrap(), []);
    assert_eq!(s.reader.indexed_certificates(), 1);
    assert_eq!(status(&s.reader, &old), CertStatus::Unknown);
    assert_eq!(
        status(&s.reader, &fresh),
        CertStatus::Valid(fresh.device.device_id)
    );
    assert_eq!(s.reader.refresh_at(s.now + 2 * HOUR).unwrap(), []);
    assert_eq!(s.reader.indexed_certificates(), 0);
    assert_eq!(status(&s.reader, &fresh), CertStatus::Unknown);
    // A revocation of an expired certificate is still a revocation.
    let renewed = s
        .writer
        .issue_certificate(&fresh.device.device_id, s.now + 2 * HOUR)
        .unwrap();
    s.revoke_cert(&fresh);
    let events = s.reader.refresh_at(s.now + 2 * HOUR).unwrap();
    assert_eq!(events, [cert_event(&fresh)]);
    assert_eq!(
        s.reader.certificate_status(&renewed.fingerprint),
        CertStatus::Valid(fresh.device.device_id)
    );
    assert_eq!(s.reader.indexed_certificates(), 1);
}

#[test]
fn an_unreadable_device_record_counts_as_revoked_and_everything_else_keeps_working() {
    let s = Setup::new(IdentitySettings::default());
    let (bad, good, other) = (s.enroll(1), s.enroll(2), s.enroll(3));
    let bad_key = device_key(&bad.device.device_id);
    s.store.damage(&bad_key);

    assert_eq!(s.reader.refresh_at(s.now).unwrap(), []);
    assert_eq!(
        status(&s.reader, &bad),
        CertStatus::Unreadable(Some(bad.device.device_id))
    );
    assert!(s.reader.is_device_revoked(&bad.device.device_id));
    assert_eq!(
        status(&s.reader, &good),
        CertStatus::Valid(good.device.device_id)
    );
    let named = s.reader.unreadable_records();
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].key, bad_key);
    assert!(named[0].reason.contains("injected damage"), "{named:?}");

    // Later revocations still arrive.
    s.revoke_device(&other);
    assert_eq!(s.reader.refresh_at(s.now).unwrap(), [device_event(&other)]);

    // It is read again at each recheck, counted each time...
    let met = s.reader.unreadable_met();
    s.reader
        .refresh_at(s.now + 31 * Duration::from_secs(1))
        .unwrap();
    assert!(s.reader.unreadable_met() > met, "met again at the recheck");
    // ...and a mended record is picked up without a restart.
    s.store.mend(&bad_key);
    s.reader
        .refresh_at(s.now + 62 * Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        status(&s.reader, &bad),
        CertStatus::Valid(bad.device.device_id)
    );
    assert_eq!(s.reader.unreadable_records(), []);
}

#[test]
fn a_record_that_becomes_unreadable_closes_what_it_covers() {
    let s = Setup::new(IdentitySettings::default());
    let (a, b) = (s.enroll(1), s.enroll(2));
    s.reader.refresh().unwrap();
    // Both records are rewritten (revocations), then found damaged: the
    // reader cannot tell what they say, so it refuses them.
    s.revoke_device(&a);
    s.revoke_cert(&b);
    s.store.damage(&device_key(&a.device.device_id));
    s.store.damage(&cert_key(&b.certificate.fingerprint));
    let events = s.reader.refresh().unwrap();
    assert_exactly_once(&events, &[device_event(&a), cert_event(&b)], "damaged");
    assert_eq!(
        status(&s.reader, &a),
        CertStatus::Unreadable(Some(a.device.device_id))
    );
    assert_eq!(
        status(&s.reader, &b),
        CertStatus::Unreadable(Some(b.device.device_id))
    );
    // Mended, they read as what they are: revoked, and already reported.
    s.store.mend(&device_key(&a.device.device_id));
    s.store.mend(&cert_key(&b.certificate.fingerprint));
    assert_eq!(s.reader.refresh_at(s.now + 2 * HOUR).unwrap(), []);
    assert_eq!(
        status(&s.reader, &a),
        CertStatus::DeviceRevoked(a.device.device_id)
    );
    assert_eq!(
        status(&s.reader, &b),
        CertStatus::CertificateRevoked(b.device.device_id)
    );
}

#[test]
fn stray_and_mismatched_records_are_named_and_fail_closed() {
    let s = Setup::new(IdentitySettings::default());
    let (a, b) = (s.enroll(1), s.enroll(2));
    s.store
        .put("identity/devices/not-a-device-id", b"{}", None)
        .unwrap();
    s.store.put("identity/certs/zz", b"{}", None).unwrap();
    // Overwrites the record under `to` with the one under `from`.
    let copy_over = |from: &str, to: &str| {
        let record = s.store.get(from).unwrap().unwrap();
        let version = s.store.get(to).unwrap().unwrap().version;
        s.store.put(to, &record.value, Some(version)).unwrap();
    };
    // A's key now holds B's record (a record under the wrong name).
    let a_key = device_key(&a.device.device_id);
    copy_over(&device_key(&b.device.device_id), &a_key);
    // And B's certificate key holds C's certificate record.
    let c = s.enroll(3);
    let b_cert_key = cert_key(&b.certificate.fingerprint);
    copy_over(&cert_key(&c.certificate.fingerprint), &b_cert_key);

    assert_eq!(s.reader.refresh().unwrap(), []);
    assert_eq!(
        status(&s.reader, &a),
        CertStatus::Unreadable(Some(a.device.device_id))
    );
    assert_eq!(status(&s.reader, &b), CertStatus::Unreadable(None));
    assert_eq!(status(&s.reader, &c), CertStatus::Valid(c.device.device_id));
    let mut named: Vec<(String, String)> = s
        .reader
        .unreadable_records()
        .into_iter()
        .map(|u| (u.key, u.reason))
        .collect();
    named.sort();
    assert_eq!(named.len(), 4, "{named:?}");
    assert!(
        named[0].0 == b_cert_key && named[0].1.contains(&c.certificate.fingerprint.to_string()),
        "{named:?}"
    );
    assert!(named[1].0 == "identity/certs/zz" && named[1].1.contains("not a fingerprint"));
    assert!(named[2].0 == a_key && named[2].1.contains(&b.device.device_id.to_string()));
    assert!(
        named[3].0 == "identity/devices/not-a-device-id" && named[3].1.contains("not a device id")
    );
}

#[test]
fn an_unreadable_change_entry_makes_readers_rescan_and_writers_append_after_it() {
    let s = Setup::new(IdentitySettings::default());
    let (a, b) = (s.enroll(1), s.enroll(2));
    s.reader.refresh().unwrap();
    let garbage_seq = s.head() + 1;
    // A foreign file at the next sequence: undecodable, and then damaged.
    s.store
        .put(&change_key(garbage_seq), b"not an entry", None)
        .unwrap();
    s.store.damage(&change_key(garbage_seq));
    s.revoke_device(&a);
    assert_eq!(s.head(), garbage_seq + 1, "the writer appended after it");

    assert_eq!(s.reader.refresh().unwrap(), [device_event(&a)]);
    let named = s.reader.unreadable_records();
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(named[0].key, change_key(garbage_seq));
    // The reader carries on past it.
    s.revoke_cert(&b);
    assert_eq!(s.reader.refresh().unwrap(), [cert_event(&b)]);

    // A process starting now also gets past it.
    let late = s.open();
    late.refresh().unwrap();
    assert!(late.is_device_revoked(&a.device.device_id));
    assert_eq!(
        status(&late, &b),
        CertStatus::CertificateRevoked(b.device.device_id)
    );
}

#[test]
fn a_gap_in_the_change_log_is_found_at_the_recheck() {
    let s = Setup::new(IdentitySettings::default());
    let (a, b) = (s.enroll(1), s.enroll(2));
    s.reader.refresh_at(s.now).unwrap();
    s.revoke_device(&a);
    s.revoke_device(&b);
    // The entry after the reader's position disappears (an operator moved
    // it aside): following entry by entry would stop there for ever.
    let next = s.head() - 1;
    let version = s.store.get(&change_key(next)).unwrap().unwrap().version;
    s.store.delete(&change_key(next), version).unwrap();
    assert_eq!(s.reader.refresh_at(s.now).unwrap(), [], "not yet rechecked");
    let events = s
        .reader
        .refresh_at(s.now + Duration::from_secs(31))
        .unwrap();
    assert_exactly_once(&events, &[device_event(&a), device_event(&b)], "gap");
}

#[test]
fn a_reload_reports_certificates_that_left_the_state_but_not_those_that_expired() {
    let settings = IdentitySettings {
        client_validity: HOUR,
        ..small(4, 2)
    };
    let s = Setup::new(settings);
    let expiring = s.enroll(1);
    let leaving = s
        .writer
        .enroll(
            &key(2).public_key(),
            "l",
            &[],
            s.now + HOUR + HOUR / 2,
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    s.reader.refresh_at(s.now + HOUR / 2).unwrap();
    assert_eq!(s.reader.indexed_certificates(), 2);
    // An operator removes one record by hand, and the reader falls behind
    // the compacted log while the other certificate expires.
    let gone = cert_key(&leaving.certificate.fingerprint);
    let version = s.store.get(&gone).unwrap().unwrap().version;
    s.store.delete(&gone, version).unwrap();
    for n in 10..20 {
        s.enroll(n);
    }
    assert!(s.floor() > 3, "compacted past the reader");
    let events = s.reader.refresh_at(s.now + 2 * HOUR).unwrap();
    assert_eq!(events, [cert_event(&leaving)]);
    assert_eq!(status(&s.reader, &expiring), CertStatus::Unknown);
}

#[test]
fn a_snapshot_is_used_until_the_floor_passes_it_and_never_after() {
    let s = Setup::new(IdentitySettings::default());
    let open = |settings: IdentitySettings| {
        IdentityManager::open(s.store.clone(), s._dir.path(), settings, s.now - 3 * HOUR).unwrap()
    };
    // A writer that compacts at every change (floor = head - 2), and a
    // reader that snapshots but never compacts.
    let writer = open(small(1, 2));
    let snapshotter = open(small(4, 1000));
    let enroll = |n: u8| {
        writer
            .enroll(
                &key(n).public_key(),
                "d",
                &[],
                s.now,
                &keygate_core::state::Actor::cli(),
            )
            .unwrap()
    };
    let revoke = |e: &Enrolled| {
        writer
            .revoke_device(
                &e.device.device_id,
                "t",
                s.now,
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
    };
    let devices: Vec<Enrolled> = (0..10).map(enroll).collect();
    snapshotter.refresh().unwrap();
    let snapshot_seq = s.head();
    assert!(s.store.get(SNAPSHOT_KEY).unwrap().is_some());
    revoke(&devices[0]);
    revoke(&devices[1]);
    assert_eq!(s.floor(), snapshot_seq, "the floor reached the snapshot");

    // Still usable: a new reader loads it and follows the two entries.
    let late = open(IdentitySettings::default());
    s.store.fail_read(0);
    late.refresh().unwrap();
    // Following two entries from the snapshot takes about ten reads; a
    // full load reads each of the 10 devices and 10 certificates.
    assert!(
        s.store.reads() < 2 * devices.len(),
        "the snapshot was not used ({} reads)",
        s.store.reads()
    );
    assert!(late.is_device_revoked(&devices[1].device.device_id));

    // One change later the floor passed it: a reader must not start from
    // it (the entries after it are gone), so it reads every record.
    revoke(&devices[2]);
    assert!(s.floor() > snapshot_seq);
    let later = open(IdentitySettings::default());
    later.refresh().unwrap();
    for e in &devices[..3] {
        assert!(later.is_device_revoked(&e.device.device_id));
    }
    assert_eq!(
        status(&later, &devices[3]),
        CertStatus::Valid(devices[3].device.device_id)
    );
}

#[test]
fn an_index_built_from_every_record_is_saved_so_the_next_start_reads_none_of_them() {
    // Far fewer changes than the snapshot interval: only the full scan
    // makes a snapshot due.
    let s = Setup::new(IdentitySettings::default());
    let devices: Vec<Enrolled> = (0..10).map(|n| s.enroll(n)).collect();
    assert!(s.store.get(SNAPSHOT_KEY).unwrap().is_none());
    s.reader.refresh().unwrap();
    assert!(
        s.store.get(SNAPSHOT_KEY).unwrap().is_some(),
        "the first load read every record and saved nothing"
    );

    let next = s.open();
    s.store.fail_read(0);
    next.refresh().unwrap();
    assert!(
        s.store.reads() < devices.len(),
        "the next start read the records again ({} reads)",
        s.store.reads()
    );
    for e in &devices {
        assert_eq!(status(&next, e), CertStatus::Valid(e.device.device_id));
    }
}

#[test]
fn a_reload_keeps_naming_records_still_unreadable_and_forgets_mended_ones() {
    let s = Setup::new(small(4, 2));
    let (x, y) = (s.enroll(1), s.enroll(2));
    let (x_key, y_key) = (
        device_key(&x.device.device_id),
        device_key(&y.device.device_id),
    );
    s.store.damage(&x_key);
    s.store.damage(&y_key);
    s.reader.refresh().unwrap();
    assert_eq!(s.reader.unreadable_records().len(), 2);
    s.store.mend(&x_key);
    // The reader falls behind the compacted log and reloads.
    for n in 10..20 {
        s.enroll(n);
    }
    assert!(s.floor() > 2);
    s.reader.refresh().unwrap();
    let named: Vec<String> = s
        .reader
        .unreadable_records()
        .into_iter()
        .map(|u| u.key)
        .collect();
    assert_eq!(named, [y_key]);
    assert_eq!(status(&s.reader, &x), CertStatus::Valid(x.device.device_id));
    assert_eq!(
        status(&s.reader, &y),
        CertStatus::Unreadable(Some(y.device.device_id))
    );
}

#[test]
fn foreign_entries_and_floors_at_the_last_sequence_numbers_break_nothing() {
    use keygate_core::state::changelog::{ChangeEntry, MAX_SEQ};
    let s = Setup::new(IdentitySettings::default());
    let a = s.enroll(1);
    s.reader.refresh().unwrap();
    for seq in [u64::MAX, MAX_SEQ + 1] {
        let entry = format!(r#"{{"seq":{seq},"at_unix_ms":0,"keys":[]}}"#);
        assert!(ChangeEntry::decode(seq, entry.as_bytes()).is_err());
        s.store
            .put(&format!("identity/changes/{seq}"), entry.as_bytes(), None)
            .unwrap();
    }
    // Entries planted under the highest sequence numbers, readable or not
    // (a file dropped there by someone without the store's key).
    for seq in [MAX_SEQ, MAX_SEQ - 1] {
        let key = change_key(seq);
        let entry = format!(r#"{{"seq":{seq},"at_unix_ms":0,"keys":[]}}"#);
        s.store.put(&key, entry.as_bytes(), None).unwrap();
        s.store.damage(&key);
    }
    s.store
        .put(FLOOR_KEY, MAX_SEQ.to_string().as_bytes(), None)
        .unwrap();
    // Writers, new and running, append after the real head; readers follow.
    let b = s
        .open()
        .enroll(
            &key(2).public_key(),
            "b",
            &[],
            s.now,
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    s.revoke_device(&a);
    assert_eq!(s.reader.refresh().unwrap(), [device_event(&a)]);
    assert_eq!(status(&s.reader, &b), CertStatus::Valid(b.device.device_id));
    assert!(
        s.store.get(&change_key(3)).unwrap().is_some()
            && s.store.get(&change_key(4)).unwrap().is_none(),
        "the log went on from its real head (entries 1..=3)"
    );
    let late = s.open();
    late.refresh().unwrap();
    assert!(late.is_device_revoked(&a.device.device_id));
}

#[test]
fn a_mutation_whose_store_reads_fail_fails_cleanly_and_leaves_the_log_contiguous() {
    let s = Setup::new(IdentitySettings::default());
    s.enroll(1);
    let mut enrolled = vec![1u8];
    for (fail_at, seed) in (1..).zip(2u8..) {
        s.store.fail_read(fail_at);
        let result = s.writer.enroll(
            &key(seed).public_key(),
            "f",
            &[],
            s.now,
            &keygate_core::state::Actor::cli(),
        );
        let reads = s.store.reads();
        s.store.fail_read(0);
        match result {
            Ok(_) => enrolled.push(seed),
            Err(e) => assert!(e.to_string().contains("unreachable"), "{e}"),
        }
        if reads < fail_at {
            break;
        }
    }
    // Every entry from 1 to the head is there: no sequence was skipped.
    let head = s.head();
    for seq in 1..=head {
        assert!(
            s.store.get(&change_key(seq)).unwrap().is_some(),
            "gap at {seq}"
        );
    }
    s.reader.refresh().unwrap();
    assert_eq!(s.reader.indexed_certificates(), enrolled.len());
}

#[test]
fn quarantine_moves_unreadable_records_aside_and_what_they_covered_stays_refused() {
    let s = Setup::new(IdentitySettings::default());
    let (a, b, c) = (s.enroll(1), s.enroll(2), s.enroll(3));
    s.reader.refresh().unwrap();
    let a_key = device_key(&a.device.device_id);
    let b_cert = cert_key(&b.certificate.fingerprint);
    s.store.damage(&a_key);
    s.store.damage(&b_cert);
    s.store.put("identity/devices/stray", b"{}", None).unwrap();
    s.store.damage("identity/ca");

    let found = s.writer.check().unwrap();
    let mut keys: Vec<String> = found.unreadable.iter().map(|u| u.key.clone()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "identity/ca".to_owned(),
            b_cert.clone(),
            a_key.clone(),
            "identity/devices/stray".to_owned()
        ]
    );
    // One that reads again by the time it is moved is left in place.
    s.store.mend(&b_cert);
    let report = s.writer.quarantine(&keys, s.now).unwrap();
    let moved: Vec<&str> = report.moved.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(moved, [a_key.as_str(), "identity/devices/stray"]);
    assert!(
        report
            .moved
            .iter()
            .all(|m| m.place.contains("quarantined record"))
    );
    let left: Vec<(&str, &str)> = report
        .left
        .iter()
        .map(|u| (u.key.as_str(), u.reason.as_str()))
        .collect();
    assert_eq!(
        left,
        [
            (
                "identity/ca",
                "never moved aside: no gateway runs without it; restore it from a backup"
            ),
            (b_cert.as_str(), "it reads now: left in place"),
        ]
    );
    s.store.mend("identity/ca");
    assert_eq!(s.writer.check().unwrap().unreadable, []);

    // The running reader learns within a refresh: A's record is gone, and
    // its certificates stay refused.
    s.reader.refresh().unwrap();
    assert_eq!(
        status(&s.reader, &a),
        CertStatus::DeviceUnknown(a.device.device_id)
    );
    assert_eq!(status(&s.reader, &b), CertStatus::Valid(b.device.device_id));
    assert_eq!(s.reader.unreadable_records(), []);
    let late = s.open();
    late.refresh().unwrap();
    assert_eq!(
        status(&late, &a),
        CertStatus::DeviceUnknown(a.device.device_id)
    );
    assert_eq!(status(&late, &c), CertStatus::Valid(c.device.device_id));
}

#[test]
fn a_quarantined_change_entry_is_replaced_by_one_that_makes_readers_rescan() {
    use keygate_core::state::changelog::ChangeEntry;
    let s = Setup::new(IdentitySettings::default());
    let (a, b) = (s.enroll(1), s.enroll(2));
    s.reader.refresh().unwrap();
    // The reader is still before entry 3 when it is damaged and moved aside.
    s.revoke_device(&a);
    s.store.damage(&change_key(3));
    let report = s.writer.quarantine(&[change_key(3)], s.now).unwrap();
    assert_eq!(report.moved.len(), 1, "{report:?}");
    let replacement = s.store.get(&change_key(3)).unwrap().unwrap();
    let entry = ChangeEntry::decode(3, &replacement.value).unwrap();
    assert!(entry.reload && entry.keys.is_empty(), "{entry:?}");
    s.revoke_cert(&b);
    // The reader meets the replacement, reads every record, and misses
    // neither the revocation the moved entry announced nor the next one.
    let events = s.reader.refresh().unwrap();
    assert_exactly_once(&events, &[device_event(&a), cert_event(&b)], "rescan");
    assert_eq!(s.writer.check().unwrap().unreadable, []);
}

#[test]
fn a_store_that_cannot_quarantine_says_so_and_nothing_moves() {
    struct NoQuarantine(FaultyStore);
    impl SecretStore for NoQuarantine {
        fn get(&self, k: &str) -> Result<Option<keygate_sdk::Versioned>, keygate_sdk::PluginError> {
            self.0.get(k)
        }
        fn put(
            &self,
            k: &str,
            v: &[u8],
            e: Option<keygate_sdk::Version>,
        ) -> Result<keygate_sdk::Version, keygate_sdk::PluginError> {
            self.0.put(k, v, e)
        }
        fn delete(&self, k: &str, e: keygate_sdk::Version) -> Result<(), keygate_sdk::PluginError> {
            self.0.delete(k, e)
        }
        fn list(&self, p: &str) -> Result<Vec<String>, keygate_sdk::PluginError> {
            self.0.list(p)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(NoQuarantine(FaultyStore::new()));
    let m = IdentityManager::open(
        store.clone(),
        dir.path(),
        Default::default(),
        SystemTime::now(),
    )
    .unwrap();
    store.0.put("identity/devices/stray", b"{}", None).unwrap();
    let err = m
        .quarantine(&["identity/devices/stray".to_owned()], SystemTime::now())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot move record \"identity/devices/stray\" aside"),
        "{err}"
    );
    assert!(store.0.get("identity/devices/stray").unwrap().is_some());
}

/// A store in which another writer, one the state lock does not exclude
/// (another host), takes the next change entry just before this process
/// writes it, or in which writing that entry fails outright.
struct Contested {
    inner: FaultyStore,
    /// `Some(true)`: the next change entry is taken by the other writer;
    /// `Some(false)`: writing it fails as an unreachable store does.
    next: std::sync::Mutex<Option<bool>>,
}

impl SecretStore for Contested {
    fn get(&self, k: &str) -> Result<Option<keygate_sdk::Versioned>, keygate_sdk::PluginError> {
        self.inner.get(k)
    }
    fn put(
        &self,
        k: &str,
        v: &[u8],
        e: Option<keygate_sdk::Version>,
    ) -> Result<keygate_sdk::Version, keygate_sdk::PluginError> {
        if k.starts_with("identity/changes/0") {
            match self.next.lock().unwrap().take() {
                Some(true) => {
                    self.inner.put(k, br#"{"other":"host"}"#, None)?;
                }
                Some(false) => {
                    return Err(keygate_sdk::PluginError::unavailable("database went away"));
                }
                None => {}
            }
        }
        self.inner.put(k, v, e)
    }
    fn delete(&self, k: &str, e: keygate_sdk::Version) -> Result<(), keygate_sdk::PluginError> {
        self.inner.delete(k, e)
    }
    fn list(&self, p: &str) -> Result<Vec<String>, keygate_sdk::PluginError> {
        self.inner.list(p)
    }
}

#[test]
fn a_writer_that_loses_its_change_entry_plans_again_after_it_and_one_that_cannot_write_it_writes_nothing()
 {
    use keygate_core::state::IdentityError;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Contested {
        inner: FaultyStore::new(),
        next: std::sync::Mutex::new(None),
    });
    let now = SystemTime::now();
    let m = IdentityManager::open(store.clone(), dir.path(), Default::default(), now).unwrap();
    let device = key(1).public_key();

    // The store cannot take the entry: the mutation fails as the store
    // does, and nothing else is written.
    *store.next.lock().unwrap() = Some(false);
    let err = m
        .enroll(&device, "d", &[], now, &keygate_core::state::Actor::cli())
        .unwrap_err();
    assert!(
        matches!(err, IdentityError::Store(_)) && err.to_string().contains("database went away"),
        "{err}"
    );
    assert_eq!(
        store.inner.list("identity/devices/").unwrap(),
        Vec::<String>::new()
    );
    assert!(store.inner.get(&change_key(1)).unwrap().is_none());

    // Another host takes entry 1 first: the mutation is planned again and
    // lands after it, once.
    *store.next.lock().unwrap() = Some(true);
    let enrolled = m
        .enroll(&device, "d", &[], now, &keygate_core::state::Actor::cli())
        .unwrap();
    assert_eq!(enrolled.device.device_id, key(1).device_id());
    assert_eq!(
        store.inner.get(&change_key(1)).unwrap().unwrap().value,
        br#"{"other":"host"}"#
    );
    assert!(store.inner.get(&change_key(2)).unwrap().is_some());
    assert!(store.inner.get(&change_key(3)).unwrap().is_none());
    assert_eq!(store.inner.list("identity/devices/").unwrap().len(), 1);
}

//! The revocation watch API against another process: a revocation made by
//! the `keygate` CLI reaches a watcher in this process within a second.
//! Alone in its test binary, so no other test's processes compete with the
//! timing it asserts.

use std::time::{Duration, Instant, SystemTime};

use keygate_core::identity::DeviceKey;
use keygate_core::state::{CertStatus, RevocationEvent, Watcher};
use keygate_tests::{fs_config, keygate, open_identity, run};
// Link the built-in store so its registration is present.
use keygate_store_fs as _;

fn device_key(n: u8) -> DeviceKey {
    DeviceKey::from_seed(&[n; 32])
}

#[test]
fn a_watcher_sees_a_revocation_made_by_another_process_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let config = fs_config(dir.path());
    let (_host, manager) = open_identity(&config);
    let enrolled = manager
        .enroll(
            &device_key(1).public_key(),
            "w",
            &[],
            SystemTime::now(),
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    let other = manager
        .enroll(
            &device_key(2).public_key(),
            "w2",
            &[],
            SystemTime::now(),
            &keygate_core::state::Actor::cli(),
        )
        .unwrap();
    manager.refresh().unwrap();
    let watcher = Watcher::start(manager.clone(), Duration::from_millis(250)).unwrap();

    let out = run(keygate(&config).args([
        "devices",
        "revoke",
        &enrolled.device.device_id.to_string(),
        "--reason",
        "lost",
    ]));
    assert!(out.ok, "{}", out.stderr);
    let done = Instant::now();
    let event = watcher
        .events()
        .recv_timeout(Duration::from_secs(5))
        .expect("revocation event");
    let seen_after = done.elapsed();
    assert_eq!(event, RevocationEvent::Device(enrolled.device.device_id));
    assert!(
        seen_after < Duration::from_secs(1),
        "seen after {seen_after:?}"
    );
    assert_eq!(
        manager.certificate_status(&enrolled.certificate.fingerprint),
        CertStatus::DeviceRevoked(enrolled.device.device_id)
    );

    let fp = other.certificate.fingerprint.to_string();
    let out = run(keygate(&config).args(["certs", "revoke", &fp]));
    assert!(out.ok, "{}", out.stderr);
    let done = Instant::now();
    let event = watcher
        .events()
        .recv_timeout(Duration::from_secs(5))
        .expect("certificate event");
    assert!(done.elapsed() < Duration::from_secs(1));
    assert_eq!(
        event,
        RevocationEvent::Certificate {
            fingerprint: other.certificate.fingerprint,
            device_id: other.device.device_id
        }
    );
}

//! Faults are contained, with real processes and the encrypted filesystem
//! store: a tampered record or a foreign file in the change log is named,
//! fails closed for what it covers, and stops nothing else; `keygate state
//! check` finds such records.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keygate_core::identity::DeviceKey;
use keygate_sdk::SecretStore;
use keygate_tests::{GatewayProcess, keygate, open_identity, run, serving, write_config};
use serde_json::Value;
// Link the built-in store so its registration is present.
use keygate_store_fs as _;

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "state_dir = \"state\"\n[plugins.store]\nuse = \"filesystem\"\n{}",
            serving()
        ),
    );
    (dir, config)
}

fn keygate_ok(config: &Path, args: &[&str]) -> String {
    let out = run(keygate(config).args(args));
    assert!(out.ok, "keygate {args:?} failed:\n{}", out.stderr);
    out.stdout
}

/// Enrols the device of `seed` and returns its id.
fn enroll(config: &Path, seed: u8) -> String {
    let key = DeviceKey::from_seed(&[seed; 32]).public_key().to_string();
    let out = keygate_ok(
        config,
        &[
            "devices",
            "enroll",
            "--public-key",
            &key,
            "--name",
            "d",
            "--json",
        ],
    );
    let enrolled: Value = serde_json::from_str(&out).unwrap();
    enrolled["device_id"].as_str().unwrap().to_owned()
}

/// The record file of store key `key` (the store names files by key).
fn record_file(dir: &Path, key: &str) -> PathBuf {
    let path = dir.join("state/store").join(format!("{key}.rec"));
    assert!(path.exists(), "{} missing", path.display());
    path
}

fn flip_last_byte(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(file, &bytes).unwrap();
}

/// The newest change entry's file and sequence number.
fn newest_change(dir: &Path) -> (PathBuf, u64) {
    std::fs::read_dir(dir.join("state/store/identity/changes"))
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let seq = path.file_stem()?.to_str()?.parse::<u64>().ok()?;
            Some((path, seq))
        })
        .max_by_key(|(_, seq)| *seq)
        .expect("a change entry")
}

#[test]
fn a_gateway_starts_despite_a_tampered_record_names_it_and_still_applies_later_revocations() {
    let (dir, config) = setup();
    let bad = enroll(&config, 1);
    let good = enroll(&config, 2);
    flip_last_byte(&record_file(dir.path(), &format!("identity/devices/{bad}")));

    let mut gateway = GatewayProcess::start(&config, &[]);
    let named = gateway
        .seen
        .iter()
        .find(|l| l.contains("ERROR") && l.contains(&format!("identity/devices/{bad}")))
        .unwrap_or_else(|| panic!("the bad record is not named: {:?}", gateway.seen))
        .clone();
    assert!(named.contains("the device counts as revoked"), "{named}");

    keygate_ok(&config, &["devices", "revoke", &good]);
    let done = Instant::now();
    let line = gateway.wait_for("revocation seen", Duration::from_secs(30));
    assert!(line.contains(&good), "{line}");
    assert!(
        done.elapsed() < Duration::from_secs(2),
        "seen after {:?}",
        done.elapsed()
    );
    assert!(gateway.stop());
}

#[test]
fn a_foreign_file_at_the_next_change_sequence_is_named_and_the_revocation_after_it_arrives() {
    let (dir, config) = setup();
    let device = enroll(&config, 3);
    let mut gateway = GatewayProcess::start(&config, &[]);

    // A copy of the newest entry at the next sequence: sealed under another
    // name, so the store refuses to open it.
    let (newest, seq) = newest_change(dir.path());
    let foreign = newest.with_file_name(format!("{:020}.rec", seq + 1));
    std::fs::copy(&newest, &foreign).unwrap();

    keygate_ok(&config, &["devices", "revoke", &device]);
    let (_, after) = newest_change(dir.path());
    assert_eq!(after, seq + 2, "the CLI appended after the foreign file");
    let named = gateway.wait_for(&format!("{:020}", seq + 1), Duration::from_secs(30));
    assert!(
        named.contains("ERROR") && named.contains("every record is read again"),
        "{named}"
    );
    let line = gateway.wait_for("revocation seen", Duration::from_secs(30));
    assert!(line.contains(&device), "{line}");
    assert_eq!(
        std::fs::read(&foreign).unwrap(),
        std::fs::read(&newest).unwrap(),
        "the foreign file is left as found"
    );
    assert!(gateway.stop());
}

#[test]
fn state_check_lists_every_unreadable_record_and_exits_1() {
    let (dir, config) = setup();
    let out = run(keygate(&config).args(["state", "check"]));
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("all readable"), "{}", out.stdout);

    let device = enroll(&config, 4);
    let healthy = enroll(&config, 5);
    flip_last_byte(&record_file(
        dir.path(),
        &format!("identity/devices/{device}"),
    ));
    {
        // A record under a name no record has, written with the store's key.
        let (host, _manager) = open_identity(&config);
        host.store
            .put("identity/devices/not-an-id", b"{}", None)
            .unwrap();
    }

    let out = run(keygate(&config).args(["state", "check", "--json"]));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let unreadable = report["unreadable"].as_array().unwrap();
    let reason = |key: &str| -> String {
        unreadable
            .iter()
            .find(|u| u["key"] == key)
            .unwrap_or_else(|| panic!("{key} not listed: {report}"))["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        reason(&format!("identity/devices/{device}")).contains("authentication failed"),
        "{report}"
    );
    assert!(
        reason("identity/devices/not-an-id").contains("not a device id"),
        "{report}"
    );
    assert_eq!(unreadable.len(), 2, "{report}");
    assert!(report["checked"].as_u64().unwrap() >= 8, "{report}");
    assert!(!out.stdout.contains(&healthy));
}

#[test]
fn state_check_quarantine_moves_bad_records_aside_as_found_while_a_gateway_runs() {
    let (dir, config) = setup();
    let bad = enroll(&config, 6);
    let good = enroll(&config, 7);
    let bad_file = record_file(dir.path(), &format!("identity/devices/{bad}"));
    flip_last_byte(&bad_file);
    let bad_bytes = std::fs::read(&bad_file).unwrap();
    let (newest, seq) = newest_change(dir.path());
    let foreign = newest.with_file_name(format!("{:020}.rec", seq + 1));
    std::fs::copy(&newest, &foreign).unwrap();
    let mut gateway = GatewayProcess::start(&config, &[]);

    let out = run(keygate(&config).args(["state", "check", "--quarantine", "--json"]));
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["unreadable"], serde_json::json!([]), "{report}");
    let moved = report["moved"].as_array().unwrap();
    assert_eq!(moved.len(), 2, "{report}");
    let place = |key: &str| -> PathBuf {
        let m = moved
            .iter()
            .find(|m| m["key"] == key)
            .unwrap_or_else(|| panic!("{key} not moved: {report}"));
        PathBuf::from(m["moved_to"].as_str().unwrap())
    };
    let device_place = place(&format!("identity/devices/{bad}"));
    assert!(device_place.starts_with(dir.path().join("state/store/.quarantine")));
    assert_eq!(
        std::fs::read(&device_place).unwrap(),
        bad_bytes,
        "moved as found"
    );
    assert!(!bad_file.exists());
    place(&format!("identity/changes/{:020}", seq + 1));

    let out = run(keygate(&config).args(["state", "check"]));
    assert!(
        out.ok && out.stdout.contains("all readable"),
        "{}",
        out.stdout
    );
    // The moved device stays refused; the rest works, gateway included.
    let (_host, manager) = open_identity(&config);
    manager.refresh().unwrap();
    let device = keygate_core::identity::DeviceId::parse(&bad).unwrap();
    assert!(manager.device(&device).unwrap().is_none());
    let listed = keygate_ok(&config, &["devices", "list", "--json"]);
    assert!(listed.contains(&good) && !listed.contains(&bad), "{listed}");
    keygate_ok(&config, &["devices", "revoke", &good]);
    let line = gateway.wait_for("revocation seen", Duration::from_secs(30));
    assert!(line.contains(&good), "{line}");
    assert!(gateway.stop());
}

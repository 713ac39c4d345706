//! The identity commands as an operator runs them: `ca show`, `devices
//! list|enroll|revoke`, `certs list|revoke`, with and without a gateway
//! running on the same state dir, against the encrypted filesystem store.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keygate_core::identity::DeviceKey;
use keygate_core::state::lock::StateLock;
use keygate_tests::{GatewayProcess, json, keygate, ok, run, serving, setup};
use serde_json::Value;

/// The object in JSON array `rows` whose `field` is `value`.
fn row<'a>(rows: &'a Value, field: &str, value: &str) -> &'a Value {
    rows.as_array()
        .expect("a JSON array")
        .iter()
        .find(|r| r[field] == value)
        .unwrap_or_else(|| panic!("no row with {field} = {value}: {rows}"))
}

fn enroll(config: &Path, seed: u8, name: &str) -> (String, String) {
    let key = DeviceKey::from_seed(&[seed; 32]);
    let out = ok(
        config,
        &[
            "devices",
            "enroll",
            "--public-key",
            &key.public_key().to_string(),
            "--name",
            name,
        ],
    );
    let field = |f: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(f).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("{f} missing: {}", out.stdout))
    };
    (field("device_id"), field("fingerprint"))
}

#[test]
fn the_first_command_on_an_empty_state_dir_creates_the_ca_and_key_file() {
    let (dir, config) = setup("");
    let state = dir.path().join("state");
    assert!(!state.exists());
    let ca = json(&config, &["ca", "show", "--json"]);
    let fp = ca["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fp.len(), 64);
    assert_eq!(ca["subject"], "CN=Keygate CA");
    assert!(ca["expires_in_days"].as_i64().unwrap() > 3600);
    assert_eq!(ca["warning"], Value::Null);
    let key_file = state.join("store.key");
    let mode = std::fs::metadata(&key_file)
        .expect("key file created")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // Same CA on the next run; and the CA key is not readable on disk.
    assert_eq!(
        json(&config, &["ca", "show", "--json"])["fingerprint"],
        fp.as_str()
    );
    let text = ok(&config, &["ca", "show"]).stdout;
    assert!(text.contains(&format!("fingerprint  {fp}")), "{text}");
    for entry in walk(&state) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"),
            "{} holds a plaintext key",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn devices_and_certs_list_revoke_as_json() {
    let (_dir, config) = setup("");
    let (id_a, fp_a) = enroll(&config, 1, "alpha");
    let (id_b, fp_b) = enroll(&config, 2, "beta");

    let devices = json(&config, &["devices", "list", "--json"]);
    let a = row(&devices, "device_id", &id_a);
    assert_eq!(a["name"], "alpha");
    assert_eq!(a["fingerprint"], fp_a.as_str());
    assert_eq!(a["revoked"], false);
    assert!(a["not_after"].as_str().unwrap().ends_with('Z'));

    let certs = json(&config, &["certs", "list", "--json"]);
    let b = row(&certs, "fingerprint", &fp_b);
    assert_eq!(b["device_id"], id_b.as_str());
    assert_eq!(b["revoked"], false);

    let out = ok(
        &config,
        &["devices", "revoke", &id_a, "--reason", "laptop stolen"],
    );
    assert!(
        out.stdout.contains(&format!("revoked device {id_a}")),
        "{}",
        out.stdout
    );
    let out = ok(&config, &["devices", "revoke", &id_a]);
    assert!(out.stdout.contains("already revoked"), "{}", out.stdout);
    let devices = json(&config, &["devices", "list", "--json"]);
    let a = row(&devices, "device_id", &id_a);
    assert_eq!(a["revoked"], true);
    assert_eq!(a["revoke_reason"], "laptop stolen");
    let certs = json(&config, &["certs", "list", "--json"]);
    let ca = row(&certs, "fingerprint", &fp_a);
    assert_eq!(ca["revoked"], false);
    assert_eq!(ca["device_revoked"], true);

    ok(&config, &["certs", "revoke", &fp_b, "--reason", "rotated"]);
    let certs = json(&config, &["certs", "list", "--json"]);
    let cb = row(&certs, "fingerprint", &fp_b);
    assert_eq!(cb["revoked"], true);
    assert_eq!(cb["revoke_reason"], "rotated");

    // A revoked device cannot be enrolled again.
    let key = DeviceKey::from_seed(&[1; 32]);
    let out = run(keygate(&config).args([
        "devices",
        "enroll",
        "--public-key",
        &key.public_key().to_string(),
        "--name",
        "again",
    ]));
    assert!(!out.ok);
    assert!(
        out.stderr.contains("is revoked (laptop stolen)"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_mistyped_device_id_or_unknown_fingerprint_is_refused_and_nothing_changes() {
    let (_dir, config) = setup("");
    let (id, _fp) = enroll(&config, 3, "gamma");
    // One character changed (keeping the alphabet).
    let mut chars: Vec<char> = id.chars().collect();
    chars[10] = if chars[10] == 'q' { 'p' } else { 'q' };
    let typo: String = chars.into_iter().collect();
    let out = run(keygate(&config).args(["devices", "revoke", &typo]));
    assert_eq!(out.code, Some(1));
    assert!(out.stderr.contains("not a device id"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&typo),
        "the error quotes the input: {}",
        out.stderr
    );

    let out = run(keygate(&config).args(["certs", "revoke", &"ab".repeat(32)]));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains(&format!(
            "no certificate with fingerprint {}",
            "ab".repeat(32)
        )),
        "{}",
        out.stderr
    );
    let out = run(keygate(&config).args(["certs", "revoke", "xyz"]));
    assert!(
        out.stderr.contains("not a certificate fingerprint"),
        "{}",
        out.stderr
    );

    let devices = json(&config, &["devices", "list", "--json"]);
    assert_eq!(devices.as_array().unwrap().len(), 1);
    assert_eq!(devices[0]["revoked"], false);
}

#[test]
fn a_live_lock_holder_makes_the_cli_wait_and_fail_naming_it() {
    let (dir, config) = setup("[identity]\nlock_timeout_secs = 1\n");
    let (id, _) = enroll(&config, 4, "delta");
    let lock = StateLock::new(&dir.path().join("state")).unwrap();
    let guard = lock
        .acquire_exclusive("maintenance by the test", Duration::from_secs(1))
        .unwrap();
    let started = Instant::now();
    let out = run(keygate(&config).args(["devices", "revoke", &id]));
    assert!(!out.ok);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "did not wait for the lock"
    );
    assert!(
        out.stderr
            .contains(&format!("held by pid {}", std::process::id())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("maintenance by the test"),
        "{}",
        out.stderr
    );
    drop(guard);
    ok(&config, &["devices", "revoke", &id]);
}

#[test]
fn a_tampered_record_is_named_skipped_by_listings_refused_by_mutations_and_left_as_found() {
    let (dir, config) = setup("");
    let (id, _) = enroll(&config, 5, "epsilon");
    let (healthy, _) = enroll(&config, 7, "eta");
    let file = walk(&dir.path().join("state"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains(&id))
        .expect("the device's record file");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();

    // The listing shows the healthy device and names the bad record.
    let out = run(keygate(&config).args(["devices", "list", "--json"]));
    assert!(out.ok, "{}", out.stderr);
    let listed: Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [healthy.as_str()]);
    assert!(
        out.stderr
            .contains(&format!("record \"identity/devices/{id}\" is unreadable"))
            && out.stderr.contains("authentication failed"),
        "{}",
        out.stderr
    );
    // Its certificate is shown as refused through its device.
    let certs = json(&config, &["certs", "list", "--json"]);
    let of_bad = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["device_id"] == id.as_str())
        .expect("the certificate record still reads");
    assert_eq!(of_bad["device_revoked"], true);

    let out = run(keygate(&config).args(["devices", "revoke", &id]));
    assert!(!out.ok, "a damaged record must not be overwritten");
    assert!(
        out.stderr.contains(&format!("identity/devices/{id}")),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        bytes,
        "the damaged file is untouched"
    );
}

#[test]
fn a_running_gateway_sees_a_cli_revocation() {
    let (_dir, config) = setup(&serving());
    let (id, _) = enroll(&config, 6, "zeta");
    let mut gateway = GatewayProcess::start(&config, &[]);
    ok(&config, &["devices", "revoke", &id, "--reason", "test"]);
    let done = Instant::now();
    let line = gateway.wait_for("revocation seen", Duration::from_secs(30));
    assert!(line.contains(&id), "{line}");
    assert!(
        done.elapsed() < Duration::from_secs(2),
        "seen after {:?}",
        done.elapsed()
    );
    assert!(gateway.stop(), "the gateway exits cleanly on SIGINT");
}

#[test]
fn every_command_that_prints_a_result_speaks_json() {
    let (_dir, config) = setup("");
    let key = DeviceKey::from_seed(&[11; 32]);
    let enrolled = json(
        &config,
        &[
            "devices",
            "enroll",
            "--public-key",
            &key.public_key().to_string(),
            "--name",
            "json",
            "--json",
        ],
    );
    let id = key.device_id().to_string();
    assert_eq!(enrolled["device_id"], id.as_str());
    assert_eq!(enrolled["name"], "json");
    let fp = enrolled["fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fp.len(), 64);
    assert!(enrolled["not_after"].as_str().unwrap().ends_with('Z'));
    assert!(
        enrolled["certificate_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    let revoked = json(
        &config,
        &["certs", "revoke", &fp, "--reason", "r", "--json"],
    );
    assert_eq!(revoked["fingerprint"], fp.as_str());
    assert_eq!(revoked["already_revoked"], false);
    assert_eq!(revoked["reason"], "r");
    let revoked = json(&config, &["devices", "revoke", &id, "--json"]);
    assert_eq!(revoked["device_id"], id.as_str());
    assert_eq!(revoked["already_revoked"], false);
    let again = json(&config, &["devices", "revoke", &id, "--json"]);
    assert_eq!(again["already_revoked"], true);
    assert_eq!(again["revoked_at"], revoked["revoked_at"]);
}

#[test]
fn commands_are_quiet_unless_asked_and_never_colour_a_pipe() {
    let (_dir, config) = setup(&serving());
    let quiet = run(keygate(&config)
        .env_remove("KEYGATE_LOG")
        .args(["devices", "list"]));
    assert!(quiet.ok, "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "", "a command logs nothing by default");
    let verbose = run(keygate(&config)
        .env_remove("KEYGATE_LOG")
        .args(["-v", "devices", "list"]));
    assert!(
        verbose.stderr.contains("plugin loaded"),
        "-v logs at info: {}",
        verbose.stderr
    );
    assert!(!verbose.stderr.contains('\u{1b}'), "{:?}", verbose.stderr);

    // The gateway logs at info by default, without colours into a pipe.
    let gateway = GatewayProcess::start(&config, &[("KEYGATE_LOG", "")]);
    let text = gateway.seen.join("\n");
    assert!(
        text.contains(" INFO ") && text.contains("plugin loaded"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(gateway.stop());
}

#[test]
fn a_cli_only_deployment_compacts_the_change_log_at_the_configured_sizes() {
    let (dir, config) = setup("[identity]\nsnapshot_interval = 2\nchange_retention = 3\n");
    for seed in 20..32 {
        enroll(&config, seed, "c");
    }
    let changes = dir.path().join("state/store/identity/changes");
    let entries: Vec<u64> = std::fs::read_dir(&changes)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            path.file_stem()?.to_str()?.parse().ok()
        })
        .collect();
    assert!(
        entries.len() <= 3 + 2,
        "{} entries kept after 12 changes: {entries:?}",
        entries.len()
    );
    assert_eq!(entries.iter().max(), Some(&12));
    assert!(changes.join("floor.rec").exists());
    // Every device is still there.
    let devices = json(&config, &["devices", "list", "--json"]);
    assert_eq!(devices.as_array().unwrap().len(), 12);
}

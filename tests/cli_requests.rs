//! `keygate pairing list|approve|reject` with the real binary, on a
//! filesystem store, while this process (standing in for a gateway that
//! filed the requests) has the same state open.

use std::time::{Duration, SystemTime};

use keygate_core::identity::{CertFingerprint, DeviceKey};
use keygate_core::state::IdentityManager;
use keygate_core::state::pairing::{ApprovalRecord, Method, NewApproval, RequestStatus};
use keygate_tests::{fs_config, keygate, open_identity, run};

const HOUR: Duration = Duration::from_secs(3600);

fn file(m: &IdentityManager, seed: u8, name: &str, at: SystemTime) -> ApprovalRecord {
    m.create_approval(
        NewApproval {
            public_key: DeviceKey::from_seed(&[seed; 32]).public_key(),
            device_name: name.into(),
            method: Method::Qr,
            remote_addr: "192.0.2.10:40000".into(),
            capabilities: vec!["echo".into()],
            check_code: format!("CHK{seed:03}"),
            ttl: HOUR,
        },
        at,
    )
    .unwrap()
}

fn list(config: &std::path::Path) -> Vec<serde_json::Value> {
    let out = run(keygate(config).args(["pairing", "list", "--json"]));
    assert!(out.ok, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("json array")
}

#[test]
fn the_operator_lists_approves_and_rejects_requests_and_a_decision_is_final() {
    let dir = tempfile::tempdir().unwrap();
    let config = fs_config(dir.path());
    let (_host, m) = open_identity(&config);
    let now = SystemTime::now();
    let kitchen = file(&m, 1, "kitchen", now);
    let garage = file(&m, 2, "garage", now);
    let old = file(&m, 3, "old", now - 2 * HOUR);

    let rows = list(&config);
    assert_eq!(rows.len(), 3);
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap().clone();
    let k = row(&kitchen.id);
    assert_eq!(k["status"], "pending");
    assert_eq!(k["check_code"], "CHK001");
    assert_eq!(k["device_id"], kitchen.device_id.to_string());
    assert_eq!(k["name"], "kitchen");
    assert_eq!(k["method"], "qr");
    assert_eq!(k["remote_addr"], "192.0.2.10:40000");
    assert_eq!(row(&old.id)["status"], "expired");
    assert_eq!(rows[2]["id"], old.id, "newest first");

    // Approve: the device is enrolled with a certificate for its key.
    let out = run(keygate(&config).args(["pairing", "approve", &kitchen.id, "--json"]));
    assert!(out.ok, "{}", out.stderr);
    let approved: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(approved["status"], "approved");
    assert!(
        approved["decided_by"].as_str().unwrap().starts_with("cli:"),
        "{approved}"
    );
    let fp = CertFingerprint::parse(approved["certificate_fingerprint"].as_str().unwrap()).unwrap();
    let cert = m.certificate(&fp).unwrap().expect("issued");
    assert_eq!(cert.device_id, kitchen.device_id);
    assert!(m.device(&kitchen.device_id).unwrap().is_some());

    // Approving again issues nothing new.
    let again = run(keygate(&config).args(["pairing", "approve", &kitchen.id, "--json"]));
    assert!(again.ok, "{}", again.stderr);
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        again["certificate_fingerprint"],
        approved["certificate_fingerprint"]
    );
    let certs = m.certificates().unwrap().records;
    assert_eq!(
        certs
            .iter()
            .filter(|c| c.device_id == kitchen.device_id)
            .count(),
        1
    );

    // Reject, with the reason the device is told.
    let out = run(keygate(&config).args([
        "pairing",
        "reject",
        &garage.id,
        "--reason",
        "not our garage",
    ]));
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("rejected request {}", garage.id)),
        "{}",
        out.stdout
    );
    let record = m.approval(&garage.id).unwrap().unwrap();
    assert_eq!(record.status(now), RequestStatus::Rejected);

    // Refusals exit non-zero and say why; nothing changes.
    for (args, why) in [
        (
            vec!["pairing", "approve", garage.id.as_str()],
            "already rejected",
        ),
        (
            vec!["pairing", "reject", kitchen.id.as_str()],
            "already approved",
        ),
        (vec!["pairing", "approve", old.id.as_str()], "has expired"),
        (
            vec!["pairing", "approve", "0123456789abcdef0123456789abcdef"],
            "there is no pairing request",
        ),
    ] {
        let out = run(keygate(&config).args(&args));
        assert!(!out.ok, "{args:?} succeeded");
        assert!(out.stderr.contains(why), "{args:?}: {}", out.stderr);
    }
    assert!(m.device(&garage.device_id).unwrap().is_none());
    assert!(m.device(&old.device_id).unwrap().is_none());

    let rows = list(&config);
    let status = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap()["status"].clone();
    assert_eq!(status(&kitchen.id), "approved");
    assert_eq!(status(&garage.id), "rejected");
    assert_eq!(status(&old.id), "expired");
    assert_eq!(
        rows.iter().find(|r| r["id"] == garage.id).unwrap()["reason"],
        "not our garage"
    );

    // The table names the check codes too.
    let table = run(keygate(&config).args(["pairing", "list"]));
    assert!(table.ok);
    assert!(table.stdout.contains("CHK002"), "{}", table.stdout);
}

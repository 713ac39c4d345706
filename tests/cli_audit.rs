//! `keygate operators` and `keygate audit` with the real binary on a
//! filesystem store: tokens made, listed and revoked, every step in the
//! audit log, and an entry edited or removed in the store named by
//! `audit verify`.

use keygate_core::state::audit::{AUDIT_HEAD_KEY, AuditEntry, audit_key};
use keygate_tests::{fs_config, json, keygate, ok, open_identity, run};

/// Runs `keygate ARGS`, asserts it failed and said `needle`.
fn refused(config: &std::path::Path, args: &[&str], needle: &str) {
    let out = run(keygate(config).args(args));
    assert!(!out.ok, "keygate {args:?} succeeded");
    assert!(out.stderr.contains(needle), "{}", out.stderr);
}

fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

#[test]
fn operators_are_added_with_a_token_shown_once_listed_and_revoked_and_each_step_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let config = fs_config(dir.path());
    let added = json(&config, &["operators", "add", "alice", "--json"]);
    assert_eq!(added["name"], "alice");
    let token = added["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("kgo_") && token.len() == 68, "{token}");
    let (host, m) = open_identity(&config);
    assert_eq!(
        m.authenticate_operator(&token).unwrap().map(|r| r.name),
        Some("alice".into())
    );
    // The token is in no file of the state (the store seals values, and
    // only a keyed hash of the token is kept anyway).
    let secret = &token["kgo_".len()..];
    for key in host.store.list("").unwrap() {
        let value = host.store.get(&key).unwrap().unwrap().value;
        assert!(!String::from_utf8_lossy(&value).contains(secret), "{key}");
    }
    drop((host, m));

    let human = ok(&config, &["operators", "add", "bob"]);
    assert!(
        human.stdout.contains("token (shown once"),
        "{}",
        human.stdout
    );
    refused(
        &config,
        &["operators", "add", "alice"],
        "\"alice\" exists already",
    );
    refused(
        &config,
        &["operators", "add", "Alice Smith"],
        "operator name \"Alice Smith\"",
    );

    ok(
        &config,
        &["operators", "revoke", "alice", "--reason", "left"],
    );
    let listed = json(&config, &["operators", "list", "--json"]);
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "alice");
    assert_eq!(rows[0]["revoked"], true);
    assert_eq!(rows[0]["revoke_reason"], "left");
    assert_eq!(rows[0]["created_by"], cli_actor().as_str());
    assert_eq!(rows[1]["revoked"], false);
    let (_host, m) = open_identity(&config);
    assert_eq!(m.authenticate_operator(&token).unwrap(), None);
    refused(
        &config,
        &["operators", "revoke", "carol"],
        "no operator \"carol\"",
    );

    let audit = json(&config, &["audit", "list", "--json"]);
    let steps: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = &e["events"][0];
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let cli = cli_actor();
    assert_eq!(
        steps,
        vec![
            ("operator_added".into(), cli.clone(), "alice".into()),
            ("operator_added".into(), cli.clone(), "bob".into()),
            ("operator_revoked".into(), cli, "alice".into()),
        ]
    );
    let verified = json(&config, &["audit", "verify", "--json"]);
    assert_eq!(verified["intact"], true);
    assert_eq!(verified["entries"], 3);
}

/// Three audited changes; the state's store, open in this process as
/// someone holding the store key would have it.
fn three_changes(dir: &std::path::Path) -> std::path::PathBuf {
    let config = fs_config(dir);
    for name in ["a", "b", "c"] {
        ok(&config, &["operators", "add", name]);
    }
    config
}

fn verify_fails(config: &std::path::Path) -> String {
    let out = run(keygate(config).args(["audit", "verify"]));
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    out.stderr
}

#[test]
fn audit_verify_names_an_entry_edited_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = three_changes(dir.path());
    let (host, _m) = open_identity(&config);
    let key = audit_key(2);
    let stored = host.store.get(&key).unwrap().unwrap();
    let mut entry: AuditEntry = serde_json::from_slice(&stored.value).unwrap();
    entry.events[0].subject = "mallory".into();
    host.store
        .put(
            &key,
            &serde_json::to_vec(&entry).unwrap(),
            Some(stored.version),
        )
        .unwrap();
    let err = verify_fails(&config);
    assert!(err.contains(&key) && err.contains("edited"), "{err}");
    // Its hash recomputed too: the next entry no longer follows it.
    let stored = host.store.get(&key).unwrap().unwrap();
    entry.hash = entry.computed_hash();
    host.store
        .put(
            &key,
            &serde_json::to_vec(&entry).unwrap(),
            Some(stored.version),
        )
        .unwrap();
    let err = verify_fails(&config);
    assert!(
        err.contains(&audit_key(3)) && err.contains("does not follow"),
        "{err}"
    );
    let out = run(keygate(&config).args(["audit", "verify", "--json"]));
    assert_eq!(out.code, Some(1));
    let view: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(view["intact"], false);
    assert_eq!(view["broken_seq"], 3);
    assert_eq!(view["broken_key"], audit_key(3).as_str());
}

#[test]
fn audit_verify_names_an_entry_removed_from_the_store_in_the_middle_or_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = three_changes(dir.path());
    let (host, _m) = open_identity(&config);
    let last = host.store.get(&audit_key(3)).unwrap().unwrap();
    host.store.delete(&audit_key(3), last.version).unwrap();
    let err = verify_fails(&config);
    assert!(
        err.contains(&audit_key(3)) && err.contains("head says it ends at entry 3"),
        "{err}"
    );
    let head = host.store.get(AUDIT_HEAD_KEY).unwrap().unwrap();
    host.store.delete(AUDIT_HEAD_KEY, head.version).unwrap();
    let err = verify_fails(&config);
    assert!(err.contains("head is missing"), "{err}");
    let first = host.store.get(&audit_key(1)).unwrap().unwrap();
    host.store.delete(&audit_key(1), first.version).unwrap();
    let err = verify_fails(&config);
    assert!(
        err.contains(&audit_key(1)) && err.contains("missing (the next entry found is 2)"),
        "{err}"
    );
    // The listing still shows what is there.
    let audit = json(&config, &["audit", "list", "--json"]);
    assert_eq!(audit.as_array().unwrap().len(), 1);
}

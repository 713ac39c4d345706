//! `keygate plugins list|check` and `keygate gateway run` as an operator
//! runs them: real processes, real config files.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::Digest;

use keygate_tests::{cdylib, keygate, run, serving, toml_path, write_config};

#[test]
fn plugins_check_prints_the_manifest_and_sha256() {
    let lib = cdylib("keygate-example-store-sqlite");
    let dir = tempfile::tempdir().unwrap();
    let out = run(keygate(&dir.path().join("none.toml"))
        .args(["plugins", "check"])
        .arg(&lib));
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("ok: {}", lib.display())),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("keygate-sdk: {}", keygate_sdk::SDK_VERSION)),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("store      sqlite"), "{}", out.stdout);
    let digest = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("sha256: "))
        .expect("sha256 line");
    let bytes = std::fs::read(&lib).unwrap();
    assert_eq!(digest, hex::encode(sha2::Sha256::digest(&bytes)));

    let json = run(keygate(&dir.path().join("none.toml"))
        .args(["plugins", "check", "--json"])
        .arg(&lib));
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["plugins"][0]["name"], "sqlite");
    assert_eq!(v["plugins"][0]["kind"], "store");
    assert_eq!(v["sha256"], digest);
}

#[test]
fn plugins_check_refuses_bad_libraries_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("none.toml");
    let junk = dir.path().join("libjunk.so");
    std::fs::write(&junk, b"junk").unwrap();
    let cases = [
        (dir.path().join("missing.so"), "no such file".to_owned()),
        (junk.clone(), "not a loadable shared library".to_owned()),
        (
            cdylib("keygate-fixture-not-a-plugin"),
            "not a Keygate plugin".to_owned(),
        ),
        (
            cdylib("keygate-fixture-abi-version"),
            "built against keygate-sdk 0.1.3, but this host speaks keygate-sdk 0.2.0: rebuild the plugin against keygate-sdk 0.2".to_owned(),
        ),
        (
            cdylib("keygate-fixture-abi-layout"),
            "its plugin ABI does not match".to_owned(),
        ),
    ];
    for (path, why) in cases {
        let out = run(keygate(&cfg).args(["plugins", "check"]).arg(&path));
        assert!(!out.ok, "{} was accepted", path.display());
        assert_eq!(out.code, Some(1));
        assert!(
            out.stderr.contains(&path.display().to_string()),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&why),
            "{}: {}",
            path.display(),
            out.stderr
        );
    }
}

#[test]
fn plugins_list_shows_builtins_and_configured_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let lib = cdylib("keygate-example-approval-allowlist");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[plugins.store]\nuse = \"memory\"\n[plugins.approval]\nlibrary = {}\n[plugins.approval.config]\ndevices = [\"x\"]\n",
            toml_path(&lib)
        ),
    );
    let out = run(keygate(&cfg).args(["plugins", "list", "--json"]));
    assert!(out.ok, "{}", out.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).expect("json");
    let find = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {rows:?}"))
    };
    let memory = find("memory");
    assert_eq!(memory["kind"], "store");
    assert_eq!(memory["slot"], "store");
    assert!(memory["source"].as_str().unwrap().starts_with("built-in"));
    assert_eq!(memory["sdk_version"], keygate_sdk::SDK_VERSION);
    let fs = find("filesystem");
    assert_eq!(fs["slot"], serde_json::Value::Null);
    let allow = find("allowlist");
    assert_eq!(allow["kind"], "approval");
    assert_eq!(allow["slot"], "approval");
    assert_eq!(allow["source"], lib.display().to_string());

    let table = run(keygate(&cfg).args(["plugins", "list"]));
    assert!(table.ok);
    assert!(
        table.stdout.contains("approval   allowlist"),
        "{}",
        table.stdout
    );
}

#[test]
fn the_builtin_pin_qr_policy_fills_the_approval_slot_and_checks_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[plugins.store]\nuse = \"memory\"\n[plugins.approval]\nuse = \"pin-qr\"\n[plugins.approval.config]\nauto_approve = true\n",
    );
    let out = run(keygate(&cfg).args(["plugins", "list", "--json"]));
    assert!(out.ok, "{}", out.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).expect("json");
    let pin_qr = rows
        .iter()
        .find(|r| r["name"] == "pin-qr")
        .unwrap_or_else(|| panic!("pin-qr missing: {rows:?}"));
    assert_eq!(pin_qr["kind"], "approval");
    assert_eq!(pin_qr["slot"], "approval");
    assert!(pin_qr["source"].as_str().unwrap().starts_with("built-in"));

    let bad = write_config(
        dir.path(),
        "[plugins.store]\nuse = \"memory\"\n[plugins.approval]\nuse = \"pin-qr\"\n[plugins.approval.config]\nauto_approve = \"yes\"\n",
    );
    // Starting builds every configured plugin from its table.
    let out = run(keygate(&bad).args(["gateway", "run"]));
    assert!(!out.ok, "a string auto_approve was accepted");
    assert!(
        out.stderr.contains("approval(pin-qr): could not start")
            && out.stderr.contains("auto_approve"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_config_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[plugins.store]\nuse = \"memory\"\ncolour = \"blue\"\n",
            vec!["config.toml", "line 3", "colour"],
        ),
        (
            "state_dir = 7\n[plugins.store]\nuse = \"memory\"\n",
            vec!["config.toml", "line 1", "state_dir"],
        ),
        (
            "[plugins.store]\nuse = \"nosuch\"\n",
            vec![
                "config.toml:2: plugins.store.use",
                "no built-in store plugin named \"nosuch\"",
            ],
        ),
        (
            "[plugins.store]\nuse = \"memory\"\n[plugins.store.config]\nx = 1\n",
            vec!["store(memory): could not start", "takes no settings"],
        ),
    ];
    for (body, needles) in cases {
        let cfg = write_config(dir.path(), body);
        let out = run(keygate(&cfg).args(["gateway", "run"]));
        assert!(!out.ok, "accepted:\n{body}");
        for n in needles {
            assert!(
                out.stderr.contains(n),
                "{n:?} missing for\n{body}\n{}",
                out.stderr
            );
        }
    }
}

#[test]
fn gateway_run_loads_plugins_reports_them_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!("[plugins.store]\nuse = \"memory\"\n{}", serving()),
    );
    let mut child = keygate(&cfg)
        .args(["gateway", "run"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn gateway");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = lines.next().expect("gateway exited early").unwrap();
        seen.push(line.clone());
        if line.contains("gateway ready") {
            break;
        }
        assert!(Instant::now() < deadline, "no ready line: {seen:?}");
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("plugin loaded") && l.contains("store(memory)")),
        "{seen:?}"
    );
    // SIGINT, as Ctrl-C sends.
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "gateway exit status {status:?}");
}

#[test]
fn the_config_comes_from_keygate_config_or_defaults_to_config_toml_here() {
    let dir = tempfile::tempdir().unwrap();
    // A config whose only store is a library that does not exist: loading it
    // fails naming that file, which proves which config was read.
    let named = write_config(
        dir.path(),
        "[plugins.store]\nlibrary = \"libfrom-env.so\"\n",
    );
    let mut cmd = std::process::Command::new(keygate_tests::keygate_bin());
    cmd.args(["plugins", "list"])
        .env("KEYGATE_CONFIG", &named)
        .current_dir("/");
    let out = run(&mut cmd);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("libfrom-env.so: no such file"),
        "{}",
        out.stderr
    );

    // No --config, no KEYGATE_CONFIG: ./config.toml of the working folder.
    let mut cmd = std::process::Command::new(keygate_tests::keygate_bin());
    cmd.args(["plugins", "list"])
        .env_remove("KEYGATE_CONFIG")
        .current_dir(dir.path());
    let out = run(&mut cmd);
    assert!(out.stderr.contains("libfrom-env.so"), "{}", out.stderr);

    // Without any config file, built-ins are still listed.
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(keygate_tests::keygate_bin());
    cmd.args(["plugins", "list", "--json"])
        .env_remove("KEYGATE_CONFIG")
        .current_dir(empty.path());
    let out = run(&mut cmd);
    assert!(out.ok, "{}", out.stderr);
    assert!(out.stdout.contains("\"memory\""), "{}", out.stdout);
}

//! The web console in a real browser: a real `keygate gateway run` with
//! `[admin]`, Debian's `chromium` driven by Playwright
//! (`tests/console/console.test.mjs`), and real `keygate node pair` /
//! `keygate node run` processes the script starts.
//!
//! Needs `node`, `/usr/bin/chromium` and `tests/console/node_modules`:
//! `scripts/setup` installs them. Without them the test fails saying so
//! (it never skips).
//!
//! The script logs in (a wrong token first), mints a QR code, pairs a
//! node with it and approves the request in one click, sees the node
//! connect, revokes the device and sees the node leave, rejects a second
//! device (paired with a PIN minted in the console) with a reason, checks
//! the audit panel, and checks that a change without the CSRF token is
//! refused and does nothing. Its screenshots go to
//! `target/console-screenshots/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keygate_tests::{GatewayProcess, free_port, free_tcp_port, json, keygate_bin, write_config};

/// How long the whole browser scenario may take.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_owned()
}

/// What the browser test needs beyond Rust, or a failure naming the fix.
fn browser_prerequisites() -> (PathBuf, PathBuf) {
    let root = repo_root();
    let fix = format!(
        "run `scripts/setup` (in {}) to install chromium and the test's node modules",
        root.display()
    );
    let chromium = PathBuf::from(
        std::env::var("KEYGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    assert!(
        chromium.exists(),
        "the console test needs Debian's chromium at {}: {fix}",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "the console test needs `node` on PATH: {fix}"
    );
    let module = root.join("tests/console/node_modules/playwright-core/package.json");
    assert!(
        module.exists(),
        "the console test needs {}: {fix}",
        module.display()
    );
    (chromium, root.join("tests/console/console.test.mjs"))
}

#[test]
fn an_operator_pairs_approves_watches_and_revokes_a_real_node_from_the_web_console() {
    let (chromium, script) = browser_prerequisites();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin_port = free_tcp_port();
    let config = write_config(
        dir.path(),
        &format!(
            "state_dir = \"state\"\n\
             [plugins.store]\nuse = \"filesystem\"\n\
             [plugins.approval]\nuse = \"pin-qr\"\n\
             [plugins.transport]\nuse = \"quic\"\n\
             [gateway]\nlisten = \"127.0.0.1:{port}\"\nadvertise = [\"127.0.0.1\"]\nheartbeat = \"1s\"\n\
             [identity]\nlock_timeout_secs = 30\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n"
        ),
    );
    let token = json(&config, &["operators", "add", "alice", "--json"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let gateway = GatewayProcess::start(&config, &[]);
    let screenshots = keygate_tests::profile_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .join("console-screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();
    let node_dir = dir.path().join("node");
    let browser_profile = dir.path().join("chromium-profile");

    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(repo_root().join("tests/console"))
        .env("KEYGATE_BIN", keygate_bin())
        .env(
            "KEYGATE_CONSOLE_URL",
            format!("http://127.0.0.1:{admin_port}"),
        )
        .env("KEYGATE_TOKEN", &token)
        .env("KEYGATE_NODE_DIR", &node_dir)
        .env("KEYGATE_GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("KEYGATE_SCREENSHOTS", &screenshots)
        .env("KEYGATE_CHROMIUM", &chromium)
        .env("KEYGATE_BROWSER_PROFILE", &browser_profile)
        .env_remove("KEYGATE_PAIRING_CODE")
        .env_remove("KEYGATE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn node");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("console test: {line}");
            seen.push(line);
        }
        seen
    });
    let deadline = Instant::now() + SCENARIO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser scenario took longer than {SCENARIO_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines = reader.join().unwrap();
    assert!(
        status.success(),
        "the browser scenario failed ({status}); its output is above"
    );

    // What the browser did is in the state, attributed to the operator.
    let device_id = lines
        .iter()
        .find_map(|l| l.strip_prefix("paired device "))
        .expect("the script names the device it paired")
        .trim()
        .to_owned();
    let requests = json(&config, &["pairing", "list", "--json"]);
    let request = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["device_id"] == device_id.as_str())
        .unwrap_or_else(|| panic!("no request of {device_id}: {requests}"));
    assert_eq!(request["status"], "approved", "{request}");
    assert_eq!(request["decided_by"], "operator:alice", "{request}");
    let devices = json(&config, &["devices", "list", "--json"]);
    let device = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == device_id.as_str())
        .unwrap_or_else(|| panic!("no device {device_id}: {devices}"));
    assert_eq!(device["revoked"], true, "{device}");
    let audit = json(&config, &["audit", "list", "--json"]).to_string();
    assert!(audit.contains("operator:alice"), "{audit}");
    // Two codes minted in the browser (the refused attempts minted none).
    let minted = audit.matches("code_minted").count();
    assert_eq!(minted, 2, "{audit}");
    let rejected = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "intruder")
        .unwrap_or_else(|| panic!("no request of the second device: {requests}"));
    assert_eq!(rejected["status"], "rejected", "{rejected}");
    assert_eq!(rejected["reason"], "not ours", "{rejected}");
    assert_eq!(rejected["decided_by"], "operator:alice", "{rejected}");

    // Every screenshot the script named is there and not empty.
    let shots: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("screenshot "))
        .collect();
    assert!(shots.len() >= 6, "{shots:?}");
    for shot in shots {
        let len = std::fs::metadata(shot.trim()).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "{shot} is missing or empty");
    }
    assert!(gateway.stop(), "the gateway exits 0 on SIGINT");
}

//! `GET /metrics` on a real `keygate gateway run`: the counters move as
//! devices pair (`keygate node pair`, and a wrong PIN), connect
//! (`keygate node run`), are refused at the handshake (another CA, an
//! expired certificate, a revoked device) and are revoked; and
//! `[admin] metrics = false` turns the endpoint off.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use keygate_core::device::DeviceIdentity;
use keygate_core::device::link::{Link, LinkError, connect_params};
use keygate_core::device::pairing::{DevicePairingError, Progress};
use keygate_core::device::plugins::open_transport;
use keygate_core::identity::DeviceKey;
use keygate_proto::RefusalCode;
use keygate_sdk::{ServerTrust, TlsIdentity, Transport};
use keygate_tests::prometheus::Scrape;
use keygate_tests::{
    GatewayProcess, NodeProcess, free_port, free_tcp_port, json, ok, open_identity, write_config,
};

const WAIT: Duration = Duration::from_secs(20);

// ---- Prometheus text ------------------------------------------------------

/// The series this test reads most.
trait Series {
    fn handshakes(&self, outcome: &str) -> f64;
    fn pairing(&self, method: &str, outcome: &str) -> f64;
}

impl Series for Scrape {
    fn handshakes(&self, outcome: &str) -> f64 {
        self.get(&format!(
            "keygate_handshakes_total{{outcome=\"{outcome}\"}}"
        ))
    }

    fn pairing(&self, method: &str, outcome: &str) -> f64 {
        self.get(&format!(
            "keygate_pairing_attempts_total{{method=\"{method}\",outcome=\"{outcome}\"}}"
        ))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .build()
        .into()
}

/// `GET base/path`: status and body.
fn get(base: &str, path: &str) -> (u16, String, String) {
    let mut response = agent()
        .get(format!("{base}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let status = response.status().as_u16();
    (
        status,
        content_type,
        response.body_mut().read_to_string().unwrap(),
    )
}

// ---- a gateway --------------------------------------------------------------

/// A gateway's folder, config and process, and the test's client transport.
struct Gw {
    process: Option<GatewayProcess>,
    dir: tempfile::TempDir,
    config: PathBuf,
    addr: String,
    api: String,
    client: Arc<dyn Transport>,
}

impl Gw {
    /// A gateway config with `[admin]` on a free port and `admin_lines`
    /// in that table, and `identity` lines in `[identity]`.
    fn new(admin_lines: &str, identity: &str) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let api_port = free_tcp_port();
        let text = format!(
            "state_dir = \"state\"\n\
             [plugins.store]\nuse = \"filesystem\"\n\
             [plugins.approval]\nuse = \"pin-qr\"\n\
             [plugins.transport]\nuse = \"quic\"\n\
             [gateway]\nlisten = \"127.0.0.1:{port}\"\nadvertise = [\"127.0.0.1\"]\nheartbeat = \"1s\"\n\
             [identity]\nlock_timeout_secs = 30\n{identity}\n\
             [admin]\nlisten = \"127.0.0.1:{api_port}\"\n{admin_lines}\n"
        );
        let config = write_config(dir.path(), &text);
        let client = open_transport(dir.path()).unwrap();
        Gw {
            process: None,
            dir,
            config,
            addr: format!("127.0.0.1:{port}"),
            api: format!("http://127.0.0.1:{api_port}"),
            client,
        }
    }

    fn start(mut self) -> Gw {
        self.process = Some(GatewayProcess::start(&self.config, &[]));
        self
    }

    fn scrape(&self) -> Scrape {
        let (status, content_type, text) = get(&self.api, "/metrics");
        assert_eq!(status, 200, "{text}");
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        Scrape::parse(&text)
    }

    /// Scrapes until `done` holds.
    fn scrape_until(&self, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + WAIT;
        loop {
            let scrape = self.scrape();
            if done(&scrape) {
                return scrape;
            }
            assert!(Instant::now() < deadline, "never {what}:\n{}", scrape.text);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        ok(&self.config, args).stdout
    }

    fn mint_pin(&self) -> String {
        let v = json(&self.config, &["pairing", "mint", "--pin", "--json"]);
        v["code"].as_str().unwrap().to_owned()
    }

    fn state_dir(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Enrols a device straight into the state of `config` at `now`.
    fn enroll_with(config: &std::path::Path, seed: u8, now: SystemTime) -> TlsIdentity {
        let key = DeviceKey::from_seed(&[seed; 32]);
        let (_host, manager) = open_identity(config);
        let enrolled = manager
            .enroll(
                &key.public_key(),
                &format!("dev{seed}"),
                &[],
                now,
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
        TlsIdentity {
            cert_chain: vec![
                enrolled.certificate.der.clone(),
                manager.ca().certificate_der().to_vec(),
            ],
            private_key_der: key.to_pkcs8_der().unwrap().to_vec(),
        }
    }

    fn ca_der(&self) -> Vec<u8> {
        let (_host, manager) = open_identity(&self.config);
        manager.ca().certificate_der().to_vec()
    }

    fn connect(&self, client: Option<TlsIdentity>) -> Result<Link, LinkError> {
        let params =
            connect_params(&self.addr, ServerTrust::Roots(vec![self.ca_der()]), client).unwrap();
        Link::connect(self.client.clone(), params)
    }

    fn unpaired(&self) -> Link {
        let params = connect_params(&self.addr, ServerTrust::ChannelBoundLater, None).unwrap();
        Link::connect(self.client.clone(), params).unwrap()
    }
}

/// Whether a handshake was refused (from either end of its life).
fn refused(attempt: Result<Link, LinkError>) -> String {
    match attempt {
        Err(e) => e.to_string(),
        Ok(link) => link.wait_closed(WAIT).expect("refused").reason,
    }
}

/// A device's PIN pairing over `link` with a fresh identity, to its end.
fn converse(link: &Link, code: &str) -> Result<Progress, DevicePairingError> {
    let identity = DeviceIdentity::new(Arc::new(keygate_store_memory::MemoryStore::new()));
    keygate_tests::converse(link, &identity, code)
}

// ---- the tests --------------------------------------------------------------

#[test]
fn metrics_follow_pairing_handshakes_refusals_and_revocation() {
    let gw = Gw::new("", "").start();
    let first = gw.scrape();
    for name in [
        "keygate_connected_nodes",
        "keygate_pending_requests",
        "keygate_certificates_expiring_soon",
        "keygate_unreadable_records_met_total",
    ] {
        assert_eq!(first.get(name), 0.0, "{name}:\n{}", first.text);
    }
    for (name, kind) in [
        ("keygate_handshakes_total", "counter"),
        ("keygate_pairing_attempts_total", "counter"),
        ("keygate_revocation_propagation_seconds", "histogram"),
        ("keygate_store_operation_seconds", "histogram"),
        ("keygate_store_operation_errors_total", "counter"),
        ("keygate_connected_nodes", "gauge"),
        ("keygate_pending_requests", "gauge"),
        ("keygate_certificates_expiring_soon", "gauge"),
        ("keygate_unreadable_records_met_total", "counter"),
    ] {
        assert_eq!(
            first.types.get(name).map(String::as_str),
            Some(kind),
            "{name}:\n{}",
            first.text
        );
        assert!(
            first.help.get(name).is_some_and(|h| !h.is_empty()),
            "{name} has no help:\n{}",
            first.text
        );
    }
    // Every store call of the gateway is measured: opening the state read it.
    assert!(
        first.sum(
            "keygate_store_operation_seconds_count",
            "plugin=\"filesystem\",operation=\"get\""
        ) > 0.0,
        "{}",
        first.text
    );

    // A wrong PIN: tested and refused, over a connection without a
    // certificate.
    let pin = gw.mint_pin();
    let first_digit = if pin.starts_with('9') { "1" } else { "9" };
    let wrong = format!("{first_digit}{}", &pin[1..]);
    let link = gw.unpaired();
    match converse(&link, &wrong) {
        Err(DevicePairingError::Refused { code, .. }) => {
            assert_eq!(code, RefusalCode::ConfirmationFailed)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(link);
    let s = gw.scrape();
    assert_eq!(s.pairing("pin", "wrong_code"), 1.0, "{}", s.text);
    assert!(s.handshakes("no_certificate") >= 1.0, "{}", s.text);
    let no_cert_before = s.handshakes("no_certificate");

    // A real device pairs with the PIN: pending until the operator
    // approves it.
    let node_dir = gw.state_dir("node");
    let mut pair = NodeProcess::spawn(
        &[
            "node",
            "pair",
            "--gateway",
            &gw.addr,
            "--state-dir",
            &node_dir,
            "--name",
            "kitchen",
        ],
        Some(&pin),
    );
    pair.wait_for("check code:");
    let s = gw.scrape();
    assert_eq!(s.pairing("pin", "pending"), 1.0, "{}", s.text);
    assert_eq!(s.get("keygate_pending_requests"), 1.0, "{}", s.text);
    assert!(
        s.handshakes("no_certificate") > no_cert_before,
        "{}",
        s.text
    );
    let requests = json(&gw.config, &["pairing", "list", "--json"]);
    let id = requests[0]["id"].as_str().unwrap().to_owned();
    gw.cli(&["pairing", "approve", &id]);
    let (code, device_id, _) = pair.finish();
    assert_eq!(code, Some(0));
    let device_id = device_id.trim().to_owned();
    // Its certificate lives 24 h: it expires within a day (once the
    // gateway's index has followed the approval, made by the CLI).
    let s = gw.scrape_until("one certificate expiring soon", |s| {
        s.get("keygate_certificates_expiring_soon") == 1.0
    });
    assert_eq!(s.get("keygate_pending_requests"), 0.0, "{}", s.text);

    // The node connects with its certificate and registers.
    let ok_before = s.handshakes("ok");
    let node = NodeProcess::spawn(
        &[
            "node",
            "run",
            "--gateway",
            &gw.addr,
            "--state-dir",
            &node_dir,
        ],
        None,
    );
    let s = gw.scrape_until("one connected node", |s| {
        s.get("keygate_connected_nodes") == 1.0
    });
    assert!(s.handshakes("ok") > ok_before, "{}", s.text);

    // Refused at the handshake: a certificate of another CA ...
    let other = Gw::new("", "ca_common_name = \"Other CA\"");
    let foreign = Gw::enroll_with(&other.config, 2, SystemTime::now());
    assert!(refused(gw.connect(Some(foreign))).contains("unknown_ca"));
    // ... one that expired (issued a minute ago for ten seconds, by this
    // gateway's CA: the same state, another config) ...
    std::fs::create_dir_all(gw.dir.path().join("short")).unwrap();
    let short = write_config(
        &gw.dir.path().join("short"),
        &format!(
            "state_dir = \"{}\"\n[plugins.store]\nuse = \"filesystem\"\n\
             [identity]\nlock_timeout_secs = 30\nclient_cert_validity = \"10s\"\n",
            gw.state_dir("state")
        ),
    );
    let expired = Gw::enroll_with(&short, 3, SystemTime::now() - Duration::from_secs(60));
    let why = refused(gw.connect(Some(expired)));
    assert!(
        why.contains("certificate_expired") || why.contains("Expired"),
        "{why}"
    );
    let s = gw.scrape();
    assert_eq!(s.handshakes("unknown_ca"), 1.0, "{}", s.text);
    assert_eq!(s.handshakes("expired"), 1.0, "{}", s.text);

    // The node's device is revoked: its connection is closed, the time
    // from the commit to the close is observed, and it is no node any more.
    let latency = "keygate_revocation_propagation_seconds_count";
    assert_eq!(s.get(latency), 0.0, "{}", s.text);
    gw.cli(&["devices", "revoke", &device_id, "--reason", "lost"]);
    let s = gw.scrape_until("the revoked node gone", |s| {
        s.get("keygate_connected_nodes") == 0.0 && s.get(latency) == 1.0
    });
    assert!(
        s.get("keygate_revocation_propagation_seconds_sum") < 5.0,
        "{}",
        s.text
    );
    assert!(
        s.get("keygate_revocation_propagation_seconds_bucket{le=\"5\"}") == 1.0,
        "{}",
        s.text
    );
    drop(node);
    // A revoked device's certificate is refused at its next handshake.
    let revoked_before = s.handshakes("revoked");
    let revoked_device = Gw::enroll_with(&gw.config, 4, SystemTime::now());
    let link = gw.connect(Some(revoked_device.clone())).unwrap();
    let fingerprint =
        keygate_core::identity::CertFingerprint::of_der(&revoked_device.cert_chain[0]);
    gw.cli(&["certs", "revoke", &fingerprint.to_string()]);
    // Closed once the gateway has seen it: then its handshake is refused.
    link.wait_closed(WAIT).expect("closed");
    let why = refused(gw.connect(Some(revoked_device)));
    assert!(why.contains("certificate_revoked"), "{why}");
    let s = gw.scrape();
    assert!(s.handshakes("revoked") > revoked_before, "{}", s.text);
    // Revoked and expired certificates no longer count as expiring soon;
    // the fourth device's was revoked too.
    assert_eq!(
        s.get("keygate_certificates_expiring_soon"),
        0.0,
        "{}",
        s.text
    );
    // Writes were measured too (the pairing, the revocations).
    assert!(
        s.sum(
            "keygate_store_operation_seconds_count",
            "plugin=\"filesystem\""
        ) > first.sum(
            "keygate_store_operation_seconds_count",
            "plugin=\"filesystem\""
        ),
        "{}",
        s.text
    );
}

#[test]
fn admin_metrics_false_answers_404_and_the_rest_of_the_api_still_serves() {
    let gw = Gw::new("metrics = false", "").start();
    let (status, _, body) = get(&gw.api, "/metrics");
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = get(&gw.api, "/healthz");
    assert_eq!(status, 200, "{body}");
}

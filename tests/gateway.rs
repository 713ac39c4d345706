//! `keygate gateway run` end to end: real gateway processes listening on
//! 127.0.0.1, devices pairing with `keygate node pair`, nodes served by
//! `keygate node run`, the operator's CLI in other processes, and hostile
//! clients built from the device library ([`Link`]) over the built-in
//! `quic` transport.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant, SystemTime};

use keygate_core::device::DeviceIdentity;
use keygate_core::device::link::{CloseCause, Link, LinkError, connect_params};
use keygate_core::device::pairing::{DevicePairing, DevicePairingError, PairingCode, Progress};
use keygate_core::device::plugins::open_transport;
use keygate_core::identity::DeviceKey;
use keygate_proto::{Binding, Heartbeat, Message, RefusalCode, Register};
use keygate_sdk::{ServerTrust, TlsIdentity, Transport};
use keygate_tests::{
    GatewayProcess, NodeProcess, converse, free_port, json, keygate, keygate_bin, ok,
    open_identity, run, write_config,
};
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(20);

// ---- a gateway ----------------------------------------------------------

/// A gateway's folder and config, and the process when it runs.
struct Gw {
    // Fields drop in this order: the gateway stops before its folder goes.
    process: Option<GatewayProcess>,
    dir: tempfile::TempDir,
    config: PathBuf,
    addr: String,
    /// The test's client transport: every link of the test uses it, as one
    /// device process does.
    client: Arc<dyn Transport>,
}

/// What a test changes in the config.
#[derive(Default)]
struct Setup<'a> {
    auto_approve: bool,
    /// Lines of `[gateway]` besides listen and advertise.
    gateway: &'a str,
    /// Lines of `[identity]`.
    identity: &'a str,
    /// Lines of `[pairing]`.
    pairing: &'a str,
    /// Whole tables after the rest.
    tables: &'a str,
}

impl Gw {
    fn new(setup: Setup<'_>) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let text = format!(
            "state_dir = \"state\"\n\
             [plugins.store]\nuse = \"filesystem\"\n\
             [plugins.approval]\nuse = \"pin-qr\"\n[plugins.approval.config]\nauto_approve = {}\n\
             [plugins.transport]\nuse = \"quic\"\n\
             [gateway]\nlisten = \"127.0.0.1:{port}\"\nadvertise = [\"127.0.0.1\"]\nheartbeat = \"1s\"\n{}\n\
             [identity]\nlock_timeout_secs = 30\n{}\n\
             [pairing]\n{}\n{}\n",
            setup.auto_approve, setup.gateway, setup.identity, setup.pairing, setup.tables
        );
        let config = write_config(dir.path(), &text);
        let client = open_transport(dir.path()).unwrap();
        Gw {
            dir,
            config,
            addr: format!("127.0.0.1:{port}"),
            process: None,
            client,
        }
    }

    fn start(mut self) -> Gw {
        self.start_again();
        self
    }

    fn start_again(&mut self) {
        self.process = Some(GatewayProcess::start(&self.config, &[]));
    }

    fn process(&mut self) -> &mut GatewayProcess {
        self.process.as_mut().expect("the gateway runs")
    }

    fn stop(&mut self) {
        let process = self.process.take().expect("the gateway runs");
        assert!(process.stop(), "the gateway exits 0 on SIGINT");
    }

    fn cli(&self, args: &[&str]) -> String {
        ok(&self.config, args).stdout
    }

    fn mint_pin(&self) -> String {
        let v = json(&self.config, &["pairing", "mint", "--pin", "--json"]);
        v["code"].as_str().unwrap().to_owned()
    }

    fn mint_qr(&self) -> String {
        let v = json(&self.config, &["pairing", "mint", "--qr", "--json"]);
        v["uri"].as_str().unwrap().to_owned()
    }

    /// Waits until `nodes list --json` shows a node that `pick` accepts.
    fn wait_node(
        &self,
        what: &str,
        pick: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let nodes = json(&self.config, &["nodes", "list", "--json"]);
            if let Some(n) = nodes.as_array().unwrap().iter().find(|n| pick(n)) {
                return n.clone();
            }
            assert!(Instant::now() < deadline, "no node {what}: {nodes}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Enrols a device straight into the state (as `devices enroll`
    /// does) at `now`: its key and the TLS identity it connects with.
    fn enroll(&self, seed: u8, now: SystemTime) -> (DeviceKey, TlsIdentity) {
        let key = DeviceKey::from_seed(&[seed; 32]);
        let (_host, manager) = open_identity(&self.config);
        let enrolled = manager
            .enroll(
                &key.public_key(),
                &format!("dev{seed}"),
                &[],
                now,
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
        let identity = TlsIdentity {
            cert_chain: vec![
                enrolled.certificate.der.clone(),
                manager.ca().certificate_der().to_vec(),
            ],
            private_key_der: key.to_pkcs8_der().unwrap().to_vec(),
        };
        (key, identity)
    }

    fn ca_der(&self) -> Vec<u8> {
        let (_host, manager) = open_identity(&self.config);
        manager.ca().certificate_der().to_vec()
    }
}

// ---- devices ------------------------------------------------------------

/// Connects to `gw` trusting its CA, with `identity` if given.
fn connect(gw: &Gw, client: Option<TlsIdentity>) -> Result<Link, LinkError> {
    let params = connect_params(&gw.addr, ServerTrust::Roots(vec![gw.ca_der()]), client).unwrap();
    Link::connect(gw.client.clone(), params)
}

fn ask(link: &Link, message: Message) -> Message {
    let answer = link.request(&message.encode(), WAIT).expect("an answer");
    Message::decode(&answer).expect("a message")
}

fn refused(message: Message) -> RefusalCode {
    match message {
        Message::Refused(r) => r.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn register(key: &DeviceKey) -> Message {
    Message::Register(Register {
        device_id: key.device_id().to_string(),
        capabilities: vec!["echo".into()],
    })
}

fn state_dir(gw: &Gw, name: &str) -> String {
    gw.dir.path().join(name).display().to_string()
}

/// Pairs a node with a PIN approved by the operator; returns its device id.
fn pair_with_pin(gw: &Gw, node_dir: &str) -> String {
    let pin = gw.mint_pin();
    let mut pair = NodeProcess::spawn(
        &[
            "node",
            "pair",
            "--gateway",
            &gw.addr,
            "--state-dir",
            node_dir,
            "--name",
            "kitchen",
        ],
        Some(&pin),
    );
    let line = pair.wait_for("check code:");
    let shown = line.split_whitespace().nth(2).unwrap().to_owned();
    let requests = json(&gw.config, &["pairing", "list", "--json"]);
    let request = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "pending")
        .unwrap_or_else(|| panic!("no pending request: {requests}"));
    assert_eq!(
        request["check_code"],
        shown.as_str(),
        "the operator sees the device's check code"
    );
    gw.cli(&["pairing", "approve", request["id"].as_str().unwrap()]);
    let (code, out, err) = pair.finish();
    assert_eq!(code, Some(0), "{err}");
    let device_id = out.trim().to_owned();
    assert_eq!(device_id, request["device_id"].as_str().unwrap());
    device_id
}

/// `keygate node run` against `gw`, with its state in `node_dir`.
fn run_node(gw: &Gw, node_dir: &str) -> NodeProcess {
    NodeProcess::spawn(
        &[
            "node",
            "run",
            "--gateway",
            &gw.addr,
            "--state-dir",
            node_dir,
        ],
        None,
    )
}

fn invoke_echo(gw: &Gw, device_id: &str, text: &str) -> String {
    gw.cli(&["nodes", "invoke", device_id, "echo", text])
        .trim()
        .to_owned()
}

// ---- pairing and nodes --------------------------------------------------

#[test]
fn pin_pairing_approved_by_the_operator_then_the_node_registers_heartbeats_and_echoes() {
    let gw = Gw::new(Setup::default()).start();
    let node_dir = state_dir(&gw, "node");
    let device_id = pair_with_pin(&gw, &node_dir);

    let _node = run_node(&gw, &node_dir);
    let first = gw.wait_node("registered", |n| n["device_id"] == device_id.as_str());
    assert_eq!(first["name"], "kitchen");
    assert!(
        first["capabilities"]
            .as_array()
            .unwrap()
            .contains(&"echo".into())
    );
    // Heartbeats move the last heartbeat on (the interval is 1 s).
    gw.wait_node("heartbeating", |n| {
        n["device_id"] == device_id.as_str() && n["last_heartbeat"] != first["last_heartbeat"]
    });
    assert_eq!(invoke_echo(&gw, &device_id, "hello, node"), "hello, node");
}

#[test]
fn qr_pairing_with_auto_approve_needs_only_the_uri() {
    let gw = Gw::new(Setup {
        auto_approve: true,
        ..Setup::default()
    })
    .start();
    let uri = gw.mint_qr();
    let node_dir = state_dir(&gw, "node");
    // No --gateway: the URI carries the address.
    let pair = NodeProcess::spawn(
        &[
            "node",
            "pair",
            "--state-dir",
            &node_dir,
            "--name",
            "scanner",
        ],
        Some(&uri),
    );
    let (code, out, err) = pair.finish();
    assert_eq!(code, Some(0), "{err}");
    let device_id = out.trim().to_owned();
    let devices = json(&gw.config, &["devices", "list", "--json"]);
    assert!(devices.to_string().contains(&device_id), "{devices}");

    let _node = NodeProcess::spawn(&["node", "run", "--state-dir", &node_dir], None);
    gw.wait_node("registered", |n| n["device_id"] == device_id.as_str());
    assert_eq!(invoke_echo(&gw, &device_id, "qr"), "qr");

    // The audit log says who did each step, and what code the gateway
    // runs: the plugins are linked into the keygate executable.
    let audit = json(&gw.config, &["audit", "list", "--json"]);
    let entries: Vec<&serde_json::Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["events"].as_array().unwrap())
        .collect();
    let by = |action: &str| -> Vec<(String, String)> {
        entries
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| {
                (
                    e["actor"].as_str().unwrap().to_owned(),
                    e["subject"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let cli = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    assert_eq!(by("code_minted").len(), 1);
    assert_eq!(by("code_minted")[0].0, cli);
    let device_actor = format!("device:{device_id}");
    assert_eq!(by("request_filed")[0].0, device_actor);
    assert_eq!(by("request_approved")[0].0, "policy(pin-qr)");
    assert_eq!(
        by("device_enrolled"),
        vec![("policy(pin-qr)".to_owned(), device_id.clone())]
    );
    assert_eq!(by("certificate_issued").len(), 1);
    let exe = sha2::Sha256::digest(std::fs::read(keygate_bin()).unwrap());
    let loaded: Vec<&serde_json::Value> = entries
        .iter()
        .copied()
        .filter(|e| e["action"] == "plugin_loaded")
        .collect();
    let slots: Vec<&str> = loaded
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        slots,
        ["store(filesystem)", "approval(pin-qr)", "transport(quic)"]
    );
    for e in &loaded {
        assert_eq!(e["actor"], "gateway");
        assert_eq!(e["details"]["sha256"], hex::encode(exe), "{e}");
    }
    ok(
        &gw.config,
        &["devices", "revoke", &device_id, "--reason", "test"],
    );
    let audit = json(&gw.config, &["audit", "list", "--json"]);
    let last = audit.as_array().unwrap().last().unwrap()["events"][0].clone();
    assert_eq!(last["action"], "device_revoked");
    assert_eq!(last["actor"], cli.as_str());
    assert_eq!(last["details"]["reason"], "test");
    let verified = ok(&gw.config, &["audit", "verify"]);
    assert!(
        verified.stdout.contains("audit log intact"),
        "{}",
        verified.stdout
    );
}

// ---- who may do what on the port ----------------------------------------

fn fresh_device() -> DeviceIdentity {
    DeviceIdentity::new(Arc::new(keygate_store_memory::MemoryStore::new()))
}

/// Connects as an unpaired device does for a PIN (no certificate; the
/// server is authenticated by the pairing proof).
fn connect_unpaired(gw: &Gw) -> Link {
    unpaired(&gw.client, &gw.addr)
}

fn unpaired(client: &Arc<dyn Transport>, addr: &str) -> Link {
    let params = connect_params(addr, ServerTrust::ChannelBoundLater, None).unwrap();
    Link::connect(client.clone(), params).unwrap()
}

fn refusal_of(e: DevicePairingError) -> RefusalCode {
    match e {
        DevicePairingError::Refused { code, .. } => code,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn without_a_certificate_a_device_may_pair_but_node_methods_are_refused() {
    let gw = Gw::new(Setup::default()).start();
    let pin = gw.mint_pin();
    let link = connect_unpaired(&gw);
    let key = DeviceKey::from_seed(&[1; 32]);
    assert_eq!(
        refused(ask(&link, register(&key))),
        RefusalCode::NoCertificate
    );
    let heartbeat = Message::Heartbeat(Heartbeat {
        device_id: key.device_id().to_string(),
    });
    assert_eq!(refused(ask(&link, heartbeat)), RefusalCode::NoCertificate);
    // The same connection pairs.
    let device = fresh_device();
    match converse(&link, &device, &pin).unwrap() {
        Progress::Waiting { check_code, .. } => assert!(!check_code.is_empty()),
        other => panic!("expected to wait for the operator, got {other:?}"),
    }
}

/// What a refused handshake said, from either end of its life: `connect`
/// failing, or the connection closing at once.
fn refusal(attempt: Result<Link, LinkError>) -> String {
    match attempt {
        Err(e) => e.to_string(),
        Ok(link) => link.wait_closed(WAIT).expect("refused").reason,
    }
}

#[test]
fn a_certificate_from_another_ca_fails_the_handshake() {
    let gw = Gw::new(Setup::default()).start();
    // A CA of another name: no issuer is found.
    let other = Gw::new(Setup {
        identity: "ca_common_name = \"Other CA\"",
        ..Setup::default()
    });
    let (_, foreign) = other.enroll(2, SystemTime::now());
    let why = refusal(connect(&gw, Some(foreign)));
    assert!(why.contains("unknown_ca"), "{why}");
    // An impostor CA with the gateway CA's very name: its signature fails.
    let impostor = Gw::new(Setup::default());
    let (_, forged) = impostor.enroll(2, SystemTime::now());
    let why = refusal(connect(&gw, Some(forged)));
    assert!(why.contains("BadSignature"), "{why}");
    assert_eq!(gw.cli(&["nodes", "list", "--json"]).trim(), "[]");
}

/// A registered node's connection closes within a second of `revoke`
/// (a CLI command, given the device id and the certificate's
/// fingerprint), with cause `REVOKED`, and its next handshake is refused:
/// every connection is a full handshake, so nothing skips the check.
fn revocation_cuts_off(seed: u8, revoke: impl Fn(&str, &str) -> Vec<String>) {
    let gw = Gw::new(Setup::default()).start();
    let (key, identity) = gw.enroll(seed, SystemTime::now());
    let link = connect(&gw, Some(identity.clone())).unwrap();
    assert!(matches!(ask(&link, register(&key)), Message::Registered(_)));
    let fingerprint = hex::encode(sha2::Sha256::digest(&identity.cert_chain[0]));
    let args = revoke(&key.device_id().to_string(), &fingerprint);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    gw.cli(&args);
    let revoked_at = Instant::now();
    let closure = link.wait_closed(Duration::from_secs(5)).expect("closed");
    let took = revoked_at.elapsed();
    assert!(
        took <= Duration::from_secs(1),
        "closed {took:?} after the CLI revoked it"
    );
    assert_eq!(closure.cause, CloseCause::Revoked, "{}", closure.reason);
    let again = refusal(connect(&gw, Some(identity)));
    assert!(again.contains("certificate_revoked"), "{again}");
}

#[test]
fn a_revoked_device_is_closed_within_a_second_and_cannot_connect_again() {
    revocation_cuts_off(3, |device, _| {
        ["devices", "revoke", device, "--reason", "lost"]
            .map(String::from)
            .to_vec()
    });
}

#[test]
fn a_revoked_certificate_is_closed_within_a_second_and_cannot_connect_again() {
    revocation_cuts_off(4, |_, fingerprint| {
        ["certs", "revoke", fingerprint].map(String::from).to_vec()
    });
}

#[test]
fn a_request_naming_another_devices_id_is_refused() {
    let gw = Gw::new(Setup::default()).start();
    let (_, mine) = gw.enroll(5, SystemTime::now());
    let (theirs, _) = gw.enroll(6, SystemTime::now());
    let link = connect(&gw, Some(mine)).unwrap();
    assert_eq!(
        refused(ask(&link, register(&theirs))),
        RefusalCode::CertificateMismatch
    );
    let heartbeat = Message::Heartbeat(Heartbeat {
        device_id: theirs.device_id().to_string(),
    });
    assert_eq!(
        refused(ask(&link, heartbeat)),
        RefusalCode::CertificateMismatch
    );
    assert!(gw.cli(&["nodes", "list", "--json"]).trim() == "[]");
}

#[test]
fn an_expired_certificate_is_refused_at_the_handshake() {
    let gw = Gw::new(Setup {
        identity: "client_cert_validity = \"10s\"",
        ..Setup::default()
    })
    .start();
    // Issued a minute ago for ten seconds.
    let (_, expired) = gw.enroll(7, SystemTime::now() - Duration::from_secs(60));
    let err = refusal(connect(&gw, Some(expired)));
    assert!(
        err.contains("certificate_expired") || err.contains("Expired"),
        "{err}"
    );
}

#[test]
fn opt_out_serves_node_methods_without_a_certificate_and_warns_loudly() {
    let gw = Gw::new(Setup::default());
    let (key, _) = gw.enroll(8, SystemTime::now());
    let mut process = GatewayProcess::start_with(&gw.config, &[], &["--insecure-node-rpc-opt-out"]);
    assert!(
        process.seen.iter().any(|l| l.contains("INSECURE")),
        "{:?}",
        process.seen
    );
    let link = connect_unpaired(&gw);
    assert!(matches!(ask(&link, register(&key)), Message::Registered(_)));
    let listed = json(&gw.config, &["nodes", "list", "--json"]);
    assert_eq!(listed[0]["device_id"], key.device_id().to_string().as_str());
    // Revocation still applies.
    gw.cli(&["devices", "revoke", &key.device_id().to_string()]);
    process.wait_for("revocation seen", WAIT);
    let closure = link.wait_closed(Duration::from_secs(5)).expect("closed");
    assert_eq!(closure.cause, CloseCause::Revoked);
}

#[test]
fn opt_out_is_refused_on_an_address_other_hosts_reach() {
    let gw = Gw::new(Setup::default());
    let text = std::fs::read_to_string(&gw.config)
        .unwrap()
        .replace("listen = \"127.0.0.1:", "listen = \"0.0.0.0:");
    std::fs::write(&gw.config, text).unwrap();
    let out = run(keygate(&gw.config).args(["gateway", "run", "--insecure-node-rpc-opt-out"]));
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr.contains("only on a loopback listen address"),
        "{}",
        out.stderr
    );
}

// ---- PIN attempts over the network -----------------------------------------

#[test]
fn wrong_pins_over_the_network_burn_the_code_and_concurrent_ones_never_exceed_its_limit() {
    let gw = Gw::new(Setup {
        pairing: "max_attempts = 5\nfree_failures = 1000",
        ..Setup::default()
    })
    .start();
    let pin = gw.mint_pin();
    // The same PIN with its first digit changed.
    let first = if pin.starts_with('9') { "1" } else { "9" };
    let wrong = format!("{first}{}", &pin[1..]);
    let (client, addr) = (&gw.client, gw.addr.as_str());
    let outcomes: Vec<RefusalCode> = std::thread::scope(|s| {
        let tries: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    let link = unpaired(client, addr);
                    refusal_of(converse(&link, &fresh_device(), &wrong).unwrap_err())
                })
            })
            .collect();
        tries.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let tested = outcomes
        .iter()
        .filter(|c| **c == RefusalCode::ConfirmationFailed)
        .count();
    assert_eq!(
        tested, 5,
        "exactly the code's 5 attempts were tested: {outcomes:?}"
    );
    // The code is burned: the right PIN no longer pairs.
    let link = connect_unpaired(&gw);
    let code = refusal_of(converse(&link, &fresh_device(), &pin).unwrap_err());
    assert!(
        matches!(code, RefusalCode::UnknownCode | RefusalCode::NoAttemptsLeft),
        "{code:?}"
    );
    let requests = json(&gw.config, &["pairing", "list", "--json"]);
    assert_eq!(requests.as_array().unwrap().len(), 0, "{requests}");
}

// ---- hostile traffic beside a working node --------------------------------

#[test]
fn oversized_frames_garbage_half_open_streams_floods_and_idle_connections_leave_a_node_working() {
    let gw = Gw::new(Setup {
        gateway: "max_frame_len = 16384",
        pairing: "free_failures = 2\nfailure_delay = \"30s\"",
        ..Setup::default()
    })
    .start();
    let (key, identity) = gw.enroll(9, SystemTime::now());
    let node = connect(&gw, Some(identity)).unwrap();
    assert!(matches!(ask(&node, register(&key)), Message::Registered(_)));
    let heartbeat = || {
        Message::Heartbeat(Heartbeat {
            device_id: key.device_id().to_string(),
        })
    };
    // The node heartbeats all along (every 500 ms; it is dropped after 3 s
    // of silence), and every heartbeat must be answered.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let beats = s.spawn(|| {
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match ask(&node, heartbeat()) {
                    Message::HeartbeatAck => answered += 1,
                    other => panic!("a heartbeat answered {other:?}"),
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            answered
        });
        hostile_traffic(&gw, &key);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(beats.join().unwrap() > 0);
    });
    // The node is still served and listed.
    assert!(matches!(ask(&node, heartbeat()), Message::HeartbeatAck));
    assert_eq!(
        gw.cli(&["nodes", "list", "--json"]).matches("kgd1").count(),
        1,
        "the node is still listed"
    );
}

/// Everything a hostile client tries beside a working node.
fn hostile_traffic(gw: &Gw, key: &DeviceKey) {
    // A frame over the gateway's limit: the stream is reset, the
    // connection lives on.
    let mut params = connect_params(&gw.addr, ServerTrust::Roots(vec![gw.ca_der()]), None).unwrap();
    params.max_frame_len = 1 << 20;
    let big = Link::connect(gw.client.clone(), params).unwrap();
    let exchange = big.exchange().unwrap();
    exchange.send(&vec![7u8; 20_000]).unwrap();
    assert!(
        exchange.recv(Duration::from_secs(5)).is_err(),
        "no answer to an oversized frame"
    );
    assert_eq!(
        refused(ask(&big, register(key))),
        RefusalCode::NoCertificate
    );

    // Garbage in a frame: refused as malformed.
    let garbage = big.request(&[0xde, 0xad, 0xbe, 0xef], WAIT).unwrap();
    assert_eq!(
        refused(Message::decode(&garbage).unwrap()),
        RefusalCode::UnsupportedVersion
    );
    let garbage = big.request(&[1, 0xff, 0, 0], WAIT).unwrap();
    assert_eq!(
        refused(Message::decode(&garbage).unwrap()),
        RefusalCode::Malformed
    );

    // Half-open: a stream that sends nothing, and a pairing left after its
    // hello.
    let pin = gw.mint_pin();
    let idle_exchange = big.exchange().unwrap();
    let half = connect_unpaired(gw);
    let device = fresh_device();
    let binding = Binding {
        ca_fingerprint: half.ca_fingerprint(),
        channel_binding: half.channel_binding(),
    };
    let (_pairing, hello) = DevicePairing::start(
        &mut rand::rng(),
        &device,
        &PairingCode::parse(&pin).unwrap(),
        "half",
        &[],
        vec![],
        binding,
    )
    .unwrap();
    let half_exchange = half.exchange().unwrap();
    half_exchange.send(&hello).unwrap();
    half_exchange.recv(WAIT).expect("a challenge");

    // A flood of wrong PINs from one address: it is told to wait.
    let wrong = "00000001";
    let mut limited = false;
    for _ in 0..10 {
        let link = connect_unpaired(gw);
        if let Err(e) = converse(&link, &fresh_device(), wrong)
            && let DevicePairingError::Refused {
                code: RefusalCode::RateLimited { retry_after_secs },
                ..
            } = e
        {
            assert!(retry_after_secs >= 1);
            limited = true;
            break;
        }
    }
    assert!(
        limited,
        "a flood of wrong PINs from one address is rate limited"
    );

    // Many idle connections, held for a few seconds.
    let idle: Vec<Link> = (0..200).map(|_| connect_unpaired(gw)).collect();
    std::thread::sleep(Duration::from_secs(2));
    drop((idle, idle_exchange));
}

#[test]
fn past_the_connection_limit_new_connections_are_refused_and_the_node_keeps_working() {
    let gw = Gw::new(Setup::default());
    let text = std::fs::read_to_string(&gw.config).unwrap().replace(
        "[plugins.transport]\nuse = \"quic\"\n",
        "[plugins.transport]\nuse = \"quic\"\n[plugins.transport.config]\nmax_connections = 20\n",
    );
    std::fs::write(&gw.config, text).unwrap();
    let gw = gw.start();
    let (key, identity) = gw.enroll(10, SystemTime::now());
    let node = connect(&gw, Some(identity)).unwrap();
    assert!(matches!(ask(&node, register(&key)), Message::Registered(_)));
    let mut held = Vec::new();
    let mut refused_at = None;
    for n in 0..30 {
        match connect(&gw, None) {
            Ok(link) => held.push(link),
            Err(e) => {
                refused_at = Some((n, e.to_string()));
                break;
            }
        }
    }
    let (n, why) = refused_at.expect("the 21st connection is refused");
    assert_eq!(n, 19, "{why}");
    let heartbeat = Message::Heartbeat(Heartbeat {
        device_id: key.device_id().to_string(),
    });
    assert!(matches!(ask(&node, heartbeat), Message::HeartbeatAck));
}

// ---- restarts and renewal ----------------------------------------------------

/// Pairs a node with a QR code (auto-approved) and starts `node run`.
fn paired_node(gw: &Gw, name: &str) -> (String, NodeProcess) {
    let node_dir = state_dir(gw, name);
    let pair = NodeProcess::spawn(
        &["node", "pair", "--state-dir", &node_dir, "--name", name],
        Some(&gw.mint_qr()),
    );
    let (code, out, err) = pair.finish();
    assert_eq!(code, Some(0), "{err}");
    let device_id = out.trim().to_owned();
    let node = NodeProcess::spawn(&["node", "run", "--state-dir", &node_dir], None);
    gw.wait_node("registered", |n| n["device_id"] == device_id.as_str());
    (device_id, node)
}

#[test]
fn after_a_gateway_restart_nodes_reconnect_without_pairing_again() {
    let mut gw = Gw::new(Setup {
        auto_approve: true,
        ..Setup::default()
    })
    .start();
    let (device_id, mut node) = paired_node(&gw, "survivor");
    let devices_before = gw.cli(&["devices", "list", "--json"]);
    gw.stop();
    node.wait_for("reconnect");
    gw.start_again();
    gw.wait_node("back", |n| n["device_id"] == device_id.as_str());
    assert_eq!(invoke_echo(&gw, &device_id, "again"), "again");
    assert_eq!(
        gw.cli(&["devices", "list", "--json"]),
        devices_before,
        "state intact"
    );
    assert_eq!(
        json(&gw.config, &["pairing", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1,
        "no second pairing"
    );
    node.interrupt();
    let (code, _, err) = node.finish();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn nodes_renew_through_short_lived_certificates_and_the_gateway_renews_its_own() {
    let mut gw = Gw::new(Setup {
        auto_approve: true,
        identity: "client_cert_validity = \"20s\"\nserver_cert_validity = \"15s\"",
        ..Setup::default()
    })
    .start();
    let first_server_leaf = connect(&gw, None).unwrap().peer_certificates()[0].clone();
    let (device_id, _node) = paired_node(&gw, "renewer");
    // 45 s: the node's certificate is renewed at about 13 s, 26 s and 40 s.
    let until = Instant::now() + Duration::from_secs(45);
    let mut served = 0;
    while Instant::now() < until {
        assert_eq!(invoke_echo(&gw, &device_id, "still here"), "still here");
        served += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(served > 20);
    let certs = json(&gw.config, &["certs", "list", "--json"]);
    let mine = certs
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["device_id"] == device_id.as_str())
        .count();
    assert!(mine >= 3, "issued and renewed at least twice: {certs}");
    gw.process().wait_for("server certificate renewed", WAIT);
    let later_server_leaf = connect(&gw, None).unwrap().peer_certificates()[0].clone();
    assert_ne!(
        first_server_leaf, later_server_leaf,
        "new handshakes get the new certificate"
    );
}

// ---- the HTTP admin API ---------------------------------------------------

/// A client of the admin API at `base`: every answer, whatever its status.
struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(base: String) -> Api {
        // A connection per request: the server may close a connection
        // after answering 401 without reading the body, and a pooled one
        // reused in that moment would fail the next request.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .build()
            .into();
        Api { base, agent }
    }

    /// `METHOD path` with `token` (if any) and a JSON `body` (if any):
    /// status and body (JSON, or a string when it is not).
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = match body {
            Some(body) => self.agent.run(
                request
                    .header("Content-Type", "application/json")
                    .body(body.to_owned())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, value)
    }

    fn ok(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> serde_json::Value {
        let (status, value) = self.call(method, path, Some(token), body);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {value}"
        );
        value
    }

    /// Asserts a 400 whose body names `field`.
    fn bad(&self, method: &str, path: &str, token: &str, body: &str, field: &str) {
        let (status, value) = self.call(method, path, Some(token), Some(body));
        assert_eq!(status, 400, "{method} {path} {body}: {value}");
        assert_eq!(value["field"], field, "{method} {path} {body}: {value}");
        assert!(
            value["message"].as_str().unwrap().contains(field),
            "{value}"
        );
    }
}

/// Every endpoint that needs a token, with a body it accepts.
const GUARDED: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/api/v1/codes", None),
    ("POST", "/api/v1/codes", Some(r#"{"kind":"pin"}"#)),
    ("GET", "/api/v1/requests", None),
    (
        "POST",
        "/api/v1/requests/00000000000000000000000000000000/approve",
        None,
    ),
    (
        "POST",
        "/api/v1/requests/00000000000000000000000000000000/reject",
        Some(r#"{"reason":"x"}"#),
    ),
    ("GET", "/api/v1/devices", None),
    (
        "POST",
        "/api/v1/devices/kgd1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq/revoke",
        Some("{}"),
    ),
    ("GET", "/api/v1/certificates", None),
    (
        "POST",
        "/api/v1/certificates/0000000000000000000000000000000000000000000000000000000000000000/revoke",
        Some("{}"),
    ),
    ("GET", "/api/v1/nodes", None),
    ("GET", "/api/v1/events", None),
    ("GET", "/api/v1/audit", None),
    ("GET", "/api/v1/audit/verify", None),
    (
        "POST",
        "/api/v1/nodes/kgd1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq/invoke",
        Some(r#"{"capability":"echo"}"#),
    ),
];

#[test]
fn the_admin_api_serves_operators_refuses_everyone_else_and_its_decisions_reach_real_devices() {
    let admin_port = keygate_tests::free_tcp_port();
    let tables = format!("[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n");
    let gw = Gw::new(Setup {
        tables: &tables,
        ..Setup::default()
    });
    let alice = json(&gw.config, &["operators", "add", "alice", "--json"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob = json(&gw.config, &["operators", "add", "bob", "--json"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&gw.config, &["operators", "revoke", "bob"]);
    // `start` waits for "gateway ready", logged after the API listens.
    let gw = gw.start();
    let api = Api::new(format!("http://127.0.0.1:{admin_port}"));

    // Without a token, with a revoked operator's, with garbage: 401.
    let forged = format!("kgo_{}", "ab".repeat(32));
    for (method, path, body) in GUARDED {
        for token in [None, Some(bob.as_str()), Some(forged.as_str()), Some("")] {
            let (status, value) = api.call(method, path, token, *body);
            assert_eq!(status, 401, "{method} {path} with {token:?}: {value}");
            assert_eq!(value["error"], "unauthorized");
        }
    }
    // The scheme's name in any case; another scheme is refused.
    for (header, status) in [
        (format!("bearer {alice}"), 200),
        (format!("BEARER {alice}"), 200),
        (format!("Basic {alice}"), 401),
        (alice.clone(), 401),
    ] {
        let answer = api
            .agent
            .get(format!("{}/api/v1/devices", api.base))
            .header("Authorization", &header)
            .call()
            .unwrap();
        assert_eq!(answer.status().as_u16(), status, "{header:.12}");
    }
    // Health needs none.
    assert_eq!(api.call("GET", "/healthz", None, None), (200, "ok".into()));
    let (status, ready) = api.call("GET", "/readyz", None, None);
    assert_eq!((status, &ready["ready"]), (200, &true.into()));

    // Codes: minted through the API, listed without their secrets.
    let qr = api.ok(
        "POST",
        "/api/v1/codes",
        &alice,
        Some(r#"{"kind":"qr","ttl":"5m"}"#),
    );
    assert!(
        qr["uri"].as_str().unwrap().starts_with("keygate://"),
        "{}",
        qr["uri"]
    );
    assert!(qr["svg"].as_str().unwrap().contains("<svg"), "{}", qr["id"]);
    let pin = api.ok("POST", "/api/v1/codes", &alice, Some(r#"{"kind":"pin"}"#));
    let pin_code = pin["pin"].as_str().unwrap().to_owned();
    let codes = api.ok("GET", "/api/v1/codes", &alice, None);
    let listed = codes.to_string();
    assert_eq!(codes.as_array().unwrap().len(), 2, "{codes}");
    assert!(
        !listed.contains(&pin_code) && !listed.contains("keygate://"),
        "{listed}"
    );
    // Malformed bodies: 400 naming the field.
    api.bad("POST", "/api/v1/codes", &alice, r#"{"kind":"nfc"}"#, "kind");
    api.bad("POST", "/api/v1/codes", &alice, r#"{}"#, "kind");
    api.bad(
        "POST",
        "/api/v1/codes",
        &alice,
        r#"{"kind":"pin","ttl":"forever"}"#,
        "ttl",
    );
    api.bad(
        "POST",
        "/api/v1/codes",
        &alice,
        r#"{"kind":"pin","ttl":"2d"}"#,
        "ttl",
    );
    api.bad(
        "POST",
        "/api/v1/codes",
        &alice,
        r#"{"kind":"pin","colour":1}"#,
        "colour",
    );
    let (status, value) = api.call("POST", "/api/v1/codes", Some(&alice), Some("kind=pin"));
    assert_eq!(status, 400, "{value}");

    // A real device pairs with the PIN; the operator approves it through
    // the API after comparing check codes; the device gets its certificate.
    let node_dir = state_dir(&gw, "node");
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
        Some(&pin_code),
    );
    let line = pair.wait_for("check code:");
    let shown = line.split_whitespace().nth(2).unwrap().to_owned();
    let requests = api.ok("GET", "/api/v1/requests", &alice, None);
    let request = requests
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "pending")
        .unwrap_or_else(|| panic!("no pending request: {requests}"))
        .clone();
    assert_eq!(request["check_code"], shown.as_str());
    assert_eq!(request["name"], "kitchen");
    let id = request["id"].as_str().unwrap();
    let approved = api.ok(
        "POST",
        &format!("/api/v1/requests/{id}/approve"),
        &alice,
        None,
    );
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "operator:alice");
    let (code, out, err) = pair.finish();
    assert_eq!(code, Some(0), "{err}");
    let device_id = out.trim().to_owned();
    assert_eq!(device_id, request["device_id"].as_str().unwrap());
    // The CLI sees the API's decision at once, and the API refuses to
    // reverse it.
    let cli_view = json(&gw.config, &["pairing", "list", "--json"]);
    assert!(
        cli_view.to_string().contains("operator:alice"),
        "{cli_view}"
    );
    let (status, value) = api.call(
        "POST",
        &format!("/api/v1/requests/{id}/reject"),
        Some(&alice),
        Some(r#"{"reason":"late"}"#),
    );
    assert_eq!(status, 409, "{value}");
    api.bad(
        "POST",
        &format!("/api/v1/requests/{id}/reject"),
        &alice,
        "{}",
        "reason",
    );
    let (status, _) = api.call(
        "POST",
        "/api/v1/requests/ffffffffffffffffffffffffffffffff/approve",
        Some(&alice),
        None,
    );
    assert_eq!(status, 404);

    // The node runs; the API lists it and invokes it.
    let _node = run_node(&gw, &node_dir);
    gw.wait_node("registered", |n| n["device_id"] == device_id.as_str());
    let nodes = api.ok("GET", "/api/v1/nodes", &alice, None);
    assert_eq!(nodes[0]["device_id"], device_id.as_str(), "{nodes}");
    let echoed = api.ok(
        "POST",
        &format!("/api/v1/nodes/{device_id}/invoke"),
        &alice,
        Some(r#"{"capability":"echo","payload":"over http"}"#),
    );
    assert_eq!(
        echoed,
        serde_json::json!({"ok": true, "payload": "over http"})
    );
    api.bad(
        "POST",
        &format!("/api/v1/nodes/{device_id}/invoke"),
        &alice,
        r#"{"capability":"teleport"}"#,
        "capability",
    );
    api.bad(
        "POST",
        "/api/v1/nodes/not-an-id/invoke",
        &alice,
        r#"{"capability":"echo"}"#,
        "id",
    );

    // Devices and certificates; revoking through the API cuts the node off.
    let devices = api.ok("GET", "/api/v1/devices", &alice, None);
    assert_eq!(devices[0]["device_id"], device_id.as_str());
    let certs = api.ok("GET", "/api/v1/certificates", &alice, None);
    assert_eq!(certs[0]["device_id"], device_id.as_str());
    api.bad(
        "POST",
        "/api/v1/certificates/nope/revoke",
        &alice,
        "{}",
        "fingerprint",
    );
    let (status, _) = api.call(
        "POST",
        &format!("/api/v1/certificates/{}/revoke", "00".repeat(32)),
        Some(&alice),
        Some("{}"),
    );
    assert_eq!(status, 404);
    let revoked = api.ok(
        "POST",
        &format!("/api/v1/devices/{device_id}/revoke"),
        &alice,
        Some(r#"{"reason":"lost"}"#),
    );
    assert_eq!(revoked["outcome"], "revoked");
    let deadline = Instant::now() + WAIT;
    while !api
        .ok("GET", "/api/v1/nodes", &alice, None)
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the revoked node is still listed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // No body at all: no reason.
    let again = api.ok(
        "POST",
        &format!("/api/v1/devices/{device_id}/revoke"),
        &alice,
        None,
    );
    assert_eq!(again["outcome"], "already_revoked");
    assert_eq!(again["reason"], "lost");

    // Everything alice did is hers in the audit log.
    let audit = json(&gw.config, &["audit", "list", "--json"]);
    let hers: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["events"].as_array().unwrap().clone())
        .filter(|v| v["actor"] == "operator:alice")
        .map(|v| v["action"].as_str().unwrap().to_owned())
        .collect();
    for action in [
        "code_minted",
        "request_approved",
        "device_enrolled",
        "device_revoked",
    ] {
        assert!(hers.iter().any(|a| a == action), "{action} in {hers:?}");
    }

    // The OpenAPI document describes exactly what is served.
    let (status, doc) = api.call("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/api/v1/audit",
            "/api/v1/audit/verify",
            "/api/v1/certificates",
            "/api/v1/certificates/{fingerprint}/revoke",
            "/api/v1/codes",
            "/api/v1/devices",
            "/api/v1/devices/{id}/revoke",
            "/api/v1/events",
            "/api/v1/nodes",
            "/api/v1/nodes/{id}/invoke",
            "/api/v1/requests",
            "/api/v1/requests/{id}/approve",
            "/api/v1/requests/{id}/reject",
            "/healthz",
            "/metrics",
            "/readyz",
        ]
    );
    for (method, path, _) in GUARDED {
        let templated = path
            .replace(&"0".repeat(64), "{fingerprint}")
            .replace(&"0".repeat(32), "{id}")
            .replace("kgd1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", "{id}");
        let op = &doc["paths"][&templated][method.to_lowercase()];
        assert!(op.is_object(), "{method} {templated} is not documented");
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {templated}: no 401"
        );
    }
    let (status, _) = api.call("GET", "/api/v1/nothing", Some(&alice), None);
    assert_eq!(status, 404);
}

/// A started gateway with an `[admin]` table (`listen` on `ip` and a free
/// port, then `extra` lines), and the token of operator `name`: the
/// gateway, the token and the port.
fn admin_gateway(ip: &str, extra: &str, name: &str) -> (Gw, String, u16) {
    let port = keygate_tests::free_tcp_port();
    let tables = format!("[admin]\nlisten = \"{ip}:{port}\"\n{extra}");
    let gw = Gw::new(Setup {
        tables: &tables,
        ..Setup::default()
    });
    let token = json(&gw.config, &["operators", "add", name, "--json"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (gw.start(), token, port)
}

/// The admin API's event stream, read on a thread of its own.
struct EventStream {
    events: Receiver<(String, serde_json::Value)>,
    seen: Vec<(String, serde_json::Value)>,
}

impl EventStream {
    /// Opens `/api/v1/events` and waits for its `: open` comment, from
    /// which on it misses nothing.
    fn open(base: &str, token: &str) -> EventStream {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let response = agent
            .get(format!("{base}/api/v1/events"))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let (tx, events) = channel();
        let (opened_tx, opened) = channel();
        std::thread::spawn(move || {
            let reader = BufReader::new(response.into_body().into_reader());
            let mut name = String::new();
            for line in reader.lines().map_while(Result::ok) {
                if line == ": open" {
                    let _ = opened_tx.send(());
                } else if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    let value = serde_json::from_str(data).unwrap();
                    if tx.send((std::mem::take(&mut name), value)).is_err() {
                        return;
                    }
                }
            }
        });
        opened.recv_timeout(WAIT).expect("the stream opens");
        EventStream {
            events,
            seen: Vec::new(),
        }
    }

    /// Waits for an event named `name` whose data `pick` accepts.
    fn wait(&mut self, name: &str, pick: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        if let Some((_, v)) = self.seen.iter().find(|(n, v)| n == name && pick(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((n, v)) => {
                    let hit = n == name && pick(&v);
                    self.seen.push((n, v.clone()));
                    if hit {
                        return v;
                    }
                }
                Err(_) => panic!("no {name} event; saw {:?}", self.seen),
            }
        }
    }
}

#[test]
fn the_event_stream_tells_of_requests_decisions_nodes_and_revocations_made_by_any_process() {
    let (gw, alice, admin_port) = admin_gateway("127.0.0.1", "", "alice");
    let base = format!("http://127.0.0.1:{admin_port}");
    let api = Api::new(base.clone());
    // An event stream needs a token like the rest.
    let (status, value) = api.call("GET", "/api/v1/events", None, None);
    assert_eq!((status, &value["error"]), (401, &"unauthorized".into()));
    let mut stream = EventStream::open(&base, &alice);
    let cli = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );

    // A code minted, a request filed by a real device and approved, all
    // through the CLI (another process): the gateway's stream tells.
    let node_dir = state_dir(&gw, "node");
    let device_id = pair_with_pin(&gw, &node_dir);
    let minted = stream.wait("code_minted", |_| true);
    assert_eq!(minted["actor"], cli.as_str());
    let filed = stream.wait("request_filed", |v| {
        v["actor"] == format!("device:{device_id}")
    });
    let approved = stream.wait("request_approved", |v| v["subject"] == filed["subject"]);
    assert_eq!(approved["actor"], cli.as_str());
    assert!(approved["seq"].as_u64().unwrap() > filed["seq"].as_u64().unwrap());
    stream.wait("certificate_issued", |_| true);

    // The node connects; the operator revokes it through the API; it leaves.
    let _node = run_node(&gw, &node_dir);
    let connected = stream.wait("node_connected", |v| v["device_id"] == device_id.as_str());
    assert_eq!(connected["name"], "kitchen");
    api.ok(
        "POST",
        &format!("/api/v1/devices/{device_id}/revoke"),
        &alice,
        Some(r#"{"reason":"stolen"}"#),
    );
    let revoked = stream.wait("device_revoked", |v| v["subject"] == device_id.as_str());
    assert_eq!(revoked["actor"], "operator:alice");
    assert_eq!(revoked["details"]["reason"], "stolen");
    stream.wait("node_left", |v| v["device_id"] == device_id.as_str());

    // The audit log through the API: the same entries as the CLI's, the
    // newest `limit`, and a check of the chain.
    let cli_entries = json(&gw.config, &["audit", "list", "--json"]);
    let all = api.ok("GET", "/api/v1/audit?limit=10000", &alice, None);
    let seqs = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&all), seqs(&cli_entries));
    assert_eq!(all[0]["hash"], cli_entries[0]["hash"]);
    let last_two = api.ok("GET", "/api/v1/audit?limit=2", &alice, None);
    assert_eq!(seqs(&last_two), seqs(&all)[seqs(&all).len() - 2..]);
    api.bad("GET", "/api/v1/audit?limit=0", &alice, "", "limit");
    api.bad("GET", "/api/v1/audit?limit=lots", &alice, "", "limit");
    let verdict = api.ok("GET", "/api/v1/audit/verify", &alice, None);
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(
        verdict["entries"].as_u64().unwrap(),
        seqs(&all).len() as u64
    );

    // An entry removed from the store: the API names it.
    let (host, _) = open_identity(&gw.config);
    let key = keygate_core::state::audit::audit_key(2);
    let found = host.store.get(&key).unwrap().expect("entry 2");
    host.store.delete(&key, found.version).unwrap();
    let verdict = api.ok("GET", "/api/v1/audit/verify", &alice, None);
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert_eq!(verdict["broken"]["seq"], 2, "{verdict}");
    assert_eq!(verdict["broken"]["key"], key.as_str(), "{verdict}");
}

/// An HTTPS agent that trusts only `root` (DER).
fn https_agent(root: &[u8]) -> ureq::Agent {
    let roots = ureq::tls::RootCerts::Specific(Arc::new(vec![
        ureq::tls::Certificate::from_der(root).to_owned(),
    ]));
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build())
        .build()
        .into()
}

#[test]
fn off_loopback_the_admin_api_speaks_https_with_a_certificate_from_the_gateway_ca() {
    let (mut gw, alice, admin_port) = admin_gateway(
        "0.0.0.0",
        "tls = \"gateway-ca\"\nnames = [\"127.0.0.1\"]\n",
        "alice",
    );
    // What an operator's client trusts: the CA certificate, from the CLI.
    let pem = gw.cli(&["ca", "show", "--pem"]);
    let ca = ureq::tls::Certificate::from_pem(pem.as_bytes())
        .expect("ca show --pem prints a PEM certificate")
        .der()
        .to_vec();
    assert_eq!(ca, open_identity(&gw.config).1.ca().certificate_der());
    let https = format!("https://127.0.0.1:{admin_port}");

    let agent = https_agent(&ca);
    let mut health = agent.get(format!("{https}/healthz")).call().unwrap();
    assert_eq!(health.body_mut().read_to_string().unwrap(), "ok");
    let devices = agent
        .get(format!("{https}/api/v1/devices"))
        .header("Authorization", format!("Bearer {alice}"))
        .call()
        .unwrap();
    assert_eq!(devices.status().as_u16(), 200);
    // A client that does not trust the gateway's CA refuses the server;
    // plain HTTP gets no answer.
    let stranger = ureq::Agent::config_builder().build().new_agent();
    let err = stranger.get(format!("{https}/healthz")).call().unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate")
            || err.to_string().to_lowercase().contains("issuer"),
        "{err}"
    );
    let plain = Api::new(format!("http://127.0.0.1:{admin_port}"));
    let url = format!("{}/healthz", plain.base);
    assert!(
        plain
            .agent
            .get(&url)
            .call()
            .map(|r| r.status().as_u16())
            .ok()
            != Some(200),
        "plain HTTP is not served"
    );
    let seen = &gw.process().seen;
    assert!(
        seen.iter()
            .any(|l| l.contains("admin API listening on https://0.0.0.0:")),
        "{seen:#?}"
    );
}

#[test]
fn the_admin_api_serves_a_configured_certificate_and_names_a_bad_key_file() {
    let admin_port = keygate_tests::free_tcp_port();
    let dir = tempfile::tempdir().unwrap();
    let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = dir.path().join("admin.pem");
    let key = dir.path().join("admin-key.pem");
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    let tables = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let gw = Gw::new(Setup {
        tables: &tables,
        ..Setup::default()
    })
    .start();
    let agent = https_agent(issued.cert.der());
    let health = agent
        .get(format!("https://127.0.0.1:{admin_port}/healthz"))
        .call()
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    drop(gw);

    // A key file that holds no key: the gateway does not start, and says
    // which file.
    std::fs::write(&key, "not a key\n").unwrap();
    let gw = Gw::new(Setup {
        tables: &tables,
        ..Setup::default()
    });
    let ran = run(keygate(&gw.config).args(["gateway", "run"]));
    assert!(!ran.ok, "{}", ran.stderr);
    assert!(
        ran.stderr.contains(&key.display().to_string()),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("private key"), "{}", ran.stderr);
}

/// schemathesis, as `scripts/setup` installs it (or `KEYGATE_SCHEMATHESIS`).
fn schemathesis() -> PathBuf {
    let path = std::env::var_os("KEYGATE_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            keygate_tests::profile_dir()
                .parent()
                .expect("target/")
                .join("tools/schemathesis/bin/st")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup, which installs schemathesis from PyPI into \
         target/tools/schemathesis (or point KEYGATE_SCHEMATHESIS at an `st` binary)",
        path.display()
    );
    path
}

#[test]
fn the_admin_api_answers_what_schemathesis_generates_from_its_openapi_document_without_5xx() {
    let (gw, token, admin_port) = admin_gateway("127.0.0.1", "", "fuzz");
    // Real records behind every list: a paired device with its node
    // connected, a pending request, codes, audit entries.
    let node_dir = state_dir(&gw, "node");
    pair_with_pin(&gw, &node_dir);
    let _node = run_node(&gw, &node_dir);
    gw.wait_node("registered", |_| true);
    let pin = gw.mint_pin();
    let mut pending = NodeProcess::spawn(
        &[
            "node",
            "pair",
            "--gateway",
            &gw.addr,
            "--state-dir",
            &state_dir(&gw, "pending"),
        ],
        Some(&pin),
    );
    pending.wait_for("check code:");

    // The event stream never ends by itself: it has its own test. The
    // checks are that the server never fails (5xx) and that what it
    // answers (status, content type, headers, body) is what the document
    // says; also that it refuses a missing token and methods it does not
    // serve. Inputs the document cannot fully describe (a device id's
    // checksum, a ttl's range) are refused with 400, so "valid input
    // refused" is not checked. One worker: schemathesis' parallel mode
    // trips over Python's ast module here.
    let out = Command::new(schemathesis())
        .args([
            "run",
            &format!("http://127.0.0.1:{admin_port}/api/v1/openapi.json"),
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--exclude-path",
            "/api/v1/events",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,ignored_auth,\
             missing_required_header,unsupported_method",
            "--max-examples",
            "25",
            "--workers",
            "1",
        ])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        // Its cache goes where it runs: the test's folder, not the tree.
        .current_dir(gw.dir.path())
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("Tested: 16"), "{report}");
    assert!(!report.contains(" 0 generated"), "{report}");
}

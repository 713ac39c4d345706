//! `keygate node pair` and `keygate node run` as processes, in a folder
//! without `config.toml`, against a scripted gateway in this test: a
//! listening `quic` transport, Keygate's pairing service (approving every
//! request) and hand-written node answers.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

use keygate_core::device::plugins;
use keygate_core::pairing::gateway::{Conversation, PairingService, PolicySlot, ServiceSettings};
use keygate_core::pairing::{GatewayAddr, PairingUri};
use keygate_core::state::pairing::Method;
use keygate_core::state::{IdentityManager, IdentitySettings, StateStore};
use keygate_proto::link::{CHANNEL_BINDING_CONTEXT, CHANNEL_BINDING_LABEL, close};
use keygate_proto::{Message, Registered};
use keygate_sdk::{
    ApprovalPolicy, ApprovalRequest, ConnectionId, Decision, ListenParams, PluginError, StreamId,
    TlsIdentity, Transport, TransportCallbacks, TransportEvent, TransportHost,
};

use keygate_store_fs as _;
use keygate_transport_quic as _;

const WAIT: Duration = Duration::from_secs(20);
const DAY: Duration = Duration::from_secs(86_400);

struct ApproveAll;

impl ApprovalPolicy for ApproveAll {
    fn evaluate(&self, _request: &ApprovalRequest) -> Result<Decision, PluginError> {
        Ok(Decision::Approve)
    }
}

struct Forward(Mutex<mpsc::Sender<TransportEvent>>);

impl TransportCallbacks for Forward {
    fn verify_client(&self, _chain: &[Vec<u8>]) -> Result<(), PluginError> {
        Ok(())
    }
    fn on_event(&self, event: TransportEvent) {
        let _ = self.0.lock().unwrap().send(event);
    }
}

/// What the gateway does after answering `Register`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AfterRegister {
    Serve,
    Revoke,
}

/// What the gateway saw.
#[derive(Default)]
struct Seen {
    registered: Vec<String>,
    closed: Vec<String>,
}

struct Gateway {
    transport: Arc<dyn Transport>,
    addr: String,
    manager: Arc<IdentityManager>,
    seen: Arc<Mutex<Seen>>,
    after_register: Arc<Mutex<AfterRegister>>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let manager = Arc::new(
            IdentityManager::open(
                StateStore::plain(Arc::new(keygate_store_memory::MemoryStore::new())),
                dir.path(),
                IdentitySettings::default(),
                SystemTime::now(),
            )
            .unwrap(),
        );
        let transport = plugins::open_transport(dir.path()).unwrap();
        let server = manager
            .ca()
            .issue_server(&["127.0.0.1".into()], DAY, SystemTime::now())
            .unwrap();
        let (tx, events) = mpsc::channel();
        let addr = transport
            .listen(
                ListenParams {
                    addr: "127.0.0.1:0".into(),
                    identity: TlsIdentity {
                        cert_chain: vec![
                            server.certificate.der.clone(),
                            manager.ca().certificate_der().to_vec(),
                        ],
                        private_key_der: server.private_key_pkcs8_der.to_vec(),
                    },
                    client_ca_roots: vec![manager.ca().certificate_der().to_vec()],
                    require_client_cert: false,
                    max_frame_len: 16384,
                },
                TransportHost::new(Forward(Mutex::new(tx))),
            )
            .unwrap();
        let gateway = Gateway {
            transport,
            addr,
            manager,
            seen: Arc::default(),
            after_register: Arc::new(Mutex::new(AfterRegister::Serve)),
            stop: Arc::default(),
            _dir: dir,
        };
        gateway.serve(events);
        gateway
    }

    fn serve(&self, events: mpsc::Receiver<TransportEvent>) {
        let transport = self.transport.clone();
        let service = PairingService::new(
            self.manager.clone(),
            Some(PolicySlot {
                name: "approve-all".into(),
                policy: Arc::new(ApproveAll),
            }),
            ServiceSettings::default(),
        );
        let seen = self.seen.clone();
        let after_register = self.after_register.clone();
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            let mut peers: HashMap<ConnectionId, SocketAddr> = HashMap::new();
            let mut conversations: HashMap<(ConnectionId, StreamId), Conversation> = HashMap::new();
            while !stop.load(Ordering::SeqCst) {
                let Ok(event) = events.recv_timeout(Duration::from_millis(50)) else {
                    continue;
                };
                match event {
                    TransportEvent::Connected(info) => {
                        peers.insert(info.connection, info.remote_addr.parse().unwrap());
                    }
                    TransportEvent::Closed { reason, .. } => {
                        seen.lock().unwrap().closed.push(reason)
                    }
                    TransportEvent::Frame(f) => {
                        let (conn, stream) = (f.connection, f.stream);
                        let answer = |msg: Message| {
                            let _ = transport.send_frame(conn, stream, &msg.encode());
                            let _ = transport.finish_stream(conn, stream);
                        };
                        match Message::decode(&f.payload) {
                            Ok(Message::Register(r)) => {
                                seen.lock().unwrap().registered.push(r.device_id);
                                answer(Message::Registered(Registered { heartbeat_secs: 60 }));
                                if *after_register.lock().unwrap() == AfterRegister::Revoke {
                                    let _ = transport.close_connection(
                                        conn,
                                        close::REVOKED,
                                        "device revoked by the operator",
                                    );
                                }
                            }
                            Ok(Message::Heartbeat(_)) => answer(Message::HeartbeatAck),
                            _ => {
                                let Ok(binding) = transport.export_keying_material(
                                    conn,
                                    CHANNEL_BINDING_LABEL,
                                    CHANNEL_BINDING_CONTEXT,
                                    32,
                                ) else {
                                    continue;
                                };
                                let conversation =
                                    conversations.entry((conn, stream)).or_insert_with(|| {
                                        service
                                            .conversation(peers[&conn], binding.try_into().unwrap())
                                    });
                                for reply in conversation.on_message(
                                    &mut rand::rng(),
                                    &f.payload,
                                    SystemTime::now(),
                                ) {
                                    let _ = transport.send_frame(conn, stream, &reply);
                                }
                                if matches!(
                                    Message::decode(&f.payload),
                                    Ok(Message::QrConfirm(_) | Message::Resume(_))
                                ) || conversation.is_closed()
                                {
                                    let _ = transport.finish_stream(conn, stream);
                                }
                            }
                        }
                    }
                    TransportEvent::StreamFinished { .. } => {}
                }
            }
        });
    }

    fn mint_qr(&self) -> String {
        let mut token = zeroize::Zeroizing::new([0u8; 16]);
        rand::Rng::fill_bytes(&mut rand::rng(), &mut *token);
        let session = self
            .manager
            .create_pairing_session(
                Method::Qr,
                zeroize::Zeroizing::new(hex::encode(*token)),
                Duration::from_secs(600),
                5,
                SystemTime::now(),
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
        let mut session_id = [0u8; 16];
        hex::decode_to_slice(&session.id, &mut session_id).unwrap();
        PairingUri {
            gateways: vec![GatewayAddr::parse(&self.addr).unwrap()],
            ca_fingerprint: *self.manager.ca().fingerprint().as_bytes(),
            session_id,
            token,
        }
        .to_uri()
        .to_string()
    }

    fn wait_until(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(&self.seen.lock().unwrap()) {
            assert!(Instant::now() < deadline, "no {what} within {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn keygate(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keygate"));
    cmd.current_dir(cwd)
        .env_remove("KEYGATE_CONFIG")
        .env_remove("KEYGATE_PAIRING_CODE")
        .env_remove("KEYGATE_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for `child` to exit: its code, stdout and stderr.
fn finish(mut child: Child) -> (i32, String, String) {
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn a_node_pairs_runs_stops_on_sigterm_and_exits_3_when_revoked_all_without_a_config_file() {
    let gateway = Gateway::start();
    let folder = tempfile::tempdir().unwrap();
    assert!(!folder.path().join("config.toml").exists());

    // Pair with a QR code from the environment: stdout is the device id
    // alone, the check code is on stderr.
    let child = keygate(folder.path())
        .args(["node", "pair", "--name", "test node"])
        .env("KEYGATE_PAIRING_CODE", gateway.mint_qr())
        .spawn()
        .unwrap();
    let (code, out, err) = finish(child);
    assert_eq!(code, 0, "stderr: {err}");
    let device_id = out.trim_end().to_owned();
    assert_eq!(out, format!("{device_id}\n"));
    assert!(device_id.starts_with("kgd1"), "{out}");
    assert!(err.contains("check code: "), "{err}");
    let devices = gateway.manager.devices().unwrap().records;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].device_id.to_string(), device_id);
    let state = folder.path().join("node-state");
    assert!(state.join("store").is_dir() && state.join("store.key").is_file());

    // Once paired, pairing again is refused, naming the device and the
    // state dir.
    let child = keygate(folder.path())
        .args(["node", "pair", "--gateway", &gateway.addr])
        .env("KEYGATE_PAIRING_CODE", "48203917")
        .spawn()
        .unwrap();
    let (code, _, err) = finish(child);
    assert_eq!(code, 1);
    assert!(
        err.contains(&device_id) && err.contains("node-state"),
        "{err}"
    );

    // Run (the gateway address kept from pairing), then SIGTERM: the
    // connection is closed and the exit is 0.
    let child = keygate(folder.path())
        .args(["node", "run"])
        .spawn()
        .unwrap();
    gateway.wait_until("Register", |s| s.registered.len() == 1);
    assert_eq!(gateway.seen.lock().unwrap().registered[0], device_id);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (code, _, err) = finish(child);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(err.contains("registered"), "info logs on stderr: {err}");
    gateway.wait_until("the node's close", |s| {
        s.closed.iter().any(|r| r.contains("the node is stopping"))
    });

    // Revoked: exit 3, naming the device.
    *gateway.after_register.lock().unwrap() = AfterRegister::Revoke;
    let child = keygate(folder.path())
        .args(["node", "run", "--gateway", &gateway.addr])
        .spawn()
        .unwrap();
    let (code, _, err) = finish(child);
    assert_eq!(code, 3, "stderr: {err}");
    assert!(err.contains("revoked") && err.contains(&device_id), "{err}");
}

#[test]
fn node_commands_say_what_is_missing() {
    let folder = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: Option<&str>, env: Option<&str>| {
        let mut cmd = keygate(folder.path());
        cmd.args(args);
        if let Some(code) = env {
            cmd.env("KEYGATE_PAIRING_CODE", code);
        }
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        finish(child)
    };
    let (code, _, err) = run(&["node", "run"], None, None);
    assert_eq!(code, 1);
    assert!(err.contains("not paired"), "{err}");
    assert!(!err.contains("config"), "{err}");

    // A PIN (from stdin when the environment has none) needs --gateway.
    let (code, _, err) = run(&["node", "pair"], Some("4820-3917\n"), None);
    assert_eq!(code, 1);
    assert!(err.contains("--gateway"), "{err}");
    let (code, _, err) = run(&["node", "pair"], Some(""), None);
    assert_eq!(code, 1);
    assert!(err.contains("KEYGATE_PAIRING_CODE"), "{err}");
    let (code, _, err) = run(&["node", "pair"], None, Some("not a code"));
    assert_eq!(code, 1);
    assert!(err.contains("not a pairing code"), "{err}");
    let (code, _, err) = run(
        &["node", "pair", "--capability", "Shell"],
        None,
        Some("48203917"),
    );
    assert_eq!(code, 1);
    assert!(err.contains("capabilit"), "{err}");
    let (code, _, err) = run(&["node", "pair", "--gateway", "nowhere"], None, None);
    assert_eq!(code, 2, "refused by the argument parser: {err}");
}

//! The device side over real QUIC on 127.0.0.1: `Link`, the node agent and
//! network pairing against a scripted gateway, a listening `quic`
//! transport driven by the test itself (the gateway's real server comes
//! with its own tests).
//!
//! Both ends get the built-in `quic` transport the way the `keygate`
//! binary does, through the plugin host; certificates come from Keygate's
//! own CA.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use keygate_core::ca::CertificateAuthority;
use keygate_core::device::agent::{Agent, AgentError, AgentSettings};
use keygate_core::device::capability::node_capabilities;
use keygate_core::device::enrol::{self, EnrolError, EnrolSettings, Notice};
use keygate_core::device::link::{CloseCause, Link, LinkError, connect_params};
use keygate_core::device::pairing::PairingCode;
use keygate_core::device::schedule::Backoff;
use keygate_core::device::{Credentials, DeviceIdentity};
use keygate_core::pairing::gateway::{Conversation, PairingService, PolicySlot, ServiceSettings};
use keygate_core::pairing::{GatewayAddr, PairingUri};
use keygate_core::state::IdentityManager;
use keygate_core::state::pairing::Method;
use keygate_core::state::ratelimit::RateLimitSettings;
use keygate_proto::link::{CHANNEL_BINDING_CONTEXT, CHANNEL_BINDING_LABEL, close};
use keygate_proto::{
    Heartbeat, Invoke, InvokeResult, Message, RefusalCode, Register, Registered, Renew, Renewed,
};
use keygate_sdk::{
    ConnectionId, ConnectionInfo, ListenParams, PluginError, ServerTrust, StreamId, TlsIdentity,
    Transport, TransportCallbacks, TransportEvent, TransportHost,
};
use sha2::{Digest, Sha256};

// The built-ins the plugin host finds.
use keygate_approval_pin_qr as _;
use keygate_store_fs as _;
use keygate_transport_quic as _;

const WAIT: Duration = Duration::from_secs(10);
const DAY: Duration = Duration::from_secs(86_400);

// ---- the scripted gateway ------------------------------------------------

/// Everything the gateway's transport reported, and which events the
/// script already took.
#[derive(Default)]
struct Recorder {
    events: Mutex<(Vec<TransportEvent>, HashSet<usize>)>,
    arrived: Condvar,
    refuse_clients: AtomicBool,
}

struct Callbacks(Arc<Recorder>);

impl TransportCallbacks for Callbacks {
    fn verify_client(&self, _chain: &[Vec<u8>]) -> Result<(), PluginError> {
        if self.0.refuse_clients.load(Ordering::SeqCst) {
            return Err(PluginError::invalid("revoked"));
        }
        Ok(())
    }

    fn on_event(&self, event: TransportEvent) {
        self.0.events.lock().unwrap().0.push(event);
        self.0.arrived.notify_all();
    }
}

impl Recorder {
    /// Takes the first event not taken yet that `pick` accepts, waiting
    /// up to `wait`; `None` if none came.
    fn take_within<T>(
        &self,
        wait: Duration,
        pick: impl Fn(&TransportEvent) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + wait;
        let mut guard = self.events.lock().unwrap();
        loop {
            let (events, taken) = &mut *guard;
            if let Some((i, found)) = events
                .iter()
                .enumerate()
                .filter(|(i, _)| !taken.contains(i))
                .find_map(|(i, e)| pick(e).map(|t| (i, t)))
            {
                taken.insert(i);
                return Some(found);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = self.arrived.wait_timeout(guard, left).unwrap().0;
        }
    }

    fn take<T>(&self, what: &str, pick: impl Fn(&TransportEvent) -> Option<T>) -> T {
        self.take_within(WAIT, pick).unwrap_or_else(|| {
            panic!(
                "no {what} within {WAIT:?}; events: {:?}",
                self.events.lock().unwrap().0
            )
        })
    }

    /// The peer address of connection `conn`.
    fn peer_of(&self, conn: ConnectionId) -> SocketAddr {
        let events = self.events.lock().unwrap();
        events
            .0
            .iter()
            .find_map(|e| match e {
                TransportEvent::Connected(i) if i.connection == conn => i.remote_addr.parse().ok(),
                _ => None,
            })
            .expect("a connection that was reported")
    }

    /// Index of the first event `pick` accepts (taken or not).
    fn position(&self, pick: impl Fn(&TransportEvent) -> bool) -> Option<usize> {
        self.events.lock().unwrap().0.iter().position(pick)
    }
}

/// The gateway's CA: its own, or the one of a gateway's identity state.
enum CaSource {
    Own(Box<CertificateAuthority>),
    State(Arc<IdentityManager>),
}

impl std::ops::Deref for CaSource {
    type Target = CertificateAuthority;
    fn deref(&self) -> &CertificateAuthority {
        match self {
            CaSource::Own(ca) => ca,
            CaSource::State(manager) => manager.ca(),
        }
    }
}

struct Gateway {
    transport: Arc<dyn Transport>,
    rec: Arc<Recorder>,
    addr: String,
    ca: CaSource,
    _dir: tempfile::TempDir,
}

fn server_identity(ca: &CertificateAuthority) -> TlsIdentity {
    let server = ca
        .issue_server(&["127.0.0.1".into()], DAY, SystemTime::now())
        .unwrap();
    TlsIdentity {
        cert_chain: vec![
            server.certificate.der.clone(),
            ca.certificate_der().to_vec(),
        ],
        private_key_der: server.private_key_pkcs8_der.to_vec(),
    }
}

impl Gateway {
    fn start() -> Gateway {
        let ca =
            CertificateAuthority::generate("Node test CA", 30 * DAY, SystemTime::now()).unwrap();
        Self::start_with(CaSource::Own(Box::new(ca)))
    }

    fn start_with(ca: CaSource) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let transport = keygate_core::device::plugins::open_transport(dir.path()).unwrap();
        let rec = Arc::new(Recorder::default());
        let addr = transport
            .listen(
                ListenParams {
                    addr: "127.0.0.1:0".into(),
                    identity: server_identity(&ca),
                    client_ca_roots: vec![ca.certificate_der().to_vec()],
                    require_client_cert: false,
                    max_frame_len: 16384,
                },
                TransportHost::new(Callbacks(rec.clone())),
            )
            .unwrap();
        Gateway {
            transport,
            rec,
            addr,
            ca,
            _dir: dir,
        }
    }

    fn ca_fingerprint(&self) -> [u8; 32] {
        *self.ca.fingerprint().as_bytes()
    }

    fn connected(&self) -> ConnectionInfo {
        self.rec.take("Connected", |e| match e {
            TransportEvent::Connected(i) => Some(i.clone()),
            _ => None,
        })
    }

    fn frame(&self, conn: ConnectionId) -> (StreamId, Vec<u8>) {
        self.rec.take("Frame", |e| match e {
            TransportEvent::Frame(f) if f.connection == conn => Some((f.stream, f.payload.clone())),
            _ => None,
        })
    }

    fn frame_on(&self, conn: ConnectionId, stream: StreamId) -> Vec<u8> {
        self.rec.take("Frame on the stream", |e| match e {
            TransportEvent::Frame(f) if f.connection == conn && f.stream == stream => {
                Some(f.payload.clone())
            }
            _ => None,
        })
    }

    fn request(&self, conn: ConnectionId) -> (StreamId, Message) {
        let (stream, bytes) = self.frame(conn);
        (
            stream,
            Message::decode(&bytes).expect("the device sends valid messages"),
        )
    }

    fn answer(&self, conn: ConnectionId, stream: StreamId, msg: &Message) {
        self.transport
            .send_frame(conn, stream, &msg.encode())
            .unwrap();
        // A device that acts on the answer at once (closing after a
        // refusal) may be gone before the stream is finished.
        match self.transport.finish_stream(conn, stream) {
            Ok(()) => {}
            Err(e) if e.kind() == keygate_sdk::ErrorKind::NotFound => {}
            Err(e) => panic!("finishing the answer: {e}"),
        }
    }

    fn closed(&self, conn: ConnectionId) -> String {
        self.rec.take("Closed", |e| match e {
            TransportEvent::Closed { connection, reason } if *connection == conn => {
                Some(reason.clone())
            }
            _ => None,
        })
    }

    fn channel_binding(&self, conn: ConnectionId) -> [u8; 32] {
        self.transport
            .export_keying_material(conn, CHANNEL_BINDING_LABEL, CHANNEL_BINDING_CONTEXT, 32)
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// Invokes `capability` on the node at `conn` and returns its answer.
    fn invoke(&self, conn: ConnectionId, capability: &str, payload: &[u8]) -> InvokeResult {
        let stream = self.transport.open_stream(conn).unwrap();
        let invoke = Message::Invoke(Invoke {
            invocation_id: format!("inv-{stream}"),
            capability: capability.into(),
            payload: payload.to_vec(),
        });
        self.transport
            .send_frame(conn, stream, &invoke.encode())
            .unwrap();
        self.transport.finish_stream(conn, stream).unwrap();
        match Message::decode(&self.frame_on(conn, stream)).unwrap() {
            Message::InvokeResult(r) => {
                assert_eq!(r.invocation_id, format!("inv-{stream}"));
                r
            }
            other => panic!("expected InvokeResult, got {other:?}"),
        }
    }

    /// Expects `Register` on `conn` and answers `Registered`.
    fn registers(&self, conn: ConnectionId, heartbeat_secs: u32) -> Register {
        let (stream, msg) = self.request(conn);
        let Message::Register(register) = msg else {
            panic!("expected Register first, got {msg:?}");
        };
        self.answer(
            conn,
            stream,
            &Message::Registered(Registered { heartbeat_secs }),
        );
        register
    }
}

// ---- the device ------------------------------------------------------------

fn device() -> DeviceIdentity {
    DeviceIdentity::new(Arc::new(keygate_store_memory::MemoryStore::new()))
}

/// Issues the device a certificate valid for `validity` and keeps it.
fn pair_directly(identity: &DeviceIdentity, gateway: &Gateway, validity: Duration) -> Credentials {
    let key = identity.key().unwrap();
    let cert = gateway
        .ca
        .issue_client(
            &key.public_key(),
            &key.device_id(),
            validity,
            SystemTime::now(),
        )
        .unwrap();
    let credentials = Credentials {
        device_id: key.device_id(),
        certificate_der: cert.der,
        ca_der: gateway.ca.certificate_der().to_vec(),
        gateways: vec![gateway.addr.clone()],
    };
    identity
        .store_credentials(&credentials, &gateway.ca.fingerprint())
        .unwrap();
    credentials
}

fn fast_settings(capabilities: &[&str]) -> AgentSettings {
    let extra: Vec<String> = capabilities.iter().map(|c| (*c).to_owned()).collect();
    let mut settings = AgentSettings::new(Vec::new(), node_capabilities(&extra).unwrap());
    settings.request_timeout = Duration::from_secs(5);
    settings.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    };
    settings.shutdown_pause = Duration::from_millis(100);
    settings
}

struct RunningAgent {
    control: keygate_core::device::agent::AgentControl,
    done: mpsc::Receiver<Result<(), AgentError>>,
}

fn run_agent(identity: &DeviceIdentity, settings: AgentSettings) -> RunningAgent {
    let dir = tempfile::tempdir().unwrap();
    let transport = keygate_core::device::plugins::open_transport(dir.path()).unwrap();
    let agent = Agent::new(transport, identity.clone(), settings);
    let control = agent.control();
    let (tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _dir = dir;
        let _ = tx.send(agent.run());
    });
    RunningAgent { control, done }
}

impl RunningAgent {
    fn result(&self) -> Result<(), AgentError> {
        self.done
            .recv_timeout(WAIT)
            .expect("the agent stops within the wait")
    }

    fn still_running(&self) -> bool {
        matches!(self.done.try_recv(), Err(mpsc::TryRecvError::Empty))
    }
}

// ---- Link --------------------------------------------------------------------

fn link_to(gateway: &Gateway) -> (Link, ConnectionId) {
    let dir = tempfile::tempdir().unwrap();
    let transport = keygate_core::device::plugins::open_transport(dir.path()).unwrap();
    let params = connect_params(
        &gateway.addr,
        ServerTrust::PinnedCaSha256(gateway.ca_fingerprint()),
        None,
    )
    .unwrap();
    let link = Link::connect(transport, params).expect("connect");
    let conn = gateway.connected().connection;
    (link, conn)
}

#[test]
fn a_link_knows_its_gateways_ca_and_channel_binding_and_moves_frames_as_the_protocol_says() {
    let gateway = Gateway::start();
    let (link, conn) = link_to(&gateway);

    // What the TLS showed: the last certificate is the CA; both ends
    // export the same channel binding.
    assert_eq!(link.ca_fingerprint(), gateway.ca_fingerprint());
    assert_eq!(
        link.ca_fingerprint(),
        <[u8; 32]>::from(Sha256::digest(gateway.ca.certificate_der()))
    );
    assert_eq!(link.channel_binding(), gateway.channel_binding(conn));
    assert_ne!(link.channel_binding(), [0; 32]);

    std::thread::scope(|s| {
        // A request: one frame out on a new stream, one back on it.
        let answered = s.spawn(|| {
            let (stream, frame) = gateway.frame(conn);
            assert_eq!(frame, b"ping");
            gateway.transport.send_frame(conn, stream, b"pong").unwrap();
            gateway.transport.finish_stream(conn, stream).unwrap();
            stream
        });
        assert_eq!(link.request(b"ping", WAIT).unwrap(), b"pong");
        let first = answered.join().unwrap();

        // Each request has its own stream.
        let answered = s.spawn(|| {
            let (stream, _) = gateway.frame(conn);
            gateway.transport.send_frame(conn, stream, b"2").unwrap();
            stream
        });
        assert_eq!(link.request(b"again", WAIT).unwrap(), b"2");
        assert_ne!(answered.join().unwrap(), first);
    });

    // No answer in time.
    let err = link
        .request(b"unanswered", Duration::from_millis(300))
        .unwrap_err();
    assert!(matches!(err, LinkError::Timeout(_)), "{err}");
    let _ = gateway.frame(conn);

    // A stream the gateway finishes without answering.
    std::thread::scope(|s| {
        s.spawn(|| {
            let (stream, _) = gateway.frame(conn);
            gateway.transport.finish_stream(conn, stream).unwrap();
        });
        let err = link.request(b"nothing back", WAIT).unwrap_err();
        assert!(matches!(err, LinkError::StreamEnded), "{err}");
    });

    // An exchange: several frames each way on one stream.
    let exchange = link.exchange().unwrap();
    exchange.send(b"hello").unwrap();
    let stream = exchange.stream();
    assert_eq!(gateway.frame_on(conn, stream), b"hello");
    gateway
        .transport
        .send_frame(conn, stream, b"challenge")
        .unwrap();
    assert_eq!(exchange.recv(WAIT).unwrap(), b"challenge");
    exchange.send(b"confirm").unwrap();
    exchange.finish().unwrap();
    assert_eq!(gateway.frame_on(conn, stream), b"confirm");
    gateway
        .transport
        .send_frame(conn, stream, b"accepted")
        .unwrap();
    gateway
        .transport
        .send_frame(conn, stream, b"pending")
        .unwrap();
    gateway.transport.finish_stream(conn, stream).unwrap();
    assert_eq!(exchange.recv(WAIT).unwrap(), b"accepted");
    assert_eq!(exchange.recv(WAIT).unwrap(), b"pending");
    assert!(matches!(exchange.recv(WAIT), Err(LinkError::StreamEnded)));
    drop(exchange);

    // A stream the gateway opens reaches the caller, and the answer goes
    // back on it.
    let pushed = gateway.transport.open_stream(conn).unwrap();
    gateway
        .transport
        .send_frame(conn, pushed, b"invoke")
        .unwrap();
    let incoming = link
        .next_incoming(WAIT)
        .unwrap()
        .expect("an incoming frame");
    assert_eq!(incoming.stream, pushed);
    assert_eq!(incoming.frame, b"invoke");
    link.reply(incoming.stream, b"result").unwrap();
    assert_eq!(gateway.frame_on(conn, pushed), b"result");
    assert!(
        link.next_incoming(Duration::from_millis(100))
            .unwrap()
            .is_none()
    );

    // Late frames on a finished request's stream are not taken for the
    // gateway's.
    std::thread::scope(|s| {
        s.spawn(|| {
            let (stream, _) = gateway.frame(conn);
            gateway
                .transport
                .send_frame(conn, stream, b"answer")
                .unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let _ = gateway.transport.send_frame(conn, stream, b"late");
        });
        assert_eq!(link.request(b"q", WAIT).unwrap(), b"answer");
    });
    assert!(
        link.next_incoming(Duration::from_millis(300))
            .unwrap()
            .is_none()
    );
}

#[test]
fn exchanges_dropped_unfinished_give_their_streams_back() {
    // QUIC allows a peer 100 open streams at once: a side that never
    // finishes its half would run out after that many refused hellos.
    let gateway = Gateway::start();
    let (link, conn) = link_to(&gateway);
    let link = Arc::new(link);
    let (opened, device) = mpsc::channel();
    {
        let link = link.clone();
        std::thread::spawn(move || {
            for i in 0..150u32 {
                let exchange = link.exchange().unwrap();
                exchange.send(&i.to_be_bytes()).unwrap();
                if opened.send(i).is_err() {
                    return;
                }
            }
        });
    }
    for i in 0..150u32 {
        assert_eq!(
            device
                .recv_timeout(WAIT)
                .expect("a new stream: none is leaked"),
            i
        );
        // Streams arrive in any order; each is answered by finishing it.
        let (stream, _) = gateway.frame(conn);
        gateway.transport.finish_stream(conn, stream).unwrap();
    }
}

#[test]
fn a_closed_link_says_why_to_every_waiting_call() {
    let gateway = Gateway::start();
    let (link, conn) = link_to(&gateway);
    std::thread::scope(|s| {
        let waiting = s.spawn(|| link.request(b"register", WAIT));
        let incoming = s.spawn(|| link.next_incoming(WAIT));
        let _ = gateway.frame(conn);
        gateway
            .transport
            .close_connection(conn, close::REVOKED, "device kgd1x is revoked")
            .unwrap();
        for err in [
            waiting.join().unwrap().unwrap_err(),
            incoming.join().unwrap().unwrap_err(),
        ] {
            let LinkError::Closed(closure) = &err else {
                panic!("expected Closed, got {err}");
            };
            assert_eq!(closure.cause, CloseCause::Revoked);
            assert!(closure.reason.contains("device kgd1x is revoked"), "{err}");
            assert!(err.to_string().contains("device kgd1x is revoked"), "{err}");
        }
    });
    // Later calls fail the same way at once.
    let err = link.request(b"after", WAIT).unwrap_err();
    assert_eq!(err.cause(), CloseCause::Revoked, "{err}");
    assert!(link.closed().is_some());

    // A gateway shutting down.
    let (link, conn) = link_to(&gateway);
    gateway
        .transport
        .close_connection(conn, close::SHUTDOWN, "shutdown")
        .unwrap();
    let closure = link.wait_closed(WAIT).expect("closed");
    assert_eq!(closure.cause, CloseCause::Shutdown, "{closure:?}");
}

#[test]
fn a_link_to_a_gateway_with_another_ca_is_refused_before_anything_is_sent() {
    let gateway = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let transport = keygate_core::device::plugins::open_transport(dir.path()).unwrap();
    let params = connect_params(&gateway.addr, ServerTrust::PinnedCaSha256([7; 32]), None).unwrap();
    let err = Link::connect(transport, params).unwrap_err();
    assert!(matches!(err, LinkError::Connect { .. }), "{err}");
    assert!(err.to_string().contains(&gateway.addr), "{err}");
    assert!(
        gateway
            .rec
            .take_within(Duration::from_millis(200), |e| matches!(
                e,
                TransportEvent::Connected(_)
            )
            .then_some(()))
            .is_none()
    );
}

// ---- the agent ---------------------------------------------------------------

#[test]
fn the_agent_registers_heartbeats_answers_invocations_reconnects_after_a_shutdown_and_stops_when_revoked()
 {
    let gateway = Gateway::start();
    let identity = device();
    let credentials = pair_directly(&identity, &gateway, DAY);
    let device_id = credentials.device_id.to_string();
    let agent = run_agent(&identity, fast_settings(&["shell"]));

    // Connected with its certificate and the CA's, registered with echo
    // first.
    let info = gateway.connected();
    assert_eq!(
        info.peer_certificates,
        vec![
            credentials.certificate_der.clone(),
            credentials.ca_der.clone()
        ]
    );
    let conn = info.connection;
    let registered_at = Instant::now();
    let register = gateway.registers(conn, 1);
    assert_eq!(register.device_id, device_id);
    assert_eq!(register.capabilities, ["echo", "shell"]);

    // A heartbeat after heartbeat_secs, on its own stream.
    let (stream, msg) = gateway.request(conn);
    let waited = registered_at.elapsed();
    assert_eq!(
        msg,
        Message::Heartbeat(Heartbeat {
            device_id: device_id.clone()
        })
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    gateway.answer(conn, stream, &Message::HeartbeatAck);
    // And the next one.
    let (stream, msg) = gateway.request(conn);
    assert!(matches!(msg, Message::Heartbeat(_)), "{msg:?}");
    gateway.answer(conn, stream, &Message::HeartbeatAck);

    // Invocations on streams the gateway opens.
    let echo = gateway.invoke(conn, "echo", b"hello node");
    assert!(echo.ok);
    assert_eq!(echo.payload, b"hello node");
    let shell = gateway.invoke(conn, "shell", b"ls");
    assert!(!shell.ok);
    assert!(String::from_utf8_lossy(&shell.payload).contains("shell"));
    let unknown = gateway.invoke(conn, "browser", b"");
    assert!(!unknown.ok);

    // The gateway shuts down: the node comes back on a new connection.
    let closed_at = Instant::now();
    gateway
        .transport
        .close_connection(conn, close::SHUTDOWN, "gateway shutting down")
        .unwrap();
    let conn2 = gateway.connected().connection;
    assert_ne!(conn2, conn);
    assert!(closed_at.elapsed() < Duration::from_secs(3));
    gateway.registers(conn2, 60);
    assert!(agent.still_running());
    assert!(gateway.invoke(conn2, "echo", b"back").ok);

    // Revoked: the node stops, naming its device id, and does not
    // reconnect.
    gateway
        .transport
        .close_connection(conn2, close::REVOKED, "device revoked by the operator")
        .unwrap();
    let err = agent.result().unwrap_err();
    let AgentError::Revoked {
        device_id: id,
        reason,
    } = &err
    else {
        panic!("expected Revoked, got {err}");
    };
    assert_eq!(id.to_string(), device_id);
    assert!(reason.contains("device revoked by the operator"), "{err}");
    assert!(err.to_string().contains(&device_id), "{err}");
    assert!(
        gateway
            .rec
            .take_within(Duration::from_millis(500), |e| matches!(
                e,
                TransportEvent::Connected(_)
            )
            .then_some(()))
            .is_none(),
        "a revoked node reconnected"
    );
}

#[test]
fn a_lost_connection_is_retried_with_backoff_and_a_stop_closes_the_connection() {
    let gateway = Gateway::start();
    let identity = device();
    pair_directly(&identity, &gateway, DAY);
    let agent = run_agent(&identity, fast_settings(&[]));

    let conn = gateway.connected().connection;
    gateway.registers(conn, 60);
    // Closed with another code (as a crash or a network loss would).
    gateway
        .transport
        .close_connection(conn, 1, "something broke")
        .unwrap();
    let conn2 = gateway.connected().connection;
    // A Register that is refused is retried too.
    let (stream, msg) = gateway.request(conn2);
    assert!(matches!(msg, Message::Register(_)));
    gateway.answer(
        conn2,
        stream,
        &Message::Refused(keygate_proto::Refused::new(
            keygate_proto::RefusalCode::Internal,
            "try later",
        )),
    );
    let conn3 = gateway.connected().connection;
    gateway.registers(conn3, 60);
    // Serving: a stop now reaches a node waiting for its next heartbeat.
    assert!(gateway.invoke(conn3, "echo", b"x").ok);

    agent.control.stop();
    agent.result().expect("a stopped agent ends with Ok");
    let reason = gateway.closed(conn3);
    assert!(reason.contains("the node is stopping"), "{reason}");
}

#[test]
fn a_handshake_refused_as_revoked_stops_the_agent() {
    let gateway = Gateway::start();
    let identity = device();
    let credentials = pair_directly(&identity, &gateway, DAY);
    gateway.rec.refuse_clients.store(true, Ordering::SeqCst);
    let agent = run_agent(&identity, fast_settings(&[]));
    let err = agent.result().unwrap_err();
    assert!(
        matches!(&err, AgentError::Revoked { device_id, .. } if *device_id == credentials.device_id),
        "{err}"
    );
    assert!(err.to_string().contains("certificate_revoked"), "{err}");
}

#[test]
fn the_agent_renews_and_registers_the_new_connection_before_closing_the_old_one() {
    let gateway = Gateway::start();
    let identity = device();
    let key = identity.key().unwrap();
    // Renewal falls due 2 s after issue (two thirds of 3 s).
    let first = pair_directly(&identity, &gateway, Duration::from_secs(3));
    let agent = run_agent(&identity, fast_settings(&[]));

    let conn = gateway.connected().connection;
    gateway.registers(conn, 60);
    let (stream, msg) = gateway.request(conn);
    let Message::Renew(renew) = msg else {
        panic!("expected Renew, got {msg:?}");
    };
    // Signed by the device key for this very connection.
    renew
        .verify(key.public_key().as_bytes(), &gateway.channel_binding(conn))
        .expect("the renewal verifies on its connection");
    assert!(renew.verify(key.public_key().as_bytes(), &[0; 32]).is_err());
    let renewed = gateway
        .ca
        .issue_client(&key.public_key(), &key.device_id(), DAY, SystemTime::now())
        .unwrap();
    gateway.answer(
        conn,
        stream,
        &Message::Renewed(Renewed {
            certificates: vec![renewed.der.clone(), gateway.ca.certificate_der().to_vec()],
        }),
    );

    // A new connection with the new certificate, registered while the
    // old one is still open.
    let info = gateway.connected();
    assert_eq!(info.peer_certificates[0], renewed.der);
    let conn2 = info.connection;
    let register = gateway.registers(conn2, 60);
    assert_eq!(register.device_id, key.device_id().to_string());
    let reason = gateway.closed(conn);
    assert!(reason.contains("renewed"), "{reason}");
    let register_at = gateway
        .rec
        .position(|e| matches!(e, TransportEvent::Frame(f) if f.connection == conn2))
        .unwrap();
    let closed_at = gateway
        .rec
        .position(|e| matches!(e, TransportEvent::Closed { connection, .. } if *connection == conn))
        .unwrap();
    assert!(register_at < closed_at, "the old connection closed first");

    // The renewed certificate is kept, for the next start too.
    let kept = identity.credentials().unwrap().unwrap();
    assert_eq!(kept.certificate_der, renewed.der);
    assert_ne!(kept.certificate_der, first.certificate_der);
    assert_eq!(kept.gateways, first.gateways);
    assert!(gateway.invoke(conn2, "echo", b"still here").ok);
    assert!(agent.still_running());
    agent.control.stop();
    agent.result().unwrap();
}

#[test]
fn a_renewal_from_another_ca_is_refused_and_the_node_keeps_serving() {
    let gateway = Gateway::start();
    let identity = device();
    let key = identity.key().unwrap();
    let first = pair_directly(&identity, &gateway, Duration::from_secs(3));
    let agent = run_agent(&identity, fast_settings(&[]));
    let conn = gateway.connected().connection;
    gateway.registers(conn, 60);
    let (stream, msg) = gateway.request(conn);
    assert!(matches!(msg, Message::Renew(Renew { .. })), "{msg:?}");
    let other = CertificateAuthority::generate("Other CA", DAY, SystemTime::now()).unwrap();
    let forged = other
        .issue_client(&key.public_key(), &key.device_id(), DAY, SystemTime::now())
        .unwrap();
    gateway.answer(
        conn,
        stream,
        &Message::Renewed(Renewed {
            certificates: vec![forged.der, other.certificate_der().to_vec()],
        }),
    );
    // Nothing kept, no new connection, still serving on the old one.
    assert!(gateway.invoke(conn, "echo", b"x").ok);
    assert_eq!(
        identity.credentials().unwrap().unwrap().certificate_der,
        first.certificate_der
    );
    assert!(
        gateway
            .rec
            .take_within(Duration::from_millis(300), |e| matches!(
                e,
                TransportEvent::Connected(_)
            )
            .then_some(()))
            .is_none()
    );
    agent.control.stop();
    agent.result().unwrap();
}

// ---- pairing over the network ------------------------------------------------

/// A gateway that pairs: Keygate's `PairingService` on a filesystem
/// state, one conversation per stream, answering on that stream and
/// finishing it after a final answer.
struct PairingGateway {
    gateway: Gateway,
    manager: Arc<IdentityManager>,
    service: PairingService,
    _state: tempfile::TempDir,
}

impl PairingGateway {
    fn new(approval: Option<&str>, rate_limit: RateLimitSettings) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from(
            "state_dir = \"state\"\n[plugins.store]\nuse = \"filesystem\"\n[identity]\nlock_timeout_secs = 30\n",
        );
        if let Some(a) = approval {
            text.push_str("[plugins.approval]\n");
            text.push_str(a);
        }
        let config = keygate_tests::write_config(dir.path(), &text);
        let (host, manager) = keygate_tests::open_identity(&config);
        let policy = host.approval.clone().map(|policy| PolicySlot {
            name: host.loaded[1].info.name.to_string(),
            policy,
        });
        let service = PairingService::new(
            manager.clone(),
            policy,
            ServiceSettings {
                rate_limit,
                ..ServiceSettings::default()
            },
        );
        let gateway = Gateway::start_with(CaSource::State(manager.clone()));
        Self {
            gateway,
            manager,
            service,
            _state: dir,
        }
    }

    fn mint_pin(&self) -> String {
        let pin = keygate_core::pairing::pin::generate(8, &mut rand::rng()).unwrap();
        self.manager
            .create_pairing_session(
                Method::Pin,
                pin.clone(),
                Duration::from_secs(600),
                5,
                SystemTime::now(),
                &keygate_core::state::Actor::cli(),
            )
            .unwrap();
        pin.to_string()
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
            gateways: vec![GatewayAddr::parse(&self.gateway.addr).unwrap()],
            ca_fingerprint: self.gateway.ca_fingerprint(),
            session_id,
            token,
        }
        .to_uri()
        .to_string()
    }

    /// Serves pairing until `stop`; returns how many streams carried a
    /// conversation.
    fn serve(&self, stop: &AtomicBool) -> usize {
        let gw = &self.gateway;
        let mut conversations: HashMap<(ConnectionId, StreamId), Conversation> = HashMap::new();
        while !stop.load(Ordering::SeqCst) {
            let Some((conn, stream, frame)) =
                gw.rec.take_within(Duration::from_millis(50), |e| match e {
                    TransportEvent::Frame(f) => Some((f.connection, f.stream, f.payload.clone())),
                    _ => None,
                })
            else {
                continue;
            };
            let Ok(binding) = gw.transport.export_keying_material(
                conn,
                CHANNEL_BINDING_LABEL,
                CHANNEL_BINDING_CONTEXT,
                32,
            ) else {
                continue;
            };
            let peer = gw.rec.peer_of(conn);
            let conversation = conversations
                .entry((conn, stream))
                .or_insert_with(|| self.service.conversation(peer, binding.try_into().unwrap()));
            for reply in conversation.on_message(&mut rand::rng(), &frame, SystemTime::now()) {
                let last = matches!(
                    Message::decode(&reply),
                    Ok(Message::Pending(_)
                        | Message::Approved(_)
                        | Message::Rejected(_)
                        | Message::Expired(_)
                        | Message::Refused(_))
                );
                let _ = gw.transport.send_frame(conn, stream, &reply);
                if last {
                    let _ = gw.transport.finish_stream(conn, stream);
                }
            }
        }
        conversations.len()
    }
}

fn enrol_settings(gateways: Vec<String>) -> EnrolSettings {
    let mut settings = EnrolSettings::new("test node".into(), vec!["echo".into()], gateways);
    settings.poll_interval = Duration::from_millis(200);
    settings.answer_timeout = Duration::from_secs(10);
    settings
}

fn device_transport() -> (Arc<dyn Transport>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let transport = keygate_core::device::plugins::open_transport(dir.path()).unwrap();
    (transport, dir)
}

#[test]
fn pin_pairing_over_quic_shows_the_check_code_polls_and_gets_the_certificate_once_approved() {
    let gw = Arc::new(PairingGateway::new(None, RateLimitSettings::default()));
    let pin = gw.mint_pin();
    let identity = device();
    let (transport, _dir) = device_transport();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (gw, stop) = (gw.clone(), stop.clone());
        std::thread::spawn(move || gw.serve(&stop))
    };
    // Plain threads and channels with deadlines: a device that never
    // polls fails the test instead of hanging it.
    let (notices_tx, notices) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    {
        let (transport, identity) = (transport.clone(), identity.clone());
        let settings = enrol_settings(vec![gw.gateway.addr.clone()]);
        std::thread::spawn(move || {
            let code = PairingCode::parse(&pin).unwrap();
            let result = enrol::pair(&transport, &identity, Some(&code), &settings, &mut |n| {
                let _ = notices_tx.send(n);
            });
            let _ = done_tx.send(result);
        });
    }
    let Notice::CheckCode { check_code } = notices.recv_timeout(WAIT).unwrap() else {
        panic!("the check code first");
    };
    let Notice::Waiting {
        request_id,
        check_code: waiting_code,
    } = notices.recv_timeout(WAIT).unwrap()
    else {
        panic!("then the wait");
    };
    assert_eq!(waiting_code, check_code);
    // The operator sees the same check code beside the request.
    let listed = gw.manager.approvals().unwrap().records;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, request_id);
    assert_eq!(listed[0].check_code, check_code);
    // The device waits, asking again...
    assert!(done.recv_timeout(Duration::from_millis(700)).is_err());
    gw.manager
        .approve_request(
            &request_id,
            &keygate_core::state::Actor::operator("test"),
            SystemTime::now(),
        )
        .unwrap()
        .unwrap();
    // ... and gets its answer at its next question.
    let credentials = done.recv_timeout(WAIT).unwrap().expect("paired");
    stop.store(true, Ordering::SeqCst);
    let streams = server.join().unwrap();
    assert!(
        streams >= 4,
        "the hello, then a Resume every 200 ms on a new stream: {streams}"
    );
    assert_eq!(credentials.device_id, identity.key().unwrap().device_id());
    assert_eq!(credentials.ca_der, gw.manager.ca().certificate_der());
    assert_eq!(credentials.gateways, std::slice::from_ref(&gw.gateway.addr));
    assert_eq!(identity.credentials().unwrap(), Some(credentials));
    assert_eq!(identity.pending().unwrap(), None);

    // Paired once: pairing again is refused, naming the device.
    let err = enrol::pair(
        &transport,
        &identity,
        Some(&PairingCode::parse(&gw.mint_pin()).unwrap()),
        &enrol_settings(vec![gw.gateway.addr.clone()]),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, EnrolError::AlreadyPaired { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&identity.key().unwrap().device_id().to_string())
    );
}

#[test]
fn qr_pairing_pins_the_ca_of_the_uri_and_goes_to_its_address() {
    let gw = PairingGateway::new(
        Some("use = \"pin-qr\"\n[plugins.approval.config]\nauto_approve = true\n"),
        RateLimitSettings::default(),
    );
    let uri = gw.mint_qr();
    let identity = device();
    let (transport, _dir) = device_transport();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| gw.serve(&stop));
        let mut notices = Vec::new();
        let code = PairingCode::parse(&uri).unwrap();
        // No --gateway: the URI carries it.
        let credentials = enrol::pair(
            &transport,
            &identity,
            Some(&code),
            &enrol_settings(vec![]),
            &mut |n| notices.push(n),
        );
        stop.store(true, Ordering::SeqCst);
        let credentials = credentials.expect("auto-approved");
        assert!(
            matches!(notices.as_slice(), [Notice::CheckCode { .. }]),
            "{notices:?}"
        );
        assert_eq!(credentials.gateways, std::slice::from_ref(&gw.gateway.addr));
    });
}

#[test]
fn a_pin_for_no_gateway_address_and_a_wrong_pin_are_refused_with_the_reason() {
    let gw = PairingGateway::new(None, RateLimitSettings::default());
    gw.mint_pin();
    let identity = device();
    let (transport, _dir) = device_transport();
    let code = PairingCode::parse("19384756").unwrap();
    let err = enrol::pair(
        &transport,
        &identity,
        Some(&code),
        &enrol_settings(vec![]),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, EnrolError::NoGateway), "{err}");

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| gw.serve(&stop));
        let err = enrol::pair(
            &transport,
            &identity,
            Some(&code),
            &enrol_settings(vec![gw.gateway.addr.clone()]),
            &mut |_| {},
        )
        .unwrap_err();
        stop.store(true, Ordering::SeqCst);
        assert!(
            matches!(
                err,
                EnrolError::Refused {
                    code: RefusalCode::ConfirmationFailed,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("did not match"), "{err}");
    });
}

#[test]
fn a_rate_limited_device_waits_the_time_it_was_given_and_tries_the_same_code_again() {
    let gw = PairingGateway::new(
        Some("use = \"pin-qr\"\n[plugins.approval.config]\nauto_approve = true\n"),
        RateLimitSettings {
            free_failures: 0,
            // Long enough that a loaded machine cannot let it pass between
            // the failure and the next attempt.
            base_delay: Duration::from_secs(3),
            max_delay: Duration::from_secs(3),
            ..RateLimitSettings::default()
        },
    );
    let pin = gw.mint_pin();
    let (transport, _dir) = device_transport();
    let settings = enrol_settings(vec![gw.gateway.addr.clone()]);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| gw.serve(&stop));
        // One failure from this address...
        let wrong = PairingCode::parse("19384756").unwrap();
        assert!(enrol::pair(&transport, &device(), Some(&wrong), &settings, &mut |_| {}).is_err());
        // ... makes the next attempt wait; the device waits and retries.
        let identity = device();
        let code = PairingCode::parse(&pin).unwrap();
        let mut notices = Vec::new();
        let started = Instant::now();
        let credentials = enrol::pair(&transport, &identity, Some(&code), &settings, &mut |n| {
            notices.push(n)
        });
        stop.store(true, Ordering::SeqCst);
        credentials.expect("paired after waiting");
        let Some(Notice::RateLimited { wait }) = notices.first() else {
            panic!("told to wait first: {notices:?}");
        };
        assert_eq!(*wait, Duration::from_secs(3));
        assert!(started.elapsed() >= *wait);
        // It waited as told: one wait was enough.
        assert_eq!(
            notices
                .iter()
                .filter(|n| matches!(n, Notice::RateLimited { .. }))
                .count(),
            1,
            "{notices:?}"
        );
        assert!(
            matches!(notices.last(), Some(Notice::CheckCode { .. })),
            "{notices:?}"
        );
    });
}

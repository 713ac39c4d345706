//! The built-in `quic` transport through the ABI: the cdylib loaded by
//! path, real sockets on 127.0.0.1, certificates made here with rcgen (an
//! Ed25519 CA, a server leaf for `127.0.0.1` and `gateway.local`, client
//! leaves, and a second, foreign CA).
//!
//! Each refusal test asserts the specific cause (the TLS alert, the pin,
//! the frame limit) and that the server never reported the connection, so
//! a server that is simply down would not pass it.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use keygate_sdk::{
    ConnectParams, ConnectionId, ErrorKind, ListenParams, PluginError, ServerTrust, StreamId,
    TlsIdentity, Transport, TransportCallbacks, TransportEvent, TransportHost,
};
use keygate_sdk_host::Library;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(5);

// ---- certificates ------------------------------------------------------

struct Ca {
    der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Self {
            der,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> TlsIdentity {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, "leaf");
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TlsIdentity {
            cert_chain: vec![cert.der().to_vec(), self.der.clone()],
            private_key_der: key.serialize_der(),
        }
    }

    fn server(&self) -> TlsIdentity {
        self.leaf(
            &["127.0.0.1", "gateway.local"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self) -> TlsIdentity {
        self.leaf(&["device"], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn pin(&self) -> [u8; 32] {
        Sha256::digest(&self.der).into()
    }
}

// ---- the host side -----------------------------------------------------

/// Records events and answers the handshake check (refusing revoked
/// leaves).
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<TransportEvent>>,
    arrived: Condvar,
    revoked: Mutex<Vec<Vec<u8>>>,
    verified: Mutex<usize>,
}

struct Callbacks(Arc<Recorder>);

impl TransportCallbacks for Callbacks {
    fn verify_client(&self, chain: &[Vec<u8>]) -> Result<(), PluginError> {
        *self.0.verified.lock().unwrap() += 1;
        let leaf = chain
            .first()
            .ok_or_else(|| PluginError::invalid("empty chain"))?;
        if self.0.revoked.lock().unwrap().contains(leaf) {
            return Err(PluginError::invalid("certificate is revoked"));
        }
        Ok(())
    }

    fn on_event(&self, event: TransportEvent) {
        self.0.events.lock().unwrap().push(event);
        self.0.arrived.notify_all();
    }
}

impl Recorder {
    fn host(self: &Arc<Self>) -> TransportHost {
        TransportHost::new(Callbacks(self.clone()))
    }

    /// The first event that `pick` accepts, waiting up to [`WAIT`].
    fn wait_for<T>(&self, what: &str, pick: impl Fn(&TransportEvent) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let mut events = self.events.lock().unwrap();
        loop {
            if let Some(found) = events.iter().find_map(&pick) {
                return found;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("no {what} within {WAIT:?}; events: {events:?}"));
            events = self.arrived.wait_timeout(events, left).unwrap().0;
        }
    }

    fn connected(&self) -> (ConnectionId, Vec<Vec<u8>>, String) {
        self.wait_for("Connected", |e| match e {
            TransportEvent::Connected(i) => Some((
                i.connection,
                i.peer_certificates.clone(),
                i.remote_addr.clone(),
            )),
            _ => None,
        })
    }

    fn frame(&self, conn: ConnectionId, stream: StreamId) -> Vec<u8> {
        self.wait_for("Frame", |e| match e {
            TransportEvent::Frame(f) if f.connection == conn && f.stream == stream => {
                Some(f.payload.clone())
            }
            _ => None,
        })
    }

    fn closed(&self, conn: ConnectionId) -> String {
        self.wait_for("Closed", |e| match e {
            TransportEvent::Closed { connection, reason } if *connection == conn => {
                Some(reason.clone())
            }
            _ => None,
        })
    }

    fn any_connected(&self) -> bool {
        self.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, TransportEvent::Connected(_)))
    }

    fn frames_on(&self, conn: ConnectionId, stream: StreamId) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, TransportEvent::Frame(f) if f.connection == conn && f.stream == stream))
            .count()
    }
}

// ---- setup -------------------------------------------------------------

fn transport(config: &str) -> Result<Box<dyn Transport>, PluginError> {
    let lib = Library::open(&keygate_tests::cdylib("keygate-fixture-quic-cdylib")).expect("open");
    let ctx = keygate_sdk_testing::test_context("transport(quic)", "/".as_ref());
    Ok(Box::new(lib.new_transport("quic", config, ctx)?))
}

struct Server {
    transport: Box<dyn Transport>,
    host: Arc<Recorder>,
    addr: String,
    identity: TlsIdentity,
}

struct ServerSpec<'a> {
    ca: &'a Ca,
    require_client_cert: bool,
    max_frame_len: u32,
    config: &'a str,
}

impl<'a> ServerSpec<'a> {
    fn new(ca: &'a Ca) -> Self {
        Self {
            ca,
            require_client_cert: true,
            max_frame_len: 1024,
            config: "",
        }
    }

    fn start(self) -> Server {
        let transport = transport(self.config).expect("construct");
        let host = Arc::new(Recorder::default());
        let identity = self.ca.server();
        let addr = transport
            .listen(
                ListenParams {
                    addr: "127.0.0.1:0".into(),
                    identity: identity.clone(),
                    client_ca_roots: vec![self.ca.der.clone()],
                    require_client_cert: self.require_client_cert,
                    max_frame_len: self.max_frame_len,
                },
                host.host(),
            )
            .expect("listen");
        Server {
            transport,
            host,
            addr,
            identity,
        }
    }
}

struct Client {
    transport: Box<dyn Transport>,
    host: Arc<Recorder>,
}

impl Client {
    fn new() -> Self {
        Self {
            transport: transport("").expect("construct"),
            host: Arc::new(Recorder::default()),
        }
    }

    fn connect(
        &self,
        server: &Server,
        trust: ServerTrust,
        identity: Option<TlsIdentity>,
    ) -> Result<ConnectionId, PluginError> {
        self.connect_with(server, trust, identity, "127.0.0.1", 1 << 20)
    }

    fn connect_with(
        &self,
        server: &Server,
        trust: ServerTrust,
        identity: Option<TlsIdentity>,
        server_name: &str,
        max_frame_len: u32,
    ) -> Result<ConnectionId, PluginError> {
        self.transport.connect(
            ConnectParams {
                remote_addr: server.addr.clone(),
                server_name: server_name.into(),
                trust,
                client_identity: identity,
                max_frame_len,
            },
            self.host.host(),
        )
    }
}

fn roots(ca: &Ca) -> ServerTrust {
    ServerTrust::Roots(vec![ca.der.clone()])
}

/// A connection made with a client certificate of `ca`; returns the
/// client's and the server's ids.
fn connected_pair(server: &Server, client: &Client, ca: &Ca) -> (ConnectionId, ConnectionId) {
    let conn = client
        .connect(server, roots(ca), Some(ca.client()))
        .expect("connect");
    let (server_conn, _, _) = server.host.connected();
    (conn, server_conn)
}

/// The reason of the client's `Closed` for a connection the server refused
/// after the client's side of the handshake completed (TLS 1.3), or the
/// connect error if the refusal came sooner. Nothing may reach the server.
fn refusal_seen_by_client(
    client: &Client,
    server: &Server,
    outcome: Result<ConnectionId, PluginError>,
) -> String {
    let reason = match outcome {
        Err(err) => err.to_string(),
        Ok(conn) => {
            // The first write goes nowhere and the connection ends with the
            // server's alert.
            let write = client
                .transport
                .open_stream(conn)
                .and_then(|s| client.transport.send_frame(conn, s, b"hello"));
            let reason = client.host.closed(conn);
            let late = client.transport.open_stream(conn);
            assert_eq!(
                late.map_err(|e| e.kind()),
                Err(ErrorKind::NotFound),
                "write after refusal: {write:?}"
            );
            reason
        }
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !server.host.any_connected(),
        "the server reported a refused connection"
    );
    reason
}

// ---- tests -------------------------------------------------------------

#[test]
fn frames_flow_both_ways_on_concurrent_streams_from_either_side() {
    let ca = Ca::new("Keygate test CA");
    let server = ServerSpec::new(&ca).start();
    let client = Client::new();
    let device = ca.client();
    let conn = client
        .connect(&server, roots(&ca), Some(device.clone()))
        .expect("connect");

    let (server_conn, peer_chain, remote) = server.host.connected();
    assert_eq!(peer_chain[0], device.cert_chain[0], "the client's leaf");
    assert!(remote.starts_with("127.0.0.1:"), "{remote}");
    let (_, server_chain, _) = client.host.connected();
    assert_eq!(server_chain, server.identity.cert_chain);
    assert_eq!(*server.host.verified.lock().unwrap(), 1);

    // Eight requests in flight at once, answered in reverse order.
    let streams: Vec<StreamId> = (0..8)
        .map(|i| {
            let s = client.transport.open_stream(conn).unwrap();
            client
                .transport
                .send_frame(conn, s, format!("request {i}").as_bytes())
                .unwrap();
            s
        })
        .collect();
    let mut distinct = streams.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 8);
    for (i, s) in streams.iter().enumerate().rev() {
        assert_eq!(
            server.host.frame(server_conn, *s),
            format!("request {i}").into_bytes()
        );
        server
            .transport
            .send_frame(server_conn, *s, format!("answer {i}").as_bytes())
            .unwrap();
        server.transport.finish_stream(server_conn, *s).unwrap();
    }
    for (i, s) in streams.iter().enumerate() {
        assert_eq!(
            client.host.frame(conn, *s),
            format!("answer {i}").into_bytes()
        );
        client.host.wait_for("StreamFinished", |e| {
            matches!(e, TransportEvent::StreamFinished { connection, stream }
                if *connection == conn && stream == s)
            .then_some(())
        });
    }
    // Several frames on one stream arrive whole and in order.
    let s = streams[0];
    for n in 0..3 {
        client
            .transport
            .send_frame(conn, s, &vec![n; 1000])
            .unwrap();
    }
    client.transport.finish_stream(conn, s).unwrap();
    server.host.wait_for("StreamFinished", |e| {
        matches!(e, TransportEvent::StreamFinished { connection, stream }
            if *connection == server_conn && *stream == s)
        .then_some(())
    });
    let got: Vec<Vec<u8>> = server
        .host
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            TransportEvent::Frame(f) if f.connection == server_conn && f.stream == s => {
                Some(f.payload.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        vec![
            b"request 0".to_vec(),
            vec![0; 1000],
            vec![1; 1000],
            vec![2; 1000]
        ]
    );

    // The gateway pushes on a stream it opens.
    let push = server.transport.open_stream(server_conn).unwrap();
    assert!(!streams.contains(&push));
    server
        .transport
        .send_frame(server_conn, push, b"push")
        .unwrap();
    assert_eq!(client.host.frame(conn, push), b"push");
    client.transport.send_frame(conn, push, b"ack").unwrap();
    assert_eq!(server.host.frame(server_conn, push), b"ack");
}

/// A host that answers every frame from inside `on_event`: sends it back
/// several times on the same stream, then finishes the stream.
struct EchoHost(Arc<Echoer>);

struct Echoer {
    transport: std::sync::OnceLock<std::sync::Weak<dyn Transport>>,
    times: usize,
    failures: Mutex<Vec<String>>,
}

impl TransportCallbacks for EchoHost {
    fn verify_client(&self, _chain: &[Vec<u8>]) -> Result<(), PluginError> {
        Ok(())
    }

    fn on_event(&self, event: TransportEvent) {
        let TransportEvent::Frame(frame) = event else {
            return;
        };
        let echoer = &self.0;
        let Some(transport) = echoer.transport.get().and_then(std::sync::Weak::upgrade) else {
            return;
        };
        let answered = (0..echoer.times)
            .try_for_each(|_| transport.send_frame(frame.connection, frame.stream, &frame.payload))
            .and_then(|()| transport.finish_stream(frame.connection, frame.stream));
        if let Err(e) = answered {
            echoer.failures.lock().unwrap().push(e.to_string());
        }
    }
}

#[test]
fn a_host_answering_from_inside_its_events_with_more_than_the_flow_window_never_stalls_the_transport()
 {
    // Events are delivered on the transport's runtime threads. Four
    // streams answered at once with 3 MiB each, past quinn's 1.25 MB
    // stream window, so the answering calls must wait for the client to
    // read while the same runtime threads carry the I/O.
    const FRAME: usize = 512 * 1024;
    const TIMES: usize = 6;
    const STREAMS: usize = 4;
    let ca = Ca::new("Keygate test CA");
    let server: Arc<dyn Transport> = Arc::from(transport("").expect("construct"));
    let echoer = Arc::new(Echoer {
        transport: std::sync::OnceLock::new(),
        times: TIMES,
        failures: Mutex::new(Vec::new()),
    });
    let _ = echoer.transport.set(Arc::downgrade(&server));
    let addr = server
        .listen(
            ListenParams {
                addr: "127.0.0.1:0".into(),
                identity: ca.server(),
                client_ca_roots: vec![ca.der.clone()],
                require_client_cert: true,
                max_frame_len: FRAME as u32,
            },
            TransportHost::new(EchoHost(echoer.clone())),
        )
        .expect("listen");
    let client = Client::new();
    let conn = client
        .transport
        .connect(
            ConnectParams {
                remote_addr: addr,
                server_name: "127.0.0.1".into(),
                trust: roots(&ca),
                client_identity: Some(ca.client()),
                max_frame_len: FRAME as u32,
            },
            client.host.host(),
        )
        .expect("connect");
    let streams: Vec<StreamId> = (0..STREAMS)
        .map(|i| {
            let s = client.transport.open_stream(conn).unwrap();
            client
                .transport
                .send_frame(conn, s, &vec![i as u8; FRAME])
                .unwrap();
            s
        })
        .collect();
    for (i, s) in streams.iter().enumerate() {
        client.host.wait_for("the whole answer", |e| {
            matches!(e, TransportEvent::StreamFinished { connection, stream }
                if *connection == conn && stream == s)
            .then_some(())
        });
        let answer: Vec<Vec<u8>> = client
            .host
            .events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                TransportEvent::Frame(f) if f.connection == conn && f.stream == *s => {
                    Some(f.payload.clone())
                }
                _ => None,
            })
            .collect();
        assert_eq!(answer, vec![vec![i as u8; FRAME]; TIMES], "stream {i}");
    }
    assert!(echoer.failures.lock().unwrap().is_empty());
    server.shutdown().unwrap();
}

#[test]
fn both_ends_export_the_same_keying_material() {
    let ca = Ca::new("Keygate test CA");
    let server = ServerSpec::new(&ca).start();
    let client = Client::new();
    let (conn, server_conn) = connected_pair(&server, &client, &ca);
    let a = client
        .transport
        .export_keying_material(conn, b"keygate pairing", b"ctx", 32)
        .unwrap();
    let b = server
        .transport
        .export_keying_material(server_conn, b"keygate pairing", b"ctx", 32)
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 32);
    assert_ne!(a, vec![0; 32]);
    for (label, context) in [
        (&b"other label"[..], &b"ctx"[..]),
        (b"keygate pairing", b"x"),
    ] {
        let other = client
            .transport
            .export_keying_material(conn, label, context, 32)
            .unwrap();
        assert_ne!(a, other);
    }
    // Another connection has other keys.
    let (conn2, _) = {
        let c = client
            .connect(&server, roots(&ca), Some(ca.client()))
            .unwrap();
        (c, ())
    };
    let c = client
        .transport
        .export_keying_material(conn2, b"keygate pairing", b"ctx", 32)
        .unwrap();
    assert_ne!(a, c);
}

#[test]
fn a_client_without_a_certificate_gets_in_when_certificates_are_optional() {
    let ca = Ca::new("Keygate test CA");
    let mut spec = ServerSpec::new(&ca);
    spec.require_client_cert = false;
    let server = spec.start();
    let client = Client::new();
    let conn = client.connect(&server, roots(&ca), None).expect("connect");
    let (server_conn, peer_chain, _) = server.host.connected();
    assert!(peer_chain.is_empty());
    assert_eq!(
        *server.host.verified.lock().unwrap(),
        0,
        "no chain, no host check"
    );
    // It really is open: a frame goes through.
    let s = client.transport.open_stream(conn).unwrap();
    client.transport.send_frame(conn, s, b"pair me").unwrap();
    assert_eq!(server.host.frame(server_conn, s), b"pair me");
}

#[test]
fn a_client_without_a_certificate_is_refused_when_certificates_are_required() {
    let ca = Ca::new("Keygate test CA");
    let server = ServerSpec::new(&ca).start();
    let client = Client::new();
    let outcome = client.connect(&server, roots(&ca), None);
    let reason = refusal_seen_by_client(&client, &server, outcome);
    assert!(reason.contains("certificate_required"), "{reason}");
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_even_though_the_host_is_shown_it_and_accepts() {
    let ca = Ca::new("Keygate test CA");
    let foreign = Ca::new("Foreign CA");
    let mut spec = ServerSpec::new(&ca);
    // Even where certificates are optional, a presented one must verify.
    spec.require_client_cert = false;
    let server = spec.start();
    let client = Client::new();
    let outcome = client.connect(&server, roots(&ca), Some(foreign.client()));
    let reason = refusal_seen_by_client(&client, &server, outcome);
    assert!(
        reason.contains("unknown_ca") || reason.contains("bad_certificate"),
        "{reason}"
    );
    // The host is shown the refused chain (so it can count the refusal by
    // its cause); this host accepts it, and the handshake fails anyway.
    assert_eq!(*server.host.verified.lock().unwrap(), 1);
}

#[test]
fn a_client_the_host_refuses_is_cut_off_at_its_first_read_or_write() {
    let ca = Ca::new("Keygate test CA");
    let mut spec = ServerSpec::new(&ca);
    spec.require_client_cert = false;
    let server = spec.start();
    let revoked = ca.client();
    server
        .host
        .revoked
        .lock()
        .unwrap()
        .push(revoked.cert_chain[0].clone());
    let client = Client::new();
    let outcome = client.connect(&server, roots(&ca), Some(revoked));
    // TLS 1.3: the client finished its side before the server checked.
    assert!(
        outcome.is_ok(),
        "connect itself succeeds in TLS 1.3: {outcome:?}"
    );
    let reason = refusal_seen_by_client(&client, &server, outcome);
    assert!(reason.contains("certificate_revoked"), "{reason}");
    assert_eq!(*server.host.verified.lock().unwrap(), 1);

    // A certificate the host accepts still gets in on the same listener.
    let conn = client
        .connect(&server, roots(&ca), Some(ca.client()))
        .unwrap();
    server.host.connected();
    let s = client.transport.open_stream(conn).unwrap();
    client.transport.send_frame(conn, s, b"ok").unwrap();
}

#[test]
fn an_oversized_frame_is_refused_and_other_streams_keep_working() {
    let ca = Ca::new("Keygate test CA");
    let server = ServerSpec::new(&ca).start(); // max_frame_len 1024
    let client = Client::new(); // max_frame_len 1 MiB
    let (conn, server_conn) = connected_pair(&server, &client, &ca);

    let big = client.transport.open_stream(conn).unwrap();
    client.transport.send_frame(conn, big, b"small").unwrap();
    client
        .transport
        .send_frame(conn, big, &vec![1u8; 1025])
        .unwrap();
    assert_eq!(server.host.frame(server_conn, big), b"small");
    // The server stopped the stream: the client's next write fails with
    // the frame-too-long code.
    let deadline = Instant::now() + WAIT;
    let err = loop {
        match client.transport.send_frame(conn, big, b"more") {
            Err(err) => break err,
            Ok(()) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(()) => panic!("the oversized stream was never stopped"),
        }
    };
    assert!(err.message().contains("frame too long"), "{err}");
    assert_eq!(
        server.host.frames_on(server_conn, big),
        1,
        "nothing of the oversized frame, nor after it, was delivered"
    );

    // The connection goes on: another stream, a frame of exactly the limit.
    let other = client.transport.open_stream(conn).unwrap();
    client
        .transport
        .send_frame(conn, other, &vec![2u8; 1024])
        .unwrap();
    assert_eq!(server.host.frame(server_conn, other), vec![2u8; 1024]);

    // A sender refuses a frame over its own limit without sending it.
    let err = server
        .transport
        .send_frame(server_conn, other, &vec![0u8; 1025])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("exceeds the limit of 1024"), "{err}");
}

#[test]
fn server_trust_by_roots_checks_the_issuer_and_the_name() {
    let ca = Ca::new("Keygate test CA");
    let foreign = Ca::new("Foreign CA");
    let mut spec = ServerSpec::new(&ca);
    spec.require_client_cert = false;
    let server = spec.start();
    let client = Client::new();
    client
        .connect_with(&server, roots(&ca), None, "gateway.local", 1024)
        .expect("DNS name in the certificate");
    let err = client.connect(&server, roots(&foreign), None).unwrap_err();
    assert!(err.message().contains("UnknownIssuer"), "{err}");
    let err = client
        .connect_with(&server, roots(&ca), None, "other.example", 1024)
        .unwrap_err();
    assert!(err.message().contains("not valid for name"), "{err}");
}

#[test]
fn a_pinned_ca_fingerprint_is_accepted_when_right_and_refused_when_wrong() {
    let ca = Ca::new("Keygate test CA");
    let foreign = Ca::new("Foreign CA");
    let mut spec = ServerSpec::new(&ca);
    spec.require_client_cert = false;
    let server = spec.start();
    let client = Client::new();
    client
        .connect(&server, ServerTrust::PinnedCaSha256(ca.pin()), None)
        .expect("right pin");
    let err = client
        .connect(&server, ServerTrust::PinnedCaSha256(foreign.pin()), None)
        .unwrap_err();
    assert!(
        err.message().contains("pinned SHA-256 fingerprint"),
        "{err}"
    );
    // The pin alone is not enough: the leaf must verify for the name.
    let err = client
        .connect_with(
            &server,
            ServerTrust::PinnedCaSha256(ca.pin()),
            None,
            "other.example",
            1024,
        )
        .unwrap_err();
    assert!(err.message().contains("not valid for name"), "{err}");
    // Pairing by PIN takes any server certificate.
    client
        .connect(&server, ServerTrust::ChannelBoundLater, None)
        .expect("channel bound later");
}

#[test]
fn a_rotated_server_identity_is_served_to_new_handshakes() {
    let ca = Ca::new("Keygate test CA");
    let next = Ca::new("Keygate next CA");
    let mut spec = ServerSpec::new(&ca);
    spec.require_client_cert = false;
    let server = spec.start();
    let client = Client::new();
    let old = client.connect(&server, roots(&ca), None).unwrap();
    let err = client.connect(&server, roots(&next), None).unwrap_err();
    assert!(err.message().contains("UnknownIssuer"), "{err}");

    let renewed = next.server();
    server
        .transport
        .set_server_identity(renewed.clone())
        .expect("rotate");
    let conn = client
        .connect(&server, roots(&next), None)
        .expect("the new certificate is served");
    let chain = client.host.wait_for("Connected", |e| match e {
        TransportEvent::Connected(i) if i.connection == conn => Some(i.peer_certificates.clone()),
        _ => None,
    });
    assert_eq!(chain[0], renewed.cert_chain[0]);
    let err = client.connect(&server, roots(&ca), None).unwrap_err();
    assert!(err.message().contains("UnknownIssuer"), "{err}");
    // The connection made before the swap is still open.
    let s = client.transport.open_stream(old).unwrap();
    client.transport.send_frame(old, s, b"still here").unwrap();
}

#[test]
fn close_connection_reaches_the_peer_at_once() {
    let ca = Ca::new("Keygate test CA");
    let server = ServerSpec::new(&ca).start();
    let client = Client::new();
    let (conn, server_conn) = connected_pair(&server, &client, &ca);
    let start = Instant::now();
    client
        .transport
        .close_connection(conn, 7, "bye")
        .expect("close");
    let reason = server.host.closed(server_conn);
    let took = start.elapsed();
    assert_eq!(reason, "closed by peer: code 7: bye");
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert_eq!(client.host.closed(conn), "closed locally: code 7: bye");
    let err = client
        .transport
        .open_stream(conn)
        .expect_err("closed connection");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn shutdown_closes_every_connection_and_stops_listening() {
    let ca = Ca::new("Keygate test CA");
    let server = ServerSpec::new(&ca).start();
    let client = Client::new();
    let (conn, _) = connected_pair(&server, &client, &ca);
    server.transport.shutdown().expect("shutdown");
    let reason = client.host.closed(conn);
    assert!(
        reason.starts_with("closed by peer: code 19200: shutdown"),
        "{reason}"
    );
    let err = client
        .connect(&server, roots(&ca), Some(ca.client()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[test]
fn max_connections_refuses_connections_past_the_limit() {
    let ca = Ca::new("Keygate test CA");
    let mut spec = ServerSpec::new(&ca);
    spec.config = "max_connections = 1";
    let server = spec.start();
    let client = Client::new();
    let first = client
        .connect(&server, roots(&ca), Some(ca.client()))
        .unwrap();
    let (server_first, _, _) = server.host.connected();
    let err = client
        .connect(&server, roots(&ca), Some(ca.client()))
        .unwrap_err();
    assert!(err.message().contains("refused"), "{err}");
    assert_eq!(
        *server.host.verified.lock().unwrap(),
        1,
        "no handshake for the second"
    );

    // The place is given back when the first closes.
    client.transport.close_connection(first, 0, "done").unwrap();
    server.host.closed(server_first);
    client
        .connect(&server, roots(&ca), Some(ca.client()))
        .expect("a place is free again");
}

#[test]
fn a_handshake_that_never_completes_times_out() {
    // A UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let transport = transport("handshake_timeout = \"1s\"\nidle_timeout = \"30s\"").unwrap();
    let start = Instant::now();
    let err = transport
        .connect(
            ConnectParams {
                remote_addr: silent.local_addr().unwrap().to_string(),
                server_name: "127.0.0.1".into(),
                trust: ServerTrust::ChannelBoundLater,
                client_identity: None,
                max_frame_len: 1024,
            },
            Arc::new(Recorder::default()).host(),
        )
        .unwrap_err();
    assert!(err.message().contains("handshake timed out"), "{err}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn config_errors_name_the_field_and_the_line() {
    for (text, expected) in [
        (
            "keep_alive = \"5s\"\nidle_timeout = \"forever\"",
            "line 2: field \"idle_timeout\": \"forever\" is not a duration",
        ),
        (
            "max_conections = 5",
            "line 1: field \"max_conections\": unknown field `max_conections`",
        ),
        (
            "max_connections = 0",
            "field \"max_connections\": must be at least 1",
        ),
        (
            "handshake_timeout = 10",
            "line 1: field \"handshake_timeout\": invalid type: integer `10`, expected a string",
        ),
    ] {
        let err = transport(text).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{text}: {err}");
        assert!(err.message().contains(expected), "{text}: {err}");
    }
    transport("handshake_timeout = \"3s\"\nidle_timeout = \"1m\"\nkeep_alive = \"0s\"\nmax_connections = 10")
        .expect("every documented key");
}

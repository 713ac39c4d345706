//! The Transport interface end to end through the ABI, with the loopback
//! fixture: listen, connect, the host's client verifier during the
//! handshake, frames both ways, stream finish, close, the keying-material
//! exporter and identity rotation.

use std::sync::{Arc, Mutex};

use keygate_sdk::{
    ConnectParams, ErrorKind, ListenParams, PluginError, ServerTrust, TlsIdentity, Transport,
    TransportCallbacks, TransportEvent, TransportHost,
};
use keygate_sdk_host::Library;

/// The host side: records events, refuses revoked client chains.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<TransportEvent>>,
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
        if self
            .0
            .revoked
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.as_slice() == leaf.as_slice())
        {
            return Err(PluginError::invalid("certificate is revoked"));
        }
        Ok(())
    }
    fn on_event(&self, event: TransportEvent) {
        self.0.events.lock().unwrap().push(event);
    }
}

fn der(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

fn identity(leaf: &[u8], ca: &[u8]) -> TlsIdentity {
    TlsIdentity {
        cert_chain: vec![der(leaf), der(ca)],
        private_key_der: der(b"key"),
    }
}

struct Setup {
    transport: Box<dyn Transport>,
    server: Arc<Recorder>,
    client: Arc<Recorder>,
    addr: String,
}

fn setup(require_client_cert: bool) -> Setup {
    let lib = Library::open(&keygate_tests::cdylib("keygate-fixture-loopback")).expect("open");
    let ctx = keygate_sdk_testing::test_context("transport(loopback)", "/".as_ref());
    let transport: Box<dyn Transport> =
        Box::new(lib.new_transport("loopback", "", ctx).expect("construct"));
    let server = Arc::new(Recorder::default());
    let client = Arc::new(Recorder::default());
    let addr = transport
        .listen(
            ListenParams {
                addr: "127.0.0.1:0".into(),
                identity: identity(b"server-leaf", b"ca"),
                client_ca_roots: vec![der(b"ca")],
                require_client_cert,
                max_frame_len: 1024,
            },
            TransportHost::new(Callbacks(server.clone())),
        )
        .expect("listen");
    Setup {
        transport,
        server,
        client,
        addr,
    }
}

fn connect_params(addr: &str, client_leaf: Option<&[u8]>) -> ConnectParams {
    ConnectParams {
        remote_addr: addr.into(),
        server_name: "gateway.local".into(),
        trust: ServerTrust::Roots(vec![der(b"ca")]),
        client_identity: client_leaf.map(|leaf| identity(leaf, b"ca")),
        max_frame_len: 1024,
    }
}

#[test]
fn frames_flow_both_ways_and_both_ends_export_the_same_keying_material() {
    let s = setup(true);
    let conn = s
        .transport
        .connect(
            connect_params(&s.addr, Some(b"device-leaf")),
            TransportHost::new(Callbacks(s.client.clone())),
        )
        .expect("connect");
    assert_eq!(
        *s.server.verified.lock().unwrap(),
        1,
        "the host verifier ran during the handshake"
    );

    let server_conn = match &s.server.events.lock().unwrap()[0] {
        TransportEvent::Connected(info) => {
            assert_eq!(info.peer_certificates[0].as_slice(), b"device-leaf");
            assert!(!info.outbound);
            info.connection
        }
        other => panic!("{other:?}"),
    };
    let stream = s.transport.open_stream(conn).expect("stream");
    s.transport
        .send_frame(conn, stream, b"hello gateway")
        .expect("send");
    s.transport.finish_stream(conn, stream).expect("finish");
    s.transport
        .send_frame(server_conn, stream, b"hello device")
        .expect("reply");

    {
        let server_events = s.server.events.lock().unwrap();
        assert!(matches!(&server_events[1], TransportEvent::Frame(f)
            if f.connection == server_conn && f.stream == stream && f.payload.as_slice() == b"hello gateway"));
        assert!(
            matches!(&server_events[2], TransportEvent::StreamFinished { connection, stream: st }
            if *connection == server_conn && *st == stream)
        );
        let client_events = s.client.events.lock().unwrap();
        assert!(
            matches!(&client_events[1], TransportEvent::Frame(f) if f.payload.as_slice() == b"hello device")
        );
    }

    let a = s
        .transport
        .export_keying_material(conn, b"keygate pairing", b"ctx", 32)
        .unwrap();
    let b = s
        .transport
        .export_keying_material(server_conn, b"keygate pairing", b"ctx", 32)
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.len(), 32);
    let other = s
        .transport
        .export_keying_material(conn, b"other label", b"ctx", 32)
        .unwrap();
    assert_ne!(a, other);

    s.transport.close_connection(conn, 7, "bye").expect("close");
    assert!(
        matches!(s.server.events.lock().unwrap().last(), Some(TransportEvent::Closed { reason, .. })
        if reason.as_str() == "closed by peer: code 7: bye")
    );
    let err = s.transport.send_frame(conn, stream, b"late").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn the_host_verifier_refuses_a_revoked_client_and_no_connection_opens() {
    let s = setup(true);
    s.server
        .revoked
        .lock()
        .unwrap()
        .push(b"revoked-leaf".to_vec());
    let err = s
        .transport
        .connect(
            connect_params(&s.addr, Some(b"revoked-leaf")),
            TransportHost::new(Callbacks(s.client.clone())),
        )
        .unwrap_err();
    assert!(err.message().contains("certificate is revoked"), "{err}");
    assert!(
        s.server.events.lock().unwrap().is_empty(),
        "no connection event for a refused handshake"
    );
    assert!(s.client.events.lock().unwrap().is_empty());
}

#[test]
fn a_client_without_a_certificate_is_refused_when_certificates_are_required() {
    let s = setup(true);
    let err = s
        .transport
        .connect(
            connect_params(&s.addr, None),
            TransportHost::new(Callbacks(s.client.clone())),
        )
        .unwrap_err();
    assert!(err.message().contains("peer sent no certificates"), "{err}");
    // With optional client certificates the same client gets in (to pair).
    let s = setup(false);
    s.transport
        .connect(
            connect_params(&s.addr, None),
            TransportHost::new(Callbacks(s.client.clone())),
        )
        .expect("unauthenticated client may connect to pair");
    assert!(
        matches!(&s.server.events.lock().unwrap()[0], TransportEvent::Connected(i) if i.peer_certificates.is_empty())
    );
}

#[test]
fn an_oversized_frame_is_refused() {
    let s = setup(false);
    let conn = s
        .transport
        .connect(
            connect_params(&s.addr, None),
            TransportHost::new(Callbacks(s.client.clone())),
        )
        .unwrap();
    let stream = s.transport.open_stream(conn).unwrap();
    let err = s
        .transport
        .send_frame(conn, stream, &vec![0u8; 1025])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.message().contains("exceeds the limit of 1024"), "{err}");
}

#[test]
fn a_rotated_server_identity_is_used_for_new_handshakes() {
    let s = setup(false);
    let mut params = connect_params(&s.addr, None);
    params.trust = ServerTrust::Roots(vec![der(b"new-ca")]);
    let err = s
        .transport
        .connect(
            params.clone(),
            TransportHost::new(Callbacks(s.client.clone())),
        )
        .unwrap_err();
    assert!(err.message().contains("UnknownIssuer"), "{err}");
    s.transport
        .set_server_identity(identity(b"server-leaf-2", b"new-ca"))
        .expect("rotate");
    s.transport
        .connect(params, TransportHost::new(Callbacks(s.client.clone())))
        .expect("new identity is served");
}

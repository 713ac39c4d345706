//! A device's connection to a gateway: blocking calls over any
//! [`Transport`], with the transport's events forwarded into channels.
//!
//! A [`Link`] is one connection. It knows what the connection's TLS
//! showed (the server's chain, hence the CA fingerprint, and the channel
//! binding) and moves messages the way `keygate_proto::link` fixes:
//!
//! - [`Link::request`]: a stream per request, one frame each way (node
//!   requests, `Resume`);
//! - [`Link::exchange`]: several frames each way on one stream (pairing);
//! - [`Link::next_incoming`] / [`Link::reply`]: the streams the gateway
//!   opens (invocations), answered on the same stream.
//!
//! When the connection ends, every call waiting on it returns
//! [`LinkError::Closed`] with the transport's reason text and what that
//! text means for the device ([`CloseCause`], from [`classify_close`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use keygate_proto::link::{CHANNEL_BINDING_CONTEXT, CHANNEL_BINDING_LABEL, close};
use keygate_sdk::{
    ConnectParams, ConnectionId, ConnectionInfo, PluginError, ServerTrust, StreamId, TlsIdentity,
    Transport, TransportCallbacks, TransportEvent, TransportHost,
};
use sha2::{Digest, Sha256};

use crate::pairing::uri::AddrError;
use crate::pairing::{GatewayAddr, Host};

/// How long [`Link::connect`] waits for the transport's `Connected` event
/// after its handshake completed.
const CONNECTED_WAIT: Duration = Duration::from_secs(5);
/// How long a failed transport call waits for the `Closed` event that
/// usually explains it.
const CLOSE_EXPLAINS_WAIT: Duration = Duration::from_millis(500);

/// What a closed connection means for the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The gateway shuts down ([`close::SHUTDOWN`]): reconnect after a
    /// short, jittered pause.
    Shutdown,
    /// The device or its certificate is revoked ([`close::REVOKED`], or a
    /// handshake refused with the TLS alert `certificate_revoked`): never
    /// reconnect with this identity.
    Revoked,
    /// The gateway dropped a node that missed its heartbeats
    /// ([`close::SILENT`]): reconnect.
    Silent,
    /// Anything else (lost network, idle timeout, another code): reconnect
    /// with backoff.
    Other,
}

/// Reads what a transport's close reason (or handshake error) means.
///
/// The `quic` transport reports a close by the peer as `closed by peer:
/// code N: reason` and a TLS alert by name (`TLS alert
/// certificate_revoked`). The application code decides when there is one
/// (whatever the reason text says); otherwise a `certificate_revoked`
/// alert means revoked.
pub fn classify_close(reason: &str) -> CloseCause {
    if let Some(code) = peer_close_code(reason) {
        return match code {
            close::SHUTDOWN => CloseCause::Shutdown,
            close::REVOKED => CloseCause::Revoked,
            close::SILENT => CloseCause::Silent,
            _ => CloseCause::Other,
        };
    }
    if reason.contains("TLS alert certificate_revoked") {
        return CloseCause::Revoked;
    }
    CloseCause::Other
}

/// The application code of `closed by peer: code N: …`, wherever that
/// text starts in `reason` (a handshake error prefixes it).
fn peer_close_code(reason: &str) -> Option<u32> {
    const MARK: &str = "closed by peer: code ";
    let at = reason.find(MARK)?;
    let rest = &reason[at + MARK.len()..];
    let digits = rest.split(':').next()?;
    digits.trim().parse().ok()
}

/// A closed connection: the transport's words and what they mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    /// The transport's reason text.
    pub reason: String,
    /// What it means for the device.
    pub cause: CloseCause,
}

impl Closure {
    fn new(reason: String) -> Self {
        let cause = classify_close(&reason);
        Self { reason, cause }
    }
}

/// Why a call on a link failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The gateway address does not parse.
    #[error(transparent)]
    Address(#[from] AddrError),
    /// The connection could not be made (the handshake failed or timed out).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `HOST:PORT` tried.
        addr: String,
        /// The transport's error.
        source: PluginError,
    },
    /// The handshake completed but the transport never reported the
    /// connection.
    #[error("connected to {addr}, but the transport did not report the connection")]
    NotReported {
        /// `HOST:PORT`.
        addr: String,
    },
    /// The server showed no certificate.
    #[error("{addr} showed no certificate")]
    NoServerCertificate {
        /// `HOST:PORT`.
        addr: String,
    },
    /// The connection is closed.
    #[error("the connection to the gateway closed: {}", .0.reason)]
    Closed(Closure),
    /// No answer in time.
    #[error("no answer from the gateway within {0:?}")]
    Timeout(Duration),
    /// The gateway finished the stream without answering.
    #[error("the gateway ended the exchange without answering")]
    StreamEnded,
    /// A transport call failed while the connection stayed open.
    #[error("transport: {0}")]
    Transport(PluginError),
}

impl LinkError {
    /// What the failure means for the device: the closure's cause for a
    /// closed connection or a refused handshake, else
    /// [`CloseCause::Other`].
    pub fn cause(&self) -> CloseCause {
        match self {
            LinkError::Closed(c) => c.cause,
            LinkError::Connect { source, .. } => classify_close(source.message()),
            _ => CloseCause::Other,
        }
    }
}

/// `HOST:PORT` → the name the server certificate must carry: the host,
/// an IPv6 address without its brackets.
pub fn server_name_of(addr: &GatewayAddr) -> String {
    match &addr.host {
        Host::Ip(ip) => ip.to_string(),
        Host::Dns(name) => name.clone(),
    }
}

/// The [`ConnectParams`] to reach the gateway at `addr` (`HOST:PORT`,
/// `[IPv6]:PORT`), with frames up to the protocol's message limit.
pub fn connect_params(
    addr: &str,
    trust: ServerTrust,
    client_identity: Option<TlsIdentity>,
) -> Result<ConnectParams, AddrError> {
    let parsed = GatewayAddr::parse(addr)?;
    Ok(ConnectParams {
        remote_addr: parsed.to_string(),
        server_name: server_name_of(&parsed),
        trust,
        client_identity,
        max_frame_len: keygate_proto::MAX_MESSAGE_LEN as u32,
    })
}

/// A frame on a stream the gateway opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The stream: answer on it with [`Link::reply`].
    pub stream: StreamId,
    /// The frame.
    pub frame: Vec<u8>,
}

enum StreamEvent {
    Frame(Vec<u8>),
    Finished,
}

/// Where the transport's events for one connection go.
#[derive(Default)]
struct Routes {
    connected: Option<ConnectionInfo>,
    /// Streams this side opened: their events go to the waiting call;
    /// `None` once the call is done (kept until the peer finishes, so a
    /// late event is not taken for a gateway-opened stream).
    own: HashMap<StreamId, Option<Sender<StreamEvent>>>,
    incoming: Option<Sender<Incoming>>,
    closed: Option<Closure>,
}

#[derive(Default)]
struct Router {
    routes: Mutex<Routes>,
    changed: Condvar,
}

impl Router {
    fn lock(&self) -> MutexGuard<'_, Routes> {
        // Nothing panics while the lock is held.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_until<T>(&self, timeout: Duration, pick: impl Fn(&Routes) -> Option<T>) -> Option<T> {
        let routes = self.lock();
        let (routes, _) = self
            .changed
            .wait_timeout_while(routes, timeout, |r| pick(r).is_none())
            .unwrap_or_else(|p| p.into_inner());
        pick(&routes)
    }
}

/// The callbacks a [`Link`] gives its transport.
struct Forwarder(Arc<Router>);

impl TransportCallbacks for Forwarder {
    fn verify_client(&self, _chain: &[Vec<u8>]) -> Result<(), PluginError> {
        // Only called on a listener; a device never listens.
        Err(PluginError::invalid("a device link accepts no clients"))
    }

    fn on_event(&self, event: TransportEvent) {
        let router = &self.0;
        let mut routes = router.lock();
        match event {
            TransportEvent::Connected(info) => routes.connected = Some(info),
            TransportEvent::Frame(f) => match routes.own.get(&f.stream) {
                Some(Some(tx)) => {
                    let _ = tx.send(StreamEvent::Frame(f.payload));
                }
                Some(None) => {}
                None => {
                    if let Some(tx) = &routes.incoming {
                        let _ = tx.send(Incoming {
                            stream: f.stream,
                            frame: f.payload,
                        });
                    }
                }
            },
            TransportEvent::StreamFinished { stream, .. } => {
                if let Some(Some(tx)) = routes.own.remove(&stream) {
                    let _ = tx.send(StreamEvent::Finished);
                }
            }
            TransportEvent::Closed { reason, .. } => {
                routes.closed = Some(Closure::new(reason));
                // Dropping the senders wakes every waiting call.
                routes.own.clear();
                routes.incoming = None;
            }
        }
        drop(routes);
        router.changed.notify_all();
    }
}

/// One connection to a gateway. Closed (code 0) when dropped.
pub struct Link {
    transport: Arc<dyn Transport>,
    connection: ConnectionId,
    remote_addr: String,
    peer_certificates: Vec<Vec<u8>>,
    channel_binding: [u8; 32],
    router: Arc<Router>,
    incoming: Mutex<Receiver<Incoming>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("connection", &self.connection)
            .field("remote_addr", &self.remote_addr)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Connects with `params` and completes the handshake.
    pub fn connect(
        transport: Arc<dyn Transport>,
        params: ConnectParams,
    ) -> Result<Link, LinkError> {
        let addr = params.remote_addr.clone();
        let router = Arc::new(Router::default());
        let (incoming_tx, incoming_rx) = mpsc::channel();
        router.lock().incoming = Some(incoming_tx);
        let host = TransportHost::new(Forwarder(router.clone()));
        let connection = transport
            .connect(params, host)
            .map_err(|source| LinkError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let mut link = Link {
            transport,
            connection,
            remote_addr: addr.clone(),
            peer_certificates: Vec::new(),
            channel_binding: [0; 32],
            router,
            incoming: Mutex::new(incoming_rx),
        };
        let info = link
            .router
            .wait_until(CONNECTED_WAIT, |r| r.connected.clone())
            .ok_or_else(|| LinkError::NotReported { addr: addr.clone() })?;
        if info.peer_certificates.is_empty() {
            return Err(LinkError::NoServerCertificate { addr });
        }
        link.remote_addr = info.remote_addr;
        link.peer_certificates = info.peer_certificates;
        let exported = link
            .transport
            .export_keying_material(
                connection,
                CHANNEL_BINDING_LABEL,
                CHANNEL_BINDING_CONTEXT,
                keygate_proto::link::CHANNEL_BINDING_LEN,
            )
            .map_err(|e| link.explain(e))?;
        link.channel_binding = exported.as_slice().try_into().map_err(|_| {
            LinkError::Transport(PluginError::internal(format!(
                "the transport exported {} bytes of keying material, not 32",
                exported.len()
            )))
        })?;
        Ok(link)
    }

    /// The transport's id of this connection.
    pub fn connection(&self) -> ConnectionId {
        self.connection
    }

    /// The gateway's `ip:port`.
    pub fn remote_addr(&self) -> &str {
        &self.remote_addr
    }

    /// The chain the server showed (leaf first, DER).
    pub fn peer_certificates(&self) -> &[Vec<u8>] {
        &self.peer_certificates
    }

    /// SHA-256 of the last certificate the server showed: its CA.
    pub fn ca_fingerprint(&self) -> [u8; 32] {
        // `connect` refuses a connection without a certificate.
        self.peer_certificates
            .last()
            .map(|ca| Sha256::digest(ca).into())
            .unwrap_or_default()
    }

    /// This connection's channel binding: its TLS exporter value for
    /// [`CHANNEL_BINDING_LABEL`].
    pub fn channel_binding(&self) -> [u8; 32] {
        self.channel_binding
    }

    /// Sends one request on a new stream and waits up to `timeout` for
    /// the first frame of the answer.
    pub fn request(&self, frame: &[u8], timeout: Duration) -> Result<Vec<u8>, LinkError> {
        let exchange = self.exchange()?;
        exchange.send(frame)?;
        exchange.finish()?;
        exchange.recv(timeout)
    }

    /// Opens a stream for an exchange of several frames.
    pub fn exchange(&self) -> Result<Exchange<'_>, LinkError> {
        self.check_open()?;
        let stream = self
            .transport
            .open_stream(self.connection)
            .map_err(|e| self.explain(e))?;
        let (tx, rx) = mpsc::channel();
        let mut routes = self.router.lock();
        if let Some(closure) = &routes.closed {
            return Err(LinkError::Closed(closure.clone()));
        }
        routes.own.insert(stream, Some(tx));
        drop(routes);
        Ok(Exchange {
            link: self,
            stream,
            events: rx,
            finished: Cell::new(false),
        })
    }

    /// The next frame on a stream the gateway opened, waiting up to
    /// `timeout`: `None` when none came.
    pub fn next_incoming(&self, timeout: Duration) -> Result<Option<Incoming>, LinkError> {
        let rx = self.incoming.lock().unwrap_or_else(|p| p.into_inner());
        match rx.recv_timeout(timeout) {
            Ok(incoming) => Ok(Some(incoming)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.closed_error()),
        }
    }

    /// Answers on a stream the gateway opened: one frame, then finishes it.
    pub fn reply(&self, stream: StreamId, frame: &[u8]) -> Result<(), LinkError> {
        self.transport
            .send_frame(self.connection, stream, frame)
            .and_then(|()| self.transport.finish_stream(self.connection, stream))
            .map_err(|e| self.explain(e))
    }

    /// Finishes this side of a stream the gateway opened, without
    /// answering (it sent something that is not a request).
    pub fn finish(&self, stream: StreamId) -> Result<(), LinkError> {
        self.transport
            .finish_stream(self.connection, stream)
            .map_err(|e| self.explain(e))
    }

    /// Closes the connection with an application `code` and `reason`.
    pub fn close(&self, code: u32, reason: &str) {
        let _ = self
            .transport
            .close_connection(self.connection, code, reason);
        let mut routes = self.router.lock();
        if routes.closed.is_none() {
            routes.closed = Some(Closure::new(format!(
                "closed locally: code {code}: {reason}"
            )));
            routes.own.clear();
            routes.incoming = None;
        }
        drop(routes);
        self.router.changed.notify_all();
    }

    /// How the connection closed, if it did.
    pub fn closed(&self) -> Option<Closure> {
        self.router.lock().closed.clone()
    }

    /// Waits up to `timeout` for the connection to close.
    pub fn wait_closed(&self, timeout: Duration) -> Option<Closure> {
        self.router.wait_until(timeout, |r| r.closed.clone())
    }

    fn check_open(&self) -> Result<(), LinkError> {
        match self.closed() {
            Some(closure) => Err(LinkError::Closed(closure)),
            None => Ok(()),
        }
    }

    fn closed_error(&self) -> LinkError {
        match self.wait_closed(CLOSE_EXPLAINS_WAIT) {
            Some(closure) => LinkError::Closed(closure),
            None => LinkError::Transport(PluginError::internal("the connection's events stopped")),
        }
    }

    /// A failed transport call: the closure that caused it, if the
    /// connection closed, else the error itself.
    fn explain(&self, err: PluginError) -> LinkError {
        match self.wait_closed(CLOSE_EXPLAINS_WAIT) {
            Some(closure) => LinkError::Closed(closure),
            None => LinkError::Transport(err),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.closed().is_none() {
            let _ = self.transport.close_connection(
                self.connection,
                0,
                "the device closed the connection",
            );
        }
    }
}

/// One stream this side opened, for frames both ways. Dropping it
/// finishes this side of the stream if [`finish`](Self::finish) was not
/// called: a stream left half-open would keep counting against the
/// connection's stream limit.
pub struct Exchange<'a> {
    link: &'a Link,
    stream: StreamId,
    events: Receiver<StreamEvent>,
    finished: Cell<bool>,
}

impl std::fmt::Debug for Exchange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Exchange<'_> {
    /// The stream.
    pub fn stream(&self) -> StreamId {
        self.stream
    }

    /// Sends one frame.
    pub fn send(&self, frame: &[u8]) -> Result<(), LinkError> {
        self.link
            .transport
            .send_frame(self.link.connection, self.stream, frame)
            .map_err(|e| self.link.explain(e))
    }

    /// Finishes this side of the stream.
    pub fn finish(&self) -> Result<(), LinkError> {
        self.finished.set(true);
        self.link
            .transport
            .finish_stream(self.link.connection, self.stream)
            .map_err(|e| self.link.explain(e))
    }

    /// The next frame from the gateway, waiting up to `timeout`.
    pub fn recv(&self, timeout: Duration) -> Result<Vec<u8>, LinkError> {
        match self.events.recv_timeout(timeout) {
            Ok(StreamEvent::Frame(frame)) => Ok(frame),
            Ok(StreamEvent::Finished) => Err(LinkError::StreamEnded),
            Err(RecvTimeoutError::Timeout) => Err(LinkError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(self.link.closed_error()),
        }
    }
}

impl Drop for Exchange<'_> {
    fn drop(&mut self) {
        if !self.finished.get() {
            let _ = self
                .link
                .transport
                .finish_stream(self.link.connection, self.stream);
        }
        let mut routes = self.link.router.lock();
        if let Some(route) = routes.own.get_mut(&self.stream) {
            // Later events on it are dropped, not taken for a stream the
            // gateway opened; the entry goes when the gateway finishes.
            *route = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use keygate_proto::{Message, RefusalCode};

    use super::*;
    use crate::gateway::testing;

    const WAIT: Duration = Duration::from_secs(10);

    fn connect(gateway: &crate::gateway::Gateway, client: &Arc<dyn Transport>) -> Link {
        let addr = gateway.local_addr().to_string();
        let trust = ServerTrust::Roots(vec![testing::ca_der(gateway)]);
        Link::connect(client.clone(), connect_params(&addr, trust, None).unwrap()).unwrap()
    }

    #[test]
    fn a_link_knows_the_gateways_address_and_ca_and_its_own_channel_binding() {
        let dir = tempfile::tempdir().unwrap();
        let (_lock, gateway) = testing::gateway(dir.path());
        let client = testing::quic(dir.path());
        let link = connect(&gateway, &client);
        let other = connect(&gateway, &client);
        let addr = gateway.local_addr().to_string();
        assert_eq!(link.remote_addr(), addr);
        assert!(format!("{link:?}").contains(&addr));
        // The chain the server showed: its current certificate, then the CA.
        let chain = link.peer_certificates();
        assert_eq!(chain.len(), 2, "{chain:?}");
        let leaf = crate::identity::CertFingerprint::of_der(&chain[0]);
        assert_eq!(leaf, gateway.server_cert().fingerprint);
        assert_eq!(chain[1], testing::ca_der(&gateway));
        let ca: [u8; 32] = Sha256::digest(testing::ca_der(&gateway)).into();
        assert_eq!(link.ca_fingerprint(), ca);
        assert_eq!(other.ca_fingerprint(), ca);
        // The binding is this connection's exporter value, not another's.
        assert_ne!(link.connection(), other.connection());
        for l in [&link, &other] {
            let exported = client
                .export_keying_material(
                    l.connection(),
                    CHANNEL_BINDING_LABEL,
                    CHANNEL_BINDING_CONTEXT,
                    keygate_proto::link::CHANNEL_BINDING_LEN,
                )
                .unwrap();
            assert_eq!(l.channel_binding().as_slice(), exported.as_slice());
        }
        assert_ne!(link.channel_binding(), other.channel_binding());
        gateway.shutdown();
    }

    #[test]
    fn each_exchange_has_a_stream_of_its_own_which_it_gives_back_once_answered_and_finished_or_dropped()
     {
        let dir = tempfile::tempdir().unwrap();
        let (_lock, gateway) = testing::gateway(dir.path());
        let client = testing::quic(dir.path());
        let link = Arc::new(connect(&gateway, &client));
        let (done, progress) = mpsc::channel();
        {
            let link = link.clone();
            // QUIC lets a peer have 100 streams open at once: half the
            // exchanges are kept, so only `finish` closes this side of
            // theirs; the other half are dropped unfinished.
            std::thread::spawn(move || {
                let ack = Message::HeartbeatAck.encode();
                let mut kept = Vec::new();
                for n in 0..300u32 {
                    let exchange = link.exchange().unwrap();
                    exchange.send(&ack).unwrap();
                    let keep = n % 2 == 0;
                    if keep {
                        exchange.finish().unwrap();
                    }
                    let answer = exchange.recv(WAIT);
                    if done.send((n, exchange.stream(), answer.is_ok())).is_err() {
                        return;
                    }
                    if keep {
                        kept.push(exchange);
                    }
                }
            });
        }
        let mut streams = std::collections::HashSet::new();
        for n in 0..300u32 {
            let (i, stream, answered) =
                progress.recv_timeout(WAIT).expect("a stream: none is kept");
            assert_eq!((i, answered), (n, true));
            assert!(streams.insert(stream), "stream {stream} twice");
        }
        let exchange = link.exchange().unwrap();
        let stream = exchange.stream();
        assert!(!streams.contains(&stream));
        assert!(format!("{exchange:?}").contains(&stream.to_string()));
        drop(exchange);
        gateway.shutdown();
    }

    #[test]
    fn a_link_closed_here_says_so_to_every_later_call_and_the_gateway_sees_it_go() {
        let dir = tempfile::tempdir().unwrap();
        let (_lock, gateway) = testing::gateway(dir.path());
        let client = testing::quic(dir.path());
        let link = connect(&gateway, &client);
        let ack = Message::HeartbeatAck.encode();
        let answer = Message::decode(&link.request(&ack, WAIT).unwrap()).unwrap();
        assert!(matches!(answer, Message::Refused(r) if r.code == RefusalCode::Malformed));
        assert_eq!(link.closed(), None);
        link.close(7, "bye");
        let closure = Closure {
            reason: "closed locally: code 7: bye".into(),
            cause: CloseCause::Other,
        };
        assert_eq!(link.closed(), Some(closure.clone()));
        assert_eq!(link.wait_closed(WAIT), Some(closure.clone()));
        match link.request(&ack, WAIT) {
            Err(LinkError::Closed(c)) => assert_eq!(c, closure),
            other => panic!("expected the closure, got {other:?}"),
        }
        let deadline = std::time::Instant::now() + WAIT;
        while gateway.connections() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway keeps the connection"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        gateway.shutdown();
    }

    #[test]
    fn a_close_is_read_from_its_code_first_then_from_a_revocation_alert() {
        let cases = [
            ("closed by peer: code 19200: shutdown", CloseCause::Shutdown),
            (
                "closed by peer: code 19216: device revoked",
                CloseCause::Revoked,
            ),
            (
                "closed by peer: code 19217: silent for 3 heartbeats",
                CloseCause::Silent,
            ),
            ("closed by peer: code 7: bye", CloseCause::Other),
            // The code decides, whatever the text says.
            (
                "closed by peer: code 19200: certificate_revoked somewhere",
                CloseCause::Shutdown,
            ),
            (
                "refused by peer: TLS alert certificate_revoked (CONNECTION_CLOSE …)",
                CloseCause::Revoked,
            ),
            (
                "127.0.0.1:7443: handshake failed: refused by peer: TLS alert certificate_revoked (x)",
                CloseCause::Revoked,
            ),
            (
                "TLS alert certificate_revoked: refused",
                CloseCause::Revoked,
            ),
            (
                "refused by peer: TLS alert certificate_expired (x)",
                CloseCause::Other,
            ),
            ("idle timeout", CloseCause::Other),
            // This side's own close is not the gateway's word.
            ("closed locally: code 19216: x", CloseCause::Other),
            ("closed by peer: code : x", CloseCause::Other),
            ("closed by peer: code 99999999999: x", CloseCause::Other),
            ("", CloseCause::Other),
        ];
        for (reason, cause) in cases {
            assert_eq!(classify_close(reason), cause, "{reason:?}");
        }
        assert_eq!(close::SHUTDOWN, 19200);
        assert_eq!(close::REVOKED, 19216);
        assert_eq!(close::SILENT, 19217);
    }

    #[test]
    fn a_refused_handshake_has_the_cause_its_text_says() {
        let err = LinkError::Connect {
            addr: "127.0.0.1:7443".into(),
            source: PluginError::unavailable(
                "127.0.0.1:7443: handshake failed: TLS alert certificate_revoked: x",
            ),
        };
        assert_eq!(err.cause(), CloseCause::Revoked);
        assert_eq!(LinkError::StreamEnded.cause(), CloseCause::Other);
        let closed = LinkError::Closed(Closure::new("closed by peer: code 19200: bye".into()));
        assert_eq!(closed.cause(), CloseCause::Shutdown);
    }

    #[test]
    fn the_server_name_is_the_host_and_an_ipv6_address_loses_its_brackets() {
        let cases = [
            ("127.0.0.1:7443", "127.0.0.1:7443", "127.0.0.1"),
            (
                "gateway.example:7443",
                "gateway.example:7443",
                "gateway.example",
            ),
            ("[::1]:7443", "[::1]:7443", "::1"),
            ("[fe80::1]:1", "[fe80::1]:1", "fe80::1"),
        ];
        for (addr, remote, name) in cases {
            let params = connect_params(addr, ServerTrust::ChannelBoundLater, None).unwrap();
            assert_eq!(params.remote_addr, remote, "{addr}");
            assert_eq!(params.server_name, name, "{addr}");
            assert_eq!(params.max_frame_len, 16384);
        }
        for bad in ["::1:7443", "gateway", "gateway:0", "[::1", ":7443", ""] {
            assert!(
                connect_params(bad, ServerTrust::ChannelBoundLater, None).is_err(),
                "{bad:?}"
            );
        }
    }
}

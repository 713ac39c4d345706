//! The running gateway: one transport listener serving pairing and node
//! RPC, the node runtime, live revocation and the server certificate.
//!
//! - **Handshake**: a client certificate is optional; one that is presented
//!   has chained to the CA in the transport and must then be known to the
//!   identity state and neither it nor its device revoked
//!   ([`TransportCallbacks::verify_client`]), or the handshake fails.
//! - **Streams** (see `keygate_proto::link`): pairing on streams the device
//!   opens, answered by [`crate::pairing::gateway`]; node requests checked
//!   and answered by [`crate::node::dispatch`]; invocations sent on
//!   streams the gateway opens ([`Gateway::invoke`]).
//! - **Workers**: the transport's events are sharded by connection over
//!   [`GatewayOptions::workers`] threads, so one connection's frames stay in
//!   order while a pairing step waiting on a durable write holds up no
//!   other connection.
//! - **Revocation**: [`Gateway::revoked`] closes every connection made with
//!   the revoked certificate or device, with close code `REVOKED`; the
//!   caller feeds it from the state [`Watcher`](crate::state::Watcher).
//! - **Housekeeping** ([`Gateway::tick`], once or more a second):
//!   invocations past their timeout fail, nodes silent for three heartbeats
//!   are disconnected, and the server certificate is re-issued at two
//!   thirds of its life ([`server_cert`]).
//! - **Shutdown** ([`Gateway::shutdown`]): every connection is closed with
//!   `SHUTDOWN`, which tells nodes to reconnect.

pub mod admin;
pub mod connections;
pub mod handshake;
pub mod invocations;
pub mod server_cert;
mod worker;

use std::net::SocketAddr;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use keygate_proto::link::close;
use keygate_proto::{InvokeResult, Message, RefusalCode};
use keygate_sdk::{
    ListenParams, PluginError, Transport, TransportCallbacks, TransportEvent, TransportHost,
};

use crate::identity::{CertFingerprint, DeviceId};
use crate::metrics::{HandshakeOutcome, Metrics};
use crate::node::{Node, NodeRuntime, Refusal};
use crate::pairing::GatewayAddr;
use crate::pairing::gateway::PairingService;
use crate::state::{CertStatus, IdentityManager, RevocationEvent};
use connections::Connections;
use invocations::Invocations;
use server_cert::ServerCert;

/// A connection, as the transport numbers it.
pub type ConnectionId = u64;

/// How many node events a slow follower may fall behind by.
const NODE_EVENTS: usize = 1024;

/// A node registering or leaving ([`Gateway::node_events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A node registered on a connection.
    Connected(Node),
    /// The connection a node registered on closed.
    Left {
        /// The node's device.
        device_id: DeviceId,
        /// Why the connection closed, as the transport said.
        reason: String,
    },
}

/// The default number of worker threads.
pub const DEFAULT_WORKERS: usize = 64;

/// How the gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The addresses devices reach the gateway at: the server
    /// certificate's names.
    pub advertise: Vec<GatewayAddr>,
    /// The longest frame either way.
    pub max_frame_len: u32,
    /// How often nodes heartbeat.
    pub heartbeat: Duration,
    /// How long an invocation waits for its node.
    pub invoke_timeout: Duration,
    /// Validity of each server certificate.
    pub server_validity: Duration,
    /// Node methods without a client certificate (development only; the
    /// listen address must be a loopback address).
    pub node_rpc_opt_out: bool,
    /// Worker threads (at least 1).
    pub workers: usize,
    /// Where handshakes and revocation latency are recorded
    /// ([`Metrics::unregistered`] when nothing shows them).
    pub metrics: Arc<Metrics>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// `--insecure-node-rpc-opt-out` with a listen address other hosts can
    /// reach.
    #[error(
        "--insecure-node-rpc-opt-out is allowed only on a loopback listen address, \
         not {listen}"
    )]
    OptOutNotLoopback {
        /// The configured listen address.
        listen: SocketAddr,
    },
    /// The server certificate could not be issued.
    #[error("cannot issue the gateway's server certificate: {0}")]
    ServerCertificate(#[from] crate::ca::CaError),
    /// The transport refused to listen.
    #[error("cannot listen on {listen}: {cause}")]
    Listen {
        /// The address.
        listen: SocketAddr,
        /// The transport's error.
        cause: PluginError,
    },
    /// A worker thread could not be started.
    #[error("cannot start a gateway thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What every worker and the gateway handle share.
struct Shared {
    identity: Arc<IdentityManager>,
    node_events: tokio::sync::broadcast::Sender<NodeEvent>,
    pairing: PairingService,
    transport: Arc<dyn Transport>,
    runtime: Mutex<NodeRuntime>,
    connections: Connections,
    invocations: Invocations,
    options: GatewayOptions,
}

impl Shared {
    /// Tells whoever follows the nodes (the admin API's event stream);
    /// nobody listening is fine, and a slow listener never holds up the
    /// gateway (it misses events and is told so).
    fn node_event(&self, event: NodeEvent) {
        let _ = self.node_events.send(event);
    }

    /// Sends `frames` on a stream, then finishes it if `finish`. A peer
    /// that left is no error worth more than a debug line.
    fn answer(&self, connection: ConnectionId, stream: u64, frames: &[Vec<u8>], finish: bool) {
        for frame in frames {
            if let Err(error) = self.transport.send_frame(connection, stream, frame) {
                tracing::debug!(connection, stream, %error, "cannot answer");
                return;
            }
        }
        if finish && let Err(error) = self.transport.finish_stream(connection, stream) {
            tracing::debug!(connection, stream, %error, "cannot finish the stream");
        }
    }

    /// Closes the connections `event` ends: those made with the revoked
    /// certificate or by the revoked device.
    fn revoked(&self, event: &RevocationEvent) {
        let mut hit = self.connections.revoked_by(event);
        // Opt-out connections carry no certificate: their node registered
        // under the device id.
        if let RevocationEvent::Device(id) = event {
            hit.extend(crate::node::lock(&self.runtime).connections_of(id));
        }
        hit.sort_unstable();
        hit.dedup();
        let reason = match event {
            RevocationEvent::Device(id) => format!("device {id} revoked"),
            RevocationEvent::Certificate {
                fingerprint,
                device_id,
            } => format!("certificate {fingerprint} of device {device_id} revoked"),
        };
        tracing::warn!(connections = hit.len(), "revocation seen: {reason}");
        let closed_any = !hit.is_empty();
        for connection in hit {
            self.close(connection, close::REVOKED, &reason);
        }
        // Taken whether or not anything closed, so the times do not pile up.
        let committed = self.identity.revocation_committed_at(event);
        if let Some(committed) = committed.filter(|_| closed_any) {
            let latency = SystemTime::now()
                .duration_since(committed)
                .unwrap_or_default();
            self.options.metrics.revocation_propagated(latency);
        }
    }

    fn close(&self, connection: ConnectionId, code: u32, reason: &str) {
        if let Err(error) = self.transport.close_connection(connection, code, reason) {
            tracing::debug!(connection, %error, "closing a connection that is gone");
        }
    }
}

/// The workers' queues: event for a connection always go to the same one.
type Shards = Arc<Vec<Mutex<Sender<worker::Work>>>>;

/// The host's side of the transport: the handshake check and the events.
struct Callbacks {
    shared: Arc<Shared>,
    shards: Shards,
}

impl TransportCallbacks for Callbacks {
    fn verify_client(&self, chain: &[Vec<u8>]) -> Result<(), PluginError> {
        let leaf = chain
            .first()
            .ok_or_else(|| PluginError::invalid("an empty certificate chain"))?;
        let shared = &self.shared;
        handshake::check_presented(&shared.identity, leaf, SystemTime::now(), |event| {
            shared.revoked(&event)
        })
        .map_err(|(outcome, why)| {
            shared.options.metrics.handshake(outcome);
            PluginError::invalid(why)
        })
    }

    fn on_event(&self, event: TransportEvent) {
        let connection = match &event {
            TransportEvent::Connected(info) => {
                self.shared
                    .options
                    .metrics
                    .handshake(if info.peer_certificates.is_empty() {
                        HandshakeOutcome::NoCertificate
                    } else {
                        HandshakeOutcome::Ok
                    });
                info.connection
            }
            TransportEvent::Frame(frame) => frame.connection,
            TransportEvent::StreamFinished { connection, .. }
            | TransportEvent::Closed { connection, .. } => *connection,
        };
        let shard = usize::try_from(connection % self.shards.len() as u64).unwrap_or(0);
        let tx = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        // Fails only while shutting down, when nobody reads any more.
        let _ = tx.send(worker::Work::Event(event));
    }
}

/// The handshake's check of a client certificate that chained to the CA:
/// the identity state must know it, and neither it nor its device may be
/// revoked. A certificate the gateway's index does not know yet (issued a
/// moment ago by another process, e.g. `keygate pairing approve`) makes it
/// read the change log once before deciding; the revocations that read
/// finds go to `revoked`, as the watcher's would.
pub fn check_client(
    identity: &IdentityManager,
    fingerprint: &CertFingerprint,
    mut revoked: impl FnMut(RevocationEvent),
) -> Result<(), String> {
    let mut status = identity.certificate_status(fingerprint);
    if matches!(status, CertStatus::Unknown) {
        match identity.refresh() {
            Ok(events) => events.into_iter().for_each(&mut revoked),
            Err(error) => {
                tracing::warn!(%error, "cannot read the change log for an unknown certificate")
            }
        }
        status = identity.certificate_status(fingerprint);
    }
    match status {
        CertStatus::Valid(_) => Ok(()),
        CertStatus::CertificateRevoked(_) => Err(format!("certificate {fingerprint} is revoked")),
        CertStatus::DeviceRevoked(device) => Err(format!(
            "device {device}, holder of certificate {fingerprint}, is revoked"
        )),
        CertStatus::DeviceUnknown(device) => Err(format!(
            "device {device}, holder of certificate {fingerprint}, has no record"
        )),
        CertStatus::Unreadable(_) => Err(format!(
            "the record of certificate {fingerprint} cannot be read; refused until it can"
        )),
        CertStatus::Unknown => Err(format!(
            "certificate {fingerprint} was not issued by this gateway's state"
        )),
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    server_cert: Mutex<ServerCert>,
    shards: Shards,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Issues the server certificate, starts the workers and listens.
    ///
    /// # Errors
    /// [`GatewayError`]: opt-out off loopback, no server certificate, the
    /// address taken, no threads.
    pub fn start(
        identity: Arc<IdentityManager>,
        pairing: PairingService,
        transport: Arc<dyn Transport>,
        options: GatewayOptions,
    ) -> Result<Gateway, GatewayError> {
        if options.node_rpc_opt_out && !options.listen.ip().is_loopback() {
            return Err(GatewayError::OptOutNotLoopback {
                listen: options.listen,
            });
        }
        let now = SystemTime::now();
        let names = server_cert::subject_alt_names(&options.advertise);
        let (tls, schedule) =
            server_cert::issue(identity.ca(), &names, options.server_validity, now)?;
        let shared = Arc::new(Shared {
            identity: identity.clone(),
            pairing,
            transport: transport.clone(),
            node_events: tokio::sync::broadcast::channel(NODE_EVENTS).0,
            runtime: Mutex::new(NodeRuntime::new(options.heartbeat, options.invoke_timeout)),
            connections: Connections::default(),
            invocations: Invocations::default(),
            options: options.clone(),
        });
        let mut shards = Vec::new();
        let mut workers = Vec::new();
        for n in 0..options.workers.max(1) {
            let (tx, rx) = channel();
            let shared = shared.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("keygate-worker-{n}"))
                    .spawn(move || worker::run(shared, rx))?,
            );
            shards.push(Mutex::new(tx));
        }
        let shards: Shards = Arc::new(shards);
        let host = TransportHost::new(Callbacks {
            shared: shared.clone(),
            shards: shards.clone(),
        });
        let params = ListenParams {
            addr: options.listen.to_string(),
            identity: tls,
            client_ca_roots: vec![identity.ca().certificate_der().to_vec()],
            require_client_cert: false,
            max_frame_len: options.max_frame_len,
        };
        let bound = transport
            .listen(params, host)
            .map_err(|cause| GatewayError::Listen {
                listen: options.listen,
                cause,
            })?;
        let local_addr = bound.parse().unwrap_or(options.listen);
        tracing::info!(
            certificate = %schedule.fingerprint,
            names = ?names,
            renew_at = %crate::time::rfc3339(schedule.renew_at),
            "server certificate issued"
        );
        Ok(Gateway {
            shared,
            local_addr,
            server_cert: Mutex::new(schedule),
            shards,
            workers: Mutex::new(workers),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server certificate in use.
    pub fn server_cert(&self) -> ServerCert {
        self.server_cert
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many connections are open.
    pub fn connections(&self) -> usize {
        self.shared.connections.len()
    }

    /// The registered nodes.
    pub fn nodes(&self) -> Vec<Node> {
        // Heartbeats wait on the runtime's lock: hold it for the copy
        // only, and sort (10,000 ids encoded) after letting it go.
        let mut nodes = crate::node::lock(&self.shared.runtime).nodes_unsorted();
        crate::node::sort_nodes(&mut nodes);
        nodes
    }

    /// How many nodes are registered (without copying them).
    pub fn node_count(&self) -> usize {
        crate::node::lock(&self.shared.runtime).len()
    }

    /// Nodes registering and leaving from now on. A receiver that falls
    /// more than a few hundred events behind misses the oldest and is told
    /// so (`RecvError::Lagged`): it should read [`Gateway::nodes`] again.
    pub fn node_events(&self) -> tokio::sync::broadcast::Receiver<NodeEvent> {
        self.shared.node_events.subscribe()
    }

    /// Invokes `capability` on the node of `device_id` and waits for its
    /// answer (at most the invoke timeout).
    ///
    /// # Errors
    /// A [`Refusal`]: `NodeUnavailable` (not connected, or it left),
    /// `UnknownCapability`, `Timeout`.
    pub fn invoke(
        &self,
        device_id: &DeviceId,
        capability: &str,
        payload: Vec<u8>,
    ) -> Result<InvokeResult, Refusal> {
        let shared = &self.shared;
        let (connection, invoke) = crate::node::lock(&shared.runtime).invoke(
            device_id,
            capability,
            payload,
            SystemTime::now(),
        )?;
        let id = invoke.invocation_id.clone();
        let answer = shared.invocations.expect(&id);
        let unavailable = |e: PluginError| Refusal {
            code: RefusalCode::NodeUnavailable,
            reason: format!("cannot reach the node of device {device_id}: {e}"),
        };
        let sent = shared
            .transport
            .open_stream(connection)
            .and_then(|stream| {
                shared.transport.send_frame(
                    connection,
                    stream,
                    &Message::Invoke(invoke).encode(),
                )?;
                shared.transport.finish_stream(connection, stream)
            })
            .map_err(unavailable);
        if let Err(refusal) = sent {
            shared.invocations.forget(&id);
            return Err(refusal);
        }
        // The sweep fails the invocation at its deadline; the extra second
        // covers a sweep that runs late.
        match answer.recv_timeout(shared.options.invoke_timeout + Duration::from_secs(1)) {
            Ok(outcome) => outcome,
            Err(_) => {
                shared.invocations.forget(&id);
                Err(Refusal {
                    code: RefusalCode::Timeout,
                    reason: format!(
                        "the node of device {device_id} did not answer within {}",
                        crate::time::human_duration(shared.options.invoke_timeout)
                    ),
                })
            }
        }
    }

    /// Closes the connections a revocation ends. The state
    /// [`Watcher`](crate::state::Watcher)'s events go here.
    pub fn revoked(&self, event: &RevocationEvent) {
        self.shared.revoked(event);
    }

    /// Housekeeping at `now`: fails invocations past their deadline,
    /// disconnects silent nodes, renews the server certificate when due.
    pub fn tick(&self, now: SystemTime) {
        let shared = &self.shared;
        let swept = crate::node::lock(&shared.runtime).sweep(now);
        for id in swept.timed_out {
            shared.invocations.complete(
                &id,
                Err(Refusal {
                    code: RefusalCode::Timeout,
                    reason: format!(
                        "the node did not answer within {}",
                        crate::time::human_duration(shared.options.invoke_timeout)
                    ),
                }),
            );
        }
        for connection in swept.silent {
            tracing::info!(connection, "node missed three heartbeats; disconnecting");
            shared.close(connection, close::SILENT, "missed three heartbeats");
        }
        let due = self.server_cert().renew_at <= now;
        if due {
            self.renew_server_cert(now);
        }
    }

    fn renew_server_cert(&self, now: SystemTime) {
        let shared = &self.shared;
        let names = server_cert::subject_alt_names(&shared.options.advertise);
        let issued = server_cert::issue(
            shared.identity.ca(),
            &names,
            shared.options.server_validity,
            now,
        );
        match issued {
            Ok((tls, schedule)) => match shared.transport.set_server_identity(tls) {
                Ok(()) => {
                    tracing::info!(
                        certificate = %schedule.fingerprint,
                        renew_at = %crate::time::rfc3339(schedule.renew_at),
                        "server certificate renewed"
                    );
                    *self.server_cert.lock().unwrap_or_else(|p| p.into_inner()) = schedule;
                }
                Err(error) => {
                    tracing::error!(%error, "the transport refused the renewed server certificate; retrying")
                }
            },
            Err(error) => {
                tracing::error!(%error, "cannot renew the server certificate; retrying")
            }
        }
    }

    /// Closes every connection with `SHUTDOWN` and stops the workers. Once
    /// is enough; later calls do nothing more.
    pub fn shutdown(&self) {
        if let Err(error) = self.shared.transport.shutdown() {
            tracing::warn!(%error, "the transport did not shut down cleanly");
        }
        // The transport may hold the callbacks (and so the queues) until it
        // is dropped: tell each worker to stop after what is queued.
        for shard in self.shards.iter() {
            let tx = shard.lock().unwrap_or_else(|p| p.into_inner());
            let _ = tx.send(worker::Work::Stop);
        }
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

/// A gateway for the tests of this module.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use keygate_sdk::{PluginContext, Transport};
    use keygate_transport_quic::QuicTransport;

    use super::{DEFAULT_WORKERS, Gateway, GatewayError, GatewayOptions};
    use crate::pairing::GatewayAddr;
    use crate::pairing::gateway::{PairingService, ServiceSettings};
    use crate::plugin_host::TracingLogger;

    /// A gateway on the built-in `quic` transport, listening on a free
    /// loopback port, with a fresh identity state (keep the returned
    /// folder, its lock's, as long as the gateway).
    pub(crate) fn gateway(dir: &Path) -> (tempfile::TempDir, Arc<Gateway>) {
        let (lock_dir, gateway) = start(dir, |_| {});
        (lock_dir, Arc::new(gateway.unwrap()))
    }

    /// [`gateway`] with options of the test's own, and what
    /// [`Gateway::start`] said.
    pub(crate) fn start(
        dir: &Path,
        adjust: impl FnOnce(&mut GatewayOptions),
    ) -> (tempfile::TempDir, Result<Gateway, GatewayError>) {
        let now = SystemTime::now();
        let (lock_dir, identity) = crate::node::testing::identity(now);
        let identity = Arc::new(identity);
        let pairing = PairingService::new(identity.clone(), None, ServiceSettings::default());
        let mut options = GatewayOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: vec![GatewayAddr::parse_with_default_port("127.0.0.1", Some(1)).unwrap()],
            max_frame_len: crate::config::DEFAULT_MAX_FRAME_LEN,
            heartbeat: Duration::from_secs(5),
            invoke_timeout: Duration::from_secs(5),
            server_validity: Duration::from_secs(3600),
            node_rpc_opt_out: false,
            workers: DEFAULT_WORKERS.min(4),
            metrics: Default::default(),
        };
        adjust(&mut options);
        let gateway = Gateway::start(identity, pairing, quic(dir), options);
        (lock_dir, gateway)
    }

    /// The gateway's CA certificate (DER).
    pub(crate) fn ca_der(gateway: &Gateway) -> Vec<u8> {
        gateway.shared.identity.ca().certificate_der().to_vec()
    }

    /// A built-in `quic` transport, as the `keygate` binary makes one.
    pub(crate) fn quic(dir: &Path) -> Arc<dyn Transport> {
        let ctx = PluginContext::new("transport(quic)", dir, dir, TracingLogger::new("quic"));
        Arc::new(QuicTransport::new(Default::default(), ctx).unwrap())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant, SystemTime};

    use keygate_proto::{Heartbeat, InvokeResult, Message, RefusalCode, Register};
    use keygate_sdk::{ServerTrust, TlsIdentity, Transport};

    use super::testing;
    use super::*;
    use crate::device::DeviceIdentity;
    use crate::device::link::{CloseCause, Link, LinkError, connect_params};
    use crate::device::pairing::{DevicePairing, PairingCode, Progress};
    use crate::identity::DeviceKey;
    use crate::state::pairing::Method;

    const WAIT: Duration = Duration::from_secs(10);

    /// Connects to `gateway` trusting its CA, with `identity` if given.
    fn connect(
        gateway: &Gateway,
        client: &Arc<dyn Transport>,
        identity: Option<TlsIdentity>,
    ) -> Result<Link, LinkError> {
        let ca = testing::ca_der(gateway);
        let addr = gateway.local_addr().to_string();
        let params = connect_params(&addr, ServerTrust::Roots(vec![ca]), identity).unwrap();
        Link::connect(client.clone(), params)
    }

    fn ask(link: &Link, frame: &[u8]) -> Message {
        let answer = link.request(frame, WAIT).expect("an answer");
        Message::decode(&answer).expect("a message")
    }

    fn refusal(message: Message) -> RefusalCode {
        match message {
            Message::Refused(r) => r.code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// What a refused handshake said: `connect` failing, or the connection
    /// closing at once.
    fn refused(attempt: Result<Link, LinkError>) -> String {
        match attempt {
            Err(e) => e.to_string(),
            Ok(link) => link.wait_closed(WAIT).expect("refused").reason,
        }
    }

    /// Enrols a device in the gateway's state the way another process
    /// would (the gateway's index does not know it yet): its id, its TLS
    /// identity and its certificate's fingerprint.
    fn enrol(gateway: &Gateway, seed: u8) -> (DeviceId, TlsIdentity, CertFingerprint) {
        let key = DeviceKey::from_seed(&[seed; 32]);
        let identity = &gateway.shared.identity;
        let enrolled = identity
            .enroll(
                &key.public_key(),
                "node",
                &[],
                SystemTime::now(),
                &crate::state::Actor::cli(),
            )
            .unwrap();
        let der = enrolled.certificate.der;
        let tls = TlsIdentity {
            cert_chain: vec![der.clone(), identity.ca().certificate_der().to_vec()],
            private_key_der: key.to_pkcs8_der().unwrap().to_vec(),
        };
        (
            enrolled.device.device_id,
            tls,
            CertFingerprint::of_der(&der),
        )
    }

    fn register(id: &DeviceId) -> Vec<u8> {
        Message::Register(Register {
            device_id: id.to_string(),
            capabilities: vec!["echo".into()],
        })
        .encode()
    }

    fn heartbeat(id: &DeviceId) -> Vec<u8> {
        Message::Heartbeat(Heartbeat {
            device_id: id.to_string(),
        })
        .encode()
    }

    /// Waits (up to [`WAIT`]) until `done` holds.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_client_certificate_must_be_issued_here_and_unrevoked_and_an_unknown_one_reads_the_log_first()
     {
        let now = SystemTime::now();
        let (_dir, m) = crate::node::testing::identity(now);
        let issue = |seed: u8| {
            let key = DeviceKey::from_seed(&[seed; 32]);
            let enrolled = m
                .enroll(
                    &key.public_key(),
                    "n",
                    &[],
                    now,
                    &crate::state::Actor::cli(),
                )
                .unwrap();
            let fp = CertFingerprint::of_der(&enrolled.certificate.der);
            (enrolled.device.device_id, fp)
        };
        let mut seen = Vec::new();
        // Issued since the index was read, as by `keygate pairing approve`.
        let (a, fp_a) = issue(1);
        assert_eq!(m.certificate_status(&fp_a), CertStatus::Unknown);
        assert_eq!(check_client(&m, &fp_a, |e| seen.push(e)), Ok(()));
        let stranger = CertFingerprint::of_der(b"issued elsewhere");
        let err = check_client(&m, &stranger, |e| seen.push(e)).unwrap_err();
        assert!(err.contains("was not issued by this gateway"), "{err}");
        // The read an unknown certificate makes hands on the revocations
        // it finds, as the watcher would.
        m.revoke_device(&a, "lost", now, &crate::state::Actor::cli())
            .unwrap();
        let (_, fp_b) = issue(2);
        assert_eq!(check_client(&m, &fp_b, |e| seen.push(e)), Ok(()));
        assert!(seen.contains(&RevocationEvent::Device(a)), "{seen:?}");
        let err = check_client(&m, &fp_a, |e| seen.push(e)).unwrap_err();
        assert!(err.contains(&format!("device {a}")), "{err}");
        assert!(err.contains("is revoked"), "{err}");
        m.revoke_certificate(&fp_b, "stolen", now, &crate::state::Actor::cli())
            .unwrap();
        m.refresh().unwrap();
        let err = check_client(&m, &fp_b, |e| seen.push(e)).unwrap_err();
        assert_eq!(err, format!("certificate {fp_b} is revoked"));
    }

    #[test]
    fn frames_that_are_no_message_or_of_another_version_are_refused_with_their_codes() {
        let dir = tempfile::tempdir().unwrap();
        let (_lock, gateway) = testing::gateway(dir.path());
        let client = testing::quic(dir.path());
        let link = connect(&gateway, &client, None).unwrap();
        let mut unknown_type = Message::HeartbeatAck.encode();
        unknown_type[1] = 0xff;
        assert_eq!(refusal(ask(&link, &unknown_type)), RefusalCode::Malformed);
        let mut next_version = Message::HeartbeatAck.encode();
        next_version[0] += 1;
        assert_eq!(
            refusal(ask(&link, &next_version)),
            RefusalCode::UnsupportedVersion
        );
        // A message, but not one that opens a stream.
        let ack = Message::HeartbeatAck.encode();
        assert_eq!(refusal(ask(&link, &ack)), RefusalCode::Malformed);
        assert!(format!("{gateway:?}").contains(&gateway.local_addr().to_string()));
        gateway.shutdown();
    }

    #[test]
    fn with_two_workers_every_connection_is_served_whatever_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let (_lock, gateway) = testing::start(dir.path(), |o| o.workers = 2);
        let gateway = gateway.unwrap();
        let client = testing::quic(dir.path());
        let ack = Message::HeartbeatAck.encode();
        // The transport numbers connections from 1: the ninth is 4 × 2 + 1.
        for n in 1..=9 {
            let link = connect(&gateway, &client, None).unwrap();
            let answer = refusal(ask(&link, &ack));
            assert_eq!(answer, RefusalCode::Malformed, "connection {n}");
        }
        gateway.shutdown();
    }

    #[test]
    fn without_a_certificate_node_methods_are_refused_unless_opted_out_on_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let client = testing::quic(dir.path());
        let (_lock, gateway) = testing::gateway(dir.path());
        let (id, _, _) = enrol(&gateway, 1);
        let link = connect(&gateway, &client, None).unwrap();
        assert_eq!(
            refusal(ask(&link, &heartbeat(&id))),
            RefusalCode::NoCertificate
        );
        assert_eq!(
            refusal(ask(&link, &register(&id))),
            RefusalCode::NoCertificate
        );
        gateway.shutdown();

        let (_lock, refused) = testing::start(dir.path(), |o| {
            o.node_rpc_opt_out = true;
            o.listen = "0.0.0.0:0".parse().unwrap();
        });
        assert!(
            matches!(refused, Err(GatewayError::OptOutNotLoopback { .. })),
            "{refused:?}"
        );
        let (_lock, opted_out) = testing::start(dir.path(), |o| o.node_rpc_opt_out = true);
        let gateway = opted_out.unwrap();
        let (id, _, _) = enrol(&gateway, 1);
        gateway.shared.identity.refresh().unwrap();
        let link = connect(&gateway, &client, None).unwrap();
        assert!(matches!(ask(&link, &register(&id)), Message::Registered(_)));
        let nodes = gateway.nodes();
        assert_eq!(nodes.len(), 1, "{nodes:?}");
        assert_eq!(nodes[0].device_id, id);
        gateway.shutdown();
    }

    #[test]
    fn a_revocation_closes_the_connections_made_with_the_certificate_and_its_next_handshake_fails()
    {
        let dir = tempfile::tempdir().unwrap();
        let client = testing::quic(dir.path());
        let (_lock, gateway) = testing::gateway(dir.path());
        let identity = gateway.shared.identity.clone();
        let now = SystemTime::now();
        let (device, device_tls, _) = enrol(&gateway, 1);
        let (holder, cert_tls, cert) = enrol(&gateway, 2);
        // Neither registers as a node: the connection alone is cut off.
        let by_device = connect(&gateway, &client, Some(device_tls.clone())).unwrap();
        let by_cert = connect(&gateway, &client, Some(cert_tls.clone())).unwrap();
        for (link, id) in [(&by_device, device), (&by_cert, holder)] {
            assert_eq!(
                refusal(ask(link, &heartbeat(&id))),
                RefusalCode::NotRegistered
            );
        }
        identity
            .revoke_device(&device, "lost", now, &crate::state::Actor::cli())
            .unwrap();
        identity
            .revoke_certificate(&cert, "stolen", now, &crate::state::Actor::cli())
            .unwrap();
        for event in identity.refresh().unwrap() {
            gateway.revoked(&event);
        }
        for (link, tls) in [(by_device, device_tls), (by_cert, cert_tls)] {
            let closure = link.wait_closed(WAIT).expect("closed");
            assert_eq!(closure.cause, CloseCause::Revoked, "{}", closure.reason);
            // Refused by the handshake's check, not closed after it.
            let again = refused(connect(&gateway, &client, Some(tls)));
            assert!(again.contains("certificate_revoked"), "{again}");
        }
        gateway.shutdown();
    }

    #[test]
    fn the_gateway_counts_the_connections_open_until_they_close() {
        let dir = tempfile::tempdir().unwrap();
        let client = testing::quic(dir.path());
        let (_lock, gateway) = testing::gateway(dir.path());
        assert_eq!(gateway.connections(), 0);
        let first = connect(&gateway, &client, None).unwrap();
        let second = connect(&gateway, &client, None).unwrap();
        eventually("two connections", || gateway.connections() == 2);
        drop(first);
        eventually("one connection", || gateway.connections() == 1);
        drop(second);
        eventually("no connection", || gateway.connections() == 0);
        gateway.shutdown();
    }

    #[test]
    fn shutting_down_closes_every_connection_with_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let client = testing::quic(dir.path());
        let (_lock, gateway) = testing::gateway(dir.path());
        let link = connect(&gateway, &client, None).unwrap();
        // Served, so the handshake is over at both ends: a close during
        // the handshake cannot carry an application code.
        let ack = Message::HeartbeatAck.encode();
        assert_eq!(refusal(ask(&link, &ack)), RefusalCode::Malformed);
        gateway.shutdown();
        let closure = link.wait_closed(WAIT).expect("closed");
        assert_eq!(closure.cause, CloseCause::Shutdown, "{}", closure.reason);
    }

    #[test]
    fn the_server_certificate_is_renewed_at_two_thirds_of_its_life_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let (_lock, gateway) = testing::gateway(dir.path());
        let first = gateway.server_cert();
        gateway.tick(first.renew_at - Duration::from_secs(1));
        assert_eq!(gateway.server_cert(), first);
        gateway.tick(first.renew_at);
        let renewed = gateway.server_cert();
        assert_ne!(renewed.fingerprint, first.fingerprint);
        assert!(renewed.renew_at > first.renew_at);
        gateway.shutdown();
    }

    /// A node of a fresh device on `gateway`, registered with its
    /// certificate.
    fn node(gateway: &Gateway, client: &Arc<dyn Transport>) -> (DeviceId, Link) {
        let (id, tls, _) = enrol(gateway, 1);
        let link = connect(gateway, client, Some(tls)).unwrap();
        assert!(matches!(ask(&link, &register(&id)), Message::Registered(_)));
        (id, link)
    }

    /// The invocation the node got, by id.
    fn invoked(link: &Link) -> (keygate_sdk::StreamId, String) {
        let incoming = link.next_incoming(WAIT).unwrap().expect("an invocation");
        match Message::decode(&incoming.frame).unwrap() {
            Message::Invoke(invoke) => (incoming.stream, invoke.invocation_id),
            other => panic!("expected an invocation, got {other:?}"),
        }
    }

    #[test]
    fn an_invocation_gets_its_nodes_answer_or_node_unavailable_when_the_node_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let client = testing::quic(dir.path());
        let (_lock, gateway) = testing::gateway(dir.path());
        let (id, link) = node(&gateway, &client);
        let call = |gateway: &Arc<Gateway>| {
            let gateway = gateway.clone();
            std::thread::spawn(move || gateway.invoke(&id, "echo", b"hi".to_vec()))
        };
        let waiting = call(&gateway);
        let (stream, invocation_id) = invoked(&link);
        let answer = InvokeResult {
            invocation_id,
            ok: true,
            payload: b"hi".to_vec(),
        };
        link.reply(stream, &Message::InvokeResult(answer.clone()).encode())
            .unwrap();
        assert_eq!(waiting.join().unwrap(), Ok(answer));
        let waiting = call(&gateway);
        invoked(&link);
        drop(link);
        let refusal = waiting.join().unwrap().unwrap_err();
        assert_eq!(
            refusal.code,
            RefusalCode::NodeUnavailable,
            "{}",
            refusal.reason
        );
        gateway.shutdown();
    }

    #[test]
    fn an_invocation_its_node_never_answers_times_out_even_without_a_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let client = testing::quic(dir.path());
        let (_lock, gateway) = testing::start(dir.path(), |o| {
            o.invoke_timeout = Duration::from_millis(200)
        });
        let gateway = Arc::new(gateway.unwrap());
        let (id, link) = node(&gateway, &client);
        let refusal = gateway.invoke(&id, "echo", Vec::new()).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::Timeout, "{}", refusal.reason);
        invoked(&link);
        gateway.shutdown();
    }

    #[test]
    fn a_pairing_stream_stays_with_its_conversation_until_the_final_answer_then_the_gateway_finishes_it()
     {
        let dir = tempfile::tempdir().unwrap();
        let client = testing::quic(dir.path());
        let (_lock, gateway) = testing::gateway(dir.path());
        let pin = crate::pairing::pin::generate(8, &mut rand::rng()).unwrap();
        let code = PairingCode::parse(&pin).unwrap();
        let ttl = Duration::from_secs(600);
        (gateway.shared.identity)
            .create_pairing_session(
                Method::Pin,
                pin,
                ttl,
                5,
                SystemTime::now(),
                &crate::state::Actor::cli(),
            )
            .unwrap();
        let device = DeviceIdentity::new(Arc::new(keygate_store_memory::MemoryStore::new()));
        let link = connect(&gateway, &client, None).unwrap();
        let binding = keygate_proto::Binding {
            ca_fingerprint: link.ca_fingerprint(),
            channel_binding: link.channel_binding(),
        };
        let addr = vec![gateway.local_addr().to_string()];
        let (mut pairing, hello) =
            DevicePairing::start(&mut rand::rng(), &device, &code, "n", &[], addr, binding)
                .unwrap();
        let exchange = link.exchange().unwrap();
        exchange.send(&hello).unwrap();
        // The challenge is a step: the confirmation goes to the same
        // conversation.
        let step = pairing.on_message(&exchange.recv(WAIT).unwrap()).unwrap();
        let Progress::Send(confirm) = step else {
            panic!("expected the challenge, got {step:?}")
        };
        exchange.send(&confirm).unwrap();
        exchange.finish().unwrap();
        let step = pairing.on_message(&exchange.recv(WAIT).unwrap()).unwrap();
        assert!(matches!(step, Progress::Accepted { .. }), "{step:?}");
        let step = pairing.on_message(&exchange.recv(WAIT).unwrap()).unwrap();
        assert!(matches!(step, Progress::Waiting { .. }), "{step:?}");
        // `Pending` is a final answer: nothing follows on the stream.
        let end = exchange.recv(WAIT);
        assert!(matches!(end, Err(LinkError::StreamEnded)), "{end:?}");
        // Asking again is answered at once, and that stream ends too.
        let (_, resume) = DevicePairing::resume(&device, &link.channel_binding()).unwrap();
        let exchange = link.exchange().unwrap();
        exchange.send(&resume).unwrap();
        exchange.finish().unwrap();
        let answer = Message::decode(&exchange.recv(WAIT).unwrap()).unwrap();
        assert!(matches!(answer, Message::Pending(_)), "{answer:?}");
        let end = exchange.recv(WAIT);
        assert!(matches!(end, Err(LinkError::StreamEnded)), "{end:?}");
        gateway.shutdown();
    }
}

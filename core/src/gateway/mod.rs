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
use crate::node::{Node, NodeRuntime, Refusal};
use crate::pairing::GatewayAddr;
use crate::pairing::gateway::PairingService;
use crate::state::{CertStatus, IdentityManager, RevocationEvent};
use connections::Connections;
use invocations::Invocations;
use server_cert::ServerCert;

/// A connection, as the transport numbers it.
pub type ConnectionId = u64;

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
    pairing: PairingService,
    transport: Arc<dyn Transport>,
    runtime: Mutex<NodeRuntime>,
    connections: Connections,
    invocations: Invocations,
    options: GatewayOptions,
}

impl Shared {
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
        for connection in hit {
            self.close(connection, close::REVOKED, &reason);
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
        let fingerprint = CertFingerprint::of_der(leaf);
        let shared = &self.shared;
        check_client(&shared.identity, &fingerprint, |event| {
            shared.revoked(&event)
        })
        .map_err(PluginError::invalid)
    }

    fn on_event(&self, event: TransportEvent) {
        let connection = match &event {
            TransportEvent::Connected(info) => info.connection,
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
        crate::node::lock(&self.shared.runtime).nodes()
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

    use super::{DEFAULT_WORKERS, Gateway, GatewayOptions};
    use crate::pairing::GatewayAddr;
    use crate::pairing::gateway::{PairingService, ServiceSettings};
    use crate::plugin_host::TracingLogger;

    /// A gateway on the built-in `quic` transport, listening on a free
    /// loopback port, with a fresh identity state (keep the returned
    /// folder, its lock's, as long as the gateway).
    pub(crate) fn gateway(dir: &Path) -> (tempfile::TempDir, Arc<Gateway>) {
        let now = SystemTime::now();
        let (lock_dir, identity) = crate::node::testing::identity(now);
        let identity = Arc::new(identity);
        let ctx = PluginContext::new("transport(quic)", dir, dir, TracingLogger::new("quic"));
        let transport: Arc<dyn Transport> =
            Arc::new(QuicTransport::new(Default::default(), ctx).unwrap());
        let pairing = PairingService::new(identity.clone(), None, ServiceSettings::default());
        let options = GatewayOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: vec![GatewayAddr::parse_with_default_port("127.0.0.1", Some(1)).unwrap()],
            max_frame_len: crate::config::DEFAULT_MAX_FRAME_LEN,
            heartbeat: Duration::from_secs(5),
            invoke_timeout: Duration::from_secs(5),
            server_validity: Duration::from_secs(3600),
            node_rpc_opt_out: false,
            workers: DEFAULT_WORKERS.min(4),
        };
        let gateway = Gateway::start(identity, pairing, transport, options).unwrap();
        (lock_dir, Arc::new(gateway))
    }
}

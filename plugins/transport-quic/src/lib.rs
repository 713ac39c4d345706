//! The built-in `quic` transport: Keygate's frames on QUIC streams (quinn
//! 0.11 over rustls 0.23 with the *ring* provider), mutual TLS 1.3 with the
//! host's revocation check inside the handshake.
//!
//! # Wire
//! - ALPN `keygate/1`; TLS 1.3 only.
//! - One bidirectional QUIC stream per request, served concurrently;
//!   either side opens streams ([`Transport::open_stream`]), so the gateway
//!   pushes on streams it opens. A stream's id is QUIC's, the same number
//!   at both ends.
//! - A frame is a `u32` big-endian length, then that many bytes. A frame
//!   longer than the `max_frame_len` of the side reading it is refused on
//!   its length alone: nothing of it is delivered, the stream is stopped
//!   and reset with [`codes::FRAME_TOO_LONG`], and the connection's other
//!   streams go on. A stream that finishes inside a frame is reset with
//!   [`codes::TRUNCATED_FRAME`], its partial frame dropped. A sender refuses
//!   to send a frame over its own limit
//!   ([`ErrorKind::Invalid`](keygate_sdk::ErrorKind::Invalid)).
//!
//! # Trust
//! - Server: the chain and key of [`ListenParams::identity`], replaced for
//!   later handshakes by [`Transport::set_server_identity`]. Client
//!   certificates are optional unless `require_client_cert`; a presented
//!   chain must verify against `client_ca_roots` and then pass
//!   [`TransportHost::verify_client`], or the handshake is aborted with a
//!   TLS alert (`unknown_ca`, `bad_certificate`, `certificate_revoked`...).
//!   A chain the roots refuse is still shown to the host (whose answer
//!   cannot let it in), so the host sees every refusal by its cause.
//!   In TLS 1.3 a refused client's `connect` still succeeds: it sees the
//!   refusal as the connection's `Closed` event and at its first read or
//!   write.
//! - **No session resumption**: the server issues no tickets and keeps no
//!   session cache (and the client does not try), so every connection is a
//!   full handshake and the host's check runs on every connection.
//! - Client, by [`ServerTrust`](keygate_sdk::ServerTrust): `Roots`
//!   verifies chain and server name; `PinnedCaSha256` needs the chain's
//!   last certificate to hash to the pin, and the leaf to verify (with the
//!   server name) against it; `ChannelBoundLater` accepts any server
//!   certificate, for PIN pairing only, where
//!   [`Transport::export_keying_material`] is bound into the pairing proof.
//!
//! # Config (`[plugins.transport.config]`)
//! Every key is optional. Durations are strings with units (`"90s"`,
//! `"10m"`, `"1h30m"`).
//!
//! | key | default | meaning |
//! | --- | --- | --- |
//! | `handshake_timeout` | `"10s"` | longest a handshake may take, inbound or outbound |
//! | `idle_timeout` | `"30s"` | a connection silent this long is closed (must be > 0) |
//! | `keep_alive` | `"10s"` | ping interval on idle connections, shorter than `idle_timeout`; `"0s"`: none |
//! | `socket_buffer` | `4194304` | bytes of receive and send buffer asked of the kernel for each UDP socket (see [`socket`]); `0`: the system's default |
//! | `max_connections` | `16384` | inbound connections (handshakes included) at once; past it new ones are refused at once with QUIC's `CONNECTION_REFUSED` |
//!
//! Unknown keys are refused; errors name the line and the field.
//!
//! # Threads and events
//! The transport owns a two-thread tokio runtime (see [`runtime`]). Host
//! calls block until done, but for
//! [`Transport::send_frame`]: it returns once the stream's previous frame
//! is written (handed whole to quinn) and its own frame is being written,
//! so the stream does not stop while the caller prepares its next frame,
//! and a caller is never more than one frame ahead of the stream. A write
//! that fails after its call returned (the peer stopped the stream, the
//! connection is gone) is reported by the next `send_frame` or
//! `finish_stream` on that stream. Events
//! (`Connected` with the peer's chain and address, `Frame`,
//! `StreamFinished`, `Closed` with a reason) are delivered on the runtime
//! thread of the task that produced them, with no hand-off: a
//! connection's `Connected` before its frames, a stream's frames in order,
//! and the two threads possibly in `on_event` at once for different
//! connections or streams. A slow `on_event` holds up the I/O of its
//! thread; a host may call the transport from inside it (a call that must
//! wait hands the thread's other work on first).
//! Outbound connections share one client endpoint (one UDP socket) per
//! address family and reuse the client TLS config while trust and
//! identity stay the same (see [`outbound`]).
//! A transport has at most one listener; [`Transport::shutdown`] closes
//! every connection, inbound and outbound, with [`codes::SHUTDOWN`], and
//! stops listening.
#![forbid(unsafe_code)]

pub mod config;
pub mod connections;
pub mod frames;
pub mod outbound;
pub mod runtime;
pub mod socket;
pub mod tls;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use keygate_sdk::{
    ConnectParams, ConnectionId, ListenParams, PluginContext, PluginError, StreamId, TlsIdentity,
    Transport, TransportHost, TransportPlugin,
};
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{Endpoint, VarInt, WriteError};

use crate::config::QuicConfig;
use crate::connections::{Established, Registry, Slot};
use crate::outbound::Outbound;
use crate::runtime::Runtime;
use crate::tls::{HostCheckedClientVerifier, SwappableCert};

/// The application error codes the transport itself uses.
pub mod codes {
    /// Stream reset/stop code: a frame was longer than the reader's limit.
    pub const FRAME_TOO_LONG: u32 = 0x4b01;
    /// Stream reset/stop code: the stream finished inside a frame.
    pub const TRUNCATED_FRAME: u32 = 0x4b02;
    /// Connection close code of [`Transport::shutdown`](keygate_sdk::Transport::shutdown).
    pub const SHUTDOWN: u32 = 0x4b00;
}

/// How long `shutdown` waits for close packets to be sent and
/// acknowledged before it returns.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// A listening endpoint.
#[derive(Debug)]
struct Listener {
    endpoint: Endpoint,
    cert: Arc<SwappableCert>,
}

/// The `quic` transport. See the [crate docs](crate).
#[derive(Debug)]
pub struct QuicTransport {
    config: QuicConfig,
    log: PluginContext,
    registry: Arc<Registry>,
    listener: Mutex<Option<Listener>>,
    outbound: Arc<Outbound>,
    /// Dropped last: its threads serve everything above.
    runtime: Runtime,
}

impl QuicTransport {
    /// A transport with `config`, logging through `log`.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`](keygate_sdk::ErrorKind::Internal) when its threads cannot start.
    pub fn new(config: QuicConfig, log: PluginContext) -> Result<Self, PluginError> {
        let runtime = Runtime::new()?;
        let registry = Arc::new(Registry::new(log.clone()));
        Ok(Self {
            config,
            log,
            registry,
            listener: Mutex::new(None),
            outbound: Arc::default(),
            runtime,
        })
    }

    fn transport_config(&self) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        // Checked by `QuicConfig::parse`.
        t.max_idle_timeout(quinn::IdleTimeout::try_from(self.config.idle_timeout).ok());
        t.keep_alive_interval(
            (!self.config.keep_alive.is_zero()).then_some(self.config.keep_alive),
        );
        Arc::new(t)
    }

    fn listener(&self) -> std::sync::MutexGuard<'_, Option<Listener>> {
        self.listener.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, PluginError> {
    addr.to_socket_addrs()
        .map_err(|e| PluginError::invalid(format!("address {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| PluginError::invalid(format!("address {addr:?}: resolves to nothing")))
}

/// Accepts inbound connections until the endpoint closes.
async fn accept_loop(
    endpoint: Endpoint,
    registry: Arc<Registry>,
    host: TransportHost,
    max_frame_len: u32,
    config: QuicConfig,
    log: PluginContext,
) {
    let count = Arc::new(AtomicUsize::new(0));
    let max = usize::try_from(config.max_connections).unwrap_or(usize::MAX);
    while let Some(incoming) = endpoint.accept().await {
        let Some(slot) = Slot::take(&count, max) else {
            log.warn(&format!(
                "refused a connection from {}: max_connections ({max}) reached",
                incoming.remote_address()
            ));
            incoming.refuse();
            continue;
        };
        let registry = registry.clone();
        let host = host.clone();
        let log = log.clone();
        let timeout = config.handshake_timeout;
        tokio::spawn(async move {
            let from = incoming.remote_address();
            let outcome = match incoming.accept() {
                Ok(connecting) => tokio::time::timeout(timeout, connecting)
                    .await
                    .map_err(|_| "handshake timed out".to_owned())
                    .and_then(|r| r.map_err(|e| connections::describe_close(&e))),
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(quic) => {
                    let (_, serve) = registry.start(Established {
                        quic,
                        host,
                        max_frame_len,
                        outbound: false,
                        endpoint: None,
                        slot: Some(slot),
                    });
                    // This task serves the connection from here on.
                    serve.await;
                }
                Err(why) => log.debug(&format!("inbound handshake from {from} failed: {why}")),
            }
        });
    }
}

fn write_error(connection: ConnectionId, stream: StreamId, err: WriteError) -> PluginError {
    match err {
        WriteError::Stopped(code) => {
            let what = match u32::try_from(code.into_inner()) {
                Ok(codes::FRAME_TOO_LONG) => " (frame too long)",
                Ok(codes::TRUNCATED_FRAME) => " (truncated frame)",
                _ => "",
            };
            PluginError::unavailable(format!(
                "connection {connection}: stream {stream} stopped by the peer: code {code}{what}"
            ))
        }
        WriteError::ConnectionLost(e) => PluginError::not_found(format!(
            "connection {connection}: {}",
            connections::describe_close(&e)
        )),
        WriteError::ClosedStream => PluginError::not_found(format!(
            "connection {connection}: stream {stream} is closed"
        )),
        other => {
            PluginError::unavailable(format!("connection {connection}: stream {stream}: {other}"))
        }
    }
}

impl Transport for QuicTransport {
    fn listen(&self, params: ListenParams, host: TransportHost) -> Result<String, PluginError> {
        let mut listener = self.listener();
        if listener.is_some() {
            return Err(PluginError::invalid("already listening"));
        }
        let addr = resolve(&params.addr)?;
        let cert = Arc::new(SwappableCert::new(tls::certified_key(&params.identity)?));
        let verifier = HostCheckedClientVerifier::new(
            &params.client_ca_roots,
            params.require_client_cert,
            host.clone(),
            self.log.clone(),
        )?;
        let tls = tls::server_config(verifier, cert.clone())?;
        let crypto = QuicServerConfig::try_from(tls)
            .map_err(|e| PluginError::internal(format!("QUIC server TLS: {e}")))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(self.transport_config());
        let endpoint = self
            .runtime
            .run({
                let (buffer, log) = (self.config.socket_buffer, self.log.clone());
                async move { socket::endpoint(addr, buffer, Some(server), &log) }
            })?
            .map_err(|e| PluginError::unavailable(format!("listen on {addr}: {e}")))?;
        let bound = endpoint
            .local_addr()
            .map_err(|e| PluginError::internal(format!("listen on {addr}: {e}")))?;
        self.runtime.spawn(accept_loop(
            endpoint.clone(),
            self.registry.clone(),
            host,
            params.max_frame_len,
            self.config.clone(),
            self.log.clone(),
        ));
        *listener = Some(Listener { endpoint, cert });
        self.log.info(&format!("listening on {bound} (QUIC)"));
        Ok(bound.to_string())
    }

    fn connect(
        &self,
        params: ConnectParams,
        host: TransportHost,
    ) -> Result<ConnectionId, PluginError> {
        let remote = resolve(&params.remote_addr)?;
        let client =
            self.outbound
                .config(&params.trust, params.client_identity.as_ref(), || {
                    self.transport_config()
                })?;
        let registry = self.registry.clone();
        let outbound = self.outbound.clone();
        let (buffer, log) = (self.config.socket_buffer, self.log.clone());
        let timeout = self.config.handshake_timeout;
        let server_name = params.server_name.clone();
        let max_frame_len = params.max_frame_len;
        let shown = params.remote_addr.clone();
        self.runtime.run(async move {
            let endpoint = outbound
                .endpoint(remote, buffer, &log)
                .map_err(|e| PluginError::unavailable(format!("{shown}: local socket: {e}")))?;
            let connecting = endpoint
                .connect_with(client, remote, &server_name)
                .map_err(|e| PluginError::invalid(format!("{shown}: {e}")))?;
            let quic = tokio::time::timeout(timeout, connecting)
                .await
                .map_err(|_| PluginError::unavailable(format!("{shown}: handshake timed out")))?
                .map_err(|e| {
                    PluginError::unavailable(format!(
                        "{shown}: handshake failed: {}",
                        connections::describe_close(&e)
                    ))
                })?;
            let (id, serve) = registry.start(Established {
                quic,
                host,
                max_frame_len,
                outbound: true,
                endpoint: Some(endpoint),
                slot: None,
            });
            tokio::spawn(serve);
            Ok(id)
        })?
    }

    fn open_stream(&self, connection: ConnectionId) -> Result<StreamId, PluginError> {
        let conn = self.registry.get(connection)?;
        let registry = self.registry.clone();
        self.runtime.run(async move {
            let (send, recv) = conn.quic.open_bi().await.map_err(|e| {
                PluginError::not_found(format!(
                    "connection {connection}: {}",
                    connections::describe_close(&e)
                ))
            })?;
            Ok(registry.add_stream(connection, &conn, send, recv))
        })?
    }

    fn send_frame(
        &self,
        connection: ConnectionId,
        stream: StreamId,
        frame: &[u8],
    ) -> Result<(), PluginError> {
        let conn = self.registry.get(connection)?;
        let bytes = frames::encode(frame, conn.max_frame_len)
            .map_err(|e| PluginError::invalid(format!("connection {connection}: {e}")))?;
        let sender = conn.sender(connection, stream)?;
        // The frame was copied once, into `bytes`: quinn takes that buffer
        // as it is (`write_all` would copy it again).
        let bytes = bytes::Bytes::from(bytes);
        self.runtime.run(async move {
            // The previous frame's write holds the lock until quinn has all
            // of it; the lock is fair, so frames go out in call order.
            let mut out = sender.lock_owned().await;
            if let Some(err) = out.failed.clone() {
                return Err(write_error(connection, stream, err));
            }
            // Written while the caller prepares its next frame, so the
            // stream never waits for the caller (see the crate docs); a
            // frame the stream has room for is handed to quinn at once.
            let mut write = Box::pin(async move {
                if let Err(err) = out.stream.write_chunk(bytes).await {
                    out.failed = Some(err);
                }
            });
            if std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx)))
                .await
                .is_pending()
            {
                tokio::spawn(write);
            }
            Ok(())
        })?
    }

    fn finish_stream(&self, connection: ConnectionId, stream: StreamId) -> Result<(), PluginError> {
        let conn = self.registry.get(connection)?;
        let sender = conn.sender(connection, stream)?;
        conn.take_sender(stream);
        self.runtime.run(async move {
            // After the stream's last write.
            let mut out = sender.lock().await;
            if let Some(err) = out.failed.clone() {
                return Err(write_error(connection, stream, err));
            }
            out.stream.finish().map_err(|_| {
                PluginError::not_found(format!(
                    "connection {connection}: stream {stream} is closed"
                ))
            })
        })?
    }

    fn close_connection(
        &self,
        connection: ConnectionId,
        code: u32,
        reason: &str,
    ) -> Result<(), PluginError> {
        let conn = self
            .registry
            .remove(connection)
            .ok_or_else(|| PluginError::not_found(format!("connection {connection}")))?;
        conn.close(code, reason);
        Ok(())
    }

    fn export_keying_material(
        &self,
        connection: ConnectionId,
        label: &[u8],
        context: &[u8],
        len: u32,
    ) -> Result<Vec<u8>, PluginError> {
        let conn = self.registry.get(connection)?;
        let mut out = vec![0u8; len as usize];
        conn.quic
            .export_keying_material(&mut out, label, context)
            .map_err(|_| {
                PluginError::invalid(format!(
                    "connection {connection}: cannot export {len} bytes of keying material"
                ))
            })?;
        Ok(out)
    }

    fn set_server_identity(&self, identity: TlsIdentity) -> Result<(), PluginError> {
        let listener = self.listener();
        let listener = listener
            .as_ref()
            .ok_or_else(|| PluginError::invalid("not listening"))?;
        listener.cert.swap(tls::certified_key(&identity)?);
        self.log
            .info("server certificate replaced for new handshakes");
        Ok(())
    }

    fn shutdown(&self) -> Result<(), PluginError> {
        let listener = self.listener().take();
        let conns = self.registry.all();
        for conn in &conns {
            conn.close(codes::SHUTDOWN, "shutdown");
        }
        let mut endpoints = self.outbound.take_endpoints();
        endpoints.extend(listener.map(|l| l.endpoint));
        for endpoint in &endpoints {
            endpoint.close(VarInt::from_u32(codes::SHUTDOWN), b"shutdown");
        }
        // Let the close packets go out before the caller drops us.
        self.runtime.run(async move {
            let _ = tokio::time::timeout(SHUTDOWN_DRAIN, async {
                for endpoint in endpoints {
                    endpoint.wait_idle().await;
                }
                for conn in conns {
                    conn.quic.closed().await;
                }
            })
            .await;
        })?;
        Ok(())
    }
}

impl TransportPlugin for QuicTransport {
    const NAME: &'static str = "quic";
    const DESCRIPTION: &'static str =
        "QUIC (quinn + rustls): mutual TLS 1.3, length-prefixed frames, a stream per request";

    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError> {
        let config = QuicConfig::parse(config)?;
        Self::new(config, ctx)
    }
}

keygate_sdk::register_builtin_plugins! {
    transports: [QuicTransport],
}

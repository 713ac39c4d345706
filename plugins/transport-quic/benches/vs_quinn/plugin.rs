//! The plugin's side: the built-in `quic` transport constructed the way
//! the gateway constructs it (the built-in library, through the plugin
//! ABI), or with `--direct` as a plain `QuicTransport` (to tell the ABI's
//! share from the plugin's). A server transport and a client transport,
//! each with its own runtime; the host's `verify_client` answers Ok.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use keygate_sdk::{
    ConnectParams, ConnectionId, ListenParams, LogLevel, Logger, PluginContext, PluginError,
    PluginKind, ServerTrust, Transport, TransportCallbacks, TransportEvent, TransportHost,
};
use keygate_sdk_host::Library;
use keygate_transport_quic::QuicTransport;
use keygate_transport_quic::config::QuicConfig;

use crate::certs::{Certs, SERVER_NAME};

/// Prints the plugin's warnings and errors; drops the rest.
struct Quiet;

impl Logger for Quiet {
    fn log(&self, level: LogLevel, message: &str) {
        if level >= LogLevel::Warn {
            eprintln!("transport(quic): {message}");
        }
    }
}

/// A `quic` transport with the default config.
fn transport(direct: bool) -> Arc<dyn Transport> {
    let ctx = PluginContext::new("transport(quic)", "/".as_ref(), "/".as_ref(), Quiet);
    if direct {
        return Arc::new(QuicTransport::new(QuicConfig::default(), ctx).expect("transport"));
    }
    let library = Library::builtins()
        .into_iter()
        .find(|l| {
            l.manifest()
                .plugins
                .iter()
                .any(|p| p.kind == PluginKind::Transport && p.name == "quic")
        })
        .expect("the built-in quic transport is linked in");
    Arc::new(library.new_transport("quic", "", ctx).expect("transport"))
}

/// What a host saw, shared with the thread that waits on it.
#[derive(Default)]
struct Tally {
    seen: Mutex<Seen>,
    changed: Condvar,
}

#[derive(Default)]
struct Seen {
    connected: u64,
    closed: HashMap<ConnectionId, Closed>,
    bytes: u64,
    finished: u64,
}

/// A connection's `Closed`, or the thread waiting for it (woken alone, so
/// 64 waiting threads do not all wake for every close).
enum Closed {
    Reason(String),
    Awaited(std::thread::Thread),
}

impl Tally {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().expect("tally")
    }

    /// Waits for the `Closed` of `id`; returns its reason.
    fn closed(&self, id: ConnectionId) -> String {
        loop {
            {
                let mut seen = self.seen();
                match seen.closed.remove(&id) {
                    Some(Closed::Reason(reason)) => return reason,
                    _ => {
                        seen.closed
                            .insert(id, Closed::Awaited(std::thread::current()));
                    }
                }
            }
            std::thread::park();
        }
    }

    /// Waits until `done` holds, and returns what it returns.
    fn wait<T>(&self, mut done: impl FnMut(&mut Seen) -> Option<T>) -> T {
        let mut seen = self.seen();
        loop {
            if let Some(out) = done(&mut seen) {
                return out;
            }
            seen = self.changed.wait(seen).expect("tally");
        }
    }
}

/// The host's callbacks: counts events; a server host closes each inbound
/// connection (code 0) from its `Connected` event when `closer` is set.
struct Callbacks {
    tally: Arc<Tally>,
    closer: Option<Arc<OnceLock<Weak<dyn Transport>>>>,
}

impl TransportCallbacks for Callbacks {
    fn verify_client(&self, _chain: &[Vec<u8>]) -> Result<(), PluginError> {
        Ok(())
    }

    fn on_event(&self, event: TransportEvent) {
        if let (TransportEvent::Connected(info), Some(closer)) = (&event, &self.closer)
            && !info.outbound
            && let Some(server) = closer.get().and_then(Weak::upgrade)
        {
            server
                .close_connection(info.connection, 0, "bench")
                .expect("close");
        }
        let mut seen = self.tally.seen();
        match event {
            TransportEvent::Connected(_) => seen.connected += 1,
            TransportEvent::Frame(f) => seen.bytes += f.payload.len() as u64,
            TransportEvent::StreamFinished { .. } => {
                seen.finished += 1;
                self.tally.changed.notify_all();
            }
            TransportEvent::Closed { connection, reason } => {
                if let Some(Closed::Awaited(thread)) =
                    seen.closed.insert(connection, Closed::Reason(reason))
                {
                    thread.unpark();
                }
            }
        }
    }
}

/// A listening server transport and a client transport.
struct Pair {
    server: Arc<dyn Transport>,
    client: Arc<dyn Transport>,
    server_tally: Arc<Tally>,
    client_tally: Arc<Tally>,
    client_host: TransportHost,
    params: ConnectParams,
}

impl Pair {
    fn new(certs: &Certs, direct: bool, close_inbound: bool, max_frame_len: u32) -> Self {
        let server = transport(direct);
        let server_tally = Arc::new(Tally::default());
        let closer = close_inbound.then(|| {
            let closer = Arc::new(OnceLock::new());
            let _ = closer.set(Arc::downgrade(&server));
            closer
        });
        let addr = server
            .listen(
                ListenParams {
                    addr: format!("{SERVER_NAME}:0"),
                    identity: certs.server.clone(),
                    client_ca_roots: vec![certs.ca.clone()],
                    require_client_cert: true,
                    max_frame_len,
                },
                TransportHost::new(Callbacks {
                    tally: server_tally.clone(),
                    closer,
                }),
            )
            .expect("listen");
        let client_tally = Arc::new(Tally::default());
        Self {
            server,
            client: transport(direct),
            server_tally,
            client_host: TransportHost::new(Callbacks {
                tally: client_tally.clone(),
                closer: None,
            }),
            client_tally,
            params: ConnectParams {
                remote_addr: addr,
                server_name: SERVER_NAME.into(),
                trust: ServerTrust::Roots(vec![certs.ca.clone()]),
                client_identity: Some(certs.client.clone()),
                max_frame_len,
            },
        }
    }

    fn connect(&self) -> ConnectionId {
        self.client
            .connect(self.params.clone(), self.client_host.clone())
            .expect("plugin handshake")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.client.shutdown();
        let _ = self.server.shutdown();
    }
}

/// Full mTLS handshakes: the server host closes each connection (code 0)
/// from its `Connected` event; a client thread connects again once it has
/// seen that close.
pub struct Handshakes(Pair);

impl Handshakes {
    /// A listening server and a client transport.
    pub fn new(certs: &Certs, direct: bool) -> Self {
        Self(Pair::new(certs, direct, true, 1 << 20))
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.0.params.remote_addr.parse().expect("bound address")
    }

    /// Runs `clients`, which make `n` handshakes with [`addr`](Self::addr),
    /// and checks that the server had them all.
    pub fn server_round(&self, n: usize, clients: impl FnOnce() -> Duration) -> Duration {
        let before = self.0.server_tally.seen().connected;
        let took = clients();
        let accepted = self.0.server_tally.seen().connected - before;
        assert_eq!(accepted, n as u64, "plugin server handshakes");
        took
    }

    /// Runs `n` handshakes, `in_flight` at a time (one thread each:
    /// `connect` blocks).
    pub fn round(&self, n: usize, in_flight: usize) -> Duration {
        let p = &self.0;
        let before = p.server_tally.seen().connected;
        let next = AtomicUsize::new(0);
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..in_flight {
                s.spawn(|| {
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        let id = p.connect();
                        let reason = p.client_tally.closed(id);
                        // A reset: the server's close was lost and its
                        // draining period over (as on the bare path).
                        assert!(
                            reason.starts_with("closed by peer: code 0")
                                || reason == "reset by peer",
                            "plugin connection ended with {reason}"
                        );
                    }
                });
            }
        });
        let took = start.elapsed();
        let accepted = p.server_tally.seen().connected - before;
        assert_eq!(accepted, n as u64, "plugin server handshakes");
        took
    }
}

/// One connection; each round sends frames of `frame` bytes with
/// `send_frame` on a new stream, and the server host counts the bytes of
/// its `Frame` events until `StreamFinished`.
pub struct Stream {
    pair: Pair,
    conn: ConnectionId,
}

impl Stream {
    /// A connected pair allowing frames of `frame` bytes.
    pub fn new(certs: &Certs, direct: bool, frame: usize) -> Self {
        let pair = Pair::new(certs, direct, false, frame as u32);
        let conn = pair.connect();
        Self { pair, conn }
    }

    /// Sends `frames` frames of `data` on a new stream, finishes it, and
    /// returns when the server host has had every frame.
    pub fn round(&self, data: &[u8], frames: usize) -> Duration {
        let p = &self.pair;
        let (bytes, finished) = {
            let seen = p.server_tally.seen();
            (seen.bytes, seen.finished)
        };
        let start = Instant::now();
        let stream = p.client.open_stream(self.conn).expect("open");
        for _ in 0..frames {
            p.client
                .send_frame(self.conn, stream, data)
                .expect("send_frame");
        }
        p.client.finish_stream(self.conn, stream).expect("finish");
        let received = p
            .server_tally
            .wait(|seen| (seen.finished > finished).then_some(seen.bytes - bytes));
        let took = start.elapsed();
        assert_eq!(received, (frames * data.len()) as u64, "plugin bytes");
        took
    }
}

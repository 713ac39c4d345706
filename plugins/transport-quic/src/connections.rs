//! Open connections and their streams, and the tasks that serve them: one
//! per connection that accepts the peer's streams and, when the connection
//! ends, reports why; and one reader per stream (frames in, via
//! [`Decoder`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use keygate_sdk::{
    ConnectionId, ConnectionInfo, FrameReceived, PluginContext, PluginError, StreamId,
    TransportEvent, TransportHost,
};
use quinn::{ConnectionError, RecvStream, SendStream, VarInt, WriteError};
use rustls::pki_types::CertificateDer;

use crate::codes;
use crate::frames::{Decoder, FrameError};
use crate::runtime::emit;

/// Chunks a stream reader takes from quinn per call.
const READ_BATCH: usize = 32;

/// A stream's sending half, shared by the host's calls that write to it;
/// a write holds the lock until quinn has taken the whole frame.
pub type Sender = Arc<tokio::sync::Mutex<Outgoing>>;

/// A stream's sending half and what went wrong on it.
#[derive(Debug)]
pub struct Outgoing {
    /// The QUIC stream.
    pub stream: SendStream,
    /// The error of a write that failed after its `send_frame` returned;
    /// every later call on the stream reports it.
    pub failed: Option<WriteError>,
}

/// One open connection.
#[derive(Debug)]
pub struct Conn {
    /// The QUIC connection.
    pub quic: quinn::Connection,
    /// Where its events go.
    pub host: TransportHost,
    /// Longest frame accepted and sent.
    pub max_frame_len: u32,
    /// Sending halves of its streams, until finished.
    streams: Mutex<HashMap<StreamId, Sender>>,
    /// Why this side closed it, once it did.
    closing: Mutex<Option<String>>,
    /// The client endpoint an outbound connection runs on (shared with the
    /// transport's other outbound connections), kept while it lives.
    _endpoint: Option<quinn::Endpoint>,
    /// An inbound connection holds a place under `max_connections`, given
    /// back before its `Closed` event.
    slot: Mutex<Option<Slot>>,
}

impl Conn {
    /// The sending half of `stream`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](keygate_sdk::ErrorKind::NotFound) for a
    /// stream this side finished, or one it never had.
    pub fn sender(&self, id: ConnectionId, stream: StreamId) -> Result<Sender, PluginError> {
        lock(&self.streams).get(&stream).cloned().ok_or_else(|| {
            PluginError::not_found(format!(
                "connection {id}: stream {stream} is not open for sending"
            ))
        })
    }

    /// Forgets the sending half of `stream` (finished or refused).
    pub fn take_sender(&self, stream: StreamId) -> Option<Sender> {
        lock(&self.streams).remove(&stream)
    }

    /// Closes the connection, remembering why for its `Closed` event.
    pub fn close(&self, code: u32, reason: &str) {
        *lock(&self.closing) = Some(format!("closed locally: code {code}: {reason}"));
        self.quic.close(VarInt::from_u32(code), reason.as_bytes());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while these locks are held.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A place among the inbound connections a listener allows; given back
/// when dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Takes a place if fewer than `max` are taken.
    pub fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Every open connection of a transport, and what its tasks share.
#[derive(Debug)]
pub struct Registry {
    conns: Mutex<HashMap<ConnectionId, Arc<Conn>>>,
    next_id: AtomicU64,
    log: PluginContext,
}

/// What a completed handshake hands to [`Registry::start`].
#[derive(Debug)]
pub struct Established {
    /// The connection.
    pub quic: quinn::Connection,
    /// Where its events go.
    pub host: TransportHost,
    /// Its frame limit.
    pub max_frame_len: u32,
    /// True when this side connected out.
    pub outbound: bool,
    /// The client endpoint, for an outbound connection.
    pub endpoint: Option<quinn::Endpoint>,
    /// The listener place, for an inbound connection.
    pub slot: Option<Slot>,
}

impl Registry {
    /// An empty registry.
    pub fn new(log: PluginContext) -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            log,
        }
    }

    /// The connection `id`.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`](keygate_sdk::ErrorKind::NotFound) when it
    /// is closed or never was.
    pub fn get(&self, id: ConnectionId) -> Result<Arc<Conn>, PluginError> {
        lock(&self.conns)
            .get(&id)
            .cloned()
            .ok_or_else(|| PluginError::not_found(format!("connection {id}")))
    }

    /// Removes `id`, so the host's later calls on it find nothing.
    pub fn remove(&self, id: ConnectionId) -> Option<Arc<Conn>> {
        lock(&self.conns).remove(&id)
    }

    /// Every open connection.
    pub fn all(&self) -> Vec<Arc<Conn>> {
        lock(&self.conns).values().cloned().collect()
    }

    /// Registers a connection whose handshake completed and emits
    /// `Connected`. Returns its id and the work that serves it until it
    /// ends (accepting the peer's streams, then reporting the close), for
    /// the caller to run on the runtime: inline in the task that accepted
    /// an inbound connection, spawned for an outbound one.
    pub fn start(
        self: &Arc<Self>,
        new: Established,
    ) -> (ConnectionId, impl Future<Output = ()> + Send + use<>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let peer_certificates = new
            .quic
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
            .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect())
            .unwrap_or_default();
        let conn = Arc::new(Conn {
            quic: new.quic.clone(),
            host: new.host.clone(),
            max_frame_len: new.max_frame_len,
            streams: Mutex::new(HashMap::new()),
            closing: Mutex::new(None),
            _endpoint: new.endpoint,
            slot: Mutex::new(new.slot),
        });
        lock(&self.conns).insert(id, conn.clone());
        emit(
            &new.host,
            TransportEvent::Connected(ConnectionInfo {
                connection: id,
                remote_addr: new.quic.remote_address().to_string(),
                peer_certificates,
                outbound: new.outbound,
            }),
            &self.log,
        );
        (id, self.clone().serve(id, conn))
    }

    /// Registers a stream (opened by either side) and starts its reader.
    /// Must run on the runtime.
    pub fn add_stream(
        self: &Arc<Self>,
        id: ConnectionId,
        conn: &Arc<Conn>,
        send: SendStream,
        recv: RecvStream,
    ) -> StreamId {
        let stream = u64::from(send.id());
        let outgoing = Outgoing {
            stream: send,
            failed: None,
        };
        lock(&conn.streams).insert(stream, Arc::new(tokio::sync::Mutex::new(outgoing)));
        tokio::spawn(self.clone().read_stream(id, conn.clone(), stream, recv));
        stream
    }

    /// Accepts the peer's streams until the connection ends (quinn then
    /// answers every accept with the error that ended it), then reports
    /// the end. One task per connection, not one more just to wait.
    async fn serve(self: Arc<Self>, id: ConnectionId, conn: Arc<Conn>) {
        let err = loop {
            match conn.quic.accept_bi().await {
                Ok((send, recv)) => {
                    self.add_stream(id, &conn, send, recv);
                }
                Err(err) => break err,
            }
        };
        self.remove(id);
        lock(&conn.slot).take();
        let reason = match err {
            ConnectionError::LocallyClosed => lock(&conn.closing)
                .clone()
                .unwrap_or_else(|| "closed locally".to_owned()),
            other => describe_close(&other),
        };
        emit(
            &conn.host,
            TransportEvent::Closed {
                connection: id,
                reason,
            },
            &self.log,
        );
    }

    async fn read_stream(
        self: Arc<Self>,
        id: ConnectionId,
        conn: Arc<Conn>,
        stream: StreamId,
        mut recv: RecvStream,
    ) {
        let mut decoder = Decoder::new(conn.max_frame_len);
        let mut frames = Vec::new();
        // Whatever has arrived, up to this many chunks (about a packet
        // each) a call: one wake-up and one lock of the connection per
        // batch instead of per packet.
        let mut chunks: [Bytes; READ_BATCH] = Default::default();
        let refusal = loop {
            match recv.read_chunks(&mut chunks).await {
                Ok(Some(n)) => {
                    let pushed = chunks[..n]
                        .iter_mut()
                        .try_for_each(|chunk| decoder.push(&std::mem::take(chunk), &mut frames));
                    for payload in frames.drain(..) {
                        emit(
                            &conn.host,
                            TransportEvent::Frame(FrameReceived {
                                connection: id,
                                stream,
                                payload,
                            }),
                            &self.log,
                        );
                    }
                    if let Err(err) = pushed {
                        break err;
                    }
                }
                Ok(None) => match decoder.finish() {
                    Ok(()) => {
                        emit(
                            &conn.host,
                            TransportEvent::StreamFinished {
                                connection: id,
                                stream,
                            },
                            &self.log,
                        );
                        return;
                    }
                    Err(err) => break err,
                },
                // Reset by the peer, or the connection is gone: nothing
                // more comes, and what was partial is dropped.
                Err(_) => return,
            }
        };
        let code = match refusal {
            FrameError::TooLong { .. } => codes::FRAME_TOO_LONG,
            FrameError::Truncated { .. } => codes::TRUNCATED_FRAME,
        };
        self.log.debug(&format!(
            "connection {id}: stream {stream} refused ({refusal}): reset with code {code}"
        ));
        let _ = recv.stop(VarInt::from_u32(code));
        if let Some(sender) = conn.take_sender(stream) {
            let _ = sender.lock().await.stream.reset(VarInt::from_u32(code));
        }
    }
}

/// Why a connection ended, for the host's logs: the peer's code and reason
/// as it sent them, and TLS alerts by name.
pub fn describe_close(err: &ConnectionError) -> String {
    match err {
        ConnectionError::ApplicationClosed(close) => format!(
            "closed by peer: code {}: {}",
            close.error_code,
            String::from_utf8_lossy(&close.reason)
        ),
        ConnectionError::ConnectionClosed(close) => {
            let code = u64::from(close.error_code);
            match tls_alert(code) {
                Some(alert) => format!("refused by peer: TLS alert {alert} ({close})"),
                None => format!("closed by peer: {close}"),
            }
        }
        ConnectionError::TransportError(e) => match tls_alert(u64::from(e.code)) {
            Some(alert) => format!("TLS alert {alert}: {}", e.reason),
            None => e.to_string(),
        },
        ConnectionError::TimedOut => "idle timeout".to_owned(),
        other => other.to_string(),
    }
}

/// The TLS alert a QUIC crypto error code (0x100 + alert) carries.
pub fn tls_alert(code: u64) -> Option<&'static str> {
    if !(0x100..0x200).contains(&code) {
        return None;
    }
    Some(match code - 0x100 {
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        80 => "internal_error",
        109 => "missing_extension",
        112 => "unrecognized_name",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => "other",
    })
}

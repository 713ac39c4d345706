//! The baseline: bare quinn 0.11 + rustls 0.23 (*ring*), configured as the
//! plugin configures itself (TLS 1.3 only, ALPN `keygate/1`, client
//! certificate required and verified against the CA, no session
//! resumption on either side, the plugin's default idle timeout,
//! keep-alive and socket buffers, quinn's default flow-control windows),
//! with the server and
//! the client each on a two-worker tokio runtime of its own, as the plugin
//! runs each transport.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keygate_transport_quic::config::QuicConfig;
use keygate_transport_quic::tls::ALPN;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ConnectionError, Endpoint, VarInt};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use tokio::runtime::Runtime;

use crate::certs::{Certs, SERVER_NAME};

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

fn transport_config() -> Arc<quinn::TransportConfig> {
    let defaults = QuicConfig::default();
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(defaults.idle_timeout).expect("idle timeout"),
    ));
    t.keep_alive_interval(Some(defaults.keep_alive));
    Arc::new(t)
}

/// A quinn endpoint on a UDP socket with the plugin's default socket
/// buffers, so both paths have the same room for bursts.
fn endpoint(addr: SocketAddr, server: Option<quinn::ServerConfig>) -> Endpoint {
    let socket = std::net::UdpSocket::bind(addr).expect("bind");
    let buffer = QuicConfig::default().socket_buffer as usize;
    let sock = socket2::SockRef::from(&socket);
    sock.set_recv_buffer_size(buffer).expect("SO_RCVBUF");
    sock.set_send_buffer_size(buffer).expect("SO_SNDBUF");
    Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .expect("endpoint")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(certs: &Certs) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(certs.ca.clone()))
        .expect("CA root");
    Arc::new(roots)
}

fn chain(chain: &[Vec<u8>]) -> Vec<CertificateDer<'static>> {
    chain.iter().cloned().map(CertificateDer::from).collect()
}

fn key(der: &[u8]) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec()))
}

fn server_config(certs: &Certs) -> quinn::ServerConfig {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(certs), provider())
        .build()
        .expect("client verifier");
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            chain(&certs.server.cert_chain),
            key(&certs.server.private_key_der),
        )
        .expect("server cert");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.session_storage = Arc::new(NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    tls.max_early_data_size = 0;
    let crypto = QuicServerConfig::try_from(tls).expect("QUIC server TLS");
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport_config());
    server
}

fn client_config(certs: &Certs) -> quinn::ClientConfig {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots(certs))
        .with_client_auth_cert(
            chain(&certs.client.cert_chain),
            key(&certs.client.private_key_der),
        )
        .expect("client cert");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    tls.enable_early_data = false;
    let crypto = QuicClientConfig::try_from(tls).expect("QUIC client TLS");
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport_config());
    client
}

/// A server, a client endpoint, and the runtimes they run on.
struct Pair {
    // Runtimes are dropped after the endpoints, which need them to close.
    server: Endpoint,
    client: Endpoint,
    config: quinn::ClientConfig,
    addr: SocketAddr,
    client_rt: Runtime,
    server_rt: Runtime,
}

impl Pair {
    fn new(certs: &Certs) -> Self {
        let server_rt = runtime("bare-server");
        let client_rt = runtime("bare-client");
        let config = server_config(certs);
        let server =
            server_rt.block_on(async { endpoint((Ipv4Addr::LOCALHOST, 0).into(), Some(config)) });
        let addr = server.local_addr().expect("bound address");
        let client =
            client_rt.block_on(async { endpoint((Ipv4Addr::UNSPECIFIED, 0).into(), None) });
        Self {
            server,
            client,
            config: client_config(certs),
            addr,
            client_rt,
            server_rt,
        }
    }
}

/// Full mTLS handshakes: the server closes each connection (code 0) as
/// soon as its handshake completes; a client task connects again (from the
/// one client endpoint) once it has seen that close.
pub struct Handshakes {
    pair: Pair,
    accepted: Arc<AtomicU64>,
}

impl Handshakes {
    /// A listening server and a client endpoint.
    pub fn new(certs: &Certs) -> Self {
        let pair = Pair::new(certs);
        let accepted = Arc::new(AtomicU64::new(0));
        let (server, count) = (pair.server.clone(), accepted.clone());
        pair.server_rt.spawn(async move {
            while let Some(incoming) = server.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        count.fetch_add(1, Ordering::Relaxed);
                        conn.close(VarInt::from_u32(0), b"bench");
                    }
                });
            }
        });
        Self { pair, accepted }
    }

    /// Runs `n` handshakes with this server, `in_flight` at a time.
    pub fn round(&self, n: usize, in_flight: usize) -> Duration {
        let before = self.accepted.load(Ordering::Relaxed);
        let took = self.clients(self.pair.addr, n, in_flight);
        let accepted = self.accepted.load(Ordering::Relaxed) - before;
        assert_eq!(accepted, n as u64, "bare server handshakes");
        took
    }

    /// Runs `n` handshakes with the server at `addr` (this one, or another
    /// that closes each connection the same way), `in_flight` at a time.
    pub fn clients(&self, addr: SocketAddr, n: usize, in_flight: usize) -> Duration {
        let p = &self.pair;
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let (endpoint, config, next) = (p.client.clone(), p.config.clone(), next.clone());
                p.client_rt.spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        let conn = endpoint
                            .connect_with(config.clone(), addr, SERVER_NAME)
                            .expect("connect")
                            .await
                            .expect("bare handshake");
                        match conn.closed().await {
                            ConnectionError::ApplicationClosed(close)
                                if close.error_code == VarInt::from_u32(0) => {}
                            // The server's close was lost and its draining
                            // period over: it answers with a stateless reset.
                            ConnectionError::Reset => {}
                            other => panic!("bare connection ended with {other}"),
                        }
                    }
                })
            })
            .collect();
        p.client_rt.block_on(async {
            for task in tasks {
                task.await.expect("client task");
            }
        });
        start.elapsed()
    }
}

/// One connection; each round moves bytes on a new bidirectional stream
/// with `write_all` of `frame`-byte buffers, and the server `read`s them
/// into a buffer of the same size.
pub struct Stream {
    pair: Pair,
    conn: quinn::Connection,
    received: mpsc::Receiver<u64>,
}

impl Stream {
    /// A connected pair whose server reads every stream to its end and
    /// reports the byte count.
    pub fn new(certs: &Certs, frame: usize) -> Self {
        let pair = Pair::new(certs);
        let (tx, received) = mpsc::channel();
        let server = pair.server.clone();
        pair.server_rt.spawn(async move {
            let conn = server
                .accept()
                .await
                .expect("incoming")
                .await
                .expect("bare handshake");
            while let Ok((_send, mut recv)) = conn.accept_bi().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; frame];
                    let mut total = 0u64;
                    while let Some(n) = recv.read(&mut buf).await.expect("bare read") {
                        total += n as u64;
                    }
                    let _ = tx.send(total);
                });
            }
        });
        let (client, config, addr) = (pair.client.clone(), pair.config.clone(), pair.addr);
        let conn = pair
            .client_rt
            .block_on(async move {
                client
                    .connect_with(config, addr, SERVER_NAME)
                    .expect("connect")
                    .await
            })
            .expect("bare handshake");
        Self {
            pair,
            conn,
            received,
        }
    }

    /// Sends `frames` writes of `data` on a new stream, finishes it, and
    /// returns when the server has read all of it.
    pub fn round(&self, data: &Arc<Vec<u8>>, frames: usize) -> Duration {
        let expected = (frames * data.len()) as u64;
        let (conn, data) = (self.conn.clone(), data.clone());
        let start = Instant::now();
        let writer = self.pair.client_rt.spawn(async move {
            let (mut send, _recv) = conn.open_bi().await.expect("open");
            for _ in 0..frames {
                send.write_all(&data).await.expect("bare write");
            }
            send.finish().expect("finish");
        });
        let total = self.received.recv().expect("server reader");
        let took = start.elapsed();
        self.pair.client_rt.block_on(writer).expect("client writer");
        assert_eq!(total, expected, "bare bytes");
        took
    }
}

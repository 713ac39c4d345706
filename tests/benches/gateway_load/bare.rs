//! The baseline: a bare quinn 0.11 + rustls 0.23 (*ring*) server in a
//! process of its own, configured as the `quic` plugin configures itself
//! (TLS 1.3, ALPN `keygate/1`, client certificate required and verified
//! against a CA, no session resumption, the plugin's default idle timeout,
//! keep-alive and socket buffers), holding every connection it accepts
//! until the peer closes it; and bare quinn clients that open connections
//! to it and keep them idle.
//!
//! The server runs as `gateway_load bare-server DIR` (DIR holds the
//! certificates [`write_certs`] wrote), prints `listening PORT` once bound
//! and exits when its stdin closes, so it never outlives the bench.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keygate_transport_quic::config::QuicConfig;
use keygate_transport_quic::tls::ALPN;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, VarInt};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use tokio::runtime::Runtime;

/// The server's name in its certificate.
const SERVER_NAME: &str = "127.0.0.1";

/// Writes a fresh Ed25519 CA and a server and a client leaf into `dir`
/// (`ca.der`, `server.der`, `server.key`, `client.der`, `client.key`).
pub fn write_certs(dir: &Path) {
    let key = KeyPair::generate_for(&PKCS_ED25519).expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Keygate load CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = params.self_signed(&key).expect("CA").der().to_vec();
    let issuer = Issuer::new(params, key);
    std::fs::write(dir.join("ca.der"), &ca).expect("write ca.der");
    for (name, san, usage) in [
        ("server", SERVER_NAME, ExtendedKeyUsagePurpose::ServerAuth),
        ("client", "device", ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("leaf key");
        let mut params = CertificateParams::new(vec![san.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, san);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).expect("leaf");
        std::fs::write(dir.join(format!("{name}.der")), cert.der()).expect("write leaf");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_der()).expect("write key");
    }
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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

fn roots(dir: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(read(dir, "ca.der")))
        .expect("CA root");
    Arc::new(roots)
}

/// `name.der` and the CA, and `name.key`.
fn identity(dir: &Path, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = vec![
        CertificateDer::from(read(dir, &format!("{name}.der"))),
        CertificateDer::from(read(dir, "ca.der")),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(read(dir, &format!("{name}.key"))));
    (chain, key)
}

fn server_config(dir: &Path) -> quinn::ServerConfig {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(dir), provider())
        .build()
        .expect("client verifier");
    let (chain, key) = identity(dir, "server");
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
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

fn client_config(dir: &Path) -> quinn::ClientConfig {
    let (chain, key) = identity(dir, "client");
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots(dir))
        .with_client_auth_cert(chain, key)
        .expect("client cert");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.resumption = rustls::client::Resumption::disabled();
    let crypto = QuicClientConfig::try_from(tls).expect("QUIC client TLS");
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport_config());
    client
}

/// The server process's body: serves until stdin closes, then exits.
pub fn serve(dir: &Path) -> ! {
    let rt = runtime("bare-server");
    let server =
        rt.block_on(async { endpoint((Ipv4Addr::LOCALHOST, 0).into(), Some(server_config(dir))) });
    let port = server.local_addr().expect("bound address").port();
    let accepting = server.clone();
    rt.spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                // Held until the peer closes it: an idle connection.
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
    println!("listening {port}");
    std::io::stdout().flush().expect("stdout");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    std::process::exit(0);
}

/// The bare server child: its process (for its memory) and address.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `current_exe() bare-server dir` and waits until it listens.
    pub fn start(dir: &Path) -> Server {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .arg("bare-server")
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the bare server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("the bare server's first line");
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the bare server said {line:?}"));
        Server {
            child,
            addr: (Ipv4Addr::LOCALHOST, port).into(),
        }
    }

    /// The process id, for its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing stdin ends it; wait so no zombie is left.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Bare quinn clients on one endpoint, holding their connections.
pub struct Clients {
    endpoint: Endpoint,
    config: quinn::ClientConfig,
    held: Vec<Connection>,
    rt: Runtime,
}

impl Clients {
    /// A client endpoint with the client certificate in `dir`.
    pub fn new(dir: &Path) -> Clients {
        let rt = runtime("bare-client");
        let endpoint = rt.block_on(async { endpoint((Ipv4Addr::UNSPECIFIED, 0).into(), None) });
        Clients {
            endpoint,
            config: client_config(dir),
            held: Vec::new(),
            rt,
        }
    }

    /// Opens `n` more connections to `addr`, `in_flight` handshakes at a
    /// time, and keeps them; the wall time.
    pub fn open(&mut self, addr: SocketAddr, n: usize, in_flight: usize) -> Duration {
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|_| {
                let (endpoint, config, next) =
                    (self.endpoint.clone(), self.config.clone(), next.clone());
                self.rt.spawn(async move {
                    let mut mine = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        let conn = endpoint
                            .connect_with(config.clone(), addr, SERVER_NAME)
                            .expect("connect")
                            .await
                            .expect("bare handshake");
                        mine.push(conn);
                    }
                    mine
                })
            })
            .collect();
        for task in tasks {
            let mine = self.rt.block_on(task).expect("client task");
            self.held.extend(mine);
        }
        start.elapsed()
    }

    /// How many connections are open (none closed by the server since).
    pub fn open_count(&self) -> usize {
        self.held
            .iter()
            .filter(|c| c.close_reason().is_none())
            .count()
    }

    /// Closes every connection and waits until the peer knows.
    pub fn close_all(mut self) {
        for conn in self.held.drain(..) {
            conn.close(VarInt::from_u32(0), b"done");
        }
        let endpoint = self.endpoint.clone();
        self.rt.block_on(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), endpoint.wait_idle()).await;
        });
    }
}

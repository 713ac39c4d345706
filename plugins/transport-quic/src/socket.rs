//! The transport's UDP sockets, bound with the receive and send buffers
//! of the `socket_buffer` setting.
//!
//! quinn leaves the kernel's default buffers (about 208 KiB on Linux),
//! which hold some 90 datagrams. A server whose runtime is kept from the
//! socket for a few milliseconds (a busy machine, a burst of handshakes)
//! then loses datagrams, and a lost handshake flight costs its connection
//! a retransmission timeout. Linux caps what it grants at
//! `net.core.rmem_max` / `wmem_max` (and reports twice the granted size);
//! a listener that gets less than it asked says so in the log.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use keygate_sdk::PluginContext;
use quinn::{Endpoint, EndpointConfig};
use socket2::{Domain, Protocol, Socket, Type};

/// Binds a UDP socket to `addr` with `buffer` bytes of receive and send
/// buffer (0: the system's default), and makes a quinn endpoint of it
/// (a server endpoint when `server` is given). Must run on the runtime.
///
/// # Errors
/// The socket's error, when it cannot be bound or set up.
pub fn endpoint(
    addr: SocketAddr,
    buffer: u32,
    server: Option<quinn::ServerConfig>,
    log: &PluginContext,
) -> std::io::Result<Endpoint> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if server.is_none() && addr.is_ipv6() {
        // As quinn's own client endpoints: dual-stack where the system
        // allows, so an IPv6 socket reaches IPv4 gateways too.
        let _ = sock.set_only_v6(false);
    }
    if buffer > 0 {
        let asked = buffer as usize;
        sock.set_recv_buffer_size(asked)?;
        sock.set_send_buffer_size(asked)?;
        // Linux reports twice what it granted (bookkeeping included).
        let granted = sock.recv_buffer_size()? / 2;
        if granted < asked {
            let what = format!(
                "UDP receive buffer: asked {asked} bytes, the system granted {granted} \
                 (raise net.core.rmem_max, or lower socket_buffer)"
            );
            if server.is_some() {
                log.warn(&what);
            } else {
                log.debug(&what);
            }
        }
    }
    sock.bind(&addr.into())?;
    Endpoint::new(
        EndpointConfig::default(),
        server,
        UdpSocket::from(sock),
        Arc::new(quinn::TokioRuntime),
    )
}

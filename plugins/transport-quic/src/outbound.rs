//! What the transport's outbound connections share: one client endpoint
//! (one UDP socket) per address family, made at the first `connect` and
//! used by every later one, and the client TLS config of the last
//! `connect`, reused while the server trust and the client identity stay
//! the same.
//!
//! A new endpoint per connection costs about as much CPU as the handshake
//! itself (its socket and receive buffers), and building the TLS config
//! loads the client key; a node reconnecting, or a process holding many
//! connections, pays neither again.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use keygate_sdk::{PluginContext, PluginError, ServerTrust, TlsIdentity};
use quinn::Endpoint;
use quinn::crypto::rustls::QuicClientConfig;

use crate::{socket, tls};

/// The client config of one (trust, identity) pair.
#[derive(Debug)]
struct Cached {
    trust: ServerTrust,
    identity: Option<TlsIdentity>,
    config: quinn::ClientConfig,
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub struct Outbound {
    /// IPv4, then IPv6.
    endpoints: Mutex<[Option<Endpoint>; 2]>,
    last_config: Mutex<Option<Cached>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while these locks are held.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Outbound {
    /// The client endpoint for connections to `remote`, made on first use
    /// with `buffer` bytes of socket buffers. Must run on the runtime.
    ///
    /// # Errors
    /// The socket's error, when it cannot be bound.
    pub fn endpoint(
        &self,
        remote: SocketAddr,
        buffer: u32,
        log: &PluginContext,
    ) -> std::io::Result<Endpoint> {
        let (slot, bind): (usize, SocketAddr) = if remote.is_ipv6() {
            (1, (Ipv6Addr::UNSPECIFIED, 0).into())
        } else {
            (0, (Ipv4Addr::UNSPECIFIED, 0).into())
        };
        let mut endpoints = lock(&self.endpoints);
        if let Some(endpoint) = &endpoints[slot] {
            return Ok(endpoint.clone());
        }
        let endpoint = socket::endpoint(bind, buffer, None, log)?;
        endpoints[slot] = Some(endpoint.clone());
        Ok(endpoint)
    }

    /// The quinn client config for `trust` and `identity`: the last one
    /// when they are the same as last time, else a new one (which is kept
    /// instead) with the transport config `transport` makes.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](keygate_sdk::ErrorKind::Invalid) for bad
    /// roots or a bad client identity.
    pub fn config(
        &self,
        trust: &ServerTrust,
        identity: Option<&TlsIdentity>,
        transport: impl FnOnce() -> Arc<quinn::TransportConfig>,
    ) -> Result<quinn::ClientConfig, PluginError> {
        let mut last = lock(&self.last_config);
        if let Some(cached) = last.as_ref()
            && cached.trust == *trust
            && cached.identity.as_ref() == identity
        {
            return Ok(cached.config.clone());
        }
        let tls = tls::client_config(trust, identity)?;
        let crypto = QuicClientConfig::try_from(tls)
            .map_err(|e| PluginError::internal(format!("QUIC client TLS: {e}")))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport());
        *last = Some(Cached {
            trust: trust.clone(),
            identity: identity.cloned(),
            config: config.clone(),
        });
        Ok(config)
    }

    /// Takes the endpoints (for shutdown); the next `connect` makes new
    /// ones.
    pub fn take_endpoints(&self) -> Vec<Endpoint> {
        lock(&self.endpoints)
            .iter_mut()
            .filter_map(Option::take)
            .collect()
    }
}

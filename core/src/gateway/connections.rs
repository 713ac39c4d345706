//! Who is connected: for each live connection, the certificate it
//! presented (and the device that certificate was issued to). Revocation
//! looks connections up here to close them.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::identity::{CertFingerprint, DeviceId};
use crate::state::RevocationEvent;

use super::ConnectionId;

/// How a connection authenticated at its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The fingerprint of the certificate it presented, if any.
    pub certificate: Option<CertFingerprint>,
    /// The device that certificate was issued to (from the identity state
    /// at the handshake).
    pub device: Option<DeviceId>,
}

/// The live connections, shared between the workers and revocation.
#[derive(Debug, Default)]
pub struct Connections {
    live: Mutex<HashMap<ConnectionId, Peer>>,
}

impl Connections {
    /// A new connection.
    pub fn insert(&self, connection: ConnectionId, peer: Peer) {
        self.lock().insert(connection, peer);
    }

    /// A connection closed.
    pub fn remove(&self, connection: ConnectionId) {
        self.lock().remove(&connection);
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The connections a revocation ends: those that presented the revoked
    /// certificate, or any certificate of the revoked device.
    pub fn revoked_by(&self, event: &RevocationEvent) -> Vec<ConnectionId> {
        let live = self.lock();
        let mut hit: Vec<ConnectionId> = live
            .iter()
            .filter(|(_, peer)| match event {
                RevocationEvent::Device(id) => peer.device.as_ref() == Some(id),
                RevocationEvent::Certificate { fingerprint, .. } => {
                    peer.certificate.as_ref() == Some(fingerprint)
                }
            })
            .map(|(&c, _)| c)
            .collect();
        hit.sort_unstable();
        hit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, Peer>> {
        // A panic while holding this lock leaves a consistent map: every
        // update is a single insert or remove.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(b: u8) -> CertFingerprint {
        CertFingerprint::from_bytes([b; 32])
    }

    fn device(b: u8) -> DeviceId {
        crate::identity::DeviceKey::from_seed(&[b; 32]).device_id()
    }

    #[test]
    fn a_revocation_names_exactly_the_connections_it_ends() {
        let c = Connections::default();
        assert!(c.is_empty());
        c.insert(
            1,
            Peer {
                certificate: Some(fp(1)),
                device: Some(device(1)),
            },
        );
        c.insert(
            2,
            Peer {
                certificate: Some(fp(2)),
                device: Some(device(1)),
            },
        );
        c.insert(
            3,
            Peer {
                certificate: Some(fp(3)),
                device: Some(device(3)),
            },
        );
        c.insert(
            4,
            Peer {
                certificate: None,
                device: None,
            },
        );
        assert_eq!(c.revoked_by(&RevocationEvent::Device(device(1))), [1, 2]);
        assert_eq!(
            c.revoked_by(&RevocationEvent::Certificate {
                fingerprint: fp(2),
                device_id: device(1),
            }),
            [2]
        );
        assert!(c.revoked_by(&RevocationEvent::Device(device(9))).is_empty());
        c.remove(1);
        assert_eq!(c.revoked_by(&RevocationEvent::Device(device(1))), [2]);
        assert_eq!(c.len(), 3);
        assert!(!c.is_empty());
    }
}

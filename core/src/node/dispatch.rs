//! One node request in, its answer out: the checks of [`authorize`] first,
//! then what the request asks of the identity state and the runtime.

use std::sync::Mutex;
use std::time::SystemTime;

use keygate_proto::{Message, RefusalCode, Refused, Registered, Renewed};

use super::auth::{NodeCredential, Refusal, authorize};
use super::runtime::{ConnectionId, NodeRuntime};
use crate::identity::DeviceId;
use crate::state::records::DeviceRecord;
use crate::state::{IdentityError, IdentityManager};

/// A node request as the transport delivered it.
#[derive(Debug)]
pub struct NodeRequest<'a> {
    /// The connection it came on.
    pub connection: ConnectionId,
    /// How that connection authenticated.
    pub credential: NodeCredential<'a>,
    /// The connection's TLS exporter value (channel binding).
    pub channel_binding: [u8; 32],
    /// The decoded request.
    pub message: Message,
}

/// Answers a node request (`Register`, `Heartbeat`, `Renew`) at `now`: the
/// message to send back on its stream, a `Refused` naming why when it is
/// refused. The runtime is locked only for what changes it, never across a
/// write to the identity state (a renewal's certificate).
pub fn dispatch(
    identity: &IdentityManager,
    runtime: &Mutex<NodeRuntime>,
    request: NodeRequest<'_>,
    now: SystemTime,
) -> Message {
    match serve(identity, runtime, request, now) {
        Ok(answer) => answer,
        Err(refusal) => Message::Refused(Refused::new(refusal.code, &refusal.reason)),
    }
}

fn serve(
    identity: &IdentityManager,
    runtime: &Mutex<NodeRuntime>,
    request: NodeRequest<'_>,
    now: SystemTime,
) -> Result<Message, Refusal> {
    let NodeRequest {
        connection,
        credential,
        channel_binding,
        message,
    } = request;
    match message {
        Message::Register(m) => {
            let device = authorize(identity, credential, &m.device_id, now)?;
            let record = record(identity, &device)?;
            let mut runtime = lock(runtime);
            runtime.register(connection, device, record.name, m.capabilities, now);
            Ok(Message::Registered(Registered {
                heartbeat_secs: runtime.heartbeat_secs(),
            }))
        }
        Message::Heartbeat(m) => {
            let device = authorize(identity, credential, &m.device_id, now)?;
            lock(runtime).heartbeat(connection, &device, now)?;
            Ok(Message::HeartbeatAck)
        }
        Message::Renew(m) => {
            let device = authorize(identity, credential, &m.device_id, now)?;
            let record = record(identity, &device)?;
            m.verify(record.public_key.as_bytes(), &channel_binding)
                .map_err(|_| Refusal {
                    code: RefusalCode::BadSignature,
                    reason: format!(
                        "the renewal is not signed by the key of device {device} on this \
                         connection"
                    ),
                })?;
            let issued = identity
                .issue_certificate(&device, now)
                .map_err(|e| state_refusal(&device, e))?;
            Ok(Message::Renewed(Renewed {
                certificates: vec![issued.der, identity.ca().certificate_der().to_vec()],
            }))
        }
        other => Err(Refusal {
            code: RefusalCode::Malformed,
            reason: format!("{} is not a node request", other.name()),
        }),
    }
}

/// The runtime's lock; a worker that panicked holding it left every entry
/// whole (each change is one insert, update or removal).
pub(crate) fn lock(runtime: &Mutex<NodeRuntime>) -> std::sync::MutexGuard<'_, NodeRuntime> {
    runtime.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(identity: &IdentityManager, device: &DeviceId) -> Result<DeviceRecord, Refusal> {
    identity
        .device(device)
        .map_err(|e| state_refusal(device, e))?
        .ok_or_else(|| Refusal {
            code: RefusalCode::CertificateMismatch,
            reason: format!("device {device} has no record"),
        })
}

fn state_refusal(device: &DeviceId, e: IdentityError) -> Refusal {
    match e {
        IdentityError::DeviceRevoked { .. } => Refusal {
            code: RefusalCode::DeviceRevoked,
            reason: format!("device {device} is revoked"),
        },
        other => {
            tracing::error!(%device, error = %other, "a node request failed in the identity state");
            Refusal {
                code: RefusalCode::Internal,
                reason: "the gateway could not serve the request".into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use keygate_proto::{Heartbeat, PinAccepted, Register, Renew};

    use super::*;
    use crate::identity::{CertFingerprint, DeviceKey};
    use crate::node::PresentedLeaf;

    const BINDING: [u8; 32] = [9; 32];

    struct Setup {
        _dir: tempfile::TempDir,
        m: IdentityManager,
        r: Mutex<NodeRuntime>,
        now: SystemTime,
        key: DeviceKey,
        id: DeviceId,
        cert: Vec<u8>,
    }

    fn setup() -> Setup {
        let now = SystemTime::now();
        let (dir, m) = super::super::testing::identity(now);
        let key = DeviceKey::from_seed(&[1; 32]);
        let enrolled = m
            .enroll(
                &key.public_key(),
                "printer",
                &[],
                now,
                &crate::state::Actor::cli(),
            )
            .unwrap();
        m.refresh().unwrap();
        Setup {
            _dir: dir,
            m,
            r: Mutex::new(NodeRuntime::new(
                Duration::from_secs(5),
                Duration::from_secs(10),
            )),
            now,
            id: enrolled.device.device_id,
            key,
            cert: enrolled.certificate.der,
        }
    }

    fn send(s: &mut Setup, cert: Option<&[u8]>, message: Message) -> Message {
        let leaf = cert.map(|der| PresentedLeaf::check(&s.m, der));
        let request = NodeRequest {
            connection: 1,
            credential: NodeCredential::Certificate(leaf.as_ref()),
            channel_binding: BINDING,
            message,
        };
        dispatch(&s.m, &s.r, request, s.now)
    }

    fn refused(m: Message) -> RefusalCode {
        match m {
            Message::Refused(r) => r.code,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn register(s: &Setup) -> Message {
        Message::Register(Register {
            device_id: s.id.to_string(),
            capabilities: vec!["echo".into()],
        })
    }

    #[test]
    fn a_node_registers_heartbeats_and_is_listed_with_its_name() {
        let mut s = setup();
        let cert = s.cert.clone();
        let heartbeat = Message::Heartbeat(Heartbeat {
            device_id: s.id.to_string(),
        });
        assert_eq!(
            refused(send(&mut s, Some(&cert), heartbeat.clone())),
            RefusalCode::NotRegistered
        );
        let reg = register(&s);
        assert_eq!(
            send(&mut s, Some(&cert), reg),
            Message::Registered(Registered { heartbeat_secs: 5 })
        );
        assert_eq!(send(&mut s, Some(&cert), heartbeat), Message::HeartbeatAck);
        let nodes = lock(&s.r).nodes();
        assert_eq!(
            (nodes[0].device_id, nodes[0].name.as_str()),
            (s.id, "printer")
        );
    }

    #[test]
    fn every_node_request_is_refused_without_a_certificate() {
        let mut s = setup();
        let id = s.id.to_string();
        let renew = Message::Renew(Renew::sign(s.key.signing_key(), &id, &BINDING).unwrap());
        for m in [
            register(&s),
            Message::Heartbeat(Heartbeat { device_id: id }),
            renew,
        ] {
            assert_eq!(refused(send(&mut s, None, m)), RefusalCode::NoCertificate);
        }
        assert!(lock(&s.r).nodes().is_empty());
    }

    #[test]
    fn a_renewal_signed_on_this_connection_gets_a_new_certificate_for_the_same_key() {
        let mut s = setup();
        let cert = s.cert.clone();
        let renew = Renew::sign(s.key.signing_key(), &s.id.to_string(), &BINDING).unwrap();
        let Message::Renewed(renewed) = send(&mut s, Some(&cert), Message::Renew(renew)) else {
            panic!("not renewed");
        };
        let new = &renewed.certificates[0];
        assert_ne!(new, &cert, "a new certificate");
        assert_eq!(renewed.certificates[1], s.m.ca().certificate_der());
        let record =
            s.m.certificate(&CertFingerprint::of_der(new))
                .unwrap()
                .unwrap();
        assert_eq!(record.device_id, s.id);
        s.m.refresh().unwrap();
        // The new one works, and the old one still does.
        let reg = register(&s);
        assert!(matches!(
            send(&mut s, Some(new), reg),
            Message::Registered(_)
        ));
        let reg = register(&s);
        assert!(matches!(
            send(&mut s, Some(&cert), reg),
            Message::Registered(_)
        ));
    }

    #[test]
    fn a_renewal_signed_for_another_connection_or_by_another_key_is_refused() {
        let mut s = setup();
        let cert = s.cert.clone();
        let before = s.m.certificates().unwrap().records.len();
        let id = s.id.to_string();
        let replayed = Renew::sign(s.key.signing_key(), &id, &[8; 32]).unwrap();
        assert_eq!(
            refused(send(&mut s, Some(&cert), Message::Renew(replayed))),
            RefusalCode::BadSignature
        );
        let other = DeviceKey::from_seed(&[2; 32]);
        let forged = Renew::sign(other.signing_key(), &id, &BINDING).unwrap();
        assert_eq!(
            refused(send(&mut s, Some(&cert), Message::Renew(forged))),
            RefusalCode::BadSignature
        );
        assert_eq!(
            s.m.certificates().unwrap().records.len(),
            before,
            "nothing issued"
        );
    }

    #[test]
    fn a_revoked_device_can_neither_register_nor_renew() {
        let mut s = setup();
        let cert = s.cert.clone();
        s.m.revoke_device(&s.id, "stolen", s.now, &crate::state::Actor::cli())
            .unwrap();
        s.m.refresh().unwrap();
        let reg = register(&s);
        assert_eq!(
            refused(send(&mut s, Some(&cert), reg)),
            RefusalCode::DeviceRevoked
        );
        let renew = Renew::sign(s.key.signing_key(), &s.id.to_string(), &BINDING).unwrap();
        assert_eq!(
            refused(send(&mut s, Some(&cert), Message::Renew(renew))),
            RefusalCode::DeviceRevoked
        );
    }

    #[test]
    fn a_pairing_message_is_not_a_node_request() {
        let mut s = setup();
        let cert = s.cert.clone();
        let m = Message::PinAccepted(PinAccepted {
            tag: [0; 8],
            mac: [0; 32],
        });
        assert_eq!(
            refused(send(&mut s, Some(&cert), m)),
            RefusalCode::Malformed
        );
    }
}

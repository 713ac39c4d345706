//! A worker serves the connections of its shard: the transport's events
//! for a connection always go to the same worker, so a connection's
//! frames are handled in order while other connections' proceed on other
//! workers (a pairing step may wait for a durable write).
//!
//! What a stream carries is decided by its first frame (see
//! `keygate_proto::link`): a pairing hello or `Resume` starts a pairing
//! conversation that lives as long as the stream; a node request gets one
//! answer; an `InvokeResult` on a stream the gateway opened answers an
//! invocation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::SystemTime;

use keygate_proto::link::{CHANNEL_BINDING_CONTEXT, CHANNEL_BINDING_LABEL, CHANNEL_BINDING_LEN};
use keygate_proto::{Message, RefusalCode, Refused};
use keygate_sdk::{ConnectionInfo, FrameReceived, StreamId, TransportEvent};

use super::connections::Peer;
use super::{ConnectionId, NodeEvent, Shared};
use crate::identity::CertFingerprint;
use crate::node::{NodeCredential, NodeRequest, PresentedLeaf, Refusal, dispatch};
use crate::pairing::gateway::Conversation;
use crate::state::CertStatus;

/// One connection, as its worker keeps it.
struct Conn {
    remote: SocketAddr,
    /// The leaf certificate the peer presented, checked once.
    leaf: Option<PresentedLeaf>,
    binding: [u8; 32],
    /// Pairing conversations in progress, by stream.
    pairing: HashMap<StreamId, Conversation>,
}

/// What a worker is given.
pub(super) enum Work {
    /// A transport event for a connection of its shard.
    Event(TransportEvent),
    /// Stop after what came before.
    Stop,
}

/// The worker loop: handles events until told to stop.
pub(super) fn run(shared: Arc<Shared>, work: Receiver<Work>) {
    let mut worker = Worker {
        shared,
        conns: HashMap::new(),
    };
    for item in work {
        match item {
            Work::Event(event) => worker.handle(event),
            Work::Stop => break,
        }
    }
    // Shutting down: conversations still open give their attempts back.
    worker.conns.clear();
}

struct Worker {
    shared: Arc<Shared>,
    conns: HashMap<ConnectionId, Conn>,
}

impl Worker {
    fn handle(&mut self, event: TransportEvent) {
        match event {
            TransportEvent::Connected(info) => self.connected(info),
            TransportEvent::Frame(frame) => self.frame(frame),
            TransportEvent::StreamFinished { connection, stream } => {
                // A pairing the device stopped half-way gives its attempts
                // back (dropping the conversation abandons it).
                if let Some(conn) = self.conns.get_mut(&connection) {
                    conn.pairing.remove(&stream);
                }
            }
            TransportEvent::Closed { connection, reason } => self.closed(connection, &reason),
        }
    }

    fn connected(&mut self, info: ConnectionInfo) {
        let shared = &self.shared;
        let id = info.connection;
        let Ok(remote) = info.remote_addr.parse::<SocketAddr>() else {
            tracing::warn!(connection = id, remote = %info.remote_addr, "a connection with an unreadable address; closing it");
            shared.close(id, keygate_proto::link::close::SHUTDOWN, "internal error");
            return;
        };
        let binding = match shared.transport.export_keying_material(
            id,
            CHANNEL_BINDING_LABEL,
            CHANNEL_BINDING_CONTEXT,
            CHANNEL_BINDING_LEN,
        ) {
            Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(b) => b,
                Err(_) => {
                    tracing::error!(
                        connection = id,
                        "the transport exported {} bytes, not 32",
                        bytes.len()
                    );
                    shared.close(id, keygate_proto::link::close::SHUTDOWN, "internal error");
                    return;
                }
            },
            Err(error) => {
                // The connection is most likely gone already.
                tracing::debug!(connection = id, %error, "no channel binding");
                return;
            }
        };
        let leaf = info.peer_certificates.into_iter().next();
        let certificate = leaf.as_deref().map(CertFingerprint::of_der);
        let leaf = leaf.map(|der| PresentedLeaf::check(&shared.identity, &der));
        let status = certificate.map(|fp| shared.identity.certificate_status(&fp));
        let device = match &status {
            Some(CertStatus::Valid(owner)) => Some(*owner),
            _ => None,
        };
        shared.connections.insert(
            id,
            Peer {
                certificate,
                device,
            },
        );
        // A revocation that landed between the handshake's check and the
        // line above found no connection to close: look again now that
        // this one is listed.
        if let Some(fp) = certificate
            && !matches!(
                shared.identity.certificate_status(&fp),
                CertStatus::Valid(_)
            )
        {
            tracing::warn!(connection = id, certificate = %fp, "certificate revoked during the handshake; closing");
            shared.close(id, keygate_proto::link::close::REVOKED, "revoked");
            shared.connections.remove(id);
            return;
        }
        tracing::debug!(connection = id, %remote, device = ?device.map(|d| d.to_string()), "connected");
        self.conns.insert(
            id,
            Conn {
                remote,
                leaf,
                binding,
                pairing: HashMap::new(),
            },
        );
    }

    fn closed(&mut self, connection: ConnectionId, reason: &str) {
        let Some(conn) = self.conns.remove(&connection) else {
            return;
        };
        tracing::debug!(connection, remote = %conn.remote, %reason, "connection closed");
        drop(conn);
        let shared = &self.shared;
        shared.connections.remove(connection);
        let (left, owed) = {
            let mut runtime = crate::node::lock(&shared.runtime);
            let left = runtime.node(connection).map(|n| n.device_id);
            (left, runtime.disconnected(connection))
        };
        if let Some(device_id) = left {
            shared.node_event(NodeEvent::Left {
                device_id,
                reason: reason.to_owned(),
            });
        }
        for id in owed {
            shared.invocations.complete(
                &id,
                Err(Refusal {
                    code: RefusalCode::NodeUnavailable,
                    reason: format!("the node disconnected before answering ({reason})"),
                }),
            );
        }
    }

    fn frame(&mut self, frame: FrameReceived) {
        let FrameReceived {
            connection,
            stream,
            payload,
        } = frame;
        let now = SystemTime::now();
        let shared = Arc::clone(&self.shared);
        let Some(conn) = self.conns.get_mut(&connection) else {
            return;
        };
        if let Some(conversation) = conn.pairing.get_mut(&stream) {
            let out = conversation.on_message(&mut rand::rng(), &payload, now);
            let done = conversation.is_closed() || ends_pairing(&out);
            if done {
                conn.pairing.remove(&stream);
            }
            shared.answer(connection, stream, &out, done);
            return;
        }
        let message = match Message::decode(&payload) {
            Ok(m) => m,
            Err(e) => {
                let code = match e {
                    keygate_proto::DecodeError::UnsupportedVersion { .. } => {
                        RefusalCode::UnsupportedVersion
                    }
                    _ => RefusalCode::Malformed,
                };
                let refused = Message::Refused(Refused::new(code, &e.to_string())).encode();
                shared.answer(connection, stream, &[refused], true);
                return;
            }
        };
        match message {
            Message::PinHello(_) | Message::QrHello(_) | Message::Resume(_) => {
                let mut conversation = shared.pairing.conversation(conn.remote, conn.binding);
                let out = conversation.on_message(&mut rand::rng(), &payload, now);
                let done = conversation.is_closed() || ends_pairing(&out);
                if !done {
                    conn.pairing.insert(stream, conversation);
                }
                shared.answer(connection, stream, &out, done);
            }
            Message::Register(_) | Message::Heartbeat(_) | Message::Renew(_) => {
                let credential = if conn.leaf.is_none() && shared.options.node_rpc_opt_out {
                    NodeCredential::OptOut
                } else {
                    NodeCredential::Certificate(conn.leaf.as_ref())
                };
                let registering = matches!(message, Message::Register(_));
                let request = NodeRequest {
                    connection,
                    credential,
                    channel_binding: conn.binding,
                    message,
                };
                let answer = dispatch(&shared.identity, &shared.runtime, request, now);
                if let Message::Refused(r) = &answer {
                    tracing::info!(connection, remote = %conn.remote, code = ?r.code, reason = %r.reason, "node request refused");
                } else if registering
                    && let Some(node) = crate::node::lock(&shared.runtime).node(connection).cloned()
                {
                    shared.node_event(NodeEvent::Connected(node));
                }
                shared.answer(connection, stream, &[answer.encode()], true);
            }
            Message::InvokeResult(result) => {
                let answered = crate::node::lock(&shared.runtime).answered(connection, &result);
                match answered {
                    Ok(()) => {
                        let id = result.invocation_id.clone();
                        shared.invocations.complete(&id, Ok(result));
                    }
                    Err(refusal) => {
                        tracing::info!(connection, reason = %refusal.reason, "an answer nobody waits for");
                    }
                }
            }
            other => {
                let refused = Message::Refused(Refused::new(
                    RefusalCode::Malformed,
                    &format!("{} cannot open a stream", other.name()),
                ))
                .encode();
                shared.answer(connection, stream, &[refused], true);
            }
        }
    }
}

/// Whether the last message a pairing step sent is a final answer, after
/// which the gateway finishes the stream.
fn ends_pairing(out: &[Vec<u8>]) -> bool {
    out.last().is_none_or(|last| {
        matches!(
            Message::decode(last),
            Ok(Message::Pending(_)
                | Message::Approved(_)
                | Message::Rejected(_)
                | Message::Expired(_)
                | Message::Refused(_))
                | Err(_)
        )
    })
}

#[cfg(test)]
mod tests {
    use keygate_proto::Expired;

    use super::*;

    #[test]
    fn a_pairing_stream_ends_with_a_final_answer_only() {
        let expired = Message::Expired(Expired {
            request_id: "r".into(),
        })
        .encode();
        let refused = Message::Refused(Refused::new(RefusalCode::Malformed, "no")).encode();
        // Any message that is not an answer stands for a step in between.
        let step = Message::HeartbeatAck.encode();
        assert!(ends_pairing(&[step.clone(), expired]));
        assert!(ends_pairing(&[refused]));
        assert!(!ends_pairing(std::slice::from_ref(&step)));
        assert!(ends_pairing(&[]));
    }
}

//! `GET /api/v1/events`: a server-sent event stream of what changes, for
//! the console and for scripts that would otherwise poll.
//!
//! Two sources feed one [`EventHub`]:
//! - **the audit log**, followed from its head every [`AUDIT_POLL`]: every state change, made by this gateway, by another
//!   process on the same state (the CLI) or by a policy, becomes one event
//!   named for its action (`request_filed`, `request_approved`,
//!   `request_rejected`, `device_revoked`, `certificate_revoked`,
//!   `code_minted`, ...) with the audit event as its data;
//! - **the gateway's nodes**: `node_connected` (a [`NodeView`]) and
//!   `node_left` (`{device_id, reason}`), as they happen.
//!
//! A listener that falls behind loses the oldest events and gets a
//! `resync` event: read the lists again. A stream ends after
//! [`STREAM_LIFETIME`]; clients reconnect (`EventSource` does by itself),
//! and the reconnection checks the credential again, so a revoked
//! operator's stream does not outlive its token by long.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::Instant;
use utoipa::ToSchema;

use super::ApiState;
use super::auth::Operator;
use super::error::ErrorBody;
use crate::gateway::admin::NodeView;
use crate::gateway::{Gateway, NodeEvent};
use crate::state::IdentityManager;
use crate::state::audit::AuditEntry;

/// How often the audit log is read for new entries while a stream is open.
pub const AUDIT_POLL: Duration = Duration::from_millis(250);
/// How long one stream lasts before the client must reconnect.
pub const STREAM_LIFETIME: Duration = Duration::from_secs(300);
/// How many events a slow stream may fall behind by before it is told to
/// resynchronise.
const BACKLOG: usize = 1024;

/// One event on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiEvent {
    /// Its `event:` name.
    pub name: String,
    /// Its `id:` (`audit-SEQ` for audit events).
    pub id: Option<String>,
    /// Its `data:`, JSON.
    pub data: String,
}

/// The data of an event from the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// The entry's number.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// Who: `operator:NAME`, `cli:LOGIN`, `policy(NAME)`, `device:ID`, `gateway`.
    pub actor: String,
    /// What (`request_filed`, `device_revoked`, ...): also the event's name.
    pub action: String,
    /// To what: a request id, device id, fingerprint, name.
    pub subject: String,
    /// The rest (a reason, a method, a hash).
    pub details: BTreeMap<String, String>,
}

/// The data of `node_left`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeLeftView {
    /// The node's device id.
    pub device_id: String,
    /// Why its connection closed.
    pub reason: String,
}

/// Where events are published; streams subscribe to it.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<ApiEvent>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl EventHub {
    /// Publishes `event` to every open stream (none is fine).
    pub fn publish(&self, event: ApiEvent) {
        let _ = self.tx.send(event);
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ApiEvent> {
        self.tx.subscribe()
    }

    /// Whether a stream is open.
    fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Starts feeding the hub from `identity`'s audit log and `gateway`'s
    /// nodes, on the current tokio runtime, until it shuts down.
    pub fn feed(&self, identity: Arc<IdentityManager>, gateway: &Gateway) {
        tokio::spawn(follow_audit(self.clone(), identity));
        tokio::spawn(follow_nodes(self.clone(), gateway.node_events()));
    }
}

/// The events of one audit entry.
pub fn audit_events(entry: &AuditEntry) -> Vec<ApiEvent> {
    let at = super::rfc3339(entry.at);
    entry
        .events
        .iter()
        .map(|e| {
            let view = AuditEventView {
                seq: entry.seq,
                at: at.clone(),
                actor: e.actor.to_string(),
                action: e.action.as_str().to_owned(),
                subject: e.subject.clone(),
                details: e.details.clone(),
            };
            ApiEvent {
                name: view.action.clone(),
                id: Some(format!("audit-{}", entry.seq)),
                data: serde_json::to_string(&view).unwrap_or_default(),
            }
        })
        .collect()
}

/// The event of a node registering or leaving.
pub fn node_event(event: NodeEvent) -> ApiEvent {
    match event {
        NodeEvent::Connected(node) => ApiEvent {
            name: "node_connected".into(),
            id: None,
            data: serde_json::to_string(&NodeView::from(node)).unwrap_or_default(),
        },
        NodeEvent::Left { device_id, reason } => ApiEvent {
            name: "node_left".into(),
            id: None,
            data: serde_json::to_string(&NodeLeftView {
                device_id: device_id.to_string(),
                reason,
            })
            .unwrap_or_default(),
        },
    }
}

/// Publishes the entries after `last` (the log's head when `None`) and
/// returns the last one published. While nobody listens it only keeps up
/// with the head, so a stream that opens gets what commits from then on,
/// not the history. An entry that cannot be read but that the head says
/// exists is skipped with a warning, so one damaged record (which
/// `keygate audit verify` names) stalls no stream.
fn audit_step(hub: &EventHub, identity: &IdentityManager, last: Option<u64>) -> Option<u64> {
    let head = || match identity.audit_head_seq() {
        Ok(seq) => Some(seq),
        Err(error) => {
            tracing::warn!(%error, "event stream: cannot read the audit log's head");
            None
        }
    };
    if !hub.listened() {
        return head().or(last);
    }
    let mut last = last.or_else(head)?;
    loop {
        match identity.audit_entry(last + 1) {
            Ok(Some(entry)) => {
                for event in audit_events(&entry) {
                    hub.publish(event);
                }
                last += 1;
            }
            Ok(None) => return Some(last),
            Err(error) => {
                if head().is_some_and(|head| head > last) {
                    tracing::warn!(seq = last + 1, %error, "event stream: skipping an unreadable audit entry");
                    last += 1;
                } else {
                    return Some(last);
                }
            }
        }
    }
}

async fn follow_audit(hub: EventHub, identity: Arc<IdentityManager>) {
    let mut last = None;
    let mut tick = tokio::time::interval(AUDIT_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (h, i) = (hub.clone(), identity.clone());
        last = match tokio::task::spawn_blocking(move || audit_step(&h, &i, last)).await {
            Ok(next) => next,
            Err(_) => return,
        };
    }
}

async fn follow_nodes(hub: EventHub, mut nodes: broadcast::Receiver<NodeEvent>) {
    loop {
        match nodes.recv().await {
            Ok(event) => hub.publish(node_event(event)),
            Err(broadcast::error::RecvError::Lagged(_)) => hub.publish(resync()),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn resync() -> ApiEvent {
    ApiEvent {
        name: "resync".into(),
        id: None,
        data: "{}".into(),
    }
}

/// The stream of one subscription: a comment saying it is open (so a
/// client knows from when on it hears everything), its events, `resync`
/// when it lagged, ending at `until`.
fn stream_of(
    rx: broadcast::Receiver<ApiEvent>,
    until: Instant,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let open = futures_util::stream::once(async { Ok(Event::default().comment("open")) });
    open.chain(futures_util::stream::unfold(rx, move |mut rx| async move {
        let event = match tokio::time::timeout_at(until, rx.recv()).await {
            Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            Ok(Ok(event)) => event,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => resync(),
        };
        let mut sse = Event::default().event(event.name).data(event.data);
        if let Some(id) = event.id {
            sse = sse.id(id);
        }
        Some((Ok(sse), rx))
    }))
}

/// A server-sent event stream (`text/event-stream`) of new requests,
/// decisions, revocations and other state changes from the audit log
/// (named for their action, data an `AuditEventView`), and of nodes
/// connecting (`node_connected`, a `NodeView`) and leaving (`node_left`).
/// `resync` means events were missed: read the lists again. The stream
/// opens with the comment `: open`, from which on it misses nothing, and
/// ends after five minutes; reconnect.
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<Arc<ApiState>>,
    _: Operator,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.events.subscribe();
    Sse::new(stream_of(rx, Instant::now() + STREAM_LIFETIME))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

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
    stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
            stop: Arc::new(tokio::sync::watch::channel(false).0),
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

    /// Ends every stream, now and to come (the API is shutting down).
    pub fn stop(&self) {
        self.stop.send_replace(true);
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
    stop: tokio::sync::watch::Receiver<bool>,
    until: Instant,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let open = futures_util::stream::once(async { Ok(Event::default().comment("open")) });
    open.chain(futures_util::stream::unfold(
        (rx, stop),
        move |(mut rx, mut stop)| async move {
            let next = tokio::time::timeout_at(until, async {
                tokio::select! {
                    event = rx.recv() => Some(event),
                    _ = stop.wait_for(|stopped| *stopped) => None,
                }
            });
            let event = match next.await {
                Err(_) | Ok(None) | Ok(Some(Err(broadcast::error::RecvError::Closed))) => {
                    return None;
                }
                Ok(Some(Ok(event))) => event,
                Ok(Some(Err(broadcast::error::RecvError::Lagged(_)))) => resync(),
            };
            let mut sse = Event::default().event(event.name).data(event.data);
            if let Some(id) = event.id {
                sse = sse.id(id);
            }
            Some((Ok(sse), (rx, stop)))
        },
    ))
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
    let stop = state.events.stop.subscribe();
    Sse::new(stream_of(rx, stop, Instant::now() + STREAM_LIFETIME))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use futures_util::StreamExt;

    use super::*;
    use crate::state::audit::{AuditAction, AuditEvent, audit_key};
    use crate::state::{Actor, testing::on_memory};

    fn record(m: &IdentityManager, subject: &str) {
        let event = AuditEvent::new(&Actor::operator("alice"), AuditAction::CodeMinted, subject)
            .with("ttl", "10m");
        m.record_audit(vec![event], SystemTime::now()).unwrap();
    }

    fn drain(rx: &mut broadcast::Receiver<ApiEvent>) -> Vec<ApiEvent> {
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e);
        }
        got
    }

    #[test]
    fn unheard_the_follower_keeps_up_with_the_head_and_publishes_nothing_old() {
        let dir = tempfile::tempdir().unwrap();
        let (_, m) = on_memory(dir.path());
        let hub = EventHub::default();
        record(&m, "a");
        record(&m, "b");
        assert_eq!(audit_step(&hub, &m, None), Some(2));
        assert_eq!(audit_step(&hub, &m, Some(1)), Some(2));
        // A stream opens: it hears what commits from then on, in order,
        // each event named for its action and numbered for its entry.
        let mut rx = hub.subscribe();
        assert_eq!(audit_step(&hub, &m, Some(2)), Some(2));
        assert!(drain(&mut rx).is_empty());
        record(&m, "c");
        record(&m, "d");
        assert_eq!(audit_step(&hub, &m, Some(2)), Some(4));
        let got = drain(&mut rx);
        let names: Vec<(&str, Option<&str>)> = got
            .iter()
            .map(|e| (e.name.as_str(), e.id.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("code_minted", Some("audit-3")),
                ("code_minted", Some("audit-4"))
            ]
        );
        let data: serde_json::Value = serde_json::from_str(&got[0].data).unwrap();
        assert_eq!(data["seq"], 3);
        assert_eq!(data["subject"], "c");
        assert_eq!(data["actor"], "operator:alice");
        assert_eq!(data["action"], "code_minted");
        assert_eq!(data["details"]["ttl"], "10m");
    }

    #[test]
    fn a_damaged_entry_is_stepped_over_but_one_not_yet_written_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let (store, m) = on_memory(dir.path());
        let hub = EventHub::default();
        let mut rx = hub.subscribe();
        record(&m, "a");
        record(&m, "b");
        record(&m, "c");
        let key = audit_key(2);
        let version = store.get(&key).unwrap().unwrap().version;
        store.put(&key, b"garbage", Some(version)).unwrap();
        assert_eq!(audit_step(&hub, &m, Some(0)), Some(3));
        let subjects: Vec<String> = drain(&mut rx)
            .iter()
            .map(|e| {
                serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["subject"].to_string()
            })
            .collect();
        assert_eq!(subjects, ["\"a\"", "\"c\""]);
        // Past the head, an unreadable record is one being written: the
        // follower stays before it.
        store.put(&audit_key(4), b"half", None).unwrap();
        assert_eq!(audit_step(&hub, &m, Some(3)), Some(3));
        assert!(drain(&mut rx).is_empty());
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn a_stream_opens_with_a_comment_says_resync_when_it_lagged_and_ends_when_stopped() {
        runtime().block_on(async {
            let hub = EventHub::default();
            let stream = stream_of(
                hub.subscribe(),
                hub.stop.subscribe(),
                Instant::now() + Duration::from_secs(60),
            );
            futures_util::pin_mut!(stream);
            for n in 0..BACKLOG + 5 {
                hub.publish(ApiEvent {
                    name: "x".into(),
                    id: Some(n.to_string()),
                    data: "{}".into(),
                });
            }
            let render = |e: Event| format!("{e:?}");
            let first = render(stream.next().await.unwrap().unwrap());
            assert!(first.contains("open"), "{first}");
            let second = render(stream.next().await.unwrap().unwrap());
            assert!(second.contains("resync"), "{second}");
            let third = render(stream.next().await.unwrap().unwrap());
            assert!(third.contains("x"), "{third}");
            hub.stop();
            let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
            assert!(
                matches!(next, Ok(None)),
                "a stopped stream ends at once, queued events or not"
            );
        });
    }

    #[test]
    fn a_stream_ends_at_its_deadline() {
        runtime().block_on(async {
            let hub = EventHub::default();
            let stream = stream_of(
                hub.subscribe(),
                hub.stop.subscribe(),
                Instant::now() + Duration::from_millis(50),
            );
            futures_util::pin_mut!(stream);
            assert!(stream.next().await.is_some(), "the opening comment");
            assert!(stream.next().await.is_none(), "ends with nothing to say");
        });
    }
}

//! The connected nodes: who is registered on which connection, with which
//! capabilities and last heartbeat, and the invocations waiting for their
//! node's answer. Pure: the caller passes the time and carries the messages.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use keygate_proto::{Invoke, InvokeResult, RefusalCode};

use super::auth::Refusal;
use crate::identity::DeviceId;

/// A connection, as the transport numbers it.
pub type ConnectionId = u64;

/// A registered node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The device it is.
    pub device_id: DeviceId,
    /// Its name, from its device record.
    pub name: String,
    /// The capabilities it registered.
    pub capabilities: Vec<String>,
    /// When it registered.
    pub registered_at: SystemTime,
    /// Its last heartbeat (or registration).
    pub last_heartbeat: SystemTime,
}

/// An invocation sent to a node, waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Waiting {
    connection: ConnectionId,
    deadline: SystemTime,
}

/// What [`NodeRuntime::sweep`] dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Invocations past their deadline (answer `Timeout`).
    pub timed_out: Vec<String>,
    /// Connections whose node missed three heartbeats (close them).
    pub silent: Vec<ConnectionId>,
}

/// Sorts nodes by device id as it reads (`kgd1…`), encoding each id once.
pub fn sort_nodes(nodes: &mut [Node]) {
    nodes.sort_by_cached_key(|n| n.device_id.to_string());
}

/// The node runtime of one gateway.
#[derive(Debug)]
pub struct NodeRuntime {
    heartbeat: Duration,
    invoke_timeout: Duration,
    nodes: HashMap<ConnectionId, Node>,
    waiting: HashMap<String, Waiting>,
    next_invocation: u64,
}

impl NodeRuntime {
    /// Nodes heartbeat every `heartbeat` (told to them in `Registered`);
    /// an invocation unanswered after `invoke_timeout` times out.
    pub fn new(heartbeat: Duration, invoke_timeout: Duration) -> Self {
        Self {
            heartbeat: heartbeat.max(Duration::from_secs(1)),
            invoke_timeout,
            nodes: HashMap::new(),
            waiting: HashMap::new(),
            next_invocation: 1,
        }
    }

    /// The heartbeat interval, whole seconds (at least 1).
    pub fn heartbeat_secs(&self) -> u32 {
        u32::try_from(self.heartbeat.as_secs()).unwrap_or(u32::MAX)
    }

    /// Records `node` as registered on `connection` (a second registration
    /// on it replaces the first).
    pub fn register(
        &mut self,
        connection: ConnectionId,
        device_id: DeviceId,
        name: String,
        capabilities: Vec<String>,
        now: SystemTime,
    ) {
        self.nodes.insert(
            connection,
            Node {
                device_id,
                name,
                capabilities,
                registered_at: now,
                last_heartbeat: now,
            },
        );
    }

    /// A heartbeat from `device_id` on `connection`.
    pub fn heartbeat(
        &mut self,
        connection: ConnectionId,
        device_id: &DeviceId,
        now: SystemTime,
    ) -> Result<(), Refusal> {
        match self.nodes.get_mut(&connection) {
            Some(node) if node.device_id == *device_id => {
                node.last_heartbeat = now;
                Ok(())
            }
            _ => Err(Refusal {
                code: RefusalCode::NotRegistered,
                reason: format!("device {device_id} has not registered on this connection"),
            }),
        }
    }

    /// The connection closed: its node leaves; returns the invocations it
    /// owed (answer `NodeUnavailable`).
    pub fn disconnected(&mut self, connection: ConnectionId) -> Vec<String> {
        self.nodes.remove(&connection);
        let mut owed: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.connection == connection)
            .map(|(id, _)| id.clone())
            .collect();
        owed.sort();
        for id in &owed {
            self.waiting.remove(id);
        }
        owed
    }

    /// Starts an invocation of `capability` on the node of `device_id`:
    /// the connection to send the `Invoke` on, and the message.
    pub fn invoke(
        &mut self,
        device_id: &DeviceId,
        capability: &str,
        payload: Vec<u8>,
        now: SystemTime,
    ) -> Result<(ConnectionId, Invoke), Refusal> {
        let Some((&connection, node)) = self
            .nodes
            .iter()
            .filter(|(_, n)| n.device_id == *device_id)
            .max_by_key(|(_, n)| n.registered_at)
        else {
            return Err(Refusal {
                code: RefusalCode::NodeUnavailable,
                reason: format!("device {device_id} is not connected"),
            });
        };
        if !node.capabilities.iter().any(|c| c == capability) {
            return Err(Refusal {
                code: RefusalCode::UnknownCapability,
                reason: format!("device {device_id} did not register capability {capability:?}"),
            });
        }
        let invocation_id = format!("inv-{}", self.next_invocation);
        self.next_invocation += 1;
        self.waiting.insert(
            invocation_id.clone(),
            Waiting {
                connection,
                deadline: now + self.invoke_timeout,
            },
        );
        Ok((
            connection,
            Invoke {
                invocation_id,
                capability: capability.to_owned(),
                payload,
            },
        ))
    }

    /// A node's answer, on `connection`: accepted only from the connection
    /// the invocation was sent on, while it is waiting.
    pub fn answered(
        &mut self,
        connection: ConnectionId,
        result: &InvokeResult,
    ) -> Result<(), Refusal> {
        match self.waiting.get(&result.invocation_id) {
            Some(w) if w.connection == connection => {
                self.waiting.remove(&result.invocation_id);
                Ok(())
            }
            _ => Err(Refusal {
                code: RefusalCode::Malformed,
                reason: format!(
                    "no invocation {:?} is waiting for this connection",
                    result.invocation_id
                ),
            }),
        }
    }

    /// Drops invocations past their deadline and nodes that missed three
    /// heartbeats.
    pub fn sweep(&mut self, now: SystemTime) -> Swept {
        let mut swept = Swept::default();
        self.waiting.retain(|id, w| {
            let keep = now <= w.deadline;
            if !keep {
                swept.timed_out.push(id.clone());
            }
            keep
        });
        let silence = self.heartbeat * 3;
        self.nodes.retain(|&connection, node| {
            let alive = now
                .duration_since(node.last_heartbeat)
                .map_or(true, |quiet| quiet <= silence);
            if !alive {
                swept.silent.push(connection);
            }
            alive
        });
        swept.timed_out.sort();
        swept.silent.sort_unstable();
        swept
    }

    /// The registered nodes, by device id.
    pub fn nodes(&self) -> Vec<Node> {
        let mut nodes = self.nodes_unsorted();
        sort_nodes(&mut nodes);
        nodes
    }

    /// The registered nodes in no order: a copy taken quickly, for callers
    /// that hold the runtime's lock and sort after letting it go
    /// ([`sort_nodes`]).
    pub fn nodes_unsorted(&self) -> Vec<Node> {
        self.nodes.values().cloned().collect()
    }

    /// How many nodes are registered.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is registered.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node registered on `connection`.
    pub fn node(&self, connection: ConnectionId) -> Option<&Node> {
        self.nodes.get(&connection)
    }

    /// The connections `device_id` registered on.
    pub fn connections_of(&self, device_id: &DeviceId) -> Vec<ConnectionId> {
        let mut found: Vec<ConnectionId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.device_id == *device_id)
            .map(|(&c, _)| c)
            .collect();
        found.sort_unstable();
        found
    }

    /// How many invocations wait for an answer.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceKey;

    fn id(seed: u8) -> DeviceId {
        DeviceKey::from_seed(&[seed; 32]).device_id()
    }

    fn runtime() -> NodeRuntime {
        NodeRuntime::new(Duration::from_secs(5), Duration::from_secs(10))
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn a_registered_node_is_listed_and_heartbeats_move_its_time() {
        let mut r = runtime();
        r.register(7, id(1), "n".into(), vec!["echo".into()], t(0));
        r.heartbeat(7, &id(1), t(4)).unwrap();
        let nodes = r.nodes();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].last_heartbeat, t(4));
        assert_eq!(nodes[0].capabilities, ["echo"]);
        assert_eq!(r.heartbeat_secs(), 5);
    }

    #[test]
    fn nodes_are_counted_and_listed_by_device_id_as_it_reads() {
        let mut r = runtime();
        assert!(r.is_empty());
        // Twelve nodes: listed unsorted, they would read in order by chance
        // once in 479 million.
        for seed in 1..=12u8 {
            r.register(u64::from(seed), id(seed), "n".into(), vec![], t(0));
        }
        assert_eq!(r.len(), 12);
        assert!(!r.is_empty());
        let listed: Vec<String> = r.nodes().iter().map(|n| n.device_id.to_string()).collect();
        let mut expected = listed.clone();
        expected.sort();
        assert_eq!(listed, expected);
        assert_eq!(r.nodes_unsorted().len(), 12);
        r.disconnected(2);
        assert_eq!(r.len(), 11);
    }

    #[test]
    fn a_heartbeat_without_registering_or_for_another_device_is_refused() {
        let mut r = runtime();
        let e = r.heartbeat(7, &id(1), t(0)).unwrap_err();
        assert_eq!(e.code, RefusalCode::NotRegistered);
        r.register(7, id(1), "n".into(), vec![], t(0));
        let e = r.heartbeat(7, &id(2), t(1)).unwrap_err();
        assert_eq!(e.code, RefusalCode::NotRegistered);
        assert_eq!(r.nodes()[0].last_heartbeat, t(0));
    }

    #[test]
    fn an_invocation_goes_to_the_node_and_only_its_connection_may_answer() {
        let mut r = runtime();
        r.register(7, id(1), "n".into(), vec!["echo".into()], t(0));
        r.register(8, id(2), "m".into(), vec!["echo".into()], t(0));
        let (conn, invoke) = r.invoke(&id(1), "echo", b"hi".to_vec(), t(1)).unwrap();
        assert_eq!(conn, 7);
        assert_eq!(invoke.payload, b"hi");
        assert_eq!(r.waiting(), 1);
        let answer = InvokeResult {
            invocation_id: invoke.invocation_id.clone(),
            ok: true,
            payload: b"hi".to_vec(),
        };
        assert!(r.answered(8, &answer).is_err(), "another node's connection");
        r.answered(7, &answer).unwrap();
        assert!(r.answered(7, &answer).is_err(), "answered twice");
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn invoking_a_capability_not_registered_or_a_node_not_connected_is_refused() {
        let mut r = runtime();
        let e = r.invoke(&id(1), "echo", vec![], t(0)).unwrap_err();
        assert_eq!(e.code, RefusalCode::NodeUnavailable);
        r.register(7, id(1), "n".into(), vec!["echo".into()], t(0));
        let e = r.invoke(&id(1), "shell", vec![], t(0)).unwrap_err();
        assert_eq!(e.code, RefusalCode::UnknownCapability);
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn unanswered_invocations_time_out_and_silent_nodes_leave() {
        let mut r = runtime();
        r.register(7, id(1), "n".into(), vec!["echo".into()], t(0));
        r.register(8, id(2), "m".into(), vec![], t(0));
        let (_, invoke) = r.invoke(&id(1), "echo", vec![], t(0)).unwrap();
        assert_eq!(r.sweep(t(10)), Swept::default(), "nothing is due yet");
        r.heartbeat(7, &id(1), t(14)).unwrap();
        let swept = r.sweep(t(16));
        assert_eq!(swept.timed_out, [invoke.invocation_id]);
        assert_eq!(swept.silent, [8], "silent for 16 s, three beats are 15");
        assert_eq!(r.nodes().len(), 1);
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn a_node_that_leaves_fails_what_it_owed() {
        let mut r = runtime();
        r.register(7, id(1), "n".into(), vec!["echo".into()], t(0));
        let (_, a) = r.invoke(&id(1), "echo", vec![], t(0)).unwrap();
        let (_, b) = r.invoke(&id(1), "echo", vec![], t(0)).unwrap();
        let mut owed = vec![a.invocation_id, b.invocation_id];
        owed.sort();
        assert_eq!(r.disconnected(7), owed);
        assert!(r.nodes().is_empty());
        assert_eq!(r.waiting(), 0);
    }

    #[test]
    fn the_newest_registration_of_a_device_gets_its_invocations() {
        let mut r = runtime();
        r.register(7, id(1), "n".into(), vec!["echo".into()], t(0));
        r.register(9, id(1), "n".into(), vec!["echo".into()], t(5));
        let (conn, _) = r.invoke(&id(1), "echo", vec![], t(6)).unwrap();
        assert_eq!(conn, 9);
    }
}

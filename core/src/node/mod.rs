//! The gateway's side of node RPC (see `PROTOCOL.md`, "Node RPC"): who may
//! call a node method ([`authorize`]), what each request does
//! ([`dispatch`]) and the connected nodes with their invocations
//! ([`NodeRuntime`]). Pure: no socket, no clock read; the
//! transport hands over the connection's certificate and the time.

mod auth;
mod dispatch;
mod runtime;

pub use auth::{NodeCredential, Refusal, authorize};
pub use dispatch::{NodeRequest, dispatch};
pub use runtime::{ConnectionId, Node, NodeRuntime, Swept};

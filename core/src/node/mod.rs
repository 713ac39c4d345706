//! The gateway's side of node RPC (see `PROTOCOL.md`, "Node RPC"): who may
//! call a node method ([`authorize`]). Pure: no socket, no clock read; the
//! transport hands over the connection's certificate and the time.

mod auth;

pub use auth::{NodeCredential, Refusal, authorize};

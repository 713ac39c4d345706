//! The gateway's side of node RPC (see `PROTOCOL.md`, "Node RPC"): who may
//! call a node method ([`authorize`]), what each request does
//! ([`dispatch`]) and the connected nodes with their invocations
//! ([`NodeRuntime`]). Pure: no socket, no clock read; the
//! transport hands over the connection's certificate and the time.

mod auth;
mod dispatch;
mod runtime;

pub use auth::{NodeCredential, PresentedLeaf, Refusal, authorize};
pub(crate) use dispatch::lock;
pub use dispatch::{NodeRequest, dispatch};
pub use runtime::{ConnectionId, Node, NodeRuntime, Swept, sort_nodes};

/// Shared by the tests of this module.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::SystemTime;

    use keygate_sdk::SecretStore;
    use keygate_store_memory::MemoryStore;

    use crate::state::{IdentityManager, IdentitySettings, StateStore};

    /// A fresh identity state on a memory store, its lock in a temporary
    /// folder (keep the folder as long as the state).
    pub(crate) fn identity(now: SystemTime) -> (tempfile::TempDir, IdentityManager) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
        let m = IdentityManager::open(
            StateStore::plain(store),
            dir.path(),
            IdentitySettings::default(),
            now,
        )
        .unwrap();
        (dir, m)
    }
}

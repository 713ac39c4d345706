//! Identity state: records in the SecretStore, the two-tier state lock, the
//! change log other processes follow, and the revocation index.

pub mod audit;
pub mod changelog;
pub mod check;
mod error;
pub mod fault;
mod follower;
mod group;
pub mod index;
pub mod lock;
pub mod manager;
pub mod operators;
mod overlay;
pub mod pairing;
mod plan;
pub mod ratelimit;
pub mod records;
#[cfg(test)]
mod shared_tests;
pub mod watch;

pub use audit::{Actor, AuditAction, AuditEvent};
pub use error::IdentityError;
pub use fault::UnreadableRecord;
pub use index::{CertStatus, DeviceState, RevocationIndex};
pub use manager::{
    Enrolled, IdentityManager, IdentitySettings, Listing, RevocationEvent, RevokeOutcome,
    StateStore,
};
pub use watch::Watcher;

/// Shared by the tests of this module.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;
    use std::time::SystemTime;

    use keygate_sdk::SecretStore;

    use super::{IdentityManager, IdentitySettings, StateStore};

    /// A state on a fresh memory store without batches (records written
    /// one by one), its lock in `dir`; the store too, to look under it.
    pub(crate) fn on_memory(dir: &std::path::Path) -> (Arc<dyn SecretStore>, IdentityManager) {
        let store: Arc<dyn SecretStore> = Arc::new(keygate_store_memory::MemoryStore::new());
        let m = IdentityManager::open(
            StateStore::plain(store.clone()),
            dir,
            IdentitySettings::default(),
            SystemTime::now(),
        )
        .unwrap();
        (store, m)
    }
}

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

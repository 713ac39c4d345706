//! Identity state: records in the SecretStore, the two-tier state lock, the
//! change log other processes follow, and the revocation index.

pub mod changelog;
mod error;
pub mod index;
pub mod lock;
pub mod manager;
pub mod pairing;
pub mod records;
mod refresh;
pub mod watch;

pub use error::IdentityError;
pub use index::{CertStatus, RevocationIndex};
pub use manager::{Enrolled, IdentityManager, IdentitySettings, RevocationEvent, RevokeOutcome};
pub use watch::Watcher;

//! Everything abi_stable-specific. Plugin authors and host code use the
//! SDK's own types; this module is what would change if the ABI layer were
//! replaced.

pub mod approval;
pub mod context;
pub mod module;
pub mod store;
pub mod transport;

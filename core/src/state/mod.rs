//! State of the identity core.

pub mod lock;

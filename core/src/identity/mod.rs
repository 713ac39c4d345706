//! Device identity.

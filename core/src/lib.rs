//! # keygate-core
//!
//! The Keygate host. It knows plugins only through the `keygate-sdk` traits
//! and its registry; the `keygate` binary is what links the built-in plugin
//! crates.
#![forbid(unsafe_code)]

pub mod admin_api;
pub mod ca;
pub mod config;
pub mod device;
pub mod gateway;
pub mod identity;
pub mod metrics;
pub mod node;
pub mod pairing;
pub mod plugin_host;
pub mod state;
pub mod time;

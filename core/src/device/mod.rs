//! The device side: what a node keeps about itself (its key, the pairing
//! it waits on, the certificate it was issued) and how it reads a pairing
//! code from its operator.
//!
//! A node keeps all of it in its own SecretStore under its own state dir,
//! never in the gateway's: the private key never leaves the device.
//!
//! Over the network: [`link`] is one connection to a gateway, [`enrol`]
//! pairs over it, and [`agent`] runs the paired node (register,
//! heartbeat, invocations, renewal, reconnection), timed by [`schedule`].

pub mod agent;
pub mod capability;
pub mod code_input;
pub mod enrol;
pub mod identity;
pub mod link;
pub mod pairing;
pub mod plugins;
pub mod schedule;

pub use code_input::{CodeInputError, read_code};
pub use identity::{Credentials, DeviceIdentity, DeviceIdentityError, PendingPairing};

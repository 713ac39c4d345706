//! # keygate-sdk
//!
//! What a Keygate plugin compiles against. A plugin crate depends on this
//! crate alone, implements one of the three plugin traits ([`SecretStore`],
//! [`ApprovalPolicy`], [`Transport`]) plus its constructor trait
//! ([`StorePlugin`], [`ApprovalPlugin`], [`TransportPlugin`]), and declares
//! itself with [`export_plugins!`] (a `cdylib` loaded by path) or
//! [`register_builtin_plugins!`] (a crate linked into the `keygate` binary).
//!
//! ```ignore
//! use keygate_sdk::{PluginContext, PluginError, SecretStore, StorePlugin, Version, Versioned};
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config { path: std::path::PathBuf }
//!
//! struct MyStore { /* ... */ }
//! impl SecretStore for MyStore { /* get, put, delete, list */ }
//! impl StorePlugin for MyStore {
//!     const NAME: &'static str = "my-store";
//!     const DESCRIPTION: &'static str = "What it is, in one line";
//!     fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError> {
//!         let config: Config = keygate_sdk::config::parse(config)?;
//!         /* ... */
//!     }
//! }
//! keygate_sdk::export_plugins! { stores: [MyStore] }
//! ```
//!
//! Everything a plugin sees is plain Rust: `String`, `Vec<u8>`, `Option`
//! and the SDK's own types. What helps a plugin do its job the same way as
//! every other plugin:
//! - [`config::parse`] reads the config table into a serde type, with the
//!   line and the field in every error;
//! - [`DeviceId`] is a checked device id (`kgd1…`), for policies and for
//!   config that lists devices;
//! - [`validate_key`] / [`validate_prefix`] hold the store key rules, and
//!   [`PluginError::version_conflict`] is the one compare-and-swap error.
//!
//! ## Store capabilities
//! A store may do more than [`SecretStore`] asks. Each extra is a trait of
//! its own that the store implements beside `SecretStore`, and a marker
//! after the type in the export macro:
//!
//! ```ignore
//! impl keygate_sdk::BatchStore for MyStore { /* apply_batch */ }
//! keygate_sdk::export_plugins! { stores: [MyStore: batch] }
//! ```
//!
//! - `batch` ([`BatchStore`]): several writes applied all or nothing, as
//!   one step against crashes and other writers, so Keygate can commit
//!   one mutation's records and its change-log entry together.
//! - `watch` ([`WatchStore`]): being told when a write committed, by any
//!   process sharing the store, so gateways on several hosts see each
//!   other's revocations at once instead of at their next poll. Both:
//!   `stores: [MyStore: batch + watch]`.
//!
//! A store without a marker is exported as before; a marked store must
//! implement the trait or the crate does not compile. The host learns a
//! store's capabilities when it constructs it, so a library built before a
//! capability existed still loads, as a store without it.
//!
//! ## Guarantees at the boundary
//! - Calls are synchronous and objects are `Send + Sync`; no future or
//!   runtime crosses the boundary.
//! - A panic inside a plugin method comes back to the host as an
//!   [`ErrorKind::Internal`] error; the host keeps running.
//! - The host checks the SDK version and the full type layout when it opens a
//!   library, and refuses a mismatch with a message naming both versions.
//! - A plugin logs through [`PluginContext`]; its lines reach the host's log
//!   under the plugin's name.
//!
//! The ABI itself (abi_stable's `#[repr(C)]` types and trait objects) is a
//! hidden layer of this crate; the host's side of it (opening libraries,
//! the handles it calls plugins through) is the separate crate
//! `keygate-sdk-host`, which plugins never depend on.
//!
//! ## Evolution
//! The host refuses a library whose SDK version is not compatible with its
//! own by semver as abi_stable reads it: while the SDK is 0.x, `0.2.z`
//! libraries load in any `0.2.z` host, and a `0.2` host refuses `0.1`
//! libraries with a message that says to rebuild them against keygate-sdk
//! 0.2. The root module is a prefix type: a compatible release may append
//! constructors after the last field, and a newer host reads them as absent
//! from an older library (it checks each library against the root module of
//! the release the library was built with, since abi_stable alone refuses a
//! library with fewer fields than the host's type). An older host loads a
//! newer library and never calls what it does not know. The traits
//! themselves never grow; a new capability of a plugin kind comes as a new
//! trait offered through a new constructor. The `batch` capability is the
//! first: its constructor came within 0.2, so 0.2.0 libraries still load
//! (as stores without it) and libraries built with it load in 0.2.0 hosts.
//! `watch` came the same way, with a constructor after `batch`'s.
#![allow(non_local_definitions)]

#[doc(hidden)]
pub mod abi;
mod approval;
mod batch;
pub mod config;
mod context;
pub mod device_id;
mod error;
mod export;
pub mod key;
mod plugin;
mod store;
mod transport;
mod watch;

pub use approval::{ApprovalPolicy, ApprovalRequest, Decision, PairingMethod};
pub use batch::{BatchOp, BatchStore};
pub use context::{LogLevel, Logger, PluginContext};
pub use device_id::{DEVICE_ID_HRP, DEVICE_ID_LEN, DeviceId, DeviceIdError, Ed25519PublicKey};
pub use error::{ErrorKind, PluginError};
pub use key::{validate_key, validate_prefix};
pub use plugin::{ApprovalPlugin, PluginKind, StorePlugin, TransportPlugin};
pub use store::{SecretStore, Version, Versioned};
pub use transport::{
    ConnectParams, ConnectionId, ConnectionInfo, FrameReceived, ListenParams, ServerTrust,
    StreamId, TlsIdentity, Transport, TransportCallbacks, TransportEvent, TransportHost,
};
pub use watch::WatchStore;

/// The version of this SDK, as written into every library's manifest.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The symbol under which a plugin library exports its root module.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// What the export macros expand to. Not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::abi::approval::ApprovalBox;
    pub use crate::abi::batch::AbiStoreParts;
    pub use crate::abi::context::AbiPluginContext;
    pub use crate::abi::error::AbiResult;
    pub use crate::abi::module::{
        AbiLibraryManifest, Entry, PluginLibrary, PluginLibraryRef, approval_entry,
        batch_store_entry, batch_watch_store_entry, construct, construct_store,
        construct_store_parts, leak_library, manifest_of, store_entry, transport_entry,
        watch_store_entry,
    };
    pub use crate::abi::registry::BuiltinLibrary;
    pub use crate::abi::store::StoreBox;
    pub use crate::abi::transport::TransportBox;
    pub use crate::abi::watch::AbiWatchedParts;
    pub use crate::plugin::PluginKind;
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::std_types::RStr;
    pub use inventory;
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_is_abi_stables() {
        assert_eq!(
            super::ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}

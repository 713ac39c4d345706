//! # keygate-sdk
//!
//! The stable ABI of Keygate plugins. A plugin crate depends on this crate
//! alone, implements one of the three plugin traits ([`SecretStore`],
//! [`ApprovalPolicy`], [`Transport`]) plus its constructor trait
//! ([`StorePlugin`], [`ApprovalPlugin`], [`TransportPlugin`]), and declares
//! itself with [`export_plugins!`] (a `cdylib` loaded by path) or
//! [`register_builtin_plugins!`] (a crate linked into the `keygate` binary).
//!
//! ```ignore
//! use keygate_sdk::{PluginContext, PluginError, SecretStore, StorePlugin, Version, Versioned};
//!
//! struct MyStore { /* ... */ }
//! impl SecretStore for MyStore { /* get, put, delete, list */ }
//! impl StorePlugin for MyStore {
//!     const NAME: &'static str = "my-store";
//!     const DESCRIPTION: &'static str = "What it is, in one line";
//!     fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError> { /* ... */ }
//! }
//! keygate_sdk::export_plugins! { stores: [MyStore] }
//! ```
//!
//! ## Guarantees at the boundary
//! - No `std` type, future or runtime crosses it; calls are synchronous and
//!   objects are `Send + Sync`.
//! - A panic inside a plugin method comes back to the host as an
//!   [`ErrorKind::Internal`] error; the host keeps running.
//! - The host checks the SDK version and the full type layout when it opens a
//!   library, and refuses a mismatch with a message naming both versions.
//! - A plugin logs through [`PluginContext`]; its lines reach the host's log
//!   under the plugin's name.
//!
//! ## Evolution
//! The host refuses a library whose SDK version is not compatible with its
//! own by semver as abi_stable reads it: while the SDK is 0.x, `0.1.z`
//! libraries load in any `0.1.z` host and a `0.2` host refuses them (with a
//! message naming both versions). The root module is a prefix type: a
//! compatible release may append constructors after the last field, and a
//! newer host reads them as absent from an older library. The traits
//! themselves never grow; a new capability of a plugin kind comes as a new
//! trait offered through a new constructor.
#![allow(non_local_definitions)]

pub mod abi;
mod approval;
mod context;
mod error;
mod export;
pub mod host;
pub mod key;
mod store;
mod transport;

pub use abi::module::{
    ApprovalPlugin, LibraryManifest, PluginInfo, PluginKind, StorePlugin, TransportPlugin,
};
pub use approval::{ApprovalPolicy, ApprovalRequest, Decision, PairingMethod};
pub use context::{LogLevel, Logger, PluginContext};
pub use error::{ErrorKind, PluginError};
pub use key::{validate_key, validate_prefix};
pub use store::{SecretStore, Version, Versioned};
pub use transport::{
    ConnectParams, ConnectionId, ConnectionInfo, FrameReceived, ListenParams, ServerTrust,
    StreamId, TlsIdentity, Transport, TransportCallbacks, TransportEvent, TransportHost,
};

/// ABI-stable container types used in a few plugin-facing structs
/// (transport parameters and events).
pub mod types {
    pub use abi_stable::std_types::{ROption, RString, RVec};
}

/// The version of this SDK, as written into every library's manifest.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The symbol under which a plugin library exports its root module.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[doc(hidden)]
pub mod __private {
    pub use crate::abi::approval::ApprovalBox;
    pub use crate::abi::module::{
        Entry, LibraryManifest, PluginKind, PluginLibrary, PluginLibraryRef, approval_entry,
        construct, manifest_of, store_entry, transport_entry,
    };
    pub use crate::abi::store::StoreBox;
    pub use crate::abi::transport::TransportBox;
    pub use crate::host::BuiltinLibrary;
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
    pub use abi_stable::std_types::{RResult, RStr};
    pub use inventory;

    /// Leaks the root module into its static prefix form.
    pub fn leak_library(lib: PluginLibrary) -> PluginLibraryRef {
        use abi_stable::prefix_type::PrefixTypeTrait;
        lib.leak_into_prefix()
    }
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

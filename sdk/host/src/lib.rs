//! # keygate-sdk-host
//!
//! The host's side of the Keygate plugin ABI, apart from what plugin
//! authors read (`keygate-sdk`), as nushell keeps `nu-plugin-engine` apart
//! from `nu-plugin`:
//! - [`Library`] opens a plugin library by path (checking its SDK version
//!   and type layout) or takes a built-in one from the registry that
//!   `register_builtin_plugins!` fills, and reads its [`LibraryManifest`];
//! - its constructors hand out [`StoreHandle`], [`ApprovalHandle`] and
//!   [`TransportHandle`], which implement the SDK traits by calling through
//!   the ABI, so host code cannot tell a built-in from a library;
//! - a store exported with the batch capability comes back as a
//!   [`StoreHandle`] that [`has_batch`](StoreHandle::has_batch), and
//!   [`StoreHandle::into_batch`] makes it a [`BatchStoreHandle`]
//!   (`SecretStore` + `BatchStore` on the one store); one exported with
//!   the watch capability gives its [`WatchHandle`] through
//!   [`StoreHandle::take_watch`];
//! - [`LoadError`] says, in one line naming the file, why a library was
//!   refused.
//!
//! Policy (which file, checksums, config slots) belongs to the host
//! (`keygate-core`); this crate only speaks the ABI.
#![forbid(unsafe_code)]

mod handles;
mod library;
mod load_error;
mod manifest;

pub use handles::{ApprovalHandle, BatchStoreHandle, StoreHandle, TransportHandle, WatchHandle};
pub use library::{Library, Origin, host_sdk_version};
pub use load_error::LoadError;
pub use manifest::{LibraryManifest, PluginInfo};

//! The root module every plugin library exports, its manifest, and the
//! pieces the export macros fill it with.

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RStr, RString, RVec},
};

use super::approval::{ApprovalBox, export_approval};
use super::batch::AbiStoreParts;
use super::context::AbiPluginContext;
use super::error::{AbiResult, guarded};
use super::store::StoreBox;
use super::transport::{TransportBox, export_transport};
use super::watch::{AbiWatchedParts, export_batch, export_batch_watch, export_plain, export_watch};
use crate::{
    ApprovalPlugin, BatchStore, PluginContext, PluginError, PluginKind, StorePlugin,
    TransportPlugin, WatchStore,
};

/// One plugin in a library's manifest.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct AbiPluginInfo {
    /// The name config refers to it by.
    pub name: RString,
    /// What it is.
    pub kind: PluginKind,
    /// One line for `keygate plugins list`.
    pub description: RString,
}

/// What a library declares about itself.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct AbiLibraryManifest {
    /// The `keygate-sdk` version the library was built with.
    pub sdk_version: RString,
    /// The plugins it holds.
    pub plugins: RVec<AbiPluginInfo>,
}

/// The root module of a plugin library. A prefix type: a compatible SDK
/// release appends fields after the last one, never anything else.
///
/// # History
/// - 0.2.0: `manifest`, `new_store`, `new_approval`, `new_transport` (the
///   prefix: every 0.2 library has them). Frozen as
///   [`v0_2_0::PluginLibrary`](super::shape::v0_2_0::PluginLibrary).
/// - Appended in the 0.2 series: `new_store_parts` (store capabilities,
///   the first being `batch`). Frozen as
///   [`batch::PluginLibrary`](super::shape::batch::PluginLibrary).
/// - Appended after it: `new_store_watched` (the `watch` capability).
///
/// # Older libraries, older hosts
/// abi_stable lets a host whose root module is a *prefix* of the library's
/// load it (an older host ignores the fields it does not know), but it
/// refuses a library with *fewer* fields than the host's type ("too many
/// fields"), whatever `missing_field` says. So the host does not check a
/// library against this type alone: [`LibraryModule::init`](super::shape::LibraryModule::init)
/// checks it against the 0.2.0 shape first, and against this one only when
/// the library declares more fields than 0.2.0 had. A library built
/// before `new_store_parts` is then used through its 0.2.0 fields, and the
/// accessor for the new one answers `None`; likewise a library built
/// before `new_store_watched` is checked against the frozen shape that
/// ends at `new_store_parts`.
///
/// Never reorder, remove or change a field, and never move
/// `last_prefix_field`: append, document the addition here, and keep a
/// frozen copy of the previous shape in [`shape`](super::shape) when a
/// field is added in a new release.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginLibraryRef)))]
#[sabi(missing_field(option))]
pub struct PluginLibrary {
    /// The manifest.
    pub manifest: extern "C" fn() -> AbiLibraryManifest,
    /// Constructs the store plugin named `name`.
    pub new_store: extern "C" fn(
        name: RStr<'_>,
        config: RStr<'_>,
        ctx: AbiPluginContext,
    ) -> AbiResult<StoreBox>,
    /// Constructs the approval plugin named `name`.
    pub new_approval: extern "C" fn(
        name: RStr<'_>,
        config: RStr<'_>,
        ctx: AbiPluginContext,
    ) -> AbiResult<ApprovalBox>,
    /// Constructs the transport plugin named `name`.
    #[sabi(last_prefix_field)]
    pub new_transport: extern "C" fn(
        name: RStr<'_>,
        config: RStr<'_>,
        ctx: AbiPluginContext,
    ) -> AbiResult<TransportBox>,
    /// Constructs the store plugin `name` once and returns it with every
    /// capability it was exported with: its [`StoreBox`] and, for a store
    /// marked `batch`, its batch object around the same store. Optional:
    /// absent from libraries built before it existed (the accessor gives
    /// `None`), and the host then uses `new_store`.
    pub new_store_parts: extern "C" fn(
        name: RStr<'_>,
        config: RStr<'_>,
        ctx: AbiPluginContext,
    ) -> AbiResult<AbiStoreParts>,
    /// Constructs the store plugin `name` once and returns it with every
    /// capability, `watch` included: what `new_store_parts` returns and,
    /// for a store marked `watch`, its watch object around the same store.
    /// Optional: absent from libraries built before it existed, and the
    /// host then uses `new_store_parts` (or `new_store`).
    pub new_store_watched: extern "C" fn(
        name: RStr<'_>,
        config: RStr<'_>,
        ctx: AbiPluginContext,
    ) -> AbiResult<AbiWatchedParts>,
}

impl RootModule for PluginLibraryRef {
    declare_root_module_statics! {PluginLibraryRef}
    const BASE_NAME: &'static str = "keygate_plugin";
    const NAME: &'static str = "keygate_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// Leaks the root module into its static prefix form.
pub fn leak_library(lib: PluginLibrary) -> PluginLibraryRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    lib.leak_into_prefix()
}

/// One constructor in a library's table; built by the export macros.
pub struct Entry<B> {
    info: fn() -> AbiPluginInfo,
    name: &'static str,
    build: fn(&str, PluginContext) -> Result<B, PluginError>,
}

fn info(name: &str, kind: PluginKind, description: &str) -> AbiPluginInfo {
    AbiPluginInfo {
        name: name.into(),
        kind,
        description: description.into(),
    }
}

/// The entry of store plugin `S`, without capabilities.
pub fn store_entry<S: StorePlugin>() -> Entry<AbiWatchedParts> {
    Entry {
        info: || info(S::NAME, PluginKind::Store, S::DESCRIPTION),
        name: S::NAME,
        build: |config, ctx| S::from_config(config, ctx).map(export_plain),
    }
}

/// The entry of store plugin `S` with the `batch` capability.
pub fn batch_store_entry<S: StorePlugin + BatchStore>() -> Entry<AbiWatchedParts> {
    Entry {
        info: || info(S::NAME, PluginKind::Store, S::DESCRIPTION),
        name: S::NAME,
        build: |config, ctx| S::from_config(config, ctx).map(export_batch),
    }
}

/// The entry of store plugin `S` with the `watch` capability.
pub fn watch_store_entry<S: StorePlugin + WatchStore>() -> Entry<AbiWatchedParts> {
    Entry {
        info: || info(S::NAME, PluginKind::Store, S::DESCRIPTION),
        name: S::NAME,
        build: |config, ctx| S::from_config(config, ctx).map(export_watch),
    }
}

/// The entry of store plugin `S` with the `batch` and `watch`
/// capabilities.
pub fn batch_watch_store_entry<S: StorePlugin + BatchStore + WatchStore>() -> Entry<AbiWatchedParts>
{
    Entry {
        info: || info(S::NAME, PluginKind::Store, S::DESCRIPTION),
        name: S::NAME,
        build: |config, ctx| S::from_config(config, ctx).map(export_batch_watch),
    }
}

/// The entry of approval plugin `P`.
pub fn approval_entry<P: ApprovalPlugin>() -> Entry<ApprovalBox> {
    Entry {
        info: || info(P::NAME, PluginKind::Approval, P::DESCRIPTION),
        name: P::NAME,
        build: |config, ctx| P::from_config(config, ctx).map(export_approval),
    }
}

/// The entry of transport plugin `T`.
pub fn transport_entry<T: TransportPlugin>() -> Entry<TransportBox> {
    Entry {
        info: || info(T::NAME, PluginKind::Transport, T::DESCRIPTION),
        name: T::NAME,
        build: |config, ctx| T::from_config(config, ctx).map(export_transport),
    }
}

/// The body of a generated `manifest` function.
pub fn manifest_of(
    stores: &[Entry<AbiWatchedParts>],
    approvals: &[Entry<ApprovalBox>],
    transports: &[Entry<TransportBox>],
) -> AbiLibraryManifest {
    let plugins = stores
        .iter()
        .map(|e| (e.info)())
        .chain(approvals.iter().map(|e| (e.info)()))
        .chain(transports.iter().map(|e| (e.info)()))
        .collect();
    AbiLibraryManifest {
        sdk_version: crate::SDK_VERSION.into(),
        plugins,
    }
}

/// The body of a generated constructor: finds `name` and builds it, with
/// panics caught.
pub fn construct<B>(
    kind: PluginKind,
    entries: &[Entry<B>],
    name: RStr<'_>,
    config: RStr<'_>,
    ctx: AbiPluginContext,
) -> AbiResult<B> {
    guarded("constructor", || {
        let entry = entries
            .iter()
            .find(|e| e.name == name.as_str())
            .ok_or_else(|| {
                let known: Vec<&str> = entries.iter().map(|e| e.name).collect();
                PluginError::not_found(format!(
                    "no {kind} plugin named {:?} in this library (it has: {})",
                    name.as_str(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ))
            })?;
        (entry.build)(config.as_str(), ctx.into())
    })
}

/// The body of a generated `new_store`, for hosts that predate
/// `new_store_parts`: the store alone (its capability objects, if any, are
/// dropped; the store lives on in the returned box).
pub fn construct_store(
    entries: &[Entry<AbiWatchedParts>],
    name: RStr<'_>,
    config: RStr<'_>,
    ctx: AbiPluginContext,
) -> AbiResult<StoreBox> {
    construct(PluginKind::Store, entries, name, config, ctx).map(|all| all.parts.store)
}

/// The body of a generated `new_store_parts`, for hosts that predate
/// `new_store_watched`: the store and its batch object (the watch object,
/// if any, is dropped).
pub fn construct_store_parts(
    entries: &[Entry<AbiWatchedParts>],
    name: RStr<'_>,
    config: RStr<'_>,
    ctx: AbiPluginContext,
) -> AbiResult<AbiStoreParts> {
    construct(PluginKind::Store, entries, name, config, ctx).map(|all| all.parts)
}

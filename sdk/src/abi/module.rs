//! The root module every plugin library exports, and the pieces the export
//! macros fill it with.

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RString, RVec},
};

use super::approval::{ApprovalBox, export_approval};
use super::store::{StoreBox, export_store, guarded};
use super::transport::{TransportBox, export_transport};
use crate::{ApprovalPolicy, PluginContext, PluginError, SecretStore, Transport};

/// The three kinds of plugin.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// A [`SecretStore`].
    Store = 0,
    /// An [`ApprovalPolicy`].
    Approval = 1,
    /// A [`Transport`].
    Transport = 2,
}

impl PluginKind {
    /// The config slot name: `store`, `approval` or `transport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Approval => "approval",
            Self::Transport => "transport",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One plugin in a library's manifest.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
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
pub struct LibraryManifest {
    /// The `keygate-sdk` version the library was built with.
    pub sdk_version: RString,
    /// The plugins it holds.
    pub plugins: RVec<PluginInfo>,
}

/// The root module of a plugin library. A prefix type: a later compatible
/// SDK release appends fields after the last one, and a newer host reads
/// them as `None` from an older library (`missing_field(option)`).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginLibraryRef)))]
#[sabi(missing_field(option))]
pub struct PluginLibrary {
    /// The manifest.
    pub manifest: extern "C" fn() -> LibraryManifest,
    /// Constructs the store plugin named `name`.
    pub new_store: extern "C" fn(
        name: RStr<'_>,
        config: RStr<'_>,
        ctx: PluginContext,
    ) -> RResult<StoreBox, PluginError>,
    /// Constructs the approval plugin named `name`.
    pub new_approval: extern "C" fn(
        name: RStr<'_>,
        config: RStr<'_>,
        ctx: PluginContext,
    ) -> RResult<ApprovalBox, PluginError>,
    /// Constructs the transport plugin named `name`.
    #[sabi(last_prefix_field)]
    pub new_transport: extern "C" fn(
        name: RStr<'_>,
        config: RStr<'_>,
        ctx: PluginContext,
    ) -> RResult<TransportBox, PluginError>,
}

impl RootModule for PluginLibraryRef {
    declare_root_module_statics! {PluginLibraryRef}
    const BASE_NAME: &'static str = "keygate_plugin";
    const NAME: &'static str = "keygate_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// A store plugin: a [`SecretStore`] with a name and a constructor.
pub trait StorePlugin: SecretStore + Sized {
    /// The name operators write in `use =` or `name =`.
    const NAME: &'static str;
    /// One line shown by `keygate plugins list`.
    const DESCRIPTION: &'static str;
    /// Builds the store from its config table, given as TOML text (an empty
    /// string when the operator wrote none). A bad config is an
    /// [`ErrorKind::Invalid`](crate::ErrorKind::Invalid) error whose message
    /// names the field.
    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError>;
}

/// An approval plugin: an [`ApprovalPolicy`] with a name and a constructor.
pub trait ApprovalPlugin: ApprovalPolicy + Sized {
    /// The name operators write in `use =` or `name =`.
    const NAME: &'static str;
    /// One line shown by `keygate plugins list`.
    const DESCRIPTION: &'static str;
    /// Builds the policy from its config table (TOML text).
    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError>;
}

/// A transport plugin: a [`Transport`] with a name and a constructor.
pub trait TransportPlugin: Transport + Sized {
    /// The name operators write in `use =` or `name =`.
    const NAME: &'static str;
    /// One line shown by `keygate plugins list`.
    const DESCRIPTION: &'static str;
    /// Builds the transport from its config table (TOML text).
    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError>;
}

/// One constructor in a library's table; built by the export macros.
#[doc(hidden)]
pub struct Entry<B> {
    pub info: fn() -> PluginInfo,
    pub name: &'static str,
    pub build: fn(&str, PluginContext) -> Result<B, PluginError>,
}

fn info(name: &str, kind: PluginKind, description: &str) -> PluginInfo {
    PluginInfo {
        name: name.into(),
        kind,
        description: description.into(),
    }
}

#[doc(hidden)]
pub fn store_entry<S: StorePlugin>() -> Entry<StoreBox> {
    Entry {
        info: || info(S::NAME, PluginKind::Store, S::DESCRIPTION),
        name: S::NAME,
        build: |config, ctx| S::from_config(config, ctx).map(export_store),
    }
}

#[doc(hidden)]
pub fn approval_entry<P: ApprovalPlugin>() -> Entry<ApprovalBox> {
    Entry {
        info: || info(P::NAME, PluginKind::Approval, P::DESCRIPTION),
        name: P::NAME,
        build: |config, ctx| P::from_config(config, ctx).map(export_approval),
    }
}

#[doc(hidden)]
pub fn transport_entry<T: TransportPlugin>() -> Entry<TransportBox> {
    Entry {
        info: || info(T::NAME, PluginKind::Transport, T::DESCRIPTION),
        name: T::NAME,
        build: |config, ctx| T::from_config(config, ctx).map(export_transport),
    }
}

/// The body of a generated `manifest` function.
#[doc(hidden)]
pub fn manifest_of(
    stores: &[Entry<StoreBox>],
    approvals: &[Entry<ApprovalBox>],
    transports: &[Entry<TransportBox>],
) -> LibraryManifest {
    let plugins = stores
        .iter()
        .map(|e| (e.info)())
        .chain(approvals.iter().map(|e| (e.info)()))
        .chain(transports.iter().map(|e| (e.info)()))
        .collect();
    LibraryManifest {
        sdk_version: crate::SDK_VERSION.into(),
        plugins,
    }
}

/// The body of a generated constructor: finds `name` and builds it, with
/// panics caught.
#[doc(hidden)]
pub fn construct<B>(
    kind: PluginKind,
    entries: &[Entry<B>],
    name: RStr<'_>,
    config: RStr<'_>,
    ctx: PluginContext,
) -> RResult<B, PluginError> {
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
        (entry.build)(config.as_str(), ctx)
    })
}

//! [`Library`]: a plugin library, built-in or opened from a file.

use std::path::{Path, PathBuf};

use abi_stable::library::lib_header_from_path;
use abi_stable::std_types::RStr;
use keygate_sdk::abi::context::AbiPluginContext;
use keygate_sdk::abi::error::from_abi;
use keygate_sdk::abi::registry::BuiltinLibrary;
use keygate_sdk::abi::shape::LibraryModule;
use keygate_sdk::{PluginContext, PluginError, SDK_VERSION};

use crate::handles::{ApprovalHandle, StoreHandle, TransportHandle};
use crate::load_error::{LoadError, map_error};
use crate::manifest::LibraryManifest;

/// Where a library came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Linked into the host binary, from this crate.
    Builtin(&'static str),
    /// Loaded from this file.
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(krate) => write!(f, "built-in ({krate})"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A loaded plugin library (built-in or from a file). Libraries are never
/// unloaded; a `Library` is a cheap handle on one.
#[derive(Clone)]
pub struct Library {
    origin: Origin,
    module: LibraryModule,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Library {
    /// Every built-in library linked into this binary (registered with
    /// `keygate_sdk::register_builtin_plugins!`), ordered by crate name.
    pub fn builtins() -> Vec<Library> {
        let mut libs: Vec<Library> = keygate_sdk::__private::inventory::iter::<BuiltinLibrary>
            .into_iter()
            .map(|b| Library {
                origin: Origin::Builtin(b.crate_name()),
                module: b.module().into(),
            })
            .collect();
        libs.sort_by_key(|l| match &l.origin {
            Origin::Builtin(name) => *name,
            Origin::File(_) => "",
        });
        libs
    }

    /// Opens the library at `path`, checks its SDK version and ABI layout
    /// and initialises its root module.
    ///
    /// A library built with an earlier 0.2 SDK, whose root module has fewer
    /// constructors than this host's, loads too: its layout is checked
    /// against the shape of the SDK release it was built with, and the
    /// constructors it lacks count as absent (see
    /// [`has_store_parts`](Self::has_store_parts)).
    pub fn open(path: &Path) -> Result<Library, LoadError> {
        Self::open_as(path, path)
    }

    /// Like [`Library::open`], but errors and [`Library::origin`] name
    /// `display` (used when the host opens the file through a descriptor it
    /// has already checksummed, e.g. `/proc/self/fd/N`).
    pub fn open_as(load_path: &Path, display: &Path) -> Result<Library, LoadError> {
        let path = display.to_owned();
        if !load_path.exists() {
            return Err(LoadError::Missing { path });
        }
        // The loader searches the library path for bare names; a plugin is
        // always a file the operator named.
        let load_path = if load_path.components().count() == 1 {
            Path::new(".").join(load_path)
        } else {
            load_path.to_owned()
        };
        let fail = |e| map_error(e, &path, &load_path);
        let header = lib_header_from_path(&load_path).map_err(fail)?;
        let module = LibraryModule::init(header).map_err(fail)?;
        Ok(Library {
            origin: Origin::File(path),
            module,
        })
    }

    /// Where it came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// What it holds.
    pub fn manifest(&self) -> LibraryManifest {
        (self.module.manifest())().into()
    }

    /// Constructs the store plugin `name` with its config table (TOML text).
    ///
    /// Uses the newest constructor the library has (`new_store_watched`,
    /// else `new_store_parts`, else `new_store`), so the handle carries
    /// every capability the store was exported with that the library's SDK
    /// knew ([`StoreHandle::has_batch`], [`StoreHandle::has_watch`]).
    pub fn new_store(
        &self,
        name: &str,
        config: &str,
        ctx: PluginContext,
    ) -> Result<StoreHandle, PluginError> {
        let ctx = AbiPluginContext::from(ctx);
        let (name, config) = (RStr::from(name), RStr::from(config));
        if let Some(new_store_watched) = self.module.new_store_watched() {
            return from_abi(new_store_watched(name, config, ctx).map(StoreHandle::from_watched));
        }
        match self.module.new_store_parts() {
            Some(new_store_parts) => {
                from_abi(new_store_parts(name, config, ctx).map(StoreHandle::from_parts))
            }
            None => from_abi((self.module.new_store())(name, config, ctx).map(StoreHandle::new)),
        }
    }

    /// Whether the library has the `new_store_parts` constructor (built
    /// with an SDK that knows store capabilities). Whether a given store
    /// has a capability shows on its handle.
    pub fn has_store_parts(&self) -> bool {
        self.module.new_store_parts().is_some()
    }

    /// Whether the library has the `new_store_watched` constructor (built
    /// with an SDK that knows the `watch` capability).
    pub fn has_store_watched(&self) -> bool {
        self.module.new_store_watched().is_some()
    }

    /// Constructs the approval plugin `name`.
    pub fn new_approval(
        &self,
        name: &str,
        config: &str,
        ctx: PluginContext,
    ) -> Result<ApprovalHandle, PluginError> {
        let ctx = AbiPluginContext::from(ctx);
        from_abi(
            (self.module.new_approval())(RStr::from(name), RStr::from(config), ctx)
                .map(ApprovalHandle::new),
        )
    }

    /// Constructs the transport plugin `name`.
    pub fn new_transport(
        &self,
        name: &str,
        config: &str,
        ctx: PluginContext,
    ) -> Result<TransportHandle, PluginError> {
        let ctx = AbiPluginContext::from(ctx);
        from_abi(
            (self.module.new_transport())(RStr::from(name), RStr::from(config), ctx)
                .map(TransportHandle::new),
        )
    }
}

/// The SDK version this host was built with.
pub fn host_sdk_version() -> &'static str {
    SDK_VERSION
}

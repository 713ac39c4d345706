//! The registry of built-in libraries: `register_builtin_plugins!` submits
//! to it from plugin crates (which depend on keygate-sdk alone), and
//! `keygate-sdk-host` iterates it.

use super::module::PluginLibraryRef;

/// A built-in library registered with `register_builtin_plugins!`.
pub struct BuiltinLibrary {
    crate_name: &'static str,
    module: fn() -> PluginLibraryRef,
}

impl BuiltinLibrary {
    /// A registration of `module` by the crate `crate_name`.
    pub const fn new(crate_name: &'static str, module: fn() -> PluginLibraryRef) -> Self {
        Self { crate_name, module }
    }

    /// The crate that registered it.
    pub fn crate_name(&self) -> &'static str {
        self.crate_name
    }

    /// Its root module.
    pub fn module(&self) -> PluginLibraryRef {
        (self.module)()
    }
}

inventory::collect!(BuiltinLibrary);

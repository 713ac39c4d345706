//! What a library declares about itself, as the host reads it.

use keygate_sdk::PluginKind;
use keygate_sdk::abi::module::{AbiLibraryManifest, AbiPluginInfo};

/// One plugin in a library's manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The name config refers to it by.
    pub name: String,
    /// What it is.
    pub kind: PluginKind,
    /// One line for `keygate plugins list`.
    pub description: String,
}

/// What a library declares about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryManifest {
    /// The `keygate-sdk` version the library was built with.
    pub sdk_version: String,
    /// The plugins it holds.
    pub plugins: Vec<PluginInfo>,
}

impl From<AbiPluginInfo> for PluginInfo {
    fn from(info: AbiPluginInfo) -> Self {
        Self {
            name: info.name.into_string(),
            kind: info.kind,
            description: info.description.into_string(),
        }
    }
}

impl From<AbiLibraryManifest> for LibraryManifest {
    fn from(manifest: AbiLibraryManifest) -> Self {
        Self {
            sdk_version: manifest.sdk_version.into_string(),
            plugins: manifest.plugins.into_iter().map(PluginInfo::from).collect(),
        }
    }
}

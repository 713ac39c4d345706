//! The plugins a device runs on, without a config file: the built-in
//! `filesystem` store in its state dir and the built-in `quic` transport,
//! both obtained through the plugin host like any configured plugin.
//!
//! The library only finds built-ins the final binary links: the
//! `keygate` binary links them all; a test that calls these must link
//! `keygate_store_fs` and `keygate_transport_quic` itself
//! (`use keygate_transport_quic as _;`).
//!
//! State dir layout:
//!
//! | path | what |
//! |---|---|
//! | `DIR/store/` | the device's records (key, pending pairing, credentials), sealed |
//! | `DIR/store.key` | the store's 32-byte key (0600) |

use std::path::Path;
use std::sync::Arc;

use keygate_sdk::{PluginContext, PluginError, PluginKind, SecretStore, Transport};

use super::identity::DeviceIdentity;
use crate::plugin_host::{HostError, Slot, TracingLogger, find_builtin};

/// The label store errors carry.
const STORE_LABEL: &str = "store(filesystem)";
/// The label transport errors carry.
const TRANSPORT_LABEL: &str = "transport(quic)";

/// Why the device's plugins could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevicePluginError {
    /// The built-in is not linked, or refused its settings.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The state dir has no absolute path (the current folder is gone).
    #[error("the state dir: {0}")]
    Path(#[from] std::io::Error),
    /// The settings could not be written as TOML.
    #[error("cannot describe the device store's settings: {0}")]
    Settings(#[from] toml::ser::Error),
}

fn context(label: &str, state_dir: &Path) -> PluginContext {
    PluginContext::new(
        label,
        state_dir,
        state_dir,
        TracingLogger::new(label.to_owned()),
    )
}

fn constructed(label: &str) -> impl Fn(PluginError) -> HostError + '_ {
    move |cause| HostError::Construct {
        label: label.to_owned(),
        cause,
    }
}

/// The device's store: `filesystem`, rooted at `state_dir/store`, keyed
/// by `state_dir/store.key` (both made on first use).
pub fn open_store(state_dir: &Path) -> Result<Arc<dyn SecretStore>, DevicePluginError> {
    // The store resolves relative paths against the context's folder.
    let state_dir = &std::path::absolute(state_dir)?;
    let (library, info) = find_builtin(PluginKind::Store, "filesystem")?;
    let mut table = toml::Table::new();
    table.insert(
        "root".into(),
        state_dir
            .join("store")
            .to_string_lossy()
            .into_owned()
            .into(),
    );
    table.insert(
        "key_file".into(),
        state_dir
            .join("store.key")
            .to_string_lossy()
            .into_owned()
            .into(),
    );
    let settings = toml::to_string(&table)?;
    let store = library
        .new_store(&info.name, &settings, context(STORE_LABEL, state_dir))
        .map_err(constructed(STORE_LABEL))?;
    Ok(Arc::new(Slot::new(STORE_LABEL.to_owned(), store)))
}

/// The device's identity in its state dir.
pub fn open_identity(state_dir: &Path) -> Result<DeviceIdentity, DevicePluginError> {
    Ok(DeviceIdentity::new(open_store(state_dir)?))
}

/// The built-in `quic` transport with its default settings.
pub fn open_transport(state_dir: &Path) -> Result<Arc<dyn Transport>, DevicePluginError> {
    let (library, info) = find_builtin(PluginKind::Transport, "quic")?;
    let transport = library
        .new_transport(&info.name, "", context(TRANSPORT_LABEL, state_dir))
        .map_err(constructed(TRANSPORT_LABEL))?;
    Ok(Arc::new(Slot::new(TRANSPORT_LABEL.to_owned(), transport)))
}

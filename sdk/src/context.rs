//! What the host hands a plugin when it constructs it: its name, the folders
//! it may use, and a logger that reaches the host's log output.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::StableAbi;

/// Severity of a plugin log line, mapped by the host onto its own levels.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace = 0,
    /// Diagnostics for developers.
    Debug = 1,
    /// Normal operation worth recording.
    Info = 2,
    /// Something an operator should look at.
    Warn = 3,
    /// A failure.
    Error = 4,
}

/// The host's side of logging: implemented by the host, called by plugins.
///
/// A `cdylib` has its own copy of `tracing` (and of its global dispatcher), so
/// a plugin's `tracing::info!` would go nowhere; plugins log through
/// [`PluginContext::log`] and the host re-emits each line under the plugin's
/// name.
pub trait Logger: Send + Sync + 'static {
    /// Records one line from the plugin.
    fn log(&self, level: LogLevel, message: &str);
}

/// Everything a plugin constructor receives besides its config table.
///
/// Cheap to clone; keep a clone to log after construction.
#[derive(Clone)]
pub struct PluginContext {
    pub(crate) plugin_name: String,
    pub(crate) config_dir: PathBuf,
    pub(crate) state_dir: PathBuf,
    pub(crate) logger: Arc<dyn Logger>,
}

impl PluginContext {
    /// Built by the host (and by tests). `config_dir` is the folder of the
    /// operator's config file; `state_dir` the gateway's state folder.
    pub fn new(
        plugin_name: &str,
        config_dir: &Path,
        state_dir: &Path,
        logger: impl Logger,
    ) -> Self {
        Self {
            plugin_name: plugin_name.to_owned(),
            config_dir: config_dir.to_owned(),
            state_dir: state_dir.to_owned(),
            logger: Arc::new(logger),
        }
    }

    /// The label the host knows the plugin by: `slot(name)`, e.g.
    /// `store(sqlite)`. Worth putting in messages that leave the host's log.
    pub fn plugin_name(&self) -> &str {
        &self.plugin_name
    }

    /// The folder holding the operator's config file.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The gateway's state folder.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Resolves a path from the plugin's config table the way the host
    /// resolves its own: relative paths are relative to the config file's
    /// folder.
    pub fn resolve_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.config_dir().join(path)
        }
    }

    /// Sends one log line to the host, which records it under the plugin's
    /// name.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.logger.log(level, message);
    }

    /// [`LogLevel::Debug`] line.
    pub fn debug(&self, message: &str) {
        self.log(LogLevel::Debug, message);
    }

    /// [`LogLevel::Info`] line.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::Info, message);
    }

    /// [`LogLevel::Warn`] line.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::Warn, message);
    }

    /// [`LogLevel::Error`] line.
    pub fn error(&self, message: &str) {
        self.log(LogLevel::Error, message);
    }
}

impl std::fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugin_name", &self.plugin_name)
            .field("config_dir", &self.config_dir)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

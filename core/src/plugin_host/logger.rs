//! Plugin log lines into the host's `tracing` output.

use keygate_sdk::{LogLevel, Logger};

/// Re-emits a plugin's log lines as `tracing` events with target
/// `keygate::plugin` and a `plugin` field naming the slot and plugin, e.g.
/// `plugin="store(sqlite)"`.
pub struct TracingLogger {
    label: String,
}

impl TracingLogger {
    /// A logger for the plugin labelled `label`.
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
        }
    }
}

impl Logger for TracingLogger {
    fn log(&self, level: LogLevel, message: &str) {
        let plugin = self.label.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(target: "keygate::plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "keygate::plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "keygate::plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "keygate::plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "keygate::plugin", plugin, "{message}"),
        }
    }
}

//! Opening the identity state for a command: config, store plugin, state
//! lock and CA. Works whether or not a gateway runs on the same state dir.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use keygate_core::config::Config;
use keygate_core::metrics::Metrics;
use keygate_core::plugin_host::PluginHost;
use keygate_core::state::IdentityManager;

/// The loaded config and the identity state it names.
pub struct Opened {
    pub config: Config,
    pub manager: Arc<IdentityManager>,
    /// Kept so the plugins live as long as the manager.
    pub _host: PluginHost,
}

/// Loads the config and plugins and opens the identity state, creating
/// the CA on first use.
pub fn open(config_path: &Path) -> anyhow::Result<Opened> {
    open_measured(config_path, None)
}

/// [`open`], with every store call measured into `metrics` when given
/// (the gateway's `/metrics`).
pub fn open_measured(config_path: &Path, metrics: Option<&Metrics>) -> anyhow::Result<Opened> {
    let config = super::load_config(config_path)?;
    let host = PluginHost::load(&config).context("plugins refused")?;
    let store = match metrics {
        Some(metrics) => host.measured_state_store(metrics),
        None => host.state_store(),
    };
    let manager = IdentityManager::open(
        store,
        &config.state_dir,
        config.identity.clone(),
        SystemTime::now(),
    )
    .with_context(|| {
        format!(
            "cannot open identity state in {}",
            config.state_dir.display()
        )
    })?;
    Ok(Opened {
        config,
        manager: Arc::new(manager),
        _host: host,
    })
}

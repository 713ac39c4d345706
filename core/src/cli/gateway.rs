//! `keygate gateway run`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use keygate_core::plugin_host::PluginHost;

/// Gateway commands.
#[derive(Subcommand)]
pub enum GatewayCommand {
    /// Load the config and plugins and serve until Ctrl-C (SIGINT) or SIGTERM.
    Run,
}

pub fn run(cmd: GatewayCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        GatewayCommand::Run => serve(config_path),
    }
}

fn serve(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let host = PluginHost::load(&config).context("plugins refused, gateway not started")?;
    for plugin in &host.loaded {
        tracing::info!(
            plugin = %plugin.label,
            source = %plugin.origin,
            sdk = %plugin.sdk_version,
            "{}",
            plugin.info.description
        );
    }
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    tracing::info!(
        config = %config.path.display(),
        state_dir = %config.state_dir.display(),
        "gateway ready; press Ctrl-C to stop"
    );
    let _ = rx.recv();
    tracing::info!("gateway stopping");
    Ok(ExitCode::SUCCESS)
}

//! `keygate gateway run`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use keygate_core::state::watch::DEFAULT_WATCH_INTERVAL;
use keygate_core::state::{RevocationEvent, Watcher};

/// Gateway commands.
#[derive(Subcommand)]
pub enum GatewayCommand {
    /// Load the config, plugins and identity state (creating the CA on first
    /// boot), follow revocations, and serve until Ctrl-C (SIGINT) or SIGTERM.
    Run,
}

pub fn run(cmd: GatewayCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        GatewayCommand::Run => serve(config_path),
    }
}

fn serve(config_path: &Path) -> anyhow::Result<ExitCode> {
    let opened = super::identity::open(config_path).context("gateway not started")?;
    for plugin in &opened._host.loaded {
        tracing::info!(
            plugin = %plugin.label,
            source = %plugin.origin,
            sdk = %plugin.sdk_version,
            "{}",
            plugin.info.description
        );
    }
    let manager = opened.manager.clone();
    manager
        .refresh()
        .context("cannot load the revocation index")?;
    let watcher = Watcher::start(manager.clone(), DEFAULT_WATCH_INTERVAL)
        .context("cannot start the revocation watcher")?;

    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    tracing::info!(
        config = %opened.config.path.display(),
        state_dir = %opened.config.state_dir.display(),
        ca = %manager.ca().fingerprint(),
        "gateway ready; press Ctrl-C to stop"
    );
    loop {
        if rx
            .recv_timeout(std::time::Duration::from_millis(50))
            .is_ok()
        {
            break;
        }
        while let Ok(event) = watcher.events().try_recv() {
            match event {
                RevocationEvent::Device(id) => {
                    tracing::warn!(device_id = %id, "revocation seen: device")
                }
                RevocationEvent::Certificate {
                    fingerprint,
                    device_id,
                } => {
                    tracing::warn!(%fingerprint, device_id = %device_id, "revocation seen: certificate")
                }
            }
        }
    }
    tracing::info!("gateway stopping");
    drop(watcher);
    Ok(ExitCode::SUCCESS)
}

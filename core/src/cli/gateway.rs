//! `keygate gateway run`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Subcommand;
use keygate_core::admin_api::{AdminApi, ApiState};
use keygate_core::gateway::admin::AdminServer;
use keygate_core::gateway::{DEFAULT_WORKERS, Gateway, GatewayOptions};
use keygate_core::metrics::Metrics;
use keygate_core::pairing::gateway::{PairingService, PolicySlot, ServiceSettings};
use keygate_core::state::watch::DEFAULT_WATCH_INTERVAL;
use keygate_core::state::{Actor, Watcher};

/// Gateway commands.
#[derive(Subcommand)]
pub enum GatewayCommand {
    /// Load the config, plugins and identity state (creating the CA on first
    /// boot), listen on `[gateway] listen` for pairing and node RPC, follow
    /// revocations, and serve until Ctrl-C (SIGINT) or SIGTERM.
    Run {
        /// DEVELOPMENT ONLY: let node methods through without a client
        /// certificate. Refused unless `[gateway] listen` is a loopback
        /// address; revoked devices are still refused.
        #[arg(long)]
        insecure_node_rpc_opt_out: bool,
    },
}

pub fn run(cmd: GatewayCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        GatewayCommand::Run {
            insecure_node_rpc_opt_out,
        } => serve(config_path, insecure_node_rpc_opt_out),
    }
}

/// How often revocations are looked for and housekeeping runs.
const TICK: Duration = Duration::from_millis(250);

fn serve(config_path: &Path, opt_out: bool) -> anyhow::Result<ExitCode> {
    let metrics = Arc::new(Metrics::new());
    let opened = super::identity::open_measured(config_path, Some(&metrics))
        .context("gateway not started")?;
    let config = &opened.config;
    let host = &opened._host;
    let Some(transport) = host.transport.clone() else {
        bail!(
            "gateway not started: {} has no [plugins.transport] table; add\n\n  \
             [plugins.transport]\n  use = \"quic\"\n",
            config.path.display()
        );
    };
    let manager = opened.manager.clone();
    manager
        .refresh()
        .context("cannot load the revocation index")?;
    let policy = host.approval.clone().map(|policy| PolicySlot {
        name: host
            .loaded
            .iter()
            .find(|p| p.info.kind == keygate_sdk::PluginKind::Approval)
            .map(|p| p.info.name.to_string())
            .unwrap_or_default(),
        policy,
    });
    let pairing = PairingService::new(
        manager.clone(),
        policy,
        ServiceSettings::from(&config.pairing),
    )
    .with_metrics(metrics.clone());
    let options = GatewayOptions {
        listen: config.gateway.listen,
        advertise: config.gateway.advertise.clone(),
        max_frame_len: config.gateway.max_frame_len,
        heartbeat: config.gateway.heartbeat,
        invoke_timeout: config.gateway.invoke_timeout,
        server_validity: config.identity.server_validity,
        node_rpc_opt_out: opt_out,
        workers: DEFAULT_WORKERS,
        metrics: metrics.clone(),
    };
    if opt_out {
        tracing::warn!(
            "INSECURE: --insecure-node-rpc-opt-out is on: node methods are served WITHOUT a \
             client certificate to anyone who can reach {}. Never use this outside development.",
            options.listen
        );
    }
    let watcher = Watcher::start(manager.clone(), DEFAULT_WATCH_INTERVAL)
        .context("cannot start the revocation watcher")?;
    let gateway = Arc::new(
        Gateway::start(manager.clone(), pairing, transport, options)
            .context("gateway not started")?,
    );
    let admin = match AdminServer::start(&config.state_dir, gateway.clone()) {
        Ok(admin) => admin,
        Err(e) => {
            gateway.shutdown();
            return Err(e).context("gateway not started");
        }
    };

    let http = match &config.admin {
        Some(settings) => {
            let state = ApiState {
                identity: manager.clone(),
                gateway: gateway.clone(),
                pairing: config.pairing.clone(),
                advertise: config.gateway.advertise.clone(),
                events: Default::default(),
                tls: false,
                metrics: settings.metrics.then(|| metrics.clone()),
                sessions: Default::default(),
            };
            match AdminApi::start(settings, state, config.identity.server_validity) {
                Ok(api) => {
                    tracing::info!(
                        "admin API listening on {} (OpenAPI document at /api/v1/openapi.json)",
                        api.url()
                    );
                    Some(api)
                }
                Err(e) => {
                    admin.stop();
                    gateway.shutdown();
                    return Err(e).with_context(|| {
                        format!(
                            "gateway not started: the admin API cannot listen on {}",
                            settings.listen
                        )
                    });
                }
            }
        }
        None => None,
    };

    // The audit log records what code this gateway runs. Hashing the
    // executable takes a moment: off the start-up path.
    let loaded = host.loaded.clone();
    let recorder = manager.clone();
    std::thread::spawn(move || {
        let events = keygate_core::plugin_host::loaded_events(&loaded, &Actor::gateway());
        if let Err(error) = recorder.record_audit(events, SystemTime::now()) {
            tracing::warn!(%error, "could not record the loaded plugins in the audit log");
        }
    });

    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .context("cannot install the Ctrl-C handler")?;
    tracing::info!(
        listen = %gateway.local_addr(),
        config = %config.path.display(),
        state_dir = %config.state_dir.display(),
        admin = %admin.path().display(),
        ca = %manager.ca().fingerprint(),
        "gateway ready; press Ctrl-C to stop"
    );
    loop {
        // Revocations wake the loop at once; housekeeping runs at least
        // every TICK.
        match watcher.events().recv_timeout(TICK) {
            Ok(event) => gateway.revoked(&event),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(TICK),
        }
        gateway.tick(SystemTime::now());
        if rx.try_recv().is_ok() {
            break;
        }
    }
    tracing::info!("gateway stopping: closing connections");
    if let Some(http) = http {
        http.stop();
    }
    admin.stop();
    gateway.shutdown();
    drop(watcher);
    tracing::info!("gateway stopped");
    Ok(ExitCode::SUCCESS)
}

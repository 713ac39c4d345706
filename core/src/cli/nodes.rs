//! `keygate nodes`: the live gateway's connected nodes, through its admin
//! socket.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use keygate_core::gateway::admin::{self, Request, Response};

use super::format::print_json;

/// Node commands (they need a running gateway).
#[derive(Subcommand)]
pub enum NodesCommand {
    /// The connected nodes: device id, name, capabilities, last heartbeat.
    List {
        /// An array of objects with `device_id`, `name`, `capabilities`,
        /// `registered_at` and `last_heartbeat`.
        #[arg(long)]
        json: bool,
    },
    /// Invoke a capability on a connected node and print its answer.
    Invoke {
        /// The node's device id.
        device_id: String,
        /// The capability, one the node registered (e.g. `echo`).
        capability: String,
        /// The input, as text (empty when left out).
        payload: Option<String>,
    },
}

/// How long a command waits for the gateway, beyond the invoke timeout.
const SLACK: Duration = Duration::from_secs(5);

pub fn run(cmd: NodesCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let wait = config.gateway.invoke_timeout + SLACK;
    let ask = |request: &Request| {
        admin::request(&config.state_dir, request, wait).context("cannot reach the gateway")
    };
    match cmd {
        NodesCommand::List { json } => {
            let nodes = match ask(&Request::Nodes {})? {
                Response::Nodes { nodes, .. } => nodes,
                other => bail!("the gateway answered {other:?} to a node listing"),
            };
            if json {
                print_json(&nodes)?;
            } else {
                outln!(
                    "{:<62}  {:<16}  {:<20}  CAPABILITIES",
                    "DEVICE ID",
                    "NAME",
                    "LAST HEARTBEAT"
                );
                for n in &nodes {
                    outln!(
                        "{:<62}  {:<16}  {:<20}  {}",
                        n.device_id,
                        n.name,
                        n.last_heartbeat,
                        n.capabilities.join(",")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        NodesCommand::Invoke {
            device_id,
            capability,
            payload,
        } => {
            let request = Request::Invoke {
                device_id: device_id.clone(),
                capability: capability.clone(),
                payload_hex: hex::encode(payload.unwrap_or_default()),
            };
            match ask(&request)? {
                Response::Invoked { result, .. } => {
                    let bytes = hex::decode(&result.payload_hex)
                        .context("the gateway answered a payload that is not hex")?;
                    let text = String::from_utf8_lossy(&bytes);
                    if result.ok {
                        outln!("{text}");
                        Ok(ExitCode::SUCCESS)
                    } else {
                        bail!("node {device_id} answered {capability} with an error: {text}")
                    }
                }
                Response::Failed { code, error, .. } => {
                    bail!("invoking {capability} on {device_id} failed ({code}): {error}")
                }
                other => bail!("the gateway answered {other:?} to an invocation"),
            }
        }
    }
}

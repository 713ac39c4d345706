//! `keygate node pair` and `keygate node run`: this machine as a node.
//!
//! Neither reads `config.toml`: a node's state is its own state dir
//! (`--state-dir`, default `./node-state`), a `filesystem` store at
//! `DIR/store` sealed with `DIR/store.key`, and it talks QUIC with the
//! built-in transport's defaults.

use std::io::IsTerminal as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use keygate_core::device::agent::{Agent, AgentError, AgentSettings};
use keygate_core::device::capability::node_capabilities;
use keygate_core::device::code_input::CODE_ENV;
use keygate_core::device::enrol::{self, EnrolSettings, Notice};
use keygate_core::device::pairing::PairingCode;
use keygate_core::device::{DeviceIdentity, plugins, read_code};
use keygate_core::pairing::GatewayAddr;
use keygate_sdk::Transport;

/// The exit code of `node run` when the gateway revoked the device: a
/// supervisor should not restart it.
pub const EXIT_REVOKED: u8 = 3;

/// How long a stopping node lets its close reach the gateway.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Node commands.
#[derive(Subcommand)]
pub enum NodeCommand {
    /// Pair this machine with a gateway: read the pairing code (from
    /// KEYGATE_PAIRING_CODE, a prompt, or one line of stdin), show the
    /// check code, wait for approval and print the device id.
    Pair(PairArgs),
    /// Run the node: connect with its certificate, register, heartbeat,
    /// serve invocations (`echo` built in), renew before expiry and
    /// reconnect, until SIGINT/SIGTERM. Exits 3 when revoked.
    Run(RunArgs),
}

/// Where the node keeps its state.
#[derive(Args)]
pub struct StateArgs {
    /// The node's state folder (key, certificate, pending pairing).
    #[arg(long, value_name = "DIR", default_value = "node-state")]
    state_dir: PathBuf,
}

/// `node pair`'s options.
#[derive(Args)]
pub struct PairArgs {
    /// The gateway, HOST:PORT (`[IPv6]:PORT`); repeat for more. Optional
    /// with a QR code, which carries its own addresses.
    #[arg(long = "gateway", value_name = "HOST:PORT", value_parser = gateway_addr)]
    gateways: Vec<String>,
    /// The name the operator sees (default: this machine's host name).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    state: StateArgs,
    /// A capability to ask for besides `echo`; repeat for more.
    #[arg(long = "capability", value_name = "NAME")]
    capabilities: Vec<String>,
}

/// `node run`'s options.
#[derive(Args)]
pub struct RunArgs {
    /// The gateway, HOST:PORT (`[IPv6]:PORT`); repeat for more (tried in
    /// order). Default: the addresses kept when pairing.
    #[arg(long = "gateway", value_name = "HOST:PORT", value_parser = gateway_addr)]
    gateways: Vec<String>,
    #[command(flatten)]
    state: StateArgs,
    /// A capability to register besides `echo`; repeat for more.
    #[arg(long = "capability", value_name = "NAME")]
    capabilities: Vec<String>,
}

fn gateway_addr(text: &str) -> Result<String, String> {
    GatewayAddr::parse(text)
        .map(|a| a.to_string())
        .map_err(|e| e.to_string())
}

pub fn run(cmd: NodeCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NodeCommand::Pair(args) => pair(args),
        NodeCommand::Run(args) => run_node(args),
    }
}

/// The device's state in `dir`, made (0700) if `create`.
fn open_state(dir: &Path, create: bool) -> anyhow::Result<DeviceIdentity> {
    if create {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the state dir {}", dir.display()))?;
    } else if !dir.is_dir() {
        bail!(
            "this device is not paired: no state dir {} (run `keygate node pair` first, or give --state-dir)",
            dir.display()
        );
    }
    plugins::open_identity(dir)
        .with_context(|| format!("cannot open the node's state in {}", dir.display()))
}

fn transport(dir: &Path) -> anyhow::Result<Arc<dyn Transport>> {
    plugins::open_transport(dir).context("cannot start the QUIC transport")
}

/// This machine's host name, as a device name (at most 64 bytes).
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    device_name(&raw)
}

/// `raw` made a valid device name: trimmed, without control characters,
/// cut to 64 bytes on a character boundary; `keygate-node` if empty.
fn device_name(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.trim().chars().filter(|c| !c.is_control()) {
        if name.len() + c.len_utf8() > keygate_proto::MAX_NAME_LEN {
            break;
        }
        name.push(c);
    }
    if name.is_empty() {
        "keygate-node".into()
    } else {
        name
    }
}

fn pair(args: PairArgs) -> anyhow::Result<ExitCode> {
    let capabilities = node_capabilities(&args.capabilities)?;
    let dir = &args.state.state_dir;
    let identity = open_state(dir, true)?;
    if let Some(credentials) = identity.credentials()? {
        bail!(
            "this device is already paired as {} (state in {}): run `keygate node run`, or pair another identity with another --state-dir",
            credentials.device_id,
            dir.display()
        );
    }
    let code = match identity.pending()? {
        Some(pending) => {
            eprintln!(
                "this device already proved a code: asking about its request {} again",
                pending.request_id
            );
            None
        }
        None => {
            let text = read_code(
                std::env::var(CODE_ENV).ok(),
                &mut std::io::stdin().lock(),
                std::io::stdin().is_terminal(),
                &mut std::io::stderr(),
                "pairing code (PIN or keygate:// URI): ",
            )?;
            Some(PairingCode::parse(&text)?)
        }
    };
    let transport = transport(dir)?;
    let name = args.name.unwrap_or_else(host_name);
    let settings = EnrolSettings::new(name, capabilities, args.gateways);
    let mut shown: Option<String> = None;
    let mut show = |check_code: &str| {
        if shown.as_deref() != Some(check_code) {
            eprintln!(
                "check code: {check_code}  (the operator compares it with `keygate pairing list`)"
            );
            shown = Some(check_code.to_owned());
        }
    };
    let credentials = enrol::pair(
        &transport,
        &identity,
        code.as_ref(),
        &settings,
        &mut |notice| match notice {
            Notice::CheckCode { check_code } => show(&check_code),
            Notice::Waiting {
                request_id,
                check_code,
            } => {
                show(&check_code);
                eprintln!("waiting for the operator to approve request {request_id} ...");
            }
            Notice::RateLimited { wait } => eprintln!(
                "the gateway asks this address to wait {} s after too many failed attempts; retrying",
                wait.as_secs()
            ),
            Notice::Retrying { reason } => eprintln!("{reason}; trying again"),
            _ => {}
        },
    )
    .context("pairing failed")?;
    eprintln!(
        "paired: this device is {} (state in {})",
        credentials.device_id,
        dir.display()
    );
    outln!("{}", credentials.device_id);
    Ok(ExitCode::SUCCESS)
}

fn run_node(args: RunArgs) -> anyhow::Result<ExitCode> {
    let capabilities = node_capabilities(&args.capabilities)?;
    let dir = &args.state.state_dir;
    let identity = open_state(dir, false)?;
    let Some(credentials) = identity.credentials()? else {
        bail!(
            "this device is not paired (state in {}): run `keygate node pair` first",
            dir.display()
        );
    };
    let transport = transport(dir)?;
    let agent = Agent::new(
        transport,
        identity,
        AgentSettings::new(args.gateways, capabilities),
    );
    let control = agent.control();
    ctrlc::set_handler(move || control.stop())
        .context("cannot install the SIGINT/SIGTERM handler")?;
    tracing::info!(
        device_id = %credentials.device_id,
        state_dir = %dir.display(),
        "node starting; Ctrl-C to stop"
    );
    match agent.run() {
        Ok(()) => {
            std::thread::sleep(CLOSE_GRACE);
            tracing::info!("node stopped");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ AgentError::Revoked { .. }) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_REVOKED))
        }
        Err(e) => Err(e).context("the node stopped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_become_valid_device_names() {
        assert_eq!(device_name("node-7\n"), "node-7");
        assert_eq!(device_name("  \n"), "keygate-node");
        assert_eq!(device_name("a\tb"), "ab");
        let long = "é".repeat(40);
        let name = device_name(&long);
        assert_eq!(name.len(), 64);
        assert!(name.chars().all(|c| c == 'é'));
    }

    #[test]
    fn gateway_addresses_are_checked_and_written_canonically() {
        assert_eq!(gateway_addr("127.0.0.1:7443").unwrap(), "127.0.0.1:7443");
        assert_eq!(gateway_addr("[::1]:7443").unwrap(), "[::1]:7443");
        assert!(
            gateway_addr("::1:7443").is_err(),
            "an IPv6 address needs brackets"
        );
        assert!(gateway_addr("gateway").is_err());
    }
}

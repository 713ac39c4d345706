//! Command-line parsing and dispatch. Each command lives in its own module;
//! errors are reported once, here, with their context chain.

/// `println!` for command output: a closed pipe (`keygate … | head`) ends
/// the process quietly instead of panicking; other write errors are
/// returned.
macro_rules! outln {
    ($($arg:tt)*) => {
        crate::cli::format::write_line(format_args!($($arg)*))?
    };
}

mod audit;
mod ca;
mod certs;
mod devices;
mod format;
mod gateway;
mod identity;
mod node;
mod nodes;
mod operators;
mod pairing;
mod plugins;
mod requests;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keygate_core::config::{Config, DEFAULT_CONFIG_PATH};

/// Keygate: device identity, pairing and mutual TLS for your nodes.
#[derive(Parser)]
#[command(name = "keygate", version, about)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "KEYGATE_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,

    /// Log more to stderr: `-v` info, `-vv` debug, `-vvv` trace. Commands
    /// log only warnings and errors by default, `gateway run` logs at info;
    /// `KEYGATE_LOG` (e.g. `debug`, `keygate=trace`) overrides both.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    #[command(subcommand)]
    Gateway(gateway::GatewayCommand),
    /// Inspect plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// The certificate authority.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Devices: list, revoke, enrol.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// Client certificates: list, revoke.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Pairing codes: mint a PIN or a QR code.
    #[command(subcommand)]
    Pairing(pairing::PairingCommand),
    /// The identity state as a whole: check it for unreadable records.
    #[command(subcommand)]
    State(state::StateCommand),
    /// Connected nodes of the running gateway: list, invoke.
    #[command(subcommand)]
    Nodes(nodes::NodesCommand),
    /// This machine as a node: pair with a gateway, run.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Operators of the admin API and their tokens: add, list, revoke.
    #[command(subcommand)]
    Operators(operators::OperatorsCommand),
    /// The audit log of state changes: list, verify.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// Runs the CLI and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet_level = match cli.command {
        Command::Gateway(_) | Command::Node(node::NodeCommand::Run(_)) => "info",
        _ => "warn",
    };
    init_logging(quiet_level, cli.verbose);
    let result = match cli.command {
        Command::Gateway(cmd) => gateway::run(cmd, &cli.config),
        Command::Plugins(cmd) => plugins::run(cmd, &cli.config),
        Command::Ca(cmd) => ca::run(cmd, &cli.config),
        Command::Devices(cmd) => devices::run(cmd, &cli.config),
        Command::Certs(cmd) => certs::run(cmd, &cli.config),
        Command::Pairing(cmd) => pairing::run(cmd, &cli.config),
        Command::State(cmd) => state::run(cmd, &cli.config),
        Command::Nodes(cmd) => nodes::run(cmd, &cli.config),
        Command::Operators(cmd) => operators::run(cmd, &cli.config),
        Command::Audit(cmd) => audit::run(cmd, &cli.config),
        // A node has no config file: its state dir is all it needs.
        Command::Node(cmd) => node::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr at `default` (raised by each `-v`), unless `KEYGATE_LOG`
/// says otherwise; colours only when stderr is a terminal.
fn init_logging(default: &str, verbose: u8) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let level = match (default, verbose) {
        (level, 0) => level,
        ("warn", 1) => "info",
        ("warn", 2) | ("info", 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("KEYGATE_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Loads the config file, with the file named in the error.
pub(crate) fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).context("config refused")
}

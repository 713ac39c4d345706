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

mod ca;
mod certs;
mod devices;
mod format;
mod gateway;
mod identity;
mod plugins;

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
}

/// Runs the CLI and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Gateway(cmd) => gateway::run(cmd, &cli.config),
        Command::Plugins(cmd) => plugins::run(cmd, &cli.config),
        Command::Ca(cmd) => ca::run(cmd, &cli.config),
        Command::Devices(cmd) => devices::run(cmd, &cli.config),
        Command::Certs(cmd) => certs::run(cmd, &cli.config),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KEYGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// Loads the config file, with the file named in the error.
pub(crate) fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).context("config refused")
}

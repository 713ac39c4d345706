//! `keygate plugins list` and `keygate plugins check`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use keygate_core::plugin_host::{list_plugins, sha256_of};
use keygate_sdk_host::Library;
use serde::Serialize;

/// Plugin commands.
#[derive(Subcommand)]
pub enum PluginsCommand {
    /// List built-in plugins and the libraries named in the config.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load a plugin library, validate it and print its manifest.
    Check {
        /// The library file.
        path: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: PluginsCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginsCommand::List { json } => list(config_path, json),
        PluginsCommand::Check { path, json } => check(&path, json),
    }
}

fn list(config_path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    // Built-ins are listed even without a config file; a config that exists
    // but is wrong is an error.
    let config = if config_path.exists() {
        Some(super::load_config(config_path)?)
    } else {
        tracing::info!(config = %config_path.display(), "no config file: listing built-in plugins only");
        None
    };
    let rows = list_plugins(config.as_ref()).context("cannot list plugins")?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<10} {:<14} {:<6} {:<10} {}",
        "KIND",
        "NAME",
        "SDK",
        "SLOT",
        "SOURCE"
    );
    for r in &rows {
        outln!(
            "{:<10} {:<14} {:<6} {:<10} {}",
            r.kind,
            r.name,
            r.sdk_version,
            r.slot.as_deref().unwrap_or("-"),
            r.source
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct CheckReport {
    path: String,
    sha256: String,
    sdk_version: String,
    plugins: Vec<CheckedPlugin>,
}

#[derive(Serialize)]
struct CheckedPlugin {
    name: String,
    kind: String,
    description: String,
}

fn check(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let library = Library::open(path)?;
    let sha256 = File::open(path)
        .and_then(|mut f| sha256_of(&mut f))
        .with_context(|| format!("{}: cannot hash", path.display()))?;
    let manifest = library.manifest();
    let report = CheckReport {
        path: path.display().to_string(),
        sha256: hex::encode(sha256),
        sdk_version: manifest.sdk_version.to_string(),
        plugins: manifest
            .plugins
            .iter()
            .map(|p| CheckedPlugin {
                name: p.name.to_string(),
                kind: p.kind.to_string(),
                description: p.description.to_string(),
            })
            .collect(),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!("ok: {}", report.path);
        outln!("  sha256: {}", report.sha256);
        outln!("  keygate-sdk: {}", report.sdk_version);
        for p in &report.plugins {
            outln!("  {:<10} {:<14} {}", p.kind, p.name, p.description);
        }
    }
    Ok(ExitCode::SUCCESS)
}

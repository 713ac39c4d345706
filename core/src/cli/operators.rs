//! `keygate operators add|list|revoke`: who may use the admin API.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;
use keygate_core::state::Actor;
use serde::Serialize;

use super::format::{print_json, report_revocation, rfc3339, warn_unreadable};

/// Operator commands.
#[derive(Subcommand)]
pub enum OperatorsCommand {
    /// Add an operator and print its bearer token, once: it is stored
    /// nowhere, only a keyed hash of it is.
    Add {
        /// Its name (a-z, 0-9, '.', '_', '-'; never reused).
        name: String,
        /// Print `{"name", "token"}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List operators, revoked ones included.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an operator: its token stops working at once.
    Revoke {
        /// Its name.
        name: String,
        /// Why, recorded with the revocation and in the audit log.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Added<'a> {
    name: &'a str,
    token: &'a str,
}

#[derive(Serialize)]
struct OperatorRow {
    name: String,
    created_at: String,
    created_by: String,
    revoked: bool,
    revoked_at: Option<String>,
    revoke_reason: Option<String>,
}

pub fn run(cmd: OperatorsCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let opened = super::identity::open(config_path)?;
    let manager = &opened.manager;
    match cmd {
        OperatorsCommand::Add { name, json } => {
            let added = manager.add_operator(&name, SystemTime::now(), &Actor::cli())?;
            if json {
                print_json(&Added {
                    name: &added.record.name,
                    token: &added.token,
                })?;
            } else {
                outln!("added operator {}", added.record.name);
                outln!("token (shown once; keep it secret): {}", &*added.token);
            }
        }
        OperatorsCommand::List { json } => {
            let listing = manager.operators()?;
            warn_unreadable(&listing.unreadable);
            let rows: Vec<OperatorRow> = listing
                .records
                .into_iter()
                .map(|r| OperatorRow {
                    name: r.name,
                    created_at: rfc3339(r.created_at),
                    created_by: r.created_by,
                    revoked: r.revoked.is_some(),
                    revoked_at: r.revoked.as_ref().map(|x| rfc3339(x.at)),
                    revoke_reason: r.revoked.map(|x| x.reason),
                })
                .collect();
            if json {
                print_json(&rows)?;
            } else {
                outln!(
                    "{:<24}  {:<20}  {:<24}  REVOKED",
                    "NAME",
                    "ADDED",
                    "ADDED BY"
                );
                for r in &rows {
                    let revoked = r.revoked_at.as_deref().unwrap_or("no");
                    outln!(
                        "{:<24}  {:<20}  {:<24}  {revoked}",
                        r.name,
                        r.created_at,
                        r.created_by
                    );
                }
            }
        }
        OperatorsCommand::Revoke { name, reason, json } => {
            let outcome =
                manager.revoke_operator(&name, &reason, SystemTime::now(), &Actor::cli())?;
            report_revocation("name", "operator", &name, &outcome, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

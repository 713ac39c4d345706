//! `keygate state check`.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use super::format::print_json;

/// Commands on the identity state as a whole.
#[derive(Subcommand)]
pub enum StateCommand {
    /// Read every identity record and list the ones that cannot be used
    /// (tampered, undecodable, or stored under a name no record has).
    /// Exits 1 when there is any.
    Check {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Unreadable {
    key: String,
    reason: String,
}

#[derive(Serialize)]
struct Report {
    checked: usize,
    unreadable: Vec<Unreadable>,
}

pub fn run(cmd: StateCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let opened = super::identity::open(config_path)?;
    match cmd {
        StateCommand::Check { json } => {
            let report = opened.manager.check()?;
            let clean = report.unreadable.is_empty();
            if json {
                print_json(&Report {
                    checked: report.checked,
                    unreadable: report
                        .unreadable
                        .into_iter()
                        .map(|u| Unreadable {
                            key: u.key,
                            reason: u.reason,
                        })
                        .collect(),
                })?;
            } else {
                for u in &report.unreadable {
                    outln!("{}\t{}", u.key, u.reason);
                }
                outln!(
                    "checked {} records: {}",
                    report.checked,
                    match report.unreadable.len() {
                        0 => "all readable".to_owned(),
                        1 => "1 unreadable".to_owned(),
                        n => format!("{n} unreadable"),
                    }
                );
            }
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

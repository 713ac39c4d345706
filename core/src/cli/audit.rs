//! `keygate audit list|verify`: the hash-chained record of state changes.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use keygate_core::state::audit::AuditVerdict;
use serde::Serialize;

use super::format::{print_json, rfc3339};

/// Audit log commands.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// List every change, oldest first (one line per change; an entry
    /// holds the changes of one state mutation).
    List {
        /// Print JSON: each entry as stored (its hashes included), so a
        /// copy kept elsewhere pins what the log held.
        #[arg(long)]
        json: bool,
    },
    /// Check the chain: exits non-zero naming the first entry that was
    /// edited, removed or does not follow the one before it.
    Verify {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct VerifyView<'a> {
    intact: bool,
    entries: Option<u64>,
    head: Option<&'a str>,
    broken_seq: Option<u64>,
    broken_key: Option<&'a str>,
    problem: Option<&'a str>,
}

pub fn run(cmd: AuditCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let opened = super::identity::open(config_path)?;
    let manager = &opened.manager;
    match cmd {
        AuditCommand::List { json } => {
            let entries = manager.audit_entries()?;
            if json {
                print_json(&entries)?;
            } else {
                outln!(
                    "{:>6}  {:<20}  {:<20}  {:<32}  {:<36}  DETAILS",
                    "SEQ",
                    "AT",
                    "ACTION",
                    "ACTOR",
                    "SUBJECT"
                );
                for e in &entries {
                    for v in &e.events {
                        let details: Vec<String> =
                            v.details.iter().map(|(k, x)| format!("{k}={x}")).collect();
                        outln!(
                            "{:>6}  {:<20}  {:<20}  {:<32}  {:<36}  {}",
                            e.seq,
                            rfc3339(e.at),
                            v.action.as_str(),
                            v.actor,
                            v.subject,
                            details.join(" ")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { json } => {
            let verdict = manager.verify_audit()?;
            let view = match &verdict {
                AuditVerdict::Intact { entries, head } => VerifyView {
                    intact: true,
                    entries: Some(*entries),
                    head: Some(head),
                    broken_seq: None,
                    broken_key: None,
                    problem: None,
                },
                AuditVerdict::Broken(b) => VerifyView {
                    intact: false,
                    entries: None,
                    head: None,
                    broken_seq: Some(b.seq),
                    broken_key: Some(&b.key),
                    problem: Some(&b.problem),
                },
            };
            if json {
                print_json(&view)?;
            }
            match verdict {
                AuditVerdict::Intact { entries, head } => {
                    if !json {
                        outln!("audit log intact: {entries} entries, last hash {head}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                AuditVerdict::Broken(b) => {
                    eprintln!("error: audit log broken at {b}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

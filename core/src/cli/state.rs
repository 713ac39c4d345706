//! `keygate state check [--quarantine]`.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Subcommand;
use keygate_core::state::UnreadableRecord;
use serde::Serialize;

use super::format::print_json;

/// Commands on the identity state as a whole.
#[derive(Subcommand)]
pub enum StateCommand {
    /// Read every identity record and list the ones that cannot be used
    /// (tampered, undecodable, or stored under a name no record has).
    /// Exits 1 when any is left.
    Check {
        /// Move each unreadable record aside (the filesystem store moves its
        /// file, as found, into `<root>/.quarantine/`); what it covered
        /// stays refused. See docs/identity.md.
        #[arg(long)]
        quarantine: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Record {
    key: String,
    reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    moved_to: Option<String>,
}

impl From<UnreadableRecord> for Record {
    fn from(u: UnreadableRecord) -> Self {
        Record {
            key: u.key,
            reason: u.reason,
            moved_to: None,
        }
    }
}

#[derive(Serialize)]
struct Report {
    checked: usize,
    /// Unreadable records still in the state.
    unreadable: Vec<Record>,
    /// Records moved aside by this run (`--quarantine`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    moved: Vec<Record>,
}

pub fn run(cmd: StateCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let opened = super::identity::open(config_path)?;
    let manager = &opened.manager;
    let StateCommand::Check { quarantine, json } = cmd;
    let found = manager.check()?;
    let mut report = Report {
        checked: found.checked,
        unreadable: Vec::new(),
        moved: Vec::new(),
    };
    if quarantine && !found.unreadable.is_empty() {
        let keys: Vec<String> = found.unreadable.iter().map(|u| u.key.clone()).collect();
        let done = manager.quarantine(&keys, SystemTime::now())?;
        report.moved = done
            .moved
            .into_iter()
            .map(|m| Record {
                key: m.key,
                reason: m.reason,
                moved_to: Some(m.place),
            })
            .collect();
        // What is left, as it reads now.
        report.unreadable = manager
            .check()?
            .unreadable
            .into_iter()
            .map(Record::from)
            .collect();
    } else {
        report.unreadable = found.unreadable.into_iter().map(Record::from).collect();
    }
    let clean = report.unreadable.is_empty();
    if json {
        print_json(&report)?;
    } else {
        for r in &report.moved {
            outln!(
                "moved aside\t{}\t{}\t-> {}",
                r.key,
                r.reason,
                r.moved_to.as_deref().unwrap_or("")
            );
        }
        for r in &report.unreadable {
            outln!("unreadable\t{}\t{}", r.key, r.reason);
        }
        let left = match report.unreadable.len() {
            0 => "all readable".to_owned(),
            1 => "1 unreadable".to_owned(),
            n => format!("{n} unreadable"),
        };
        match report.moved.len() {
            0 => outln!("checked {} records: {left}", report.checked),
            n => outln!(
                "checked {} records: moved {n} aside, {left}",
                report.checked
            ),
        }
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

//! `keygate ca show`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use serde::Serialize;

use super::format::{print_json, rfc3339, unix};

/// Warn when the CA has less than this left.
const CA_WARN_BEFORE: Duration = Duration::from_secs(180 * 86_400);

/// CA commands.
#[derive(Subcommand)]
pub enum CaCommand {
    /// Show the CA: fingerprint, subject, validity (creates it on first use).
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Print only the CA certificate, PEM (public: what clients of
        /// the HTTPS admin API trust with `tls = "gateway-ca"`).
        #[arg(long, conflicts_with = "json")]
        pem: bool,
    },
}

#[derive(Serialize)]
struct CaView {
    fingerprint: String,
    subject: String,
    not_before: String,
    not_after: String,
    expires_in_days: i64,
    warning: Option<String>,
}

pub fn run(cmd: CaCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let CaCommand::Show { json, pem } = cmd;
    let opened = super::identity::open(config_path)?;
    let ca = opened.manager.ca();
    if pem {
        outln!("{}", ca.certificate_pem().trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    let now = unix(SystemTime::now()) as i64;
    let not_after = unix(ca.not_after()) as i64;
    let left = not_after - now;
    let warning = (left < CA_WARN_BEFORE.as_secs() as i64).then(|| {
        if left <= 0 {
            "the CA has EXPIRED: no certificate it issues is valid".to_owned()
        } else {
            format!(
                "the CA expires in {} days: plan its rotation",
                left / 86_400
            )
        }
    });
    let view = CaView {
        fingerprint: ca.fingerprint().to_string(),
        subject: ca.subject().to_owned(),
        not_before: rfc3339(unix(ca.not_before())),
        not_after: rfc3339(not_after as u64),
        expires_in_days: left / 86_400,
        warning,
    };
    if let Some(w) = &view.warning {
        tracing::warn!("{w}");
    }
    if json {
        print_json(&view)?;
    } else {
        outln!("fingerprint  {}", view.fingerprint);
        outln!("subject      {}", view.subject);
        outln!("not before   {}", view.not_before);
        outln!(
            "not after    {} ({} days left)",
            view.not_after,
            view.expires_in_days
        );
        if let Some(w) = &view.warning {
            outln!("WARNING      {w}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `keygate certs list|revoke`.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Subcommand;
use keygate_core::identity::{CertFingerprint, DeviceId};
use keygate_core::state::records::DEVICES_PREFIX;
use serde::Serialize;

use super::format::{print_json, report_revocation, rfc3339, warn_unreadable};

/// Certificate commands.
#[derive(Subcommand)]
pub enum CertsCommand {
    /// List issued client certificates.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke one certificate; its device may pair again.
    Revoke {
        /// SHA-256 fingerprint of the certificate, 64 hex digits.
        fingerprint: String,
        /// Why, recorded with the revocation.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct CertRow {
    fingerprint: String,
    device_id: String,
    serial: String,
    not_before: String,
    not_after: String,
    revoked: bool,
    revoked_at: Option<String>,
    revoke_reason: Option<String>,
    device_revoked: bool,
}

pub fn run(cmd: CertsCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let opened = super::identity::open(config_path)?;
    let manager = &opened.manager;
    match cmd {
        CertsCommand::List { json } => {
            let devices = manager.devices()?;
            let certs = manager.certificates()?;
            // A device whose record cannot be read counts as revoked.
            let refused_devices: std::collections::HashSet<DeviceId> = devices
                .records
                .iter()
                .filter(|d| d.revoked.is_some())
                .map(|d| d.device_id)
                .chain(
                    devices
                        .unreadable
                        .iter()
                        .filter_map(|u| DeviceId::parse(u.key.strip_prefix(DEVICES_PREFIX)?).ok()),
                )
                .collect();
            warn_unreadable(&certs.unreadable);
            let rows: Vec<CertRow> = certs
                .records
                .into_iter()
                .map(|c| CertRow {
                    fingerprint: c.fingerprint.to_string(),
                    device_id: c.device_id.to_string(),
                    serial: c.serial_hex.clone(),
                    not_before: rfc3339(c.not_before),
                    not_after: rfc3339(c.not_after),
                    revoked: c.revoked.is_some(),
                    revoked_at: c.revoked.as_ref().map(|r| rfc3339(r.at)),
                    revoke_reason: c.revoked.as_ref().map(|r| r.reason.clone()),
                    device_revoked: refused_devices.contains(&c.device_id),
                })
                .collect();
            if json {
                print_json(&rows)?;
            } else {
                outln!(
                    "{:<64}  {:<42}  {:<20}  REVOKED",
                    "FINGERPRINT",
                    "DEVICE ID",
                    "NOT AFTER"
                );
                for r in &rows {
                    let revoked = match (r.revoked, r.device_revoked) {
                        (true, _) => "yes",
                        (false, true) => "device",
                        _ => "no",
                    };
                    outln!(
                        "{:<64}  {:<42}  {:<20}  {revoked}",
                        r.fingerprint,
                        r.device_id,
                        r.not_after
                    );
                }
            }
        }
        CertsCommand::Revoke {
            fingerprint,
            reason,
            json,
        } => {
            let fp = CertFingerprint::parse(fingerprint.trim())
                .context("not a certificate fingerprint")?;
            let outcome = manager.revoke_certificate(
                &fp,
                &reason,
                SystemTime::now(),
                &keygate_core::state::Actor::cli(),
            )?;
            report_revocation(
                "fingerprint",
                "certificate",
                &fp.to_string(),
                &outcome,
                json,
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

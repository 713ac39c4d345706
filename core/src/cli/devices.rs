//! `keygate devices list|revoke|enroll`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Subcommand;
use keygate_core::identity::{DeviceId, DevicePublicKey};
use keygate_core::state::records::CertRecord;
use serde::Serialize;

use super::format::{print_json, report_revocation, rfc3339, unix, warn_unreadable};

/// Device commands.
#[derive(Subcommand)]
pub enum DevicesCommand {
    /// List devices.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: it can never pair or connect again.
    Revoke {
        /// The device id (`kgd1…`; a mistyped id is refused).
        device_id: String,
        /// Why, recorded with the revocation.
        #[arg(long, default_value = "")]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enrol a device by its Ed25519 public key and issue it a client
    /// certificate, without pairing (for provisioning; the key never leaves
    /// the device, only its public half is given here).
    Enroll {
        /// The device's raw Ed25519 public key, 64 hex digits.
        #[arg(long)]
        public_key: String,
        /// A display name.
        #[arg(long)]
        name: String,
        /// A capability the device offers (repeatable).
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        /// Write the certificate (PEM) here.
        #[arg(long)]
        cert_out: Option<PathBuf>,
        /// Print JSON (with the certificate's PEM).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct CertView {
    fingerprint: String,
    not_after: String,
    revoked: bool,
}

#[derive(Serialize)]
struct DeviceView {
    device_id: String,
    name: String,
    public_key: String,
    capabilities: Vec<String>,
    enrolled_at: String,
    revoked: bool,
    revoked_at: Option<String>,
    revoke_reason: Option<String>,
    /// The newest certificate's fingerprint.
    fingerprint: Option<String>,
    /// The newest certificate's expiry.
    not_after: Option<String>,
    certificates: Vec<CertView>,
}

#[derive(Serialize)]
struct EnrolledView {
    device_id: String,
    name: String,
    fingerprint: String,
    not_before: String,
    not_after: String,
    certificate_pem: String,
}

pub fn run(cmd: DevicesCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    let opened = super::identity::open(config_path)?;
    let manager = &opened.manager;
    match cmd {
        DevicesCommand::List { json } => {
            let mut by_device: BTreeMap<DeviceId, Vec<CertRecord>> = BTreeMap::new();
            let devices = manager.devices()?;
            let certs = manager.certificates()?;
            warn_unreadable(&devices.unreadable);
            warn_unreadable(&certs.unreadable);
            for cert in certs.records {
                by_device.entry(cert.device_id).or_default().push(cert);
            }
            let mut rows = Vec::new();
            for device in devices.records {
                let mut certs = by_device.remove(&device.device_id).unwrap_or_default();
                certs.sort_by_key(|c| (c.not_before, c.not_after));
                let newest = certs.last();
                rows.push(DeviceView {
                    device_id: device.device_id.to_string(),
                    name: device.name.clone(),
                    public_key: device.public_key.to_string(),
                    capabilities: device.capabilities.clone(),
                    enrolled_at: rfc3339(device.enrolled_at),
                    revoked: device.revoked.is_some(),
                    revoked_at: device.revoked.as_ref().map(|r| rfc3339(r.at)),
                    revoke_reason: device.revoked.as_ref().map(|r| r.reason.clone()),
                    fingerprint: newest.map(|c| c.fingerprint.to_string()),
                    not_after: newest.map(|c| rfc3339(c.not_after)),
                    certificates: certs
                        .iter()
                        .map(|c| CertView {
                            fingerprint: c.fingerprint.to_string(),
                            not_after: rfc3339(c.not_after),
                            revoked: c.revoked.is_some(),
                        })
                        .collect(),
                });
            }
            if json {
                print_json(&rows)?;
            } else {
                outln!(
                    "{:<42}  {:<16}  {:<7}  {:<20}  CERTS",
                    "DEVICE ID",
                    "NAME",
                    "REVOKED",
                    "NEWEST CERT EXPIRES"
                );
                for r in &rows {
                    outln!(
                        "{:<42}  {:<16}  {:<7}  {:<20}  {}",
                        r.device_id,
                        r.name,
                        if r.revoked { "yes" } else { "no" },
                        r.not_after.as_deref().unwrap_or("-"),
                        r.certificates.len()
                    );
                }
            }
        }
        DevicesCommand::Revoke {
            device_id,
            reason,
            json,
        } => {
            let id = DeviceId::parse(device_id.trim()).context("not a device id")?;
            let outcome = manager.revoke_device(
                &id,
                &reason,
                SystemTime::now(),
                &keygate_core::state::Actor::cli(),
            )?;
            report_revocation("device_id", "device", &id.to_string(), &outcome, json)?;
        }
        DevicesCommand::Enroll {
            public_key,
            name,
            capabilities,
            cert_out,
            json,
        } => {
            let key: DevicePublicKey = public_key
                .trim()
                .parse()
                .context("not an Ed25519 public key")?;
            let enrolled = manager.enroll(
                &key,
                &name,
                &capabilities,
                SystemTime::now(),
                &keygate_core::state::Actor::cli(),
            )?;
            if let Some(path) = cert_out {
                std::fs::write(&path, &enrolled.certificate.pem)
                    .with_context(|| format!("{}: cannot write the certificate", path.display()))?;
            }
            if json {
                print_json(&EnrolledView {
                    device_id: enrolled.device.device_id.to_string(),
                    name: enrolled.device.name.clone(),
                    fingerprint: enrolled.certificate.fingerprint.to_string(),
                    not_before: rfc3339(unix(enrolled.certificate.not_before)),
                    not_after: rfc3339(unix(enrolled.certificate.not_after)),
                    certificate_pem: enrolled.certificate.pem.clone(),
                })?;
            } else {
                outln!("device_id    {}", enrolled.device.device_id);
                outln!("fingerprint  {}", enrolled.certificate.fingerprint);
                outln!(
                    "not_after    {}",
                    rfc3339(unix(enrolled.certificate.not_after))
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

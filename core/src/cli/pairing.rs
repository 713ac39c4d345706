//! `keygate pairing mint`.
//!
//! The code (PIN digits or QR token) goes to stdout and, for `--png` /
//! `--svg`, into the image file the operator names (created 0600); it is
//! never logged and never written anywhere else: the pairing session keeps
//! it inside the encrypted store.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::{Args, Subcommand};
use keygate_core::pairing::mint::{self, Minted};
use keygate_core::pairing::{self, QrMatrix};
use keygate_core::state::pairing::Method;
use serde::Serialize;
use zeroize::Zeroizing;

use super::format::{print_json, rfc3339};

/// Pairing commands.
#[derive(Subcommand)]
pub enum PairingCommand {
    /// Mint a one-time pairing code: a PIN to type on the device, or a QR
    /// code (a `keygate://` URI) to scan.
    Mint(MintArgs),
    /// List pairing requests (never codes): pending ones with the check
    /// code the device shows, and the decided ones.
    List {
        /// Print JSON: an array of requests.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request: the device is enrolled and issued its
    /// certificate. Compare the check code with the device's first.
    Approve {
        /// The request id (from `pairing list`).
        request_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reject a pending request; the device is told the reason.
    Reject {
        /// The request id (from `pairing list`).
        request_id: String,
        /// Why, shown to the device.
        #[arg(long, default_value = "rejected by the operator")]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `pairing mint`'s options.
#[derive(Args)]
#[command(group = clap::ArgGroup::new("method").required(true).args(["pin", "qr"]))]
pub struct MintArgs {
    /// Mint a PIN (`[pairing] pin_digits` digits).
    #[arg(long)]
    pin: bool,
    /// Mint a QR code carrying the gateway addresses, the CA fingerprint
    /// and a 128-bit one-time token.
    #[arg(long)]
    qr: bool,
    /// How long the code lives, e.g. `90s`, `10m`, `1h` (30s to 24h;
    /// default `[pairing] code_ttl`).
    #[arg(long, value_name = "DURATION")]
    ttl: Option<String>,
    /// Print JSON: `{"kind","code"|"uri","expires_at"}`.
    #[arg(long)]
    json: bool,
    /// Also write the QR code as a PNG image (created 0600: it holds the token).
    #[arg(long, value_name = "FILE", conflicts_with = "pin")]
    png: Option<PathBuf>,
    /// Also write the QR code as an SVG image (created 0600: it holds the token).
    #[arg(long, value_name = "FILE", conflicts_with = "pin")]
    svg: Option<PathBuf>,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum MintedView<'a> {
    Pin { code: &'a str, expires_at: String },
    Qr { uri: &'a str, expires_at: String },
}

pub fn run(cmd: PairingCommand, config_path: &Path) -> anyhow::Result<ExitCode> {
    match cmd {
        PairingCommand::Mint(args) => mint(args, config_path),
        PairingCommand::List { json } => {
            let opened = super::identity::open(config_path)?;
            super::requests::list(&opened.manager, json)
        }
        PairingCommand::Approve { request_id, json } => {
            let opened = super::identity::open(config_path)?;
            super::requests::approve(&opened.manager, &request_id, json)
        }
        PairingCommand::Reject {
            request_id,
            reason,
            json,
        } => {
            let opened = super::identity::open(config_path)?;
            super::requests::reject(&opened.manager, &request_id, &reason, json)
        }
    }
}

fn mint(args: MintArgs, config_path: &Path) -> anyhow::Result<ExitCode> {
    // A bad --ttl is refused before any state is touched.
    let ttl: Option<Duration> = args
        .ttl
        .as_deref()
        .map(|t| keygate_core::time::parse_duration(t).and_then(pairing::check_code_ttl))
        .transpose()
        .map_err(|m| anyhow::anyhow!("--ttl: {m}"))?;
    let opened = super::identity::open(config_path)?;
    let method = if args.pin { Method::Pin } else { Method::Qr };
    let minted = mint::mint(
        &opened.manager,
        &opened.config.pairing,
        &opened.config.gateway.advertise,
        method,
        ttl,
        &keygate_core::state::Actor::cli(),
        SystemTime::now(),
    )
    .context("cannot mint a pairing code")?;
    let session = minted.session();
    tracing::info!(
        session = %session.id,
        method = ?method,
        expires_at = %rfc3339(session.expires_at),
        "pairing code minted"
    );
    let expires_at = rfc3339(session.expires_at);

    match &minted {
        Minted::Pin { session } => {
            let secret = &session.secret;
            if args.json {
                print_json(&MintedView::Pin {
                    code: secret,
                    expires_at,
                })?;
            } else {
                outln!("pin         {}", secret.as_str());
                outln!("expires_at  {expires_at}");
            }
        }
        Minted::Qr { uri, .. } => {
            let qr = QrMatrix::encode(uri)?;
            if let Some(path) = &args.png {
                write_private(path, &qr.to_png()?)?;
            }
            if let Some(path) = &args.svg {
                write_private(path, qr.to_svg().as_bytes())?;
            }
            if args.json {
                print_json(&MintedView::Qr { uri, expires_at })?;
            } else {
                let drawing = Zeroizing::new(qr.to_terminal());
                for line in drawing.lines() {
                    outln!("{line}");
                }
                outln!("");
                outln!("{}", uri.as_str());
                outln!("expires_at  {expires_at}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file only the operator's account can read (it holds a code).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot write the QR code", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{}: cannot write the QR code", path.display()))?;
    Ok(())
}

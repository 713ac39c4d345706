//! `keygate pairing list|approve|reject`: the requests devices filed after
//! proving a code, and the operator's decisions on them.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use keygate_core::admin_api::RequestView;
use keygate_core::state::IdentityManager;
use keygate_core::state::pairing::{ApprovalRecord, RequestRefusal};

use super::format::{print_json, warn_unreadable};

/// `pairing list`: newest first; pending ones with their check code.
pub fn list(manager: &IdentityManager, json: bool) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    let listing = manager.approvals()?;
    warn_unreadable(&listing.unreadable);
    let mut records = listing.records;
    records.sort_by(|a, b| b.requested_at.cmp(&a.requested_at).then(a.id.cmp(&b.id)));
    let rows: Vec<RequestView> = records.iter().map(|r| RequestView::new(r, now)).collect();
    if json {
        print_json(&rows)?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<32}  {:<8}  {:<6}  {:<5}  {:<16}  {:<42}  FROM",
        "REQUEST",
        "STATUS",
        "CHECK",
        "HOW",
        "NAME",
        "DEVICE ID"
    );
    for r in &rows {
        outln!(
            "{:<32}  {:<8}  {:<6}  {:<5}  {:<16}  {:<42}  {}",
            r.id,
            r.status,
            r.check_code,
            r.method,
            r.name.escape_debug(),
            r.device_id,
            r.remote_addr
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a decided request, or fails with why it could not be decided.
fn report(
    outcome: Result<ApprovalRecord, RequestRefusal>,
    verb: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let record = outcome.map_err(anyhow::Error::new)?;
    if json {
        print_json(&RequestView::new(&record, SystemTime::now()))?;
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{verb} request {} of device {} ({})",
        record.id,
        record.device_id,
        record.device_name.escape_debug()
    );
    if let Some(cert) = &record.certificate {
        outln!("certificate  {}", cert.fingerprint);
    }
    Ok(ExitCode::SUCCESS)
}

/// `pairing approve ID`: enrols the device and issues its certificate.
pub fn approve(manager: &IdentityManager, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let outcome = manager
        .approve_request(
            id.trim(),
            &keygate_core::state::Actor::cli(),
            SystemTime::now(),
        )
        .with_context(|| format!("approving request {id}"))?;
    report(outcome, "approved", json)
}

/// `pairing reject ID --reason TEXT`: the device is told the reason.
pub fn reject(
    manager: &IdentityManager,
    id: &str,
    reason: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let outcome = manager
        .reject_request(
            id.trim(),
            &keygate_core::state::Actor::cli(),
            reason,
            SystemTime::now(),
        )
        .with_context(|| format!("rejecting request {id}"))?;
    report(outcome, "rejected", json)
}

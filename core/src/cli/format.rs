//! How the CLI writes times and JSON.

/// Unix seconds as RFC 3339 UTC (`2026-11-22T08:00:00Z`).
pub fn rfc3339(unix_secs: u64) -> String {
    keygate_core::time::rfc3339(keygate_core::time::from_unix_secs(unix_secs))
}

pub use keygate_core::time::unix_secs as unix;

/// Names each unreadable record on stderr: a listing shows the rest and
/// says what it left out.
pub fn warn_unreadable(records: &[keygate_core::state::UnreadableRecord]) {
    for record in records {
        eprintln!(
            "warning: skipped: {record} (`keygate state check` lists every unreadable record and can move them aside)"
        );
    }
}

/// What `devices revoke --json` and `certs revoke --json` print.
#[derive(serde::Serialize)]
struct RevokedView {
    /// `device_id` or `fingerprint`, and its value.
    #[serde(flatten)]
    subject: std::collections::BTreeMap<&'static str, String>,
    revoked: bool,
    already_revoked: bool,
    revoked_at: String,
    reason: String,
}

impl RevokedView {
    /// The outcome of revoking the thing named `field` = `value`.
    fn new(field: &'static str, value: &str, outcome: &keygate_core::state::RevokeOutcome) -> Self {
        use keygate_core::state::RevokeOutcome;
        let (r, already) = match outcome {
            RevokeOutcome::Revoked(r) => (r, false),
            RevokeOutcome::AlreadyRevoked(r) => (r, true),
        };
        Self {
            subject: [(field, value.to_owned())].into(),
            revoked: true,
            already_revoked: already,
            revoked_at: rfc3339(r.at),
            reason: r.reason.clone(),
        }
    }
}

/// Prints what a revoke command did, as JSON or as one line.
pub fn report_revocation(
    field: &'static str,
    noun: &str,
    value: &str,
    outcome: &keygate_core::state::RevokeOutcome,
    json: bool,
) -> anyhow::Result<()> {
    use keygate_core::state::RevokeOutcome;
    if json {
        return print_json(&RevokedView::new(field, value, outcome));
    }
    match outcome {
        RevokeOutcome::Revoked(r) => outln!("revoked {noun} {value} at {}", rfc3339(r.at)),
        RevokeOutcome::AlreadyRevoked(r) => outln!(
            "{noun} {value} was already revoked at {} ({})",
            rfc3339(r.at),
            r.reason
        ),
    }
    Ok(())
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Writes one line to stdout (see `outln!`).
pub fn write_line(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{args}") {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to stdout")),
    }
}

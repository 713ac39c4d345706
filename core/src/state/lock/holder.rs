//! The holder record: who holds the state lock, as one line of JSON in the
//! lock file (see the [module docs](super) for the protocol).

use std::fmt;
use std::sync::OnceLock;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::time::{from_unix_ms, rfc3339, rfc3339_ms, unix_ms};

/// Longest purpose string recorded; longer ones are cut (on a char boundary).
const MAX_PURPOSE_LEN: usize = 200;

/// How a guard holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// Readers: several processes may hold the lock together.
    Shared,
    /// Mutations: one holder, which records who it is in the lock file.
    Exclusive,
}

impl LockMode {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who holds (or held) the lock, as recorded in the lock file or, for a
/// holder in this process, in the in-process tier.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Process id of the holder.
    pub pid: u32,
    /// Host name of the machine the holder runs on.
    pub host: String,
    /// When the holder acquired the lock.
    pub since: SystemTime,
    /// What the holder said it was doing, e.g. `devices revoke`.
    pub purpose: String,
    /// The mode it holds the lock in.
    pub mode: LockMode,
}

/// The holder record as written to the lock file (one line of JSON).
#[derive(Serialize, Deserialize)]
struct Record {
    pid: u32,
    host: String,
    /// RFC 3339, for people reading the file; `since_unix_ms` is what is
    /// parsed back.
    #[serde(default)]
    since: String,
    since_unix_ms: u64,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    purpose: String,
}

impl Holder {
    /// This process, holding the lock from now on.
    pub(super) fn current(mode: LockMode, purpose: &str) -> Self {
        Holder {
            pid: std::process::id(),
            host: host_name().to_owned(),
            since: SystemTime::now(),
            purpose: one_line(purpose),
            mode,
        }
    }

    /// Parses a holder record from the content of a lock file.
    ///
    /// Tolerant: empty content, garbage, or a record missing the PID, host
    /// or timestamp gives `None` ("no holder recorded"), never an error.
    /// Unknown fields are ignored.
    pub fn parse(content: &[u8]) -> Option<Holder> {
        let text = std::str::from_utf8(content).ok()?.trim();
        if text.is_empty() {
            return None;
        }
        let record: Record = serde_json::from_str(text).ok()?;
        let mode = if record.mode == "shared" {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        };
        Some(Holder {
            pid: record.pid,
            host: one_line(&record.host),
            since: from_unix_ms(record.since_unix_ms),
            purpose: one_line(&record.purpose),
            mode,
        })
    }

    /// The record line written to the lock file, newline included.
    pub(super) fn to_record_line(&self) -> String {
        let record = Record {
            pid: self.pid,
            host: self.host.clone(),
            since: rfc3339_ms(self.since),
            since_unix_ms: unix_ms(self.since),
            mode: self.mode.as_str().to_owned(),
            purpose: self.purpose.clone(),
        };
        // Serializing a struct of strings and integers cannot fail; fall
        // back to an empty record (read back as "no holder") all the same.
        let mut line = serde_json::to_string(&record).unwrap_or_default();
        line.push('\n');
        line
    }

    /// `since` as RFC 3339 in UTC, to the second (`2026-11-22T08:00:00Z`).
    pub fn since_rfc3339(&self) -> String {
        rfc3339(self.since)
    }
}

impl fmt::Display for Holder {
    /// `pid 4242 on host gw-1 since 2026-11-22T08:00:00Z (devices revoke)`,
    /// with `, shared` added for a shared holder.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} on host {} since {}",
            self.pid,
            self.host,
            self.since_rfc3339()
        )?;
        match (self.purpose.is_empty(), self.mode) {
            (true, LockMode::Exclusive) => Ok(()),
            (true, LockMode::Shared) => f.write_str(" (shared)"),
            (false, LockMode::Exclusive) => write!(f, " ({})", self.purpose),
            (false, LockMode::Shared) => write!(f, " ({}, shared)", self.purpose),
        }
    }
}

/// This machine's host name, as recorded in holder records: the kernel's
/// (`/proc/sys/kernel/hostname`), else `/etc/hostname`, else `$HOSTNAME`,
/// else `unknown-host`. Read once per process.
pub fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .chain(std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_owned())
            .find(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned())
    })
}

/// A field read from a lock file, fit for a one-line message: control
/// characters become spaces and it is cut to [`MAX_PURPOSE_LEN`] bytes.
fn one_line(field: &str) -> String {
    truncate_purpose(&field.replace(char::is_control, " "))
}

fn truncate_purpose(purpose: &str) -> String {
    let mut end = purpose.len().min(MAX_PURPOSE_LEN);
    while !purpose.is_char_boundary(end) {
        end -= 1;
    }
    purpose[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_record_round_trips() {
        let holder = Holder {
            pid: 4242,
            host: "gw-1".into(),
            since: from_unix_ms(1_795_334_400_000),
            purpose: "devices revoke \"x\" é".into(),
            mode: LockMode::Exclusive,
        };
        let line = holder.to_record_line();
        assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
        assert!(line.contains("\"since\":\"2026-11-22T08:00:00.000Z\""));
        assert_eq!(Holder::parse(line.as_bytes()), Some(holder));
    }

    #[test]
    fn garbage_and_partial_records_mean_no_holder() {
        for content in [
            &b""[..],
            b"\n  \n",
            b"\xff\xfe\x00",
            b"pid=12",
            b"{\"pid\":12}",
            b"{\"pid\":-1,\"host\":\"h\",\"since_unix_ms\":0}",
            b"[1,2,3]",
        ] {
            assert_eq!(Holder::parse(content), None, "{content:?}");
        }
    }

    #[test]
    fn a_record_read_back_displays_on_one_line() {
        let record = format!(
            r#"{{"pid":7,"host":"h\nx","since_unix_ms":0,"purpose":"a\r\nb{}"}}"#,
            "p".repeat(500)
        );
        let holder = Holder::parse(record.as_bytes()).expect("a holder");
        assert_eq!(holder.host, "h x");
        assert!(holder.purpose.starts_with("a  b"), "{:?}", holder.purpose);
        assert_eq!(holder.purpose.len(), MAX_PURPOSE_LEN);
        assert!(!holder.to_string().contains(['\n', '\r']));
    }

    #[test]
    fn long_purposes_are_cut_on_a_char_boundary() {
        let purpose = "é".repeat(MAX_PURPOSE_LEN);
        let cut = truncate_purpose(&purpose);
        assert!(cut.len() <= MAX_PURPOSE_LEN && !cut.is_empty());
    }
}

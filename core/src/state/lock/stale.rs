//! Stale holder records: a record left in a lock file whose flock is free,
//! and why its writer is judged gone.

use std::path::Path;

use super::holder::{Holder, host_name};

/// Why a holder record found in a free lock file was judged stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StaleReason {
    /// The recorded process is on this host and no longer runs.
    DeadProcess,
    /// The recorded PID is running on this host but does not hold the lock:
    /// the PID was reused (or is this process's own PID, left by an earlier
    /// process that had it).
    ProcessAliveWithoutLock,
    /// The record names another host; its flock is free here.
    OtherHost,
    /// The record names this host, but liveness cannot be checked (no
    /// `/proc`).
    LivenessUnknown,
}

/// A stale holder record that an acquisition took over.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Takeover {
    /// The holder the record named.
    pub previous: Holder,
    /// Why it was judged stale.
    pub reason: StaleReason,
}

/// Whether `pid` runs on this host: `Some(true|false)` where `/proc` is
/// available, `None` elsewhere. A zombie counts as alive.
fn pid_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

pub(super) fn classify(previous: &Holder) -> StaleReason {
    if previous.host != host_name() {
        return StaleReason::OtherHost;
    }
    if previous.pid == std::process::id() {
        return StaleReason::ProcessAliveWithoutLock;
    }
    match pid_alive(previous.pid) {
        Some(false) => StaleReason::DeadProcess,
        Some(true) => StaleReason::ProcessAliveWithoutLock,
        None => StaleReason::LivenessUnknown,
    }
}

pub(super) fn log_takeover(path: &Path, previous: &Holder, reason: StaleReason) {
    let (pid, host, since) = (previous.pid, &previous.host, previous.since_rfc3339());
    let path = path.display();
    let purpose = &previous.purpose;
    match reason {
        StaleReason::DeadProcess => tracing::warn!(
            %path, %purpose,
            "taking over state lock left by dead pid {pid} on host {host} since {since}"
        ),
        StaleReason::ProcessAliveWithoutLock => tracing::warn!(
            %path, %purpose,
            "taking over state lock: holder pid {pid} on host {host} since {since} no longer \
             holds the lock (the pid is running, so it was probably reused)"
        ),
        StaleReason::OtherHost => tracing::warn!(
            %path, %purpose,
            "taking over state lock: the previous holder was pid {pid} on another host {host} \
             since {since} and its lock is free here; sharing a state directory between hosts \
             is only as safe as the filesystem's flock"
        ),
        StaleReason::LivenessUnknown => tracing::warn!(
            %path, %purpose,
            "taking over state lock left by pid {pid} on host {host} since {since}; its lock \
             is free (cannot check whether the process runs)"
        ),
    }
}

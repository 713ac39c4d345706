//! The two-tier state lock: who may read or mutate a state directory.
//!
//! The CLI and a running gateway may work on the same state directory at the
//! same time, and a gateway serves many requests on many threads. Every
//! read-modify-write of identity state therefore runs under a [`StateLock`]
//! guard, taken with [`StateLock::acquire_exclusive`]; readers that refresh
//! their view from the store take [`StateLock::acquire_shared`].
//!
//! # Protocol
//!
//! Acquiring takes two tiers, in this order, and a guard releases them in
//! the opposite order:
//!
//! 1. **In-process.** Every [`StateLock`] for the same (canonicalized) state
//!    directory in this process shares one slot, kept in a global registry.
//!    At most one guard of this process holds it, whatever its mode: in one
//!    process a shared guard excludes as much as an exclusive one. That keeps
//!    the in-process tier simple and free of writer starvation; readers are
//!    short, and shared mode exists for readers in *other* processes.
//! 2. **Across processes.** An advisory `flock(2)` on
//!    `<state_dir>/.identity-state.lock` (created with mode 0600), through
//!    [`std::fs::File::lock`] and friends: exclusive for mutations, shared for
//!    readers, so several reading processes may hold it together. The kernel
//!    releases a flock when its holder exits, however it exits.
//!
//! # The holder record
//!
//! The flock says *whether* the lock is held; it cannot say by whom. So an
//! exclusive holder writes one line of JSON into the lock file while it holds
//! it (padded with spaces to 512 bytes), and blanks it (overwrites it with
//! spaces, so the file never changes size) before it unlocks:
//!
//! ```text
//! {"pid":4242,"host":"gw-1","since":"2026-11-22T08:00:00.000Z","since_unix_ms":1795334400000,"mode":"exclusive","purpose":"devices revoke"}
//! ```
//!
//! A waiter that gives up reports that record ([`LockError::Timeout`]):
//! `state lock /x/.identity-state.lock is held by pid 4242 on host gw-1 since
//! 2026-11-22T08:00:00Z (devices revoke); gave up after 2s`. Shared readers
//! write nothing (they would overwrite each other), so a waiter blocked by
//! readers says it is held by shared readers. The record is read tolerantly:
//! an empty or blank file, or garbage, means "no holder", never an error. Do not
//! delete the lock file: a process that opened the old file and one that
//! created a new one would both hold "the" lock. (A holder checks after
//! locking that its handle is still the file at the path, and retries if not.)
//!
//! # Stale locks
//!
//! A record in a file whose flock is free is *stale*: its writer died without
//! releasing (SIGKILL, a crash, a power cut). The flock is the truth, so the
//! new holder simply takes the lock, reports the takeover on the guard
//! ([`StateLockGuard::took_over_from`], [`StateLockGuard::takeover`]) and
//! logs it with `tracing::warn!`, saying which case it was ([`StaleReason`]):
//! the PID is dead on this host (the usual case); the PID is alive but does
//! not hold the lock (PID reuse, e.g. a restarted container whose gateway is
//! PID 1 again); the record names another host (possible only on a shared
//! filesystem, where flock semantics depend on the filesystem); or liveness
//! cannot be checked (no `/proc`). A shared acquirer that finds a stale
//! record clears it, so that later waiters do not report a dead holder.
//!
//! # Waiting, and async callers
//!
//! Acquiring **blocks the calling thread** until the lock is free or the
//! timeout passes: the in-process tier waits on a condition variable, the
//! file tier polls `try_lock` with a backoff growing from 2 ms to 50 ms.
//! There is no fairness between waiters. Async code must not call the
//! `acquire_*` methods on a runtime thread: run them through the runtime's
//! blocking pool (with tokio, `spawn_blocking`). The guard is `Send`, so it
//! can be moved back out of the blocking task, held across `.await` points
//! and dropped on any thread. The lock is not re-entrant: acquiring it again
//! on a thread that already holds a guard for the same directory waits and
//! then times out naming this process.

mod holder;
mod stale;
mod tier;

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use holder::{Holder, LockMode, host_name};
pub use stale::{StaleReason, Takeover};

use stale::{classify, log_takeover};
use tier::{ProcessTier, ProcessTierHold, process_tier};

use crate::time::human_duration;

/// Name of the lock file inside the state directory.
pub const LOCK_FILE_NAME: &str = ".identity-state.lock";

/// First pause between two attempts at the file lock.
const BACKOFF_START: Duration = Duration::from_millis(2);
/// Longest pause between two attempts at the file lock.
const BACKOFF_MAX: Duration = Duration::from_millis(50);

/// Errors from acquiring or releasing the state lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock stayed held for the whole timeout.
    #[error("{}", timeout_message(path, holder.as_ref(), *held_shared, *waited))]
    Timeout {
        /// The lock file.
        path: PathBuf,
        /// The holder, if it recorded itself (exclusive holders do, and so
        /// does a holder in this process).
        holder: Option<Holder>,
        /// No holder recorded, and the lock was seen held by shared readers.
        held_shared: bool,
        /// The timeout the caller gave up after.
        waited: Duration,
    },
    /// The state directory or the lock file could not be used.
    #[error("{path}: state lock: {cause}")]
    Io {
        /// The state directory or lock file concerned.
        path: PathBuf,
        /// The underlying error (in the message, so not a `source`).
        cause: io::Error,
    },
}

fn timeout_message(
    path: &Path,
    holder: Option<&Holder>,
    held_shared: bool,
    waited: Duration,
) -> String {
    let by = match holder {
        Some(h) => {
            let here = if h.pid == std::process::id() && h.host == host_name() {
                " (this process)"
            } else {
                ""
            };
            format!("is held by {h}{here}")
        }
        None if held_shared => {
            "is held by one or more shared readers (readers record no identity)".to_owned()
        }
        None => "is held by a process that recorded no identity".to_owned(),
    };
    format!(
        "state lock {} {by}; gave up after {}",
        path.display(),
        human_duration(waited)
    )
}

fn io_error(path: &Path, cause: io::Error) -> LockError {
    LockError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// The state lock of one state directory. Cheap to clone; every value for
/// the same directory in this process shares the in-process tier.
#[derive(Debug, Clone)]
pub struct StateLock {
    state_dir: PathBuf,
    lock_path: PathBuf,
    tier: Arc<ProcessTier>,
}

impl StateLock {
    /// The lock of `state_dir`, which must exist and be a directory. Does
    /// not touch the lock file yet.
    pub fn new(state_dir: &Path) -> Result<Self, LockError> {
        let state_dir = state_dir
            .canonicalize()
            .map_err(|e| io_error(state_dir, e))?;
        if !state_dir.is_dir() {
            return Err(io_error(
                &state_dir,
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let lock_path = state_dir.join(LOCK_FILE_NAME);
        let tier = process_tier(&state_dir);
        Ok(StateLock {
            state_dir,
            lock_path,
            tier,
        })
    }

    /// The canonical state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The lock file, `<state_dir>/.identity-state.lock`.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// Takes the lock for a mutation (read-modify-write), waiting at most
    /// `timeout`. `purpose` (e.g. `devices revoke`) is recorded for waiters
    /// to report.
    ///
    /// Blocks the calling thread: from async code, call it through the
    /// runtime's blocking pool (see the [module docs](self)).
    pub fn acquire_exclusive(
        &self,
        purpose: &str,
        timeout: Duration,
    ) -> Result<StateLockGuard, LockError> {
        self.acquire(LockMode::Exclusive, purpose, timeout)
    }

    /// Takes the lock for reading, waiting at most `timeout`. Other
    /// processes may hold it shared at the same time; in this process it
    /// excludes like [`acquire_exclusive`](Self::acquire_exclusive).
    ///
    /// Blocks the calling thread: from async code, call it through the
    /// runtime's blocking pool (see the [module docs](self)).
    pub fn acquire_shared(
        &self,
        purpose: &str,
        timeout: Duration,
    ) -> Result<StateLockGuard, LockError> {
        self.acquire(LockMode::Shared, purpose, timeout)
    }

    /// Takes the lock in `mode`, waiting at most `timeout`; see
    /// [`acquire_exclusive`](Self::acquire_exclusive) and
    /// [`acquire_shared`](Self::acquire_shared).
    pub fn acquire(
        &self,
        mode: LockMode,
        purpose: &str,
        timeout: Duration,
    ) -> Result<StateLockGuard, LockError> {
        let start = Instant::now();
        let deadline = start.checked_add(timeout).unwrap_or_else(far_future);

        let tier = self
            .tier
            .acquire(mode, purpose, deadline)
            .map_err(|holder| LockError::Timeout {
                path: self.lock_path.clone(),
                holder,
                held_shared: false,
                waited: timeout,
            })?;

        let file = self.lock_file(&tier, mode, timeout, deadline)?;
        let previous = read_record(&file).map_err(|e| io_error(&self.lock_path, e))?;
        let takeover = previous.map(|previous| {
            let reason = classify(&previous);
            log_takeover(&self.lock_path, &previous, reason);
            Takeover { previous, reason }
        });

        let holder = Holder::current(mode, purpose);
        match mode {
            LockMode::Exclusive => write_record(&file, &holder.to_record_line()),
            // Another reader may be reading the stale record too; clearing
            // an already cleared file is harmless, and no exclusive holder
            // can write meanwhile.
            LockMode::Shared if takeover.is_some() => clear_record(&file),
            LockMode::Shared => Ok(()),
        }
        .map_err(|e| io_error(&self.lock_path, e))?;

        Ok(StateLockGuard {
            file: Some(file),
            lock_path: self.lock_path.clone(),
            mode,
            takeover,
            _tier: tier,
        })
    }

    /// Opens the lock file (or takes the one this process keeps open) and
    /// takes its flock in `mode` before `deadline`.
    fn lock_file(
        &self,
        tier: &ProcessTierHold,
        mode: LockMode,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Arc<File>, LockError> {
        let path = &self.lock_path;
        let mut backoff = BACKOFF_START;
        loop {
            let file = match tier.cached_file() {
                Some(file) => file,
                None => Arc::new(open_lock_file(path).map_err(|e| io_error(path, e))?),
            };
            loop {
                let attempt = match mode {
                    LockMode::Exclusive => file.try_lock(),
                    LockMode::Shared => file.try_lock_shared(),
                };
                match attempt {
                    Ok(()) => break,
                    Err(TryLockError::WouldBlock) => {}
                    Err(TryLockError::Error(e)) => return Err(io_error(path, e)),
                }
                let now = Instant::now();
                if now >= deadline {
                    return Err(self.timeout(timeout));
                }
                std::thread::sleep(backoff.min(deadline - now));
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            if is_same_file(&file, path).map_err(|e| io_error(path, e))? {
                tier.cache_file(Some(file.clone()));
                return Ok(file);
            }
            // The file was deleted or replaced after we opened it: our flock
            // protects nothing. Try again with the file now at the path.
            let _ = file.unlock();
            tier.cache_file(None);
            drop(file);
            if Instant::now() >= deadline {
                return Err(self.timeout(timeout));
            }
        }
    }

    /// The timeout error, naming whoever holds the file lock now.
    fn timeout(&self, waited: Duration) -> LockError {
        let holder = std::fs::read(&self.lock_path)
            .ok()
            .and_then(|content| Holder::parse(&content));
        let held_shared = holder.is_none() && held_by_readers(&self.lock_path);
        LockError::Timeout {
            path: self.lock_path.clone(),
            holder,
            held_shared,
            waited,
        }
    }
}

/// Proof of holding the state lock; dropping it releases both tiers (the
/// file first, so the next in-process waiter finds it free). `Send`: it may
/// be dropped on another thread than the one that acquired it.
#[derive(Debug)]
#[must_use = "the state lock is released when the guard is dropped"]
pub struct StateLockGuard {
    /// `None` once released.
    file: Option<Arc<File>>,
    lock_path: PathBuf,
    mode: LockMode,
    takeover: Option<Takeover>,
    /// Dropped after `Drop::drop` has released the file.
    _tier: ProcessTierHold,
}

impl StateLockGuard {
    /// The mode the lock is held in.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// The lock file.
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// The holder whose stale record this acquisition took over, if any.
    pub fn took_over_from(&self) -> Option<&Holder> {
        self.takeover.as_ref().map(|t| &t.previous)
    }

    /// The stale record taken over and why it was judged stale, if any.
    pub fn takeover(&self) -> Option<&Takeover> {
        self.takeover.as_ref()
    }

    /// Releases the lock now, reporting a failure to clear the holder
    /// record (dropping the guard only logs it). The lock is released even
    /// when this returns an error.
    pub fn release(mut self) -> Result<(), LockError> {
        self.release_file()
    }

    fn release_file(&mut self) -> Result<(), LockError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // Clear the record before unlocking, so the next holder does not
        // take it for a dead holder's.
        let cleared = match self.mode {
            LockMode::Exclusive => clear_record(&file),
            LockMode::Shared => Ok(()),
        };
        let unlocked = file.unlock();
        if unlocked.is_err() {
            // Closing the file releases the flock even if unlock failed:
            // do not keep it open for the next holder.
            self._tier.cache_file(None);
        }
        drop(file);
        cleared
            .and(unlocked)
            .map_err(|e| io_error(&self.lock_path, e))
    }
}

impl Drop for StateLockGuard {
    fn drop(&mut self) {
        if let Err(error) = self.release_file() {
            tracing::warn!(%error, "releasing the state lock");
        }
    }
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Whether the open `file` is still the file at `path` (not deleted or
/// replaced since it was opened).
fn is_same_file(file: &File, path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let open = file.metadata()?;
        match std::fs::metadata(path) {
            Ok(at_path) => Ok(open.dev() == at_path.dev() && open.ino() == at_path.ino()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        Ok(true)
    }
}

/// Whether the lock file is held shared right now (a probe that takes and
/// drops a shared lock; `false` if held exclusively or on any error).
fn held_by_readers(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let probe_ok = file.try_lock_shared().is_ok();
    let exclusive_free = probe_ok && file.unlock().is_ok() && file.try_lock().is_ok();
    // Shared readers hold it if a shared lock is possible but an exclusive
    // one is not.
    probe_ok && !exclusive_free
}

fn read_record(mut file: &File) -> io::Result<Option<Holder>> {
    let mut content = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut content)?;
    Ok(Holder::parse(&content))
}

/// The room a holder record takes at least: records are padded with
/// spaces to it, and cleared by overwriting them with spaces, so taking
/// and releasing the lock never changes the file's size (no block is
/// allocated and freed on every mutation).
const RECORD_ROOM: usize = 512;

fn write_record(file: &File, line: &str) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    let line = line.trim_end();
    // Spaces up to the room, or over whatever a longer record left, then
    // the newline: still one line.
    let width = (line.len() + 1).max(len).max(RECORD_ROOM);
    let mut bytes = Vec::with_capacity(width);
    bytes.extend_from_slice(line.as_bytes());
    bytes.resize(width - 1, b' ');
    bytes.push(b'\n');
    file.write_all_at(&bytes, 0)
}

/// Blanks the record: what is left reads as "no holder".
fn clear_record(file: &File) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    file.write_all_at(&vec![b' '; len], 0)
}

fn far_future() -> Instant {
    // About 30 years: "wait forever" for a `Duration::MAX` timeout.
    Instant::now() + Duration::from_secs(60 * 60 * 24 * 365 * 30)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn timeout_message_names_the_holder() {
        let error = LockError::Timeout {
            path: "/x/.identity-state.lock".into(),
            holder: Some(Holder {
                pid: 4242,
                host: "h".into(),
                since: UNIX_EPOCH + Duration::from_millis(1_795_334_400_000),
                purpose: "devices revoke".into(),
                mode: LockMode::Exclusive,
            }),
            held_shared: false,
            waited: Duration::from_secs(2),
        };
        assert_eq!(
            error.to_string(),
            "state lock /x/.identity-state.lock is held by pid 4242 on host h since \
             2026-11-22T08:00:00Z (devices revoke); gave up after 2s"
        );
    }
}

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
//! it, and truncates the file to empty before it unlocks:
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
//! an empty file or garbage means "no holder", never an error. Do not
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

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Name of the lock file inside the state directory.
pub const LOCK_FILE_NAME: &str = ".identity-state.lock";

/// Longest purpose string recorded; longer ones are cut (on a char boundary).
const MAX_PURPOSE_LEN: usize = 200;
/// First pause between two attempts at the file lock.
const BACKOFF_START: Duration = Duration::from_millis(2);
/// Longest pause between two attempts at the file lock.
const BACKOFF_MAX: Duration = Duration::from_millis(50);

/// How a guard holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// Readers: several processes may hold the lock together.
    Shared,
    /// Mutations: one holder, which records who it is in the lock file.
    Exclusive,
}

impl LockMode {
    fn as_str(self) -> &'static str {
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
    fn current(mode: LockMode, purpose: &str) -> Self {
        Holder {
            pid: std::process::id(),
            host: host_name().to_owned(),
            since: SystemTime::now(),
            purpose: truncate_purpose(purpose),
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
            host: record.host,
            since: UNIX_EPOCH + Duration::from_millis(record.since_unix_ms),
            purpose: record.purpose,
            mode,
        })
    }

    /// The record line written to the lock file, newline included.
    fn to_record_line(&self) -> String {
        let record = Record {
            pid: self.pid,
            host: self.host.clone(),
            since: rfc3339(self.since, true),
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
        rfc3339(self.since, false)
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
        /// How long the caller waited.
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

/// The in-process tier for one state directory: who of this process holds
/// it, and a condition variable signalled on release.
#[derive(Debug, Default)]
struct ProcessTier {
    holder: Mutex<Option<Holder>>,
    released: Condvar,
}

impl ProcessTier {
    fn state(&self) -> MutexGuard<'_, Option<Holder>> {
        // The state is a plain Option, consistent even if a holder panicked.
        self.holder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the slot before `deadline`, or returns who holds it.
    fn acquire(
        self: &Arc<Self>,
        mode: LockMode,
        purpose: &str,
        deadline: Instant,
    ) -> Result<ProcessTierHold, Option<Holder>> {
        let mut state = self.state();
        loop {
            if state.is_none() {
                *state = Some(Holder::current(mode, purpose));
                return Ok(ProcessTierHold(Arc::clone(self)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(state.clone());
            }
            state = self
                .released
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn release(&self) {
        *self.state() = None;
        // Waiters may have timed out meanwhile: wake them all so none of the
        // remaining ones misses the release.
        self.released.notify_all();
    }
}

/// A held in-process slot; releases it on drop. Holds no `MutexGuard`, so it
/// is `Send`.
#[derive(Debug)]
struct ProcessTierHold(Arc<ProcessTier>);

impl Drop for ProcessTierHold {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The in-process tiers, by canonical state directory. Entries are weak: a
/// tier lives as long as a [`StateLock`] or guard for its directory does.
fn process_tier(state_dir: &Path) -> Arc<ProcessTier> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<ProcessTier>>>> = OnceLock::new();
    let mut map = REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(tier) = map.get(state_dir).and_then(Weak::upgrade) {
        return tier;
    }
    map.retain(|_, tier| tier.strong_count() > 0);
    let tier = Arc::new(ProcessTier::default());
    map.insert(state_dir.to_path_buf(), Arc::downgrade(&tier));
    tier
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
                waited: start.elapsed(),
            })?;

        let file = self.lock_file(mode, start, deadline)?;
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
            LockMode::Shared if takeover.is_some() => file.set_len(0),
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

    /// Opens the lock file and takes its flock in `mode` before `deadline`.
    fn lock_file(
        &self,
        mode: LockMode,
        start: Instant,
        deadline: Instant,
    ) -> Result<File, LockError> {
        let path = &self.lock_path;
        let mut backoff = BACKOFF_START;
        loop {
            let file = open_lock_file(path).map_err(|e| io_error(path, e))?;
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
                    return Err(self.timeout(start.elapsed()));
                }
                std::thread::sleep(backoff.min(deadline - now));
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            if is_same_file(&file, path).map_err(|e| io_error(path, e))? {
                return Ok(file);
            }
            // The file was deleted or replaced after we opened it: our flock
            // protects nothing. Try again with the file now at the path.
            drop(file);
            if Instant::now() >= deadline {
                return Err(self.timeout(start.elapsed()));
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
    file: Option<File>,
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
            LockMode::Exclusive => file.set_len(0),
            LockMode::Shared => Ok(()),
        };
        let unlocked = file.unlock();
        // Closing the file releases the flock even if unlock failed.
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

/// Whether `pid` runs on this host: `Some(true|false)` where `/proc` is
/// available, `None` elsewhere. A zombie counts as alive.
fn pid_alive(pid: u32) -> Option<bool> {
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None;
    }
    Some(proc.join(pid.to_string()).exists())
}

fn classify(previous: &Holder) -> StaleReason {
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

fn log_takeover(path: &Path, previous: &Holder, reason: StaleReason) {
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

fn write_record(mut file: &File, line: &str) -> io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(line.as_bytes())
}

fn truncate_purpose(purpose: &str) -> String {
    let mut end = purpose.len().min(MAX_PURPOSE_LEN);
    while !purpose.is_char_boundary(end) {
        end -= 1;
    }
    purpose[..end].to_owned()
}

fn far_future() -> Instant {
    // About 30 years: "wait forever" for a `Duration::MAX` timeout.
    Instant::now() + Duration::from_secs(60 * 60 * 24 * 365 * 30)
}

fn unix_ms(time: SystemTime) -> u64 {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// RFC 3339 in UTC: `2026-11-22T08:00:00Z`, or `...00.123Z` with `millis`.
fn rfc3339(time: SystemTime, millis: bool) -> String {
    let ms = unix_ms(time);
    let secs = ms / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if millis {
        format!(
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
            ms % 1000
        )
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    }
}

/// Days since 1970-01-01 to a (year, month, day) date, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `2s`, `1.5s`, `500ms`.
fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_334_400_123);
        assert_eq!(rfc3339(t, false), "2026-11-22T08:00:00Z");
        assert_eq!(rfc3339(t, true), "2026-11-22T08:00:00.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH, false), "1970-01-01T00:00:00Z");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap, false), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn holder_record_round_trips() {
        let holder = Holder {
            pid: 4242,
            host: "gw-1".into(),
            since: UNIX_EPOCH + Duration::from_millis(1_795_334_400_000),
            purpose: "devices revoke \"x\"\n".into(),
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

    #[test]
    fn long_purposes_are_cut_on_a_char_boundary() {
        let purpose = "é".repeat(MAX_PURPOSE_LEN);
        let cut = truncate_purpose(&purpose);
        assert!(cut.len() <= MAX_PURPOSE_LEN && !cut.is_empty());
    }
}

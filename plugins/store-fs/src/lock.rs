//! The store-wide write lock: one writer at a time across threads and
//! processes.
//!
//! Every compare-and-write (the read, the comparison and the write of
//! `put` and `delete`) runs while holding an exclusive `flock` on
//! `<root>/.lock`. `flock` belongs to an open file description, which all
//! threads of one store share, so a mutex orders the threads of one store
//! first; two store objects on one root (or two processes) each have their
//! own description and exclude each other through the `flock`. The kernel
//! releases the lock when a process dies, so a crash never leaves the
//! store locked. Readers (`get`, `list`) take no lock: renames are atomic.
//!
//! The mutex also guards the state a store object keeps about the journal
//! (see the `journal` module), which only writers touch.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use keygate_sdk::PluginError;

use crate::durable::FILE_MODE;

/// The name of the lock file in the root.
pub(crate) const LOCK_FILE: &str = ".lock";

/// The lock of one store object, guarding the writers' state `T`.
pub(crate) struct StoreLock<T> {
    file: File,
    path: PathBuf,
    threads: Mutex<T>,
}

/// Held while a store object owns the store-wide lock; releases it when
/// dropped. Gives access to the guarded state.
pub(crate) struct LockGuard<'a, T> {
    file: &'a File,
    // Dropped after `Drop::drop` has released the flock.
    state: MutexGuard<'a, T>,
}

impl<T> LockGuard<'_, T> {
    /// The guarded state and the lock file (which the journal also uses
    /// for its "applied" mark).
    pub(crate) fn parts(&mut self) -> (&mut T, &File) {
        (&mut self.state, self.file)
    }
}

impl<T> Drop for LockGuard<'_, T> {
    fn drop(&mut self) {
        // Closing the file would release it too; an error here leaves the
        // flock held until then, which only delays other writers.
        let _ = self.file.unlock();
    }
}

impl<T> StoreLock<T> {
    /// Opens (creating, mode 0600) the lock file of the store at `root`;
    /// `state` is what the lock guards.
    pub(crate) fn open(root: &Path, state: T) -> Result<Self, PluginError> {
        let path = root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(|e| {
                PluginError::unavailable(format!(
                    "cannot open the store lock file {}: {e}",
                    path.display()
                ))
            })?;
        Ok(Self {
            file,
            path,
            threads: Mutex::new(state),
        })
    }

    /// Waits for and takes the store-wide lock.
    pub(crate) fn lock(&self) -> Result<LockGuard<'_, T>, PluginError> {
        // A poisoned mutex: a writer panicked while holding it. The guarded
        // state (what a store object remembers of the journal) is checked
        // against the disk by every writer before use, so it is taken as it
        // is.
        let threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match self.file.lock() {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(PluginError::unavailable(format!(
                        "cannot lock {}: {e}",
                        self.path.display()
                    )));
                }
            }
        }
        Ok(LockGuard {
            file: &self.file,
            state: threads,
        })
    }
}

//! The in-process tier of the state lock: one slot per state directory,
//! shared by every `StateLock` of this process, with a condition variable
//! its waiters sleep on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Instant;

use super::LockMode;
use super::holder::Holder;

/// The in-process tier for one state directory: who of this process holds
/// it, and a condition variable signalled on release.
#[derive(Debug, Default)]
pub(super) struct ProcessTier {
    holder: Mutex<Option<Holder>>,
    released: Condvar,
    /// The lock file, kept open between holders of this process (one at a
    /// time, so they may share its open file description): taking the lock
    /// then costs no `open` and no `close`.
    file: Mutex<Option<Arc<std::fs::File>>>,
}

impl ProcessTier {
    fn state(&self) -> MutexGuard<'_, Option<Holder>> {
        // The state is a plain Option, consistent even if a holder panicked.
        self.holder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the slot before `deadline`, or returns who holds it.
    pub(super) fn acquire(
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

impl ProcessTierHold {
    /// The lock file kept open by an earlier holder, if any.
    pub(super) fn cached_file(&self) -> Option<Arc<std::fs::File>> {
        self.0
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `file` open for the next holder (`None`: close it once the
    /// holders let go).
    pub(super) fn cache_file(&self, file: Option<Arc<std::fs::File>>) {
        *self.0.file.lock().unwrap_or_else(PoisonError::into_inner) = file;
    }
}

/// A held in-process slot; releases it on drop. Holds no `MutexGuard`, so it
/// is `Send`.
#[derive(Debug)]
pub(super) struct ProcessTierHold(Arc<ProcessTier>);

impl Drop for ProcessTierHold {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The in-process tiers, by canonical state directory. Entries are weak: a
/// tier lives as long as a [`StateLock`] or guard for its directory does.
pub(super) fn process_tier(state_dir: &Path) -> Arc<ProcessTier> {
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

//! A background thread that keeps an [`IdentityManager`]'s revocation index
//! current and reports revocations made by other processes.
//!
//! It refreshes the index (follows the change log) every `interval`. When
//! the store has the watch capability it also refreshes as soon as the
//! store reports a write, whoever made it (another gateway, the CLI on
//! another host): it reads the store's write position, refreshes, and
//! waits for the position to move, in slices of `interval` so it can stop.
//! Reading the position *before* the refresh means a write that commits
//! during the refresh moves it, so no write is slept through. While the
//! store cannot watch (its notification channel is down) it polls every
//! `interval` as it would without the capability.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keygate_sdk::WatchStore;

use super::manager::{IdentityManager, RevocationEvent};

/// The default polling interval: a revocation made elsewhere is seen within
/// about this long (plus the refresh itself), or at once with a store that
/// reports writes.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// With a store that reports writes, the index is still refreshed at least
/// this many intervals apart, in case a report went missing.
const WATCHED_REFRESH_INTERVALS: u32 = 4;

/// The longest single wait on the store, so a watcher being dropped stops
/// within about this long.
const STOP_SLICE: Duration = Duration::from_millis(250);

/// A running watcher; stops when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    events: Receiver<RevocationEvent>,
}

impl Watcher {
    /// Starts refreshing `manager` every `interval` (and, with a store that
    /// reports writes, on every write) on its own thread.
    pub fn start(manager: Arc<IdentityManager>, interval: Duration) -> std::io::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = channel();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("keygate-revocation-watch".into())
            .spawn(move || {
                let mut follow = Follow {
                    manager: &manager,
                    tx: &tx,
                    failing: false,
                };
                match manager.store_watch() {
                    Some(watch) => follow.watched(&*watch, interval, &flag),
                    None => {
                        while !flag.load(Ordering::Relaxed) && follow.refresh() {
                            std::thread::park_timeout(interval);
                        }
                    }
                }
            })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
            events,
        })
    }

    /// Revocations seen, in order.
    pub fn events(&self) -> &Receiver<RevocationEvent> {
        &self.events
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The watcher thread's state.
struct Follow<'a> {
    manager: &'a IdentityManager,
    tx: &'a Sender<RevocationEvent>,
    /// The last refresh failed (logged once until one works again).
    failing: bool,
}

impl Follow<'_> {
    /// Refreshes once and sends what it found; `false` once nobody
    /// listens.
    fn refresh(&mut self) -> bool {
        match self.manager.refresh() {
            Ok(found) => {
                if self.failing {
                    tracing::info!("revocation index refresh works again");
                    self.failing = false;
                }
                found.into_iter().all(|event| self.tx.send(event).is_ok())
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(error = %e, "revocation index refresh failed; retrying");
                    self.failing = true;
                }
                true
            }
        }
    }

    /// The loop for a store that reports writes.
    fn watched(&mut self, watch: &dyn WatchStore, interval: Duration, stop: &AtomicBool) {
        // Waits are cut into slices this long, so a stop is seen soon.
        let slice = interval.min(STOP_SLICE);
        let backstop = interval.saturating_mul(WATCHED_REFRESH_INTERVALS);
        // `None`: the store cannot watch now; poll until it can.
        let mut seen = None;
        let mut watch_down = false;
        while !stop.load(Ordering::Relaxed) {
            if seen.is_none() {
                seen = match watch.wait_for_writes(0, Duration::ZERO) {
                    Ok(position) => {
                        if watch_down {
                            tracing::info!("the store reports writes again");
                            watch_down = false;
                        }
                        Some(position)
                    }
                    Err(e) => {
                        if !watch_down {
                            tracing::warn!(error = %e, "the store cannot report writes; polling");
                            watch_down = true;
                        }
                        None
                    }
                };
            }
            if !self.refresh() {
                return;
            }
            let refreshed = Instant::now();
            let Some(position) = seen else {
                std::thread::park_timeout(interval);
                continue;
            };
            // Wait for the position to move, a slice at a time, and
            // refresh anyway once `backstop` passed.
            while refreshed.elapsed() < backstop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                match watch.wait_for_writes(position, slice) {
                    Ok(moved) if moved != position => {
                        seen = Some(moved);
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the store stopped reporting writes; polling");
                        watch_down = true;
                        seen = None;
                        break;
                    }
                }
            }
        }
    }
}

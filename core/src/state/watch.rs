//! A background thread that keeps an [`IdentityManager`]'s revocation index
//! current and reports revocations made by other processes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use super::manager::{IdentityManager, RevocationEvent};

/// The default polling interval: a revocation made elsewhere is seen within
/// about this long (plus the refresh itself).
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// A running watcher; stops when dropped.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    events: Receiver<RevocationEvent>,
}

impl Watcher {
    /// Starts refreshing `manager` every `interval` on its own thread.
    pub fn start(manager: Arc<IdentityManager>, interval: Duration) -> std::io::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = channel();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("keygate-revocation-watch".into())
            .spawn(move || {
                let mut failing = false;
                while !flag.load(Ordering::Relaxed) {
                    match manager.refresh() {
                        Ok(found) => {
                            if failing {
                                tracing::info!("revocation index refresh works again");
                                failing = false;
                            }
                            for event in found {
                                if tx.send(event).is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            if !failing {
                                tracing::warn!(error = %e, "revocation index refresh failed; retrying");
                                failing = true;
                            }
                        }
                    }
                    std::thread::park_timeout(interval);
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

//! The transport's own threads: a tokio runtime for the QUIC I/O.
//!
//! A cdylib carries its own copy of tokio, so the plugin cannot borrow the
//! host's runtime; and no future crosses the ABI. The host's calls are
//! blocking: [`Runtime::run`] polls the work once on the calling thread
//! and, when it is not done, has the runtime finish it while the caller
//! waits, so it works from any thread, including one inside the host's own
//! runtime or inside an event callback.
//!
//! Events are delivered by the task that produced them, on the runtime
//! thread it runs on ([`emit`]): no thread hand-off per event. A
//! connection's `Connected` comes before its frames and a stream's frames
//! come in order, since one task produces them one after the other; the
//! two runtime threads may be inside the host's `on_event` at once, for
//! different connections or streams. A host that calls back into the
//! transport from `on_event` (it answers a frame with `send_frame`, say)
//! cannot deadlock it: a call that cannot finish at once blocks its
//! runtime thread through [`tokio::task::block_in_place`], which first
//! hands the thread's other work to another thread.

use std::cell::Cell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};

use keygate_sdk::{PluginContext, PluginError, TransportEvent, TransportHost};

/// Worker threads of the runtime. QUIC work is light per packet; two keep
/// one connection's crypto from holding up the others.
const WORKER_THREADS: usize = 2;

thread_local! {
    /// Set on the threads of every transport's runtime: a host call made
    /// there (from an event) must not simply wait for the runtime.
    static ON_RUNTIME_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The runtime of one transport.
#[derive(Debug)]
pub struct Runtime {
    rt: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    /// Starts the runtime's threads.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`](keygate_sdk::ErrorKind::Internal) when a
    /// thread cannot be started.
    pub fn new() -> Result<Self, PluginError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("keygate-quic")
            .enable_io()
            .enable_time()
            .on_thread_start(|| ON_RUNTIME_THREAD.set(true))
            .build()
            .map_err(|e| PluginError::internal(format!("starting the QUIC runtime: {e}")))?;
        Ok(Self { rt: Some(rt) })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        // Only `Drop` takes it.
        self.rt
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .expect("runtime present until drop")
    }

    /// Runs `work` on the runtime and blocks the calling thread until it
    /// ends.
    ///
    /// # Errors
    /// [`ErrorKind::Internal`](keygate_sdk::ErrorKind::Internal) when the
    /// work panicked or the runtime is stopping.
    pub fn run<T, F>(&self, work: F) -> Result<T, PluginError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let mut work = Box::pin(work);
        // Most calls can finish at once (a lock nobody holds, a frame the
        // stream has room for, a stream the peer allows): one poll here,
        // on the calling thread inside the runtime's context, spares
        // handing the work to a runtime thread and waiting to be woken.
        // Work that is not done goes on from where it stopped (the
        // runtime polls it again with a real waker).
        let first = {
            let _context = self.handle().enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                work.as_mut().poll(&mut Context::from_waker(Waker::noop()))
            }))
            .map_err(|_| PluginError::internal("a QUIC transport call panicked"))?
        };
        if let Poll::Ready(out) = first {
            return Ok(out);
        }
        if ON_RUNTIME_THREAD.get() {
            // A host call from inside an event, on a runtime thread (of
            // this transport or another). Waiting here for the runtime
            // could wait for this very thread (both threads of a runtime
            // may be in `on_event`): hand its other work on, then drive
            // the call here.
            return tokio::task::block_in_place(|| {
                std::panic::catch_unwind(AssertUnwindSafe(|| self.handle().block_on(work)))
            })
            .map_err(|_| PluginError::internal("a QUIC transport call panicked"));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.recv()
            .map_err(|_| PluginError::internal("the QUIC runtime stopped during the call"))
    }

    /// Runs `work` on the runtime in the background.
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle().spawn(work);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Never blocks, so dropping the transport is safe from any thread.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Delivers `event` to `host` on the calling thread. A host whose
/// `on_event` panics loses that event, not the task that emits it (which
/// still owes the connection's later events, its `Closed` included).
pub fn emit(host: &TransportHost, event: TransportEvent, log: &PluginContext) {
    if std::panic::catch_unwind(AssertUnwindSafe(|| host.emit(event))).is_err() {
        log.error("the host's on_event panicked; the event is lost");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_that_waits_is_finished_on_the_runtime_and_work_that_panics_is_an_error() {
        let runtime = Runtime::new().unwrap();
        assert_eq!(runtime.run(async { 1 }).unwrap(), 1);
        // Not done at the first poll: a timer only the runtime drives.
        let later = runtime.run(async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            2
        });
        assert_eq!(later.unwrap(), 2);
        // Spawning from the first poll needs the runtime's context.
        let spawned = runtime.run(async { tokio::spawn(async { 3 }).await.unwrap() });
        assert_eq!(spawned.unwrap(), 3);
        let panicked = runtime.run(async { panic!("in the first poll") });
        assert!(panicked.is_err());
        let panicked_later = runtime.run(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            panic!("on the runtime")
        });
        assert!(panicked_later.is_err());
    }

    #[test]
    fn a_call_made_on_a_runtime_thread_that_must_wait_finishes_even_with_both_threads_in_one() {
        // As a host answering from inside its events: both runtime threads
        // make a call that the first poll cannot finish.
        let runtime = std::sync::Arc::new(Runtime::new().unwrap());
        let (tx, rx) = mpsc::channel();
        for n in 0..WORKER_THREADS * 2 {
            let (inner, tx) = (runtime.clone(), tx.clone());
            runtime.spawn(async move {
                let out = inner.run(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    n
                });
                let _ = tx.send(out);
            });
        }
        let mut done: Vec<usize> = (0..WORKER_THREADS * 2)
            .map(|_| {
                rx.recv_timeout(std::time::Duration::from_secs(10))
                    .expect("a call on a runtime thread never finished")
                    .unwrap()
            })
            .collect();
        done.sort_unstable();
        assert_eq!(done, (0..WORKER_THREADS * 2).collect::<Vec<_>>());
        // A call there that panics after the first poll is an error.
        let (inner, tx) = (runtime.clone(), mpsc::channel());
        runtime.spawn(async move {
            let out = inner.run(async {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                panic!("later")
            });
            let _ = tx.0.send(out.is_err());
        });
        assert!(
            tx.1.recv_timeout(std::time::Duration::from_secs(10))
                .unwrap()
        );
    }

    #[test]
    fn an_event_the_host_panics_on_is_lost_alone() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Fussy(std::sync::Arc<AtomicUsize>);
        impl keygate_sdk::TransportCallbacks for Fussy {
            fn verify_client(&self, _chain: &[Vec<u8>]) -> Result<(), PluginError> {
                Ok(())
            }
            fn on_event(&self, event: TransportEvent) {
                if let TransportEvent::Closed { connection: 1, .. } = event {
                    panic!("the host's bug");
                }
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let seen = std::sync::Arc::new(AtomicUsize::new(0));
        let host = TransportHost::new(Fussy(seen.clone()));
        let log = keygate_sdk_testing::test_context("transport(quic)", "/".as_ref());
        let closed = |connection| TransportEvent::Closed {
            connection,
            reason: "test".into(),
        };
        emit(&host, closed(1), &log);
        emit(&host, closed(2), &log);
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_transport_dropped_on_its_own_runtime_thread_stops_without_blocking() {
        // A host that lets go of the transport from inside an event.
        let runtime = std::sync::Arc::new(Runtime::new().unwrap());
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (done, finished) = mpsc::channel();
        let last = runtime.clone();
        runtime.spawn(async move {
            let _ = wait.await;
            drop(last);
            let _ = done.send(());
        });
        drop(runtime);
        go.send(()).unwrap();
        finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("dropping the runtime on its own thread blocked or panicked");
    }

    #[test]
    fn a_transport_dropped_inside_the_hosts_async_code_stops_without_blocking() {
        let runtime = Runtime::new().unwrap();
        // A task that would never end on its own.
        runtime.spawn(std::future::pending());
        // A host with a tokio runtime of its own drops the transport from
        // a task: waiting there for our runtime's threads would panic.
        let host = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        host.block_on(async move { drop(runtime) });
    }
}

//! The transport's own threads: a tokio runtime for the QUIC I/O, and one
//! thread that hands events to the host.
//!
//! A cdylib carries its own copy of tokio, so the plugin cannot borrow the
//! host's runtime; and no future crosses the ABI. The host's calls are
//! blocking: [`Runtime::run`] polls the work once on the calling thread
//! and, when it is not done, spawns the rest on the runtime and waits for
//! it on a plain channel, so it works from any thread, including one
//! inside the host's own runtime or inside an event callback.
//!
//! Events go through one queue to one dispatcher thread, never from a
//! runtime thread: a host that answers a frame from inside
//! [`TransportHost::emit`]'s callback (by calling `send_frame`) blocks only
//! the dispatcher, never the I/O, so it cannot deadlock the transport. The
//! queue keeps the order in which events were emitted, so a connection's
//! `Connected` comes before its frames, and a stream's frames come in order.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};

use keygate_sdk::{PluginError, TransportEvent, TransportHost};

/// Worker threads of the runtime. QUIC work is light per packet; two keep
/// one connection's crypto from holding up the others.
const WORKER_THREADS: usize = 2;

/// The runtime and the event dispatcher of one transport.
#[derive(Debug)]
pub struct Runtime {
    rt: Option<tokio::runtime::Runtime>,
    events: EventSink,
}

impl Runtime {
    /// Starts the runtime's threads and the dispatcher thread.
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
            .build()
            .map_err(|e| PluginError::internal(format!("starting the QUIC runtime: {e}")))?;
        let (tx, rx) = mpsc::channel::<(TransportHost, TransportEvent)>();
        std::thread::Builder::new()
            .name("keygate-quic-events".into())
            .spawn(move || {
                // Ends when every sender is gone: the runtime's tasks and
                // the transport itself.
                for (host, event) in rx {
                    host.emit(event);
                }
            })
            .map_err(|e| PluginError::internal(format!("starting the event thread: {e}")))?;
        Ok(Self {
            rt: Some(rt),
            events: EventSink(tx),
        })
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

    /// The queue to the dispatcher thread.
    pub fn events(&self) -> EventSink {
        self.events.clone()
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

/// Where the runtime's tasks put events for the host.
#[derive(Debug, Clone)]
pub struct EventSink(mpsc::Sender<(TransportHost, TransportEvent)>);

impl EventSink {
    /// Queues `event` for `host`.
    pub fn emit(&self, host: &TransportHost, event: TransportEvent) {
        // Fails only when the dispatcher is gone, i.e. at teardown.
        let _ = self.0.send((host.clone(), event));
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

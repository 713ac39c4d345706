//! The `watch` capability: PostgreSQL's `LISTEN`/`NOTIFY`.
//!
//! Every write transaction (`put`, `delete`, `apply_batch`, `quarantine`)
//! runs `NOTIFY keygate_writes` before it commits; PostgreSQL delivers the
//! notification to every listening session when, and only if, the
//! transaction commits, so a listener that hears it and then reads sees the
//! write.
//!
//! A store listens only once asked ([`WatchStore::wait_for_writes`]): a
//! CLI process that never watches never holds a listening connection. The
//! first call starts a thread with a connection of its own (outside the
//! pool, `application_name` `keygate watch`), which runs `LISTEN
//! keygate_writes` and then waits for notifications. Its **write position**
//! moves by one for each burst of notifications it reads, and also each
//! time the connection is (re)established and listening: writes committed
//! while nobody listened were not heard, so the position moves in case
//! ("when in doubt, move", the trait's contract).
//!
//! While the connection is down, `wait_for_writes` waits out its timeout
//! and answers `Unavailable` naming the database and what failed, unless
//! the connection comes back meanwhile (the position then has moved). The
//! thread reconnects by itself, 100 ms after a failure and doubling to 2 s.
//! A connection that stays quiet for 5 s is checked with an empty query,
//! so a server that vanished without closing the socket is noticed.
//!
//! The channel is the same for every Keygate database on one server, so
//! gateways on another database of the same server wake too: that costs
//! them one read, never a missed write.
//!
//! Dropping the store stops the thread (within 200 ms) and closes its
//! connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use keygate_sdk::{PluginContext, PluginError, WatchStore};
use postgres::fallible_iterator::FallibleIterator;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::PgStore;
use crate::pool::db_error;

/// The notification channel every write transaction signals.
pub(crate) const CHANNEL: &str = "keygate_writes";

/// The statement a write transaction runs before it commits.
pub(crate) const NOTIFY: &str = "NOTIFY keygate_writes";

/// How long the listener waits for a notification before it looks at
/// whether it should stop.
const SLICE: Duration = Duration::from_millis(200);

/// A quiet connection is checked this often.
const HEALTH_CHECK: Duration = Duration::from_secs(5);

/// The first pause before reconnecting, doubled after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest pause before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What the listener thread tells waiters.
struct State {
    /// The write position.
    position: u64,
    /// Whether the connection is up and listening.
    up: bool,
    /// Whether the first attempt to connect has finished, either way.
    tried: bool,
    /// Why the connection is down, when it is.
    down_because: String,
}

/// Shared by the store and its listener thread.
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the state and wakes every waiter.
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// How the listener connects.
struct Connect {
    config: postgres::Config,
    tls: MakeRustlsConnect,
    place: String,
    timeout: Duration,
    ctx: PluginContext,
}

/// The store's listener: started on the first wait, stopped on drop.
pub(crate) struct Listener {
    shared: Arc<Shared>,
    connect: Mutex<Option<Connect>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    timeout: Duration,
}

impl Listener {
    /// A listener that will connect with `config` (given its own
    /// `application_name`) when first asked to wait.
    pub(crate) fn new(
        mut config: postgres::Config,
        tls: MakeRustlsConnect,
        place: String,
        timeout: Duration,
        ctx: PluginContext,
    ) -> Self {
        config.application_name("keygate watch");
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    position: 0,
                    up: false,
                    tried: false,
                    down_because: "not connected yet".into(),
                }),
                changed: Condvar::new(),
                stop: AtomicBool::new(false),
            }),
            connect: Mutex::new(Some(Connect {
                config,
                tls,
                place,
                timeout,
                ctx,
            })),
            thread: Mutex::new(None),
            timeout,
        }
    }

    /// Starts the thread if this is the first call, and then waits (up to
    /// the connect timeout) for its first attempt to connect.
    fn start(&self) -> Result<(), PluginError> {
        let connect = self
            .connect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(connect) = connect {
            let shared = self.shared.clone();
            let thread = std::thread::Builder::new()
                .name("keygate-pg-listen".into())
                .spawn(move || listen(&shared, &connect))
                .map_err(|e| {
                    PluginError::internal(format!("cannot start the listener thread: {e}"))
                })?;
            *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        }
        let state = self.shared.lock();
        // Each attempt ends within the connect timeout; a little slack for
        // the LISTEN itself.
        let _ = self
            .shared
            .changed
            .wait_timeout_while(state, self.timeout * 2, |s| !s.tried);
        Ok(())
    }

    /// The trait's `wait_for_writes`, for the store at `place`.
    fn wait(&self, seen: u64, timeout: Duration, place: &str) -> Result<u64, PluginError> {
        self.start()?;
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, timeout, |s| !(s.up && s.position != seen))
            .unwrap_or_else(|p| p.into_inner());
        if state.up {
            Ok(state.position)
        } else {
            Err(PluginError::unavailable(format!(
                "database {place}: not listening for writes: {}",
                state.down_because
            )))
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = thread.join();
        }
    }
}

impl WatchStore for PgStore {
    /// Waits for a notification on `keygate_writes`: see the module docs.
    fn wait_for_writes(&self, seen: u64, timeout: Duration) -> Result<u64, PluginError> {
        self.listener.wait(seen, timeout, self.pool.place())
    }
}

/// The listener thread: connect, listen, reconnect, until told to stop.
fn listen(shared: &Shared, connect: &Connect) {
    let mut backoff = FIRST_BACKOFF;
    let mut was_down = false;
    while !shared.stopping() {
        let why = match subscribe(connect) {
            Ok(mut client) => {
                shared.update(|s| {
                    s.up = true;
                    s.tried = true;
                    s.position = s.position.wrapping_add(1);
                });
                if was_down {
                    connect
                        .ctx
                        .info(&format!("listening for writes on {} again", connect.place));
                }
                backoff = FIRST_BACKOFF;
                match serve(&mut client, shared, connect) {
                    Some(why) => why,
                    None => break,
                }
            }
            Err(why) => why,
        };
        if !was_down {
            connect.ctx.warn(&format!(
                "stopped listening for writes on {}: {why}; reconnecting",
                connect.place
            ));
            was_down = true;
        }
        shared.update(|s| {
            s.up = false;
            s.tried = true;
            s.down_because = why;
        });
        let until = Instant::now() + backoff;
        while !shared.stopping() && Instant::now() < until {
            std::thread::sleep(SLICE.min(until.saturating_duration_since(Instant::now())));
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A new connection that listens on the channel.
fn subscribe(connect: &Connect) -> Result<postgres::Client, String> {
    let error =
        |what: &str, e: &postgres::Error| db_error(&connect.place, what, e).message().to_owned();
    let mut client = connect
        .config
        .connect(connect.tls.clone())
        .map_err(|e| error("connect", &e))?;
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(|e| error("listen for writes", &e))?;
    Ok(client)
}

/// Reads notifications until the connection fails (the reason) or the
/// store is dropped (`None`).
fn serve(client: &mut postgres::Client, shared: &Shared, connect: &Connect) -> Option<String> {
    let mut quiet_since = Instant::now();
    while !shared.stopping() {
        let heard = {
            let mut notifications = client.notifications();
            let first = notifications.timeout_iter(SLICE).next();
            match first {
                Ok(Some(_)) => {
                    // One move for the burst: drain what is already buffered.
                    while let Ok(Some(_)) = notifications.iter().next() {}
                    true
                }
                Ok(None) => false,
                Err(e) => {
                    return Some(
                        db_error(&connect.place, "read notifications", &e)
                            .message()
                            .to_owned(),
                    );
                }
            }
        };
        if heard {
            shared.update(|s| s.position = s.position.wrapping_add(1));
            quiet_since = Instant::now();
            continue;
        }
        if client.is_closed() {
            return Some(format!("database {}: the connection closed", connect.place));
        }
        if quiet_since.elapsed() >= HEALTH_CHECK {
            if let Err(e) = client.is_valid(connect.timeout) {
                return Some(
                    db_error(&connect.place, "check the connection", &e)
                        .message()
                        .to_owned(),
                );
            }
            quiet_since = Instant::now();
        }
    }
    None
}

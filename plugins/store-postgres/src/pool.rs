//! Connections: a pool (`r2d2`) of synchronous clients, and how database
//! errors become the SDK's error kinds.
//!
//! A connection is checked when it is taken from the pool (an empty query)
//! and replaced if it is broken, so after the database comes back the next
//! call works without reopening the store. Waiting for a connection (all
//! busy, or the database unreachable) ends after `connect_timeout_ms`.
//!
//! Error kinds: a failure to connect, a lost connection, a timeout, or any
//! error the database answers that is not about a record's own state is
//! `Unavailable` (the host retries later), never `Internal`.

use std::time::Duration;

use keygate_sdk::PluginError;
use postgres::error::SqlState;
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connect::Target;

/// A pooled client.
pub(crate) type Conn = r2d2::PooledConnection<PostgresConnectionManager<MakeRustlsConnect>>;

/// The store's connections to one database.
pub(crate) struct Pool {
    inner: r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>,
    place: String,
}

impl Pool {
    /// A pool of at most `size` connections; it connects lazily.
    pub(crate) fn new(
        target: &Target,
        tls: MakeRustlsConnect,
        size: u32,
        timeout: Duration,
    ) -> Self {
        let manager = PostgresConnectionManager::new(target.config().clone(), tls);
        let inner = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(0))
            .connection_timeout(timeout)
            .test_on_check_out(true)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        Self {
            inner,
            place: target.to_string(),
        }
    }

    /// A connection, or `Unavailable` naming the database.
    pub(crate) fn get(&self) -> Result<Conn, PluginError> {
        self.inner.get().map_err(|e| {
            PluginError::unavailable(format!("database {} is unavailable: {e}", self.place))
        })
    }

    /// `host:port/database`.
    pub(crate) fn place(&self) -> &str {
        &self.place
    }

    /// A database error met while doing `what`, as the SDK's error kind.
    pub(crate) fn error(&self, what: &str, e: &postgres::Error) -> PluginError {
        db_error(&self.place, what, e)
    }
}

/// A database error met at `place` while doing `what`: `Conflict` for a
/// lost race (a deadlock or a serialization failure, after which nothing
/// was written), `Unavailable` for everything else.
pub(crate) fn db_error(place: &str, what: &str, e: &postgres::Error) -> PluginError {
    let message = format!("database {place}: cannot {what}: {}", describe(e));
    match e.code() {
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED => {
            PluginError::conflict(format!("{message} (another writer won: read again)"))
        }
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE => {
            PluginError::conflict(format!("{message} (another writer won: read again)"))
        }
        _ => PluginError::unavailable(message),
    }
}

/// Whether `e` is a unique-constraint violation (a concurrent insert of
/// the same key won).
pub(crate) fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// The error's text, with the server's message when there is one (the
/// plain `Display` of a server error is only "db error") and the causes
/// of a client-side error ("error performing TLS handshake: invalid peer
/// certificate: UnknownIssuer").
fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

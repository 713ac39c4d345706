//! # `sqlite`: an example external Keygate secret store
//!
//! A [`SecretStore`] that keeps every record in one SQLite file, built as a
//! `cdylib` and loaded by the Keygate host from its path. It is the worked
//! example of `docs/plugin-guide.md`: everything here uses `keygate-sdk`
//! alone, with no `unsafe`.
//!
//! ```toml
//! [plugins.store]
//! library = "target/release/libkeygate_example_store_sqlite.so"
//! [plugins.store.config]
//! path = "keygate.db"        # required; relative to config.toml's folder
//! busy_timeout_ms = 5000     # optional; how long a write waits for a lock
//! ```
//!
//! ## How it keeps the store's promises
//! - **Versions.** One counter row, `version_counter.last`, is bumped inside
//!   the same transaction as every write, and the new value is the record's
//!   version. Versions therefore never repeat in the file, in particular not
//!   for a key that was deleted and created again.
//! - **Compare-and-swap.** Every write runs in a `BEGIN IMMEDIATE`
//!   transaction, which takes SQLite's write lock before it reads the current
//!   version, so the check and the write are one atomic step across threads
//!   *and* processes. A mismatch rolls back and changes nothing.
//! - **Several processes.** The file is in WAL mode (readers do not block the
//!   writer), and a busy timeout makes a writer wait for another process's
//!   transaction instead of failing at once.
//! - **Ordering.** Keys are `TEXT` with SQLite's default `BINARY` collation,
//!   which compares UTF-8 bytes: the same order as Rust's `str`. `list` is a
//!   range scan from the prefix (no `LIKE`, whose `%` and `_` are wildcards).
//!
//! Values are stored as given, **not encrypted**: the file (and its `-wal`
//! and `-shm` companions) holds Keygate's secrets, including the CA key. On
//! Unix a new file is created with mode `0600`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use keygate_sdk::{
    PluginContext, PluginError, SecretStore, StorePlugin, Version, Versioned, validate_key,
    validate_prefix,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use serde::Deserialize;

/// The schema this code writes, kept in SQLite's `user_version`.
const SCHEMA_VERSION: i64 = 1;

/// The default for `busy_timeout_ms`.
pub const DEFAULT_BUSY_TIMEOUT_MS: u32 = 5000;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS records (
        key     TEXT    NOT NULL PRIMARY KEY,
        value   BLOB    NOT NULL,
        version INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE IF NOT EXISTS version_counter (
        id   INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
        last INTEGER NOT NULL
    ) STRICT;
    INSERT OR IGNORE INTO version_counter (id, last) VALUES (1, 0);
";

/// The store's config table, as the operator writes it under
/// `[plugins.store.config]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file. Relative paths resolve against the folder of the
    /// operator's `config.toml` (see [`PluginContext::resolve_path`]).
    pub path: PathBuf,
    /// How long a write waits for another connection's lock before it gives
    /// up with [`ErrorKind::Unavailable`](keygate_sdk::ErrorKind::Unavailable).
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u32,
}

fn default_busy_timeout_ms() -> u32 {
    DEFAULT_BUSY_TIMEOUT_MS
}

impl SqliteConfig {
    /// Parses and checks a config table given as TOML text. Every error is
    /// [`ErrorKind::Invalid`](keygate_sdk::ErrorKind::Invalid) and names the
    /// field (and the line, for what the TOML gets wrong).
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let config: Self = keygate_sdk::config::parse(text)?;
        if config.path.as_os_str().is_empty() {
            return Err(PluginError::invalid(
                "field \"path\": must name a database file, not be empty",
            ));
        }
        if config.busy_timeout_ms > i32::MAX as u32 {
            return Err(PluginError::invalid(format!(
                "field \"busy_timeout_ms\": {} is larger than SQLite accepts ({})",
                config.busy_timeout_ms,
                i32::MAX
            )));
        }
        Ok(config)
    }
}

/// A [`SecretStore`] in one SQLite file.
///
/// One connection per store, behind a mutex: calls from several threads are
/// serialised here, and SQLite's own locking serialises writers across
/// connections and processes.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path`, which is used as
    /// given: resolve relative paths first.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self, PluginError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            PluginError::unavailable(format!("sqlite database {}: {what}: {e}", path.display()))
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| unavailable("cannot create its folder", &e))?;
        }
        create_private_file(path).map_err(|e| unavailable("cannot create the file", &e))?;

        // No URI parsing: the path is a file name, whatever it looks like.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)
            .map_err(|e| database_error(path, "opening the database", e))?;
        let setup = |e| database_error(path, "setting up the database", e);
        conn.busy_timeout(busy_timeout).map_err(setup)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(setup)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(PluginError::unavailable(format!(
                "sqlite database {}: cannot switch to WAL mode (journal mode stays {mode:?}); \
                 is it on a network file system?",
                path.display()
            )));
        }
        // A committed write survives a power cut, not only a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(setup)?;

        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(setup)?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(setup)?;
        match found {
            0 => {
                tx.execute_batch(SCHEMA).map_err(setup)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(setup)?;
            }
            SCHEMA_VERSION => {}
            other => {
                return Err(PluginError::invalid(format!(
                    "sqlite database {}: schema version {other}, but this plugin knows only \
                     version {SCHEMA_VERSION}: it was written by a newer plugin",
                    path.display()
                )));
            }
        }
        tx.commit().map_err(setup)?;

        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped its transaction, which
        // rolled back: the connection is usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key_error(&self, key: &str) -> impl Fn(rusqlite::Error) -> PluginError + '_ {
        let what = format!("key {key:?}");
        move |e| database_error(&self.path, &what, e)
    }
}

/// Creates `path` with owner-only permissions when it does not exist yet,
/// so SQLite (which copies the main file's mode onto `-wal` and `-shm`)
/// never writes secrets into a world-readable file.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Maps a database error to the SDK's kinds: a lock held too long or an I/O
/// failure is `Unavailable` (worth retrying later); anything else is
/// `Internal`. The message names the database and `what` was being done.
fn database_error(path: &Path, what: &str, e: rusqlite::Error) -> PluginError {
    use rusqlite::ErrorCode as C;
    let message = format!("{what}: sqlite database {}: {e}", path.display());
    match e.sqlite_error_code() {
        Some(
            C::DatabaseBusy
            | C::DatabaseLocked
            | C::SystemIoFailure
            | C::DiskFull
            | C::CannotOpen
            | C::FileLockingProtocolFailed
            | C::ReadOnly
            | C::PermissionDenied
            | C::NoLargeFileSupport
            | C::OutOfMemory,
        ) => PluginError::unavailable(message),
        _ => PluginError::internal(message),
    }
}

/// Reads a version column: SQLite integers are `i64`, versions are `u64`.
/// The version of `key` inside a write transaction, if it exists.
fn current_version(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    err: &impl Fn(rusqlite::Error) -> PluginError,
) -> Result<Option<Version>, PluginError> {
    tx.prepare_cached("SELECT version FROM records WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |row| row.get::<_, i64>(0)).optional())
        .map_err(err)?
        .map(|v| to_version(v, key))
        .transpose()
}

fn to_version(stored: i64, key: &str) -> Result<Version, PluginError> {
    Version::try_from(stored)
        .ok()
        .filter(|v| *v != 0)
        .ok_or_else(|| {
            PluginError::internal(format!(
                "key {key:?}: stored version {stored} is not a valid version (corrupt database?)"
            ))
        })
}

impl SecretStore for SqliteStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        validate_key(key)?;
        let conn = self.conn();
        let row = conn
            .prepare_cached("SELECT value, version FROM records WHERE key = ?1")
            .and_then(|mut stmt| {
                stmt.query_row([key], |row| {
                    Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
                })
                .optional()
            })
            .map_err(self.key_error(key))?;
        match row {
            None => Ok(None),
            Some((value, version)) => Ok(Some(Versioned {
                value,
                version: to_version(version, key)?,
            })),
        }
    }

    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        validate_key(key)?;
        let err = self.key_error(key);
        let mut conn = self.conn();
        // IMMEDIATE takes the write lock now, before the version is read:
        // no other connection can write between the check and the write.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let current = current_version(&tx, key, &err)?;
        if current != expected {
            // Dropping `tx` rolls back; nothing was written.
            return Err(PluginError::version_conflict(key, expected, current));
        }
        let version: i64 = tx
            .prepare_cached(
                "UPDATE version_counter SET last = last + 1 WHERE id = 1 RETURNING last",
            )
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
            .map_err(&err)?;
        tx.prepare_cached(
            "INSERT INTO records (key, value, version) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version",
        )
        .and_then(|mut stmt| stmt.execute(params![key, value, version]))
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        to_version(version, key)
    }

    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        validate_key(key)?;
        let err = self.key_error(key);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let current = current_version(&tx, key, &err)?;
        match current {
            None => Err(PluginError::not_found(format!("key {key:?}"))),
            Some(current) if current != expected => Err(PluginError::version_conflict(
                key,
                Some(expected),
                Some(current),
            )),
            Some(_) => {
                tx.prepare_cached("DELETE FROM records WHERE key = ?1")
                    .and_then(|mut stmt| stmt.execute([key]))
                    .map_err(&err)?;
                tx.commit().map_err(&err)
            }
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        validate_prefix(prefix)?;
        let err = |e| database_error(&self.path, &format!("list {prefix:?}"), e);
        let conn = self.conn();
        // Every key with the prefix sorts at or after the prefix itself, and
        // they are contiguous: walk the primary-key index from there and
        // stop at the first key without it.
        let mut stmt = conn
            .prepare_cached("SELECT key FROM records WHERE key >= ?1 ORDER BY key")
            .map_err(err)?;
        let mut rows = stmt.query([prefix]).map_err(err)?;
        let mut keys = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            let key: String = row.get(0).map_err(err)?;
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key);
        }
        Ok(keys)
    }
}

impl StorePlugin for SqliteStore {
    const NAME: &'static str = "sqlite";
    const DESCRIPTION: &'static str =
        "Example store: versioned records in one SQLite file (WAL), safe across processes";

    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError> {
        let config = SqliteConfig::parse(config)?;
        let path = ctx.resolve_path(&config.path);
        let store = Self::open(
            &path,
            Duration::from_millis(u64::from(config.busy_timeout_ms)),
        )?;
        ctx.info(&format!(
            "opened sqlite database {} (WAL, busy timeout {} ms)",
            path.display(),
            config.busy_timeout_ms
        ));
        Ok(store)
    }
}

keygate_sdk::export_plugins! {
    stores: [SqliteStore],
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_sdk::ErrorKind;

    #[test]
    fn config_defaults_the_busy_timeout() {
        let config = SqliteConfig::parse("path = \"a.db\"").expect("valid");
        assert_eq!(config.path, PathBuf::from("a.db"));
        assert_eq!(config.busy_timeout_ms, DEFAULT_BUSY_TIMEOUT_MS);
    }

    #[test]
    fn config_errors_name_the_field() {
        for (text, field) in [
            ("", "field \"path\": missing field"),
            ("path = 3", "line 1: field \"path\": invalid type"),
            ("path = \"\"", "field \"path\": must name a database file"),
            (
                "path = \"a\"\nbusy_timeout_ms = \"soon\"",
                "line 2: field \"busy_timeout_ms\": invalid type",
            ),
            (
                "path = \"a\"\nbusy_timeout_ms = -1",
                "line 2: field \"busy_timeout_ms\": invalid value",
            ),
            (
                "path = \"a\"\nbusy_timeout_ms = 4000000000",
                "field \"busy_timeout_ms\": 4000000000 is larger than SQLite accepts",
            ),
            (
                "path = \"a\"\nbusy_timeout = 10",
                "line 2: field \"busy_timeout\": unknown field",
            ),
        ] {
            let err = SqliteConfig::parse(text).expect_err(text);
            assert_eq!(err.kind(), ErrorKind::Invalid, "{text:?}: {err}");
            assert!(
                err.message().starts_with(field),
                "{text:?}: {err} does not start with {field}"
            );
            assert!(!err.message().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn config_syntax_errors_give_the_line() {
        let err = SqliteConfig::parse("path = \"a\"\nbusy_timeout_ms = ").expect_err("bad toml");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains("line 2"), "{err}");
    }
}

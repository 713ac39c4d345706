//! The built-in `postgres` secret store: records in a PostgreSQL table,
//! sealed with AES-256-GCM before they leave the gateway, with
//! compare-and-swap on a version column and atomic batches in one
//! transaction. Several gateways share one database.
//!
//! ```toml
//! [plugins.store]
//! use = "postgres"
//! [plugins.store.config]        # see the `config` module
//! url_env = "KEYGATE_DATABASE_URL"   # or url = "postgres://..."
//! pool_size = 4
//! connect_timeout_ms = 5000
//! # ca_file = "db-ca.pem"       # with ?sslmode=verify-full in the URL
//! key_file = "store.key"        # default <state_dir>/store.key
//! # passphrase_env = "KEYGATE_STORE_PASSPHRASE"   # instead of key_file
//! ```
//!
//! # In the database
//! Tables `keygate_records` (key, version, sealed value), `keygate_meta`
//! (schema version, key check, passphrase salt), `keygate_quarantine`
//! (rows moved aside) and the sequence `keygate_record_version`: see the
//! `schema` module. They are created when the store first opens a
//! database, under an advisory lock; a database with a newer schema
//! version is refused.
//!
//! - Value format: the sealed record of `keygate_seal::sealer`, the same
//!   bytes the filesystem store writes to a record file (magic `KGSR`,
//!   format version, record version, nonce, ciphertext, tag), with the
//!   record version and the key name as associated data. So a value edited
//!   in the table, a version column changed, or a row copied to another
//!   key is refused when read (`Internal`, naming the key: "tampered"),
//!   and never overwritten.
//! - Key: a key file or a passphrase, exactly as for the filesystem store
//!   (`key_file`, `passphrase_env`, same defaults), checked when the store
//!   opens against the key check in `keygate_meta`. Every gateway on one
//!   database needs the same key: copy the key file of the gateway that
//!   initialised the database. A key file is created only for a database
//!   with no key check and no record; see the `schema` module.
//!
//! # Writes and versions
//! Each `put`, `delete` and `apply_batch` ([`BatchStore`](keygate_sdk::BatchStore)) is one
//! transaction that locks the rows it writes, compares versions, draws new
//! versions from a sequence and writes: see the `records` module. So
//! compare-and-swap holds between threads, store objects, processes and
//! hosts. A batch checks every key first and writes nothing on any
//! failure; it commits as one transaction, so no reader on any host sees
//! part of it.
//!
//! # Watching
//! Every write transaction notifies the channel `keygate_writes` as it
//! commits, and the store implements [`WatchStore`](keygate_sdk::WatchStore)
//! with `LISTEN` on a connection of its own, opened on the first wait: so
//! every gateway on the database hears of a write (a revocation made
//! anywhere) within milliseconds. See the `watch` module.
//!
//! # Errors
//! The database unreachable or down, a lost connection, a timeout, or any
//! database error not about one record's contents is `Unavailable`: the
//! host retries later, and the pool replaces broken connections by itself
//! (see the `pool` module). Messages name the database as
//! `host:port/database`, never the URL (it may hold a password).
//!
//! # What the database shows without the key
//! Values are sealed; **key names are not**: the database operator sees
//! every key (for Keygate's identity state: device ids, certificate
//! fingerprints, pairing and approval ids, change-log sequence numbers),
//! how many records there are, each value's size, each record's version
//! (which grows by one global sequence, so it orders writes), and through
//! PostgreSQL's own statistics and logs when rows changed; quarantined rows
//! carry the time they were moved. No key name carries a secret in
//! Keygate's own records.
//!
//! # Limits
//! Keys up to the SDK's 1024 bytes; values up to PostgreSQL's 1 GB per
//! `bytea` (less the 41 bytes of sealing). The database's encoding should
//! be UTF8 (the keys column is text). `list` order is byte order, through
//! the "C" collation of the key column.
#![forbid(unsafe_code)]

mod batch;
mod config;
mod connect;
mod pool;
mod records;
mod schema;
mod tls;
mod watch;

use keygate_sdk::{
    PluginContext, PluginError, SecretStore, StorePlugin, Version, Versioned, validate_key,
    validate_prefix,
};
use keygate_seal::Sealer;

pub use crate::schema::SCHEMA_VERSION;

use crate::pool::Pool;
use crate::records::Write;
use crate::watch::Listener;

/// The `postgres` [`SecretStore`]: sealed records in a PostgreSQL database.
///
/// Build it with [`StorePlugin::from_config`]. Any number of store
/// objects, in any number of processes on any number of hosts, may use one
/// database at once.
pub struct PgStore {
    pool: Pool,
    sealer: Sealer,
    listener: Listener,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.pool.place())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, creates or checks the schema, and checks the key.
    fn open(settings: config::Settings, ctx: &PluginContext) -> Result<Self, PluginError> {
        let target = &settings.target;
        let place = target.to_string();
        let tls = tls::connector(target.tls(), target.ca_file())?;
        let mut client = target
            .config()
            .connect(tls.clone())
            .map_err(|e| pool::db_error(&place, "connect", &e))?;
        let sealer = schema::open(&mut client, &place, &settings.key, ctx)?;
        drop(client);
        let listener = Listener::new(
            target.config().clone(),
            tls.clone(),
            place.clone(),
            settings.connect_timeout,
            ctx.clone(),
        );
        let pool = Pool::new(target, tls, settings.pool_size, settings.connect_timeout);
        ctx.info(&format!("opened database {place}"));
        Ok(Self {
            pool,
            sealer,
            listener,
        })
    }

    /// The database, as `host:port/database`.
    pub fn database(&self) -> &str {
        self.pool.place()
    }
}

impl SecretStore for PgStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        validate_key(key)?;
        records::get(&self.pool, &self.sealer, key)
    }

    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        validate_key(key)?;
        records::commit(
            &self.pool,
            &self.sealer,
            &[Write::Put {
                key,
                value,
                expected,
            }],
        )?
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| PluginError::internal(format!("record {key:?}: no version was made")))
    }

    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        validate_key(key)?;
        records::commit(&self.pool, &self.sealer, &[Write::Delete { key, expected }]).map(drop)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        validate_prefix(prefix)?;
        records::list(&self.pool, prefix)
    }

    /// Moves the row, whatever it holds, into `keygate_quarantine` in one
    /// statement; answers `table keygate_quarantine, id N, in database
    /// HOST:PORT/DB`.
    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        validate_key(key)?;
        records::quarantine(&self.pool, key)
    }
}

impl StorePlugin for PgStore {
    const NAME: &'static str = "postgres";
    const DESCRIPTION: &'static str = "PostgreSQL database shared by several gateways; values sealed (AES-256-GCM) before they leave the gateway";

    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError> {
        let settings = config::parse(config, &ctx)?;
        Self::open(settings, &ctx)
    }
}

keygate_sdk::register_builtin_plugins! {
    stores: [PgStore: batch + watch],
}

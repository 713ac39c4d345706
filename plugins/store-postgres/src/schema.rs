//! The schema, created or checked when the store opens, and the store key
//! checked against the database's key check, all in one transaction under
//! a transaction-scoped advisory lock, so gateways opening one database at
//! once take turns.
//!
//! # Tables
//! ```sql
//! keygate_records(key text collate "C" primary key, version bigint not null,
//!                 value bytea not null)           -- one row per record
//! keygate_meta(name text primary key, value bytea not null)
//! keygate_quarantine(id bigserial primary key, key text not null,
//!                    version bigint not null, value bytea not null,
//!                    moved_at timestamptz not null default now())
//! keygate_record_version                          -- a sequence
//! ```
//! `keygate_meta` rows: `schema_version` (ASCII decimal, now `1`),
//! `keycheck` (the sealed key check of `keygate_seal::sealer`) and, for a
//! passphrase store, `kdf` (the Argon2id salt and parameters,
//! `keygate_seal::kdf`).
//!
//! # Schema version
//! A database without the tables gets them. A database whose
//! `schema_version` is newer than this build's is refused, naming both
//! versions (a newer gateway upgraded it: upgrade this one too), and
//! nothing is changed.
//!
//! # The key
//! With the lock held:
//! - a key check present: it must open with the key, else the error says
//!   the key file (or passphrase) does not match the key the database was
//!   created with, and tells the operator to copy the key file of the
//!   gateway that created it;
//! - no key check and no record: a new database. The key file is created
//!   if it does not exist (or the passphrase salt is made), and the key
//!   check is written, in the same transaction. Two gateways racing to
//!   initialise one database take turns on the lock: the second finds the
//!   first's key check and either has the same key (a shared key file) or
//!   is refused; it never writes a second key check;
//! - no key check but records: one record is opened with the key instead.
//!   If it opens, the key check is written again (with a warning); if not,
//!   the same mismatch error. A key file missing for a database that holds
//!   a key check or records is an error, never a new key.

use keygate_sdk::{PluginContext, PluginError};
use keygate_seal::{KdfParams, KeySource, OpenError, Sealer, StoreKey};
use postgres::Transaction;
use postgres::types::Type;

/// The schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The advisory lock key of the store's open: "keygate" in ASCII.
const OPEN_LOCK: i64 = 0x006b_6579_6761_7465;

const META_SCHEMA_VERSION: &str = "schema_version";
const META_KEYCHECK: &str = "keycheck";
const META_KDF: &str = "kdf";

const CREATE: &str = r#"
CREATE TABLE IF NOT EXISTS keygate_records (
    key text COLLATE "C" PRIMARY KEY,
    version bigint NOT NULL,
    value bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS keygate_quarantine (
    id bigserial PRIMARY KEY,
    key text NOT NULL,
    version bigint NOT NULL,
    value bytea NOT NULL,
    moved_at timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE IF NOT EXISTS keygate_record_version AS bigint MINVALUE 1;
CREATE TABLE IF NOT EXISTS keygate_meta (
    name text PRIMARY KEY,
    value bytea NOT NULL
);
"#;

/// The open transaction, with the database's place for messages.
struct Open<'a, 'b> {
    tx: &'a mut Transaction<'b>,
    place: &'a str,
}

impl Open<'_, '_> {
    fn err(&self, what: &str, e: &postgres::Error) -> PluginError {
        crate::pool::db_error(self.place, what, e)
    }

    fn meta(&mut self, name: &str) -> Result<Option<Vec<u8>>, PluginError> {
        let rows = self
            .tx
            .query_typed(
                "SELECT value FROM keygate_meta WHERE name = $1",
                &[(&name, Type::TEXT)],
            )
            .map_err(|e| self.err("read keygate_meta", &e))?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    fn set_meta(&mut self, name: &str, value: &[u8]) -> Result<(), PluginError> {
        self.tx
            .execute_typed(
                "INSERT INTO keygate_meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                &[(&name, Type::TEXT), (&value, Type::BYTEA)],
            )
            .map_err(|e| self.err("write keygate_meta", &e))?;
        Ok(())
    }

    /// Some record (key and sealed value), if there is any.
    fn first_record(&mut self) -> Result<Option<(String, Vec<u8>)>, PluginError> {
        let rows = self
            .tx
            .query_typed(
                "SELECT key, value FROM keygate_records ORDER BY key LIMIT 1",
                &[],
            )
            .map_err(|e| self.err("read keygate_records", &e))?;
        Ok(rows.first().map(|row| (row.get(0), row.get(1))))
    }

    /// Creates the tables, or checks the schema version of those found.
    fn schema(&mut self) -> Result<(), PluginError> {
        let exists: bool = self
            .tx
            .query_typed_one("SELECT to_regclass('keygate_meta') IS NOT NULL", &[])
            .map_err(|e| self.err("look for keygate_meta", &e))?
            .get(0);
        if exists && let Some(found) = self.meta(META_SCHEMA_VERSION)? {
            let found = std::str::from_utf8(&found)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .ok_or_else(|| {
                    PluginError::invalid(format!(
                        "database {}: the schema_version row of keygate_meta is not a number",
                        self.place
                    ))
                })?;
            if found > SCHEMA_VERSION {
                return Err(PluginError::invalid(format!(
                    "database {} has keygate schema version {found}, newer than version \
                     {SCHEMA_VERSION} this keygate build reads: upgrade this gateway",
                    self.place
                )));
            }
            if found == SCHEMA_VERSION {
                return Ok(());
            }
        }
        self.tx
            .batch_execute(CREATE)
            .map_err(|e| self.err("create the keygate tables", &e))?;
        self.set_meta(META_SCHEMA_VERSION, SCHEMA_VERSION.to_string().as_bytes())
    }
}

/// Creates or checks the schema and gets the store key from `source`,
/// verified against the database's key check (see the module docs).
pub(crate) fn open(
    client: &mut postgres::Client,
    place: &str,
    source: &KeySource,
    ctx: &PluginContext,
) -> Result<Sealer, PluginError> {
    let mut tx = client
        .transaction()
        .map_err(|e| crate::pool::db_error(place, "begin the open", &e))?;
    let mut open = Open { tx: &mut tx, place };
    open.tx
        .execute_typed(
            "SELECT pg_advisory_xact_lock($1)",
            &[(&OPEN_LOCK, Type::INT8)],
        )
        .map_err(|e| open.err("take the open lock", &e))?;
    open.schema()?;
    let sealer = unlock(&mut open, source, ctx)?;
    tx.commit()
        .map_err(|e| crate::pool::db_error(place, "commit the open", &e))?;
    Ok(sealer)
}

fn unlock(
    open: &mut Open<'_, '_>,
    source: &KeySource,
    ctx: &PluginContext,
) -> Result<Sealer, PluginError> {
    let place = open.place.to_owned();
    let check = open.meta(META_KEYCHECK)?;
    let mut first: Option<Option<(String, Vec<u8>)>> = None;
    let mut is_new = |open: &mut Open<'_, '_>| -> Result<bool, PluginError> {
        if check.is_some() {
            return Ok(false);
        }
        let found = open.first_record()?;
        let empty = found.is_none();
        first = Some(found);
        Ok(empty)
    };
    let key: StoreKey = match source {
        KeySource::File(path) => {
            if open.meta(META_KDF)?.is_some() {
                return Err(PluginError::invalid(format!(
                    "database {place} was initialised with a passphrase (keygate_meta has a \
                     kdf row): configure passphrase_env instead of key_file"
                )));
            }
            match keygate_seal::read_key_file(path, ctx)? {
                Some(key) => key,
                None if is_new(open)? => keygate_seal::create_key_file(path, ctx)?,
                None => {
                    return Err(PluginError::invalid(format!(
                        "key file {} does not exist, but database {place} already holds data \
                         sealed with a key: copy the key file of the gateway that initialised \
                         the database to {} (or point key_file at it)",
                        path.display(),
                        path.display()
                    )));
                }
            }
        }
        KeySource::Passphrase { passphrase, .. } => {
            let params = match open.meta(META_KDF)? {
                Some(bytes) => KdfParams::decode(&bytes).map_err(|e| {
                    PluginError::invalid(format!(
                        "database {place}: the kdf row of keygate_meta is damaged: {e}"
                    ))
                })?,
                None if is_new(open)? => {
                    let params = KdfParams::generate().map_err(|e| {
                        PluginError::internal(format!("cannot make a passphrase salt: {e}"))
                    })?;
                    open.set_meta(META_KDF, &params.encode())?;
                    params
                }
                None => {
                    return Err(PluginError::invalid(format!(
                        "database {place} holds data but no passphrase salt (keygate_meta has \
                         no kdf row): it was initialised with a key file, so configure key_file \
                         instead of passphrase_env"
                    )));
                }
            };
            params.derive(passphrase).map_err(|e| {
                PluginError::invalid(format!(
                    "cannot derive the store key with the parameters in keygate_meta of \
                     database {place}: {e}"
                ))
            })?
        }
    };
    let sealer = Sealer::new(&key);
    drop(key);
    let mismatch = |detail: &str| -> PluginError {
        PluginError::invalid(format!(
            "{} does not match the key database {place} was initialised with ({detail}): \
             every gateway on one database needs the same key; copy the key file of the \
             gateway that initialised it (or set the same passphrase)",
            source.describe()
        ))
    };
    match check {
        Some(bytes) => sealer.open_check(bytes).map_err(|e| match e {
            OpenError::AuthenticationFailed => {
                mismatch("its key check in keygate_meta does not open with it")
            }
            other => PluginError::internal(format!(
                "database {place}: the keycheck row of keygate_meta is damaged: {other}; if the \
                 key is right, delete that row and the store checks the key against a record \
                 and writes it again"
            )),
        })?,
        None => {
            let found = match first {
                Some(found) => found,
                None => open.first_record()?,
            };
            if let Some((key, value)) = found {
                if let Err(e) = sealer.open_record(&key, value) {
                    return Err(mismatch(&format!(
                        "its key check is missing, and record {key:?} did not open: {e}"
                    )));
                }
                ctx.warn(&format!(
                    "database {place}: the key check was missing; the key opened record \
                     {key:?}, so it was written again"
                ));
            }
            let check = sealer
                .seal_check()
                .map_err(|e| PluginError::internal(format!("cannot seal the key check: {e}")))?;
            open.set_meta(META_KEYCHECK, &check)?;
        }
    }
    Ok(sealer)
}

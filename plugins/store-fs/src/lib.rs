//! The built-in `filesystem` secret store: one AES-256-GCM sealed file per
//! record under a root folder, with compare-and-swap that holds across
//! threads and processes, and a write-ahead journal that makes each write
//! (one record, or a whole batch) durable and atomic with one `fdatasync`.
//!
//! ```toml
//! [plugins.store]
//! use = "filesystem"
//! [plugins.store.config]      # all optional: see the `config` module
//! root = "store"              # default <state_dir>/store
//! key_file = "store.key"      # default <state_dir>/store.key
//! # passphrase_env = "KEYGATE_STORE_PASSPHRASE"   # instead of key_file
//! ```
//!
//! # On disk
//! ```text
//! <root>/            0700
//!   .lock            the store-wide write lock (flock), and the journal's
//!                    "applied" mark
//!   .journal         the write-ahead journal: the writes since the last
//!                    checkpoint, each one frame (see the `journal` module)
//!   .keycheck        a sealed constant: tells a wrong key at open
//!   .quarantine/     record files moved aside (`quarantine`), as found
//!   .spare/          record files taken out by a replace or delete, and
//!                    empty ones made ahead in idle time by a store that
//!                    keeps creating records, to be filled and swapped in
//!                    by later writes (no inode is created or freed on the
//!                    write path: see the `spares` module)
//!   .kdf             Argon2id salt and parameters (passphrase stores only)
//!   devices/         one folder level per key segment, 0700
//!     ab%2Ecd.rec    the record of key "devices/ab.cd", 0600
//!     .tmp-…         a write in progress (or left by a crash): ignored
//! ```
//! - Key names map to file names reversibly and can never leave the root:
//!   see the `path` module (percent-encoding per segment, `.rec` suffix,
//!   dot-files reserved for the store).
//! - Record format: magic `KGSR`, format version byte, record version
//!   (u64 BE), 96-bit random nonce, ciphertext and tag, with the format
//!   version, the record version and the key name as associated data:
//!   see `keygate_seal::sealer`, shared with the `postgres` store.
//! - Journal format: a header (magic `KGSJ`, format version, generation,
//!   boot id) and frames (magic `KGJF`, generation, offset, length, the
//!   ops: key and sealed record file, or key and delete), each
//!   authenticated with the store key: see the `journal` module.
//! - Key: a 0600 key file of 32 random bytes, or Argon2id from a
//!   passphrase; see the `unlock` module and `keygate_seal`. Key material is wiped from memory
//!   when dropped.
//!
//! # Opening: the key check
//! A wrong key file or passphrase is caught when the store opens, not at
//! the first record: `.keycheck` must open with the key, else the error is
//! `key file X does not match the key this store (ROOT) was created with`
//! (or `the passphrase in $VAR ...`). If `.keycheck` is missing from a
//! store that holds records, one record is opened with the key instead: if
//! it opens, `.keycheck` is written again (with a warning); if not, the
//! same mismatch error names the record it tried. A key file is created
//! only for a new store: a missing key file (or passphrase salt) next to
//! existing records is an error, never a fresh key.
//!
//! # Writes and versions
//! `put`, `delete` and `apply_batch` ([`BatchStore`]) hold the store-wide
//! lock (a mutex plus an exclusive `flock` on `.lock`, see the `lock`
//! module) while they read the current records, compare their versions
//! and write, so compare-and-swap is atomic between threads, between store
//! objects and between processes on one root. A batch checks every key
//! and every version before it writes anything; any failure writes
//! nothing.
//!
//! A write goes through the journal (see the `journal` module): its new
//! records are sealed, appended to `.journal` as one frame, and the
//! journal is `fdatasync`ed, which commits the write; then each record is
//! written to a temp file and swapped in for its record file (renamed
//! into place), and each delete unlinks the file, without further syncs. A crash leaves each
//! record file old or new, never a mix; a crash after the commit is
//! completed from the journal by the next write or open (on another boot,
//! after a power loss, every write since the last checkpoint is applied
//! again). Every 4 MiB of journal a checkpoint (`syncfs`) makes the record
//! files durable and starts the journal afresh. So one write costs one
//! sync, and a batch of hundreds of records also one. A write (or batch)
//! may hold at most 256 MiB of sealed records. Emptied folders are left in
//! place (they cost nothing and keep `put` free of races with a concurrent
//! removal). `get` and `list` take no lock: they may see a batch's records
//! change one by one while it is applied.
//!
//! A created record gets a random 62-bit version (never zero); each update
//! adds one. The version lives in the sealed file, so it survives
//! restarts, and a key deleted and created again starts from a fresh random
//! point, so it never hands out a version of its earlier life (short of a
//! 1 in 2^62-scale coincidence).
//!
//! No operation does work that grows with the number of records: `get`,
//! `put` and `delete` touch one file and its folder (and the journal);
//! `list(prefix)` walks only the subtree the prefix's complete segments
//! name.
//!
//! # Damaged records
//! A record that does not open (no header, truncated, unsupported format,
//! failed authentication: tampered, moved from another key's name, or
//! sealed with another key) is an `Internal` error naming the key and the
//! file, e.g. `record "devices/x": authentication failed (tampered, moved,
//! or wrong key); file /var/lib/keygate/store/devices/x.rec`. It is never
//! returned as data and never overwritten: `get`, `put` (even with
//! `expected = None`) and `delete` of that key all refuse, and the file is
//! left as it is for inspection. To give up on it, restore it from a
//! backup, or move it aside with `keygate state check --quarantine` (the
//! store's `quarantine` renames the file, whatever it holds, into
//! `.quarantine/`, after a journal checkpoint so no replay brings it
//! back); the key is then absent.
//!
//! # Damaged journal
//! A torn last frame (a write that died mid-append, never reported done)
//! is cut off with a warning. A frame that does not authenticate with a
//! valid frame after it, or a journal whose header does not open with the
//! key (another store's journal), is an `Internal` error naming the
//! journal file: the store still opens for reading, and refuses every
//! write until the journal is restored or moved aside.
//!
//! # What the disk shows without the key
//! Values are sealed; **file names are not**: they are the record keys,
//! reversibly encoded. Whoever can list the root learns every key (for
//! Keygate's identity state: device ids, certificate fingerprints, pairing
//! and approval ids, change-log sequence numbers), how many records there
//! are, their sizes, and when each changed. No key name carries a secret
//! in Keygate's own records; a deployment that must hide even those keeps
//! the root on an encrypted volume.
//!
//! # Limits
//! A key segment takes at most 251 bytes once encoded (one byte per
//! `[A-Za-z0-9_-]`, three for any other byte); longer ones are `Invalid`.
//! Upper and lower case are distinct, so the root must be on a
//! case-sensitive file system. Unix only (`flock`, file modes).
#![forbid(unsafe_code)]

mod config;
mod durable;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod journal;
mod lock;
mod path;
mod spares;
mod tree;
mod unlock;

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use keygate_sdk::{
    BatchOp, BatchStore, ErrorKind, PluginContext, PluginError, SecretStore, StorePlugin, Version,
    Versioned, validate_key, validate_prefix,
};

use crate::journal::{Env, Journal, Op};
use crate::lock::StoreLock;
use keygate_seal::{MIN_RECORD_LEN, OpenError, Sealer, random_u64};
use zeroize::Zeroize;

#[doc(hidden)]
pub use crate::journal::{CrashPoint, Tuning};

/// The `filesystem` [`SecretStore`]: encrypted files under a root folder.
///
/// Build it with [`StorePlugin::from_config`]. Any number of store objects,
/// in any number of processes, may use one root at once.
pub struct FsStore {
    root: PathBuf,
    sealer: Sealer,
    lock: StoreLock<Journal>,
    ctx: PluginContext,
}

impl std::fmt::Debug for FsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

fn io_error(what: &str, key: &str, path: &Path, e: &io::Error) -> PluginError {
    PluginError::unavailable(format!(
        "cannot {what} record {key:?}: {e}; file {}",
        path.display()
    ))
}

fn damaged(key: &str, path: &Path, e: &OpenError) -> PluginError {
    PluginError::internal(format!("record {key:?}: {e}; file {}", path.display()))
}

/// How many times a record that does not open is read again before it is
/// called damaged (see `FsStore::read`).
const TORN_READ_RETRIES: u32 = 3;

/// The folder, under the root, that quarantined record files are moved to.
pub const QUARANTINE_DIR: &str = ".quarantine";

/// One write of `put`, `delete` or `apply_batch`.
#[derive(Clone, Copy)]
enum Write<'a> {
    Put {
        key: &'a str,
        value: &'a [u8],
        expected: Option<Version>,
    },
    Delete {
        key: &'a str,
        expected: Version,
    },
}

impl<'a> Write<'a> {
    fn key(&self) -> &'a str {
        match self {
            Self::Put { key, .. } | Self::Delete { key, .. } => key,
        }
    }

    fn of(op: &'a BatchOp) -> Self {
        match op {
            BatchOp::Put {
                key,
                value,
                expected,
            } => Self::Put {
                key,
                value,
                expected: *expected,
            },
            BatchOp::Delete { key, expected } => Self::Delete {
                key,
                expected: *expected,
            },
        }
    }
}

/// The first version of a new record: random, below 2^62, never zero, so
/// `+1` per update cannot overflow in practice and a re-created key does
/// not repeat its old versions.
fn fresh_version() -> Result<Version, PluginError> {
    let n = random_u64()
        .map_err(|e| PluginError::internal(format!("cannot draw a record version: {e}")))?;
    Ok((n >> 2).max(1))
}

impl FsStore {
    /// Opens (creating if needed) the store at `settings.root`.
    fn open(
        settings: config::Settings,
        ctx: PluginContext,
        tuning: &Tuning,
    ) -> Result<Self, PluginError> {
        let root = settings.root;
        durable::create_dir_all(&root).map_err(|e| {
            PluginError::unavailable(format!(
                "cannot create the store folder {}: {e}",
                root.display()
            ))
        })?;
        match durable::make_private_dir(&root) {
            Ok(Some(old)) => ctx.warn(&format!(
                "store folder {} was open to others (mode {old:o}); it is now 0700",
                root.display()
            )),
            Ok(None) => {}
            Err(e) => {
                return Err(PluginError::unavailable(format!(
                    "cannot restrict the store folder {} to its owner: {e}",
                    root.display()
                )));
            }
        }
        if let Some(parent) = root.parent() {
            // Make the root's own creation durable; harmless if it existed.
            let _ = durable::sync_dir(parent);
        }
        let lock = StoreLock::open(&root, Journal::new(&root, tuning))?;
        let sealer = {
            let mut guard = lock.lock()?;
            let sealer = unlock::unlock(&root, &settings.key, &ctx)?;
            let (journal, mark) = guard.parts();
            let env = Env {
                sealer: &sealer,
                ctx: &ctx,
                mark,
            };
            match journal.recover(&env) {
                Ok(()) => {}
                // A damaged journal: the store opens for reading, and
                // every write says what is wrong.
                Err(e) if e.kind() == ErrorKind::Internal => ctx.error(e.message()),
                Err(e) => return Err(e),
            }
            sealer
        };
        Ok(Self {
            root,
            sealer,
            lock,
            ctx,
        })
    }

    /// Opens the store as [`StorePlugin::from_config`] does, with settings
    /// for tests and benchmarks. Not API.
    #[doc(hidden)]
    pub fn open_tuned(
        config: &str,
        ctx: PluginContext,
        tuning: &Tuning,
    ) -> Result<Self, PluginError> {
        let settings = config::parse(config, &ctx)?;
        Self::open(settings, ctx, tuning)
    }

    fn env<'a>(&'a self, mark: &'a File) -> Env<'a> {
        Env {
            sealer: &self.sealer,
            ctx: &self.ctx,
            mark,
        }
    }

    /// Makes `writes` all or none: validates every key, compares every
    /// expected version, then commits them as one journal frame and applies
    /// them. The new version of each put, `None` for each delete.
    fn commit(&self, writes: &[Write<'_>]) -> Result<Vec<Option<Version>>, PluginError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let mut files = Vec::with_capacity(writes.len());
        let mut keys = HashSet::with_capacity(writes.len());
        let mut body_len = journal::BODY_PREFIX_LEN;
        for write in writes {
            let key = write.key();
            validate_key(key)?;
            if !keys.insert(key) {
                return Err(PluginError::invalid(format!(
                    "key {key:?} appears twice in one batch"
                )));
            }
            files.push(self.root.join(path::record_path(key)?));
            let record_len = match write {
                Write::Put { value, .. } => Some(value.len().saturating_add(MIN_RECORD_LEN)),
                Write::Delete { .. } => None,
            };
            body_len = body_len.saturating_add(journal::op_len(key.len(), record_len));
        }
        if body_len > journal::MAX_BODY_LEN {
            return Err(PluginError::invalid(format!(
                "a write of {} record(s) taking {body_len} bytes sealed is larger than the \
                 filesystem store takes at once ({} bytes for a put or a whole batch)",
                writes.len(),
                journal::MAX_BODY_LEN
            )));
        }
        let mut guard = self.lock.lock()?;
        let (journal, mark) = guard.parts();
        let env = self.env(mark);
        journal.recover(&env)?;
        // Every comparison before anything is sealed or written. Opening
        // the current record also refuses a damaged one: it is never
        // silently replaced.
        let mut versions = Vec::with_capacity(writes.len());
        let mut absent = Vec::with_capacity(writes.len());
        for (write, file) in writes.iter().zip(&files) {
            let key = write.key();
            let current = self.read(key, file)?.map(|(version, mut old)| {
                old.zeroize();
                version
            });
            absent.push(current.is_none());
            versions.push(match *write {
                Write::Put { expected, .. } if current != expected => {
                    return Err(PluginError::version_conflict(key, expected, current));
                }
                Write::Put { .. } => Some(match current {
                    None => fresh_version()?,
                    Some(v) => v.checked_add(1).ok_or_else(|| {
                        PluginError::internal(format!("record {key:?}: version counter exhausted"))
                    })?,
                }),
                Write::Delete { .. } if current.is_none() => {
                    return Err(PluginError::not_found(format!("key {key:?}")));
                }
                Write::Delete { expected, .. } if current != Some(expected) => {
                    return Err(PluginError::version_conflict(key, Some(expected), current));
                }
                Write::Delete { .. } => None,
            });
        }
        let mut ops = Vec::with_capacity(writes.len());
        for (write, version) in writes.iter().zip(&versions) {
            ops.push(match (*write, *version) {
                (Write::Put { key, value, .. }, Some(version)) => Op::Put {
                    key: key.to_owned(),
                    record: self
                        .sealer
                        .seal_record(key, version, value)
                        .map_err(|e| PluginError::internal(format!("record {key:?}: {e}")))?,
                },
                (write, _) => Op::Delete {
                    key: write.key().to_owned(),
                },
            });
        }
        journal.write(&env, &ops, &absent)?;
        Ok(versions)
    }

    /// The folder holding the records.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding `key`'s record (whether or not it exists). `key` is
    /// validated first.
    pub fn record_file(&self, key: &str) -> Result<PathBuf, PluginError> {
        validate_key(key)?;
        Ok(self.root.join(path::record_path(key)?))
    }

    /// Reads and opens `key`'s record file: `None` if there is none.
    ///
    /// A record that does not open is read again a few times before it is
    /// called damaged: a reader without the lock may have opened the file
    /// just before a writer swapped it out and refilled it as a spare (see
    /// the `spares` module); read again, the path names the current file.
    fn read(&self, key: &str, path: &Path) -> Result<Option<(Version, Vec<u8>)>, PluginError> {
        let mut retries = TORN_READ_RETRIES;
        loop {
            let Some(bytes) =
                durable::read_optional(path).map_err(|e| io_error("read", key, path, &e))?
            else {
                return Ok(None);
            };
            match self.sealer.open_record(key, bytes) {
                Ok(record) => return Ok(Some(record)),
                Err(_) if retries > 0 => {
                    retries -= 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(damaged(key, path, &e)),
            }
        }
    }

    /// Writes a record without the lock, the journal, the temp file or any
    /// fsync. Only for filling a store with many records quickly in
    /// benchmarks; not part of the API.
    #[doc(hidden)]
    pub fn insert_unsynced_for_bench(&self, key: &str, value: &[u8]) -> Result<(), PluginError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        validate_key(key)?;
        let rel = path::record_path(key)?;
        let file = self.root.join(&rel);
        let sealed = self
            .sealer
            .seal_record(key, fresh_version()?, value)
            .map_err(|e| PluginError::internal(format!("record {key:?}: {e}")))?;
        let write = || -> io::Result<()> {
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(durable::FILE_MODE)
                .open(&file)?;
            out.write_all(&sealed)
        };
        write()
            .or_else(|e| {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(e);
                }
                durable::create_dirs(&self.root, rel.parent().unwrap_or(Path::new("")))?;
                write()
            })
            .map_err(|e| io_error("write", key, &file, &e))
    }
}

impl SecretStore for FsStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        let path = self.record_file(key)?;
        Ok(self
            .read(key, &path)?
            .map(|(version, value)| Versioned { value, version }))
    }

    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        self.commit(&[Write::Put {
            key,
            value,
            expected,
        }])?
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| PluginError::internal(format!("record {key:?}: no version was made")))
    }

    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        self.commit(&[Write::Delete { key, expected }]).map(drop)
    }

    /// Renames the record's file, whatever it holds, into
    /// `<root>/.quarantine/` (a dot-folder, so never taken for records) as
    /// `<unix ms>-<random>-<file name>`, under the store lock. The
    /// journal is checkpointed first, so that no replay of it re-creates
    /// the record.
    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        let path = self.record_file(key)?;
        let mut guard = self.lock.lock()?;
        let (journal, mark) = guard.parts();
        let env = self.env(mark);
        journal.recover(&env)?;
        if !path.exists() {
            return Err(PluginError::not_found(format!("key {key:?}")));
        }
        journal.checkpoint_if_written(&env)?;
        // Encoded names are ASCII: any cut is on a character boundary.
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(path::RECORD_SUFFIX);
        let tail = &file_name[file_name.len().saturating_sub(120)..];
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let tag = random_u64()
            .map_err(|e| PluginError::internal(format!("cannot name the quarantined file: {e}")))?;
        let name = format!("{stamp}-{:08x}-{tail}", tag as u32);
        let dir = self.root.join(QUARANTINE_DIR);
        durable::move_into(&path, &dir, &name)
            .map(|to| to.display().to_string())
            .map_err(|e| io_error("move aside", key, &path, &e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        validate_prefix(prefix)?;
        let Some(start) = path::list_start(prefix) else {
            return Ok(Vec::new());
        };
        let dir = self.root.join(&start.dir);
        let mut keys = Vec::new();
        tree::walk(&dir, start.base, prefix, &mut |key, _| {
            keys.push(key);
            ControlFlow::Continue(())
        })
        .map_err(|(dir, e)| {
            PluginError::unavailable(format!(
                "cannot list keys with prefix {prefix:?}: {e}; folder {}",
                dir.display()
            ))
        })?;
        keys.sort_unstable();
        Ok(keys)
    }
}

impl StorePlugin for FsStore {
    const NAME: &'static str = "filesystem";
    const DESCRIPTION: &'static str = "Encrypted files on local disk (AES-256-GCM), durable writes, compare-and-swap across processes";

    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError> {
        Self::open_tuned(config, ctx, &Tuning::default())
    }
}

impl BatchStore for FsStore {
    /// Checks every key and expected version, then commits all the writes
    /// as one journal frame (one `fdatasync`) and applies them: see
    /// "Writes and versions" in the crate docs.
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
        let writes: Vec<Write<'_>> = ops.iter().map(Write::of).collect();
        self.commit(&writes)
    }
}

keygate_sdk::register_builtin_plugins! {
    stores: [FsStore: batch],
}

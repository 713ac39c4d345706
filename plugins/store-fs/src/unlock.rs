//! Getting the store key when the store opens, and checking that it is the
//! key the store was created with.
//!
//! # Key file
//! Exactly 32 random bytes, mode 0600. It is created only for a new store
//! (no key check, no record): the bytes go to a private temp file beside
//! it, which is fsynced and then hard-linked to the final name. The link
//! fails if the name exists, so two processes racing both end up with the
//! one key that won, and a crash never leaves a partial key file. A key
//! file of another size is refused, naming the file; one readable by group
//! or others is used with a warning. A missing key file for a store that
//! already holds data is an error, not a new key.
//!
//! # Passphrase
//! The key is Argon2id(passphrase, salt) with the parameters and the
//! 16-byte random salt kept in `<root>/.kdf`:
//! ```text
//! magic "KGSP" | format version (1) | algorithm (1 = Argon2id v1.3)
//!   | m_cost KiB (u32 BE) | t_cost (u32 BE) | p_cost (u32 BE) | salt (16)
//! ```
//! New stores get m = 64 MiB, t = 3, p = 1. The file is not secret and not
//! authenticated on its own: a changed salt or parameter yields another key,
//! which the key check then refuses.
//!
//! # Key check (`<root>/.keycheck`)
//! A sealed constant (format in [`crate::crypto`]). At open:
//! - present: it must open with the key, else the error says the key file
//!   (or the passphrase) does not match the key the store was created with;
//! - missing and the store holds no record: it is written (a new store);
//! - missing but records exist (it was deleted, or the store was copied
//!   without it): one record is opened with the key instead. If that works
//!   the key check is written again; if not, the error is the same
//!   mismatch error, naming the record it tried.
//!
//! All of this runs under the store lock, so two processes opening a new
//! store at once agree on one key, one salt and one key check.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params};
use keygate_sdk::{PluginContext, PluginError};
use zeroize::Zeroizing;

use crate::config::KeySource;
use crate::crypto::{KEY_LEN, Sealer, StoreKey, fill_random, random_u64};
use crate::durable::{self, FILE_MODE, TEMP_PREFIX, is_shared};
use crate::tree;

/// The name of the key check file in the root.
pub(crate) const KEYCHECK_FILE: &str = ".keycheck";
/// The name of the passphrase salt and parameters file in the root.
pub(crate) const KDF_FILE: &str = ".kdf";

const KDF_MAGIC: &[u8; 4] = b"KGSP";
const KDF_FORMAT_VERSION: u8 = 1;
const KDF_ARGON2ID_V13: u8 = 1;
const SALT_LEN: usize = 16;
const KDF_FILE_LEN: usize = 4 + 1 + 1 + 4 * 3 + SALT_LEN;

/// Argon2id memory cost of new stores, in KiB (64 MiB).
pub(crate) const DEFAULT_M_COST: u32 = 64 * 1024;
/// Argon2id passes of new stores.
pub(crate) const DEFAULT_T_COST: u32 = 3;
/// Argon2id lanes of new stores.
pub(crate) const DEFAULT_P_COST: u32 = 1;

/// Bounds on parameters read from a `.kdf` file, so a damaged file cannot
/// make the store allocate or spin without end.
const MAX_M_COST: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 64;

fn io_error(what: &str, path: &Path, e: io::Error) -> PluginError {
    PluginError::unavailable(format!("cannot {what} {}: {e}", path.display()))
}

/// What the root holds that decides how the store opens. The search for a
/// record happens only when the key check is missing (a new store, or a
/// lost check), so opening a healthy store does not walk its records.
struct Found<'a> {
    root: &'a Path,
    check: Option<Vec<u8>>,
    first_record: Option<Option<(String, PathBuf)>>,
}

impl<'a> Found<'a> {
    fn probe(root: &'a Path) -> Result<Self, PluginError> {
        let check_path = root.join(KEYCHECK_FILE);
        let check = durable::read_optional(&check_path)
            .map_err(|e| io_error("read the key check file", &check_path, e))?;
        Ok(Self {
            root,
            check,
            first_record: None,
        })
    }

    /// Some record of the store, if it has any.
    fn first_record(&mut self) -> Result<Option<(String, PathBuf)>, PluginError> {
        if self.first_record.is_none() {
            let found = tree::first_record(self.root)
                .map_err(|(dir, e)| io_error("look for records in", &dir, e))?;
            self.first_record = Some(found);
        }
        Ok(self.first_record.clone().flatten())
    }

    /// No key check and no record: nothing was ever sealed here.
    fn is_new(&mut self) -> Result<bool, PluginError> {
        Ok(self.check.is_none() && self.first_record()?.is_none())
    }
}

/// Gets the key of the store at `root` from `source` (creating the key
/// file or the salt of a new store) and verifies it against the key check.
/// The caller holds the store lock.
pub(crate) fn unlock(
    root: &Path,
    source: &KeySource,
    ctx: &PluginContext,
) -> Result<Sealer, PluginError> {
    let mut found = Found::probe(root)?;
    let kdf_path = root.join(KDF_FILE);
    let key = match source {
        KeySource::File(key_file) => {
            if kdf_path.exists() {
                return Err(PluginError::invalid(format!(
                    "the store at {} was created with a passphrase ({} exists): \
                     configure passphrase_env instead of key_file",
                    root.display(),
                    kdf_path.display()
                )));
            }
            match read_key_file(key_file, ctx)? {
                Some(key) => key,
                None if found.is_new()? => create_key_file(key_file, ctx)?,
                None => {
                    return Err(PluginError::invalid(format!(
                        "key file {} does not exist, but the store at {} already holds data \
                         sealed with a key: restore that key file (or point key_file at it)",
                        key_file.display(),
                        root.display()
                    )));
                }
            }
        }
        KeySource::Passphrase { passphrase, .. } => {
            let params = match read_kdf(&kdf_path)? {
                Some(params) => params,
                None if found.is_new()? => create_kdf(root, &kdf_path)?,
                None => {
                    return Err(PluginError::invalid(format!(
                        "the store at {} holds data but no passphrase salt ({} is missing): \
                         it was created with a key file, so configure key_file instead of \
                         passphrase_env",
                        root.display(),
                        kdf_path.display()
                    )));
                }
            };
            derive(passphrase, &params, &kdf_path)?
        }
    };
    let sealer = Sealer::new(&key);
    drop(key);
    let mismatch = |detail: String| -> PluginError {
        let what = match source {
            KeySource::File(path) => format!("key file {}", path.display()),
            KeySource::Passphrase { var, .. } => format!("the passphrase in ${var}"),
        };
        PluginError::invalid(format!(
            "{what} does not match the key this store ({}) was created with{detail}",
            root.display()
        ))
    };
    let check_path = root.join(KEYCHECK_FILE);
    match found.check.take() {
        Some(bytes) => sealer.open_check(bytes).map_err(|e| match e {
            crate::crypto::OpenError::AuthenticationFailed => mismatch(format!(
                " (its key check record {} does not open with it)",
                check_path.display()
            )),
            other => PluginError::internal(format!(
                "key check file {} is damaged: {other}; if the key is right, remove it and \
                 the store checks the key against a record and writes it again",
                check_path.display()
            )),
        })?,
        None => {
            if let Some((key, path)) = found.first_record()? {
                let bytes = fs::read(&path).map_err(|e| io_error("read", &path, e))?;
                if let Err(e) = sealer.open_record(&key, bytes) {
                    return Err(mismatch(format!(
                        " (its key check file is missing, and record {key:?} in {} did not \
                         open: {e})",
                        path.display()
                    )));
                }
                ctx.warn(&format!(
                    "the key check file {} was missing; the key opened record {key:?}, so it \
                     was written again",
                    check_path.display()
                ));
            }
            let check = sealer
                .seal_check()
                .map_err(|e| PluginError::internal(format!("cannot seal the key check: {e}")))?;
            durable::write_atomic(root, Path::new(KEYCHECK_FILE), &check)
                .map_err(|e| io_error("write the key check file", &check_path, e))?;
        }
    }
    Ok(sealer)
}

/// Reads a key file: `None` if it does not exist.
fn read_key_file(path: &Path, ctx: &PluginContext) -> Result<Option<StoreKey>, PluginError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("open the key file", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| io_error("read the key file", path, e))?;
    if !meta.is_file() {
        return Err(PluginError::invalid(format!(
            "key file {} is not a regular file",
            path.display()
        )));
    }
    if meta.len() != KEY_LEN as u64 {
        return Err(PluginError::invalid(format!(
            "key file {} has {} bytes; a store key file holds exactly {KEY_LEN} random bytes",
            path.display(),
            meta.len()
        )));
    }
    if is_shared(meta.mode()) {
        ctx.warn(&format!(
            "key file {} can be read by group or others (mode {:o}): run chmod 600 on it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    file.read_exact(bytes.as_mut())
        .map_err(|e| io_error("read the key file", path, e))?;
    Ok(Some(StoreKey::new(bytes)))
}

/// Creates the key file of a new store, or returns the one another process
/// created first.
fn create_key_file(path: &Path, ctx: &PluginContext) -> Result<StoreKey, PluginError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    durable::create_dir_all(dir).map_err(|e| io_error("create the folder", dir, e))?;
    let key = StoreKey::generate()
        .map_err(|e| PluginError::internal(format!("cannot make a store key: {e}")))?;
    let suffix =
        random_u64().map_err(|e| PluginError::internal(format!("cannot make a store key: {e}")))?;
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy());
    let temp = dir.join(format!(".{name}{TEMP_PREFIX}{suffix:016x}"));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp)?;
        file.write_all(key.as_bytes())?;
        file.sync_all()?;
        drop(file);
        match fs::hard_link(&temp, path) {
            Ok(()) => {}
            // Another process won the race: its key is the key.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // A file system without hard links: we hold the store lock, so
            // only a store on another root sharing this key file can race.
            Err(_) if !path.exists() => fs::rename(&temp, path)?,
            Err(e) => return Err(e),
        }
        let _ = fs::remove_file(&temp);
        durable::sync_dir(dir)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error("create the key file", path, e));
    }
    ctx.info(&format!("created store key file {}", path.display()));
    drop(key);
    read_key_file(path, ctx)?.ok_or_else(|| {
        PluginError::unavailable(format!(
            "key file {} vanished right after it was created",
            path.display()
        ))
    })
}

/// Argon2id parameters and salt of a passphrase store.
struct KdfParams {
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    salt: [u8; SALT_LEN],
}

impl KdfParams {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KDF_FILE_LEN);
        out.extend_from_slice(KDF_MAGIC);
        out.push(KDF_FORMAT_VERSION);
        out.push(KDF_ARGON2ID_V13);
        out.extend_from_slice(&self.m_cost.to_be_bytes());
        out.extend_from_slice(&self.t_cost.to_be_bytes());
        out.extend_from_slice(&self.p_cost.to_be_bytes());
        out.extend_from_slice(&self.salt);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != KDF_FILE_LEN {
            return Err(format!("{} bytes, expected {KDF_FILE_LEN}", bytes.len()));
        }
        if &bytes[..4] != KDF_MAGIC {
            return Err("no keygate header".into());
        }
        if bytes[4] != KDF_FORMAT_VERSION || bytes[5] != KDF_ARGON2ID_V13 {
            return Err(format!(
                "unsupported format {} / algorithm {}",
                bytes[4], bytes[5]
            ));
        }
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[i..i + 4]);
            u32::from_be_bytes(b)
        };
        let (m_cost, t_cost, p_cost) = (u32_at(6), u32_at(10), u32_at(14));
        if m_cost > MAX_M_COST || t_cost > MAX_T_COST || p_cost > MAX_P_COST {
            return Err(format!(
                "parameters out of range (m={m_cost} KiB, t={t_cost}, p={p_cost})"
            ));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&bytes[18..]);
        Ok(Self {
            m_cost,
            t_cost,
            p_cost,
            salt,
        })
    }
}

fn read_kdf(path: &Path) -> Result<Option<KdfParams>, PluginError> {
    let Some(bytes) =
        durable::read_optional(path).map_err(|e| io_error("read the passphrase salt", path, e))?
    else {
        return Ok(None);
    };
    KdfParams::decode(&bytes).map(Some).map_err(|e| {
        PluginError::invalid(format!(
            "passphrase salt file {} is damaged: {e}",
            path.display()
        ))
    })
}

fn create_kdf(root: &Path, path: &Path) -> Result<KdfParams, PluginError> {
    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt)
        .map_err(|e| PluginError::internal(format!("cannot make a passphrase salt: {e}")))?;
    let params = KdfParams {
        m_cost: DEFAULT_M_COST,
        t_cost: DEFAULT_T_COST,
        p_cost: DEFAULT_P_COST,
        salt,
    };
    durable::write_atomic(root, Path::new(KDF_FILE), &params.encode())
        .map_err(|e| io_error("write the passphrase salt", path, e))?;
    Ok(params)
}

fn derive(passphrase: &[u8], params: &KdfParams, kdf_path: &Path) -> Result<StoreKey, PluginError> {
    let bad = |e: argon2::Error| {
        PluginError::invalid(format!(
            "cannot derive the store key with the parameters in {}: {e}",
            kdf_path.display()
        ))
    };
    let argon_params =
        Params::new(params.m_cost, params.t_cost, params.p_cost, Some(KEY_LEN)).map_err(bad)?;
    let argon = Argon2::new(Algorithm::Argon2id, argon2::Version::V0x13, argon_params);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase, &params.salt, key.as_mut())
        .map_err(bad)?;
    Ok(StoreKey::new(key))
}

//! Getting the store key when the store opens, and checking that it is the
//! key the store was created with.
//!
//! # Key file
//! Exactly 32 random bytes, mode 0600 (read and created by
//! `keygate_seal::keyfile`). It is created only for a new store (no key
//! check, no record): the bytes go to a private temp file beside it, which
//! is fsynced and then hard-linked to the final name. The link fails if the
//! name exists, so two processes racing both end up with the one key that
//! won, and a crash never leaves a partial key file. A key file of another
//! size is refused, naming the file; one readable by group or others is
//! used with a warning. A missing key file for a store that already holds
//! data is an error, not a new key.
//!
//! # Passphrase
//! The key is Argon2id(passphrase, salt) with the parameters and the
//! 16-byte random salt kept in `<root>/.kdf`, encoded as
//! `keygate_seal::kdf` describes (magic "KGSP", 34 bytes). New stores get
//! m = 64 MiB, t = 3, p = 1. The file is not secret and not authenticated
//! on its own: a changed salt or parameter yields another key, which the
//! key check then refuses.
//!
//! # Key check (`<root>/.keycheck`)
//! A sealed constant (format in `keygate_seal::sealer`). At open:
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

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use keygate_sdk::{PluginContext, PluginError};
use keygate_seal::{KdfParams, KeySource, Sealer, StoreKey, create_key_file, read_key_file};

use crate::durable;
use crate::tree;

/// The name of the key check file in the root.
pub(crate) const KEYCHECK_FILE: &str = ".keycheck";
/// The name of the passphrase salt and parameters file in the root.
pub(crate) const KDF_FILE: &str = ".kdf";

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
        PluginError::invalid(format!(
            "{} does not match the key this store ({}) was created with{detail}",
            source.describe(),
            root.display()
        ))
    };
    let check_path = root.join(KEYCHECK_FILE);
    match found.check.take() {
        Some(bytes) => sealer.open_check(bytes).map_err(|e| match e {
            keygate_seal::OpenError::AuthenticationFailed => mismatch(format!(
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
    let params = KdfParams::generate()
        .map_err(|e| PluginError::internal(format!("cannot make a passphrase salt: {e}")))?;
    durable::write_atomic(root, Path::new(KDF_FILE), &params.encode())
        .map_err(|e| io_error("write the passphrase salt", path, e))?;
    Ok(params)
}

fn derive(passphrase: &[u8], params: &KdfParams, kdf_path: &Path) -> Result<StoreKey, PluginError> {
    params.derive(passphrase).map_err(|e| {
        PluginError::invalid(format!(
            "cannot derive the store key with the parameters in {}: {e}",
            kdf_path.display()
        ))
    })
}

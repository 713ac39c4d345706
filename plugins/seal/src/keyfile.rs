//! The key file: exactly 32 random bytes, mode 0600.
//!
//! [`create_key_file`] writes the bytes to a private temp file beside the
//! key file's name, fsyncs it and hard-links it to the final name. The link
//! fails if the name exists, so two processes racing both end up with the
//! one key that won, and a crash never leaves a partial key file.
//! [`read_key_file`] refuses a key file of another size, naming the file,
//! and uses one readable by group or others with a warning.
//!
//! When to create a key file is the store's decision: only for a store
//! that holds nothing sealed yet (no key check, no record), and under
//! whatever exclusion the store has, so that a missing key file next to
//! existing data is an error and never a fresh key.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use keygate_sdk::{PluginContext, PluginError};
use zeroize::Zeroizing;

use crate::sealer::{KEY_LEN, StoreKey, random_u64};

/// The mode of a key file.
const FILE_MODE: u32 = 0o600;
/// The mode of folders created on the way to a key file.
const DIR_MODE: u32 = 0o700;
/// Marks the temp file a key is written to before it is linked in place.
const TEMP_PREFIX: &str = ".tmp-";

fn io_error(what: &str, path: &Path, e: io::Error) -> PluginError {
    PluginError::unavailable(format!("cannot {what} {}: {e}", path.display()))
}

/// Reads a key file: `None` if it does not exist.
///
/// Errors: `Invalid` for a file that is not a regular file or does not hold
/// exactly 32 bytes, `Unavailable` for a file that cannot be read.
pub fn read_key_file(path: &Path, ctx: &PluginContext) -> Result<Option<StoreKey>, PluginError> {
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
    if meta.mode() & 0o077 != 0 {
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

/// Creates a key file with a fresh key (and the folders on its way, 0700),
/// or returns the key of the one another process created first.
pub fn create_key_file(path: &Path, ctx: &PluginContext) -> Result<StoreKey, PluginError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| io_error("create the folder", dir, e))?;
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
            // A file system without hard links: the caller holds its
            // store's exclusion, so only another store sharing this key
            // file can race.
            Err(_) if !path.exists() => fs::rename(&temp, path)?,
            Err(e) => return Err(e),
        }
        let _ = fs::remove_file(&temp);
        File::open(dir)?.sync_all()
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use keygate_sdk::{ErrorKind, LogLevel, Logger};

    use super::*;

    struct Quiet;
    impl Logger for Quiet {
        fn log(&self, _: LogLevel, _: &str) {}
    }

    fn ctx(dir: &Path) -> PluginContext {
        PluginContext::new("seal", dir, dir, Quiet)
    }

    #[test]
    fn a_created_key_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/store.key");
        let key = create_key_file(&path, &ctx(dir.path())).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), KEY_LEN as u64);
        assert_eq!(meta.permissions().mode() & 0o777, FILE_MODE);
        let again = read_key_file(&path, &ctx(dir.path())).unwrap().unwrap();
        assert_eq!(key.as_bytes(), again.as_bytes());
        // No temp file is left beside it.
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_second_creation_keeps_the_first_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        let first = create_key_file(&path, &ctx(dir.path())).unwrap();
        let second = create_key_file(&path, &ctx(dir.path())).unwrap();
        assert_eq!(first.as_bytes(), second.as_bytes());
    }

    #[test]
    fn a_missing_key_file_is_none_and_a_wrong_size_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        assert!(read_key_file(&path, &ctx(dir.path())).unwrap().is_none());
        fs::write(&path, [0u8; 31]).unwrap();
        let err = read_key_file(&path, &ctx(dir.path())).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(
            err.message()
                .starts_with(&format!("key file {} has 31 bytes", path.display())),
            "{err}"
        );
    }
}

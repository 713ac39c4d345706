//! Durable, atomic file operations: the only code that writes to disk.
//!
//! A write goes to a temp file in the target's own folder (a dot-file named
//! `.tmp-<random>`, so it is never taken for a record), is flushed with
//! `fdatasync`, renamed over the target, and the folder is fsynced so the
//! rename itself survives a crash. At any instant the target is either the
//! old file or the new one. A temp file left by a crash is ignored by
//! everything that reads the store; it may be removed by hand.
//!
//! Files are created 0600 and folders 0700 (before the umask, which can
//! only take bits away).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::crypto::random_u64;

/// The mode of every file the store creates.
pub(crate) const FILE_MODE: u32 = 0o600;
/// The mode of every folder the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The prefix of temp files.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// Flushes a folder's entries (creations, renames, removals) to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a new, empty, private temp file in `dir`.
fn create_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..8 {
        let n = random_u64().map_err(|e| io::Error::other(e.to_string()))?;
        let path = dir.join(format!("{TEMP_PREFIX}{n:016x}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temp file name")))
}

/// Moves the file at `from` into the folder `into` (created 0700 if
/// missing) as `name`, atomically, and makes both folders' entries durable.
/// `into` must be on the same filesystem.
pub(crate) fn move_into(from: &Path, into: &Path, name: &str) -> io::Result<PathBuf> {
    match DirBuilder::new().mode(DIR_MODE).create(into) {
        Ok(()) => {
            if let Some(parent) = into.parent() {
                sync_dir(parent)?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let to = into.join(name);
    fs::rename(from, &to)?;
    sync_dir(into)?;
    if let Some(parent) = from.parent() {
        sync_dir(parent)?;
    }
    Ok(to)
}

/// Creates each missing folder of `rel` under `root` (mode 0700), fsyncing
/// the parent of each one it creates so the new folder is durable too.
pub(crate) fn create_dirs(root: &Path, rel: &Path) -> io::Result<()> {
    let mut dir = root.to_path_buf();
    for component in rel.components() {
        let parent = dir.clone();
        dir.push(component);
        match DirBuilder::new().mode(DIR_MODE).create(&dir) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates `dir` and any missing parents (mode 0700 for those it creates).
pub(crate) fn create_dir_all(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Atomically and durably replaces `root/rel` with `bytes`, creating the
/// folders on the way if needed. The caller holds the store lock.
pub(crate) fn write_atomic(root: &Path, rel: &Path, bytes: &[u8]) -> io::Result<()> {
    let target = root.join(rel);
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::other("a record path has no folder"))?;
    let (temp, mut file) = match create_temp(dir) {
        Ok(created) => created,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // First record under this folder: the slow path, taken once.
            create_dirs(root, rel.parent().unwrap_or(Path::new("")))?;
            create_temp(dir)?
        }
        Err(e) => return Err(e),
    };
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_data()?;
        drop(file);
        fs::rename(&temp, &target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Gone already if the rename happened; otherwise do not leave it.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Durably removes the file at `path`.
pub(crate) fn remove(path: &Path) -> io::Result<()> {
    fs::remove_file(path)?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Reads a whole file, `None` when it (or a folder on its path) does not
/// exist.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Whether `mode` lets anyone but the owner in.
pub(crate) fn is_shared(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// Restricts `dir` to its owner (0700) if it is open to others.
/// Returns the old mode when it changed something.
pub(crate) fn make_private_dir(dir: &Path) -> io::Result<Option<u32>> {
    let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
    if is_shared(mode) {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?;
        return Ok(Some(mode));
    }
    Ok(None)
}

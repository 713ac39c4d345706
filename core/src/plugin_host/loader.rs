//! Opening external plugin libraries, with the optional SHA-256 pin.
//!
//! When a pin is configured the file is opened once, hashed through that
//! descriptor, and the dynamic loader is pointed at the same descriptor
//! (`/proc/self/fd/N`), so the bytes that were checked are the bytes that
//! run: swapping the file between the check and the load changes nothing.
//! The descriptor stays open for the life of the process, as the library
//! does (libraries are never unloaded), which also keeps the loader from
//! mistaking a later library for this one by name.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use keygate_sdk::host::{Library, LoadError};
use sha2::{Digest, Sha256};

use super::HostError;

/// Opens `path`, checking it against `pin` first when given. Without a pin
/// the host warns once per file per process.
pub fn open_library(path: &Path, pin: Option<&[u8; 32]>) -> Result<Library, HostError> {
    let Some(expected) = pin else {
        warn_unpinned_once(path);
        return Library::open(path).map_err(HostError::Load);
    };
    if !path.exists() {
        return Err(HostError::Load(LoadError::Missing {
            path: path.to_owned(),
        }));
    }
    let mut file = File::open(path).map_err(|cause| HostError::Io {
        path: path.to_owned(),
        cause,
    })?;
    let actual = sha256_of(&mut file).map_err(|cause| HostError::Io {
        path: path.to_owned(),
        cause,
    })?;
    if &actual != expected {
        return Err(HostError::ChecksumMismatch {
            path: path.to_owned(),
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        });
    }
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let library = if fd_path.exists() {
        let lib = Library::open_as(&fd_path, path).map_err(HostError::Load)?;
        // The library lives as long as the process; so does its descriptor.
        std::mem::forget(file);
        lib
    } else {
        Library::open(path).map_err(HostError::Load)?
    };
    Ok(library)
}

/// SHA-256 of a whole file, as `keygate plugins check` prints it.
pub fn sha256_of(file: &mut File) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

fn warn_unpinned_once(path: &Path) {
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned
        .get_or_insert_with(HashSet::new)
        .insert(path.to_owned())
    {
        tracing::warn!(
            library = %path.display(),
            "plugin library has no sha256 pin in config; any file at this path will be loaded \
             (add sha256 = \"<hex>\"; `keygate plugins check` prints it)"
        );
    }
}

//! Opening external plugin libraries, with the optional SHA-256 pin.
//!
//! # A pinned library runs the bytes that were hashed
//! When a slot pins `sha256`, the file is read once: each chunk goes into
//! the hash and into an anonymous in-memory file (`memfd`, named
//! `keygate-pinned:<file name>`). When the digest matches, that copy is
//! sealed (no write, no grow, no shrink, no further seal change) and the
//! dynamic loader opens the copy through `/proc/self/fd/N`, never the
//! operator's path. Replacing the file, or editing it in place, after the
//! check changes nothing that runs: the copy cannot change and is not the
//! file. (Mapping the original file through its own descriptor would not be
//! enough: private mappings of a file share its page cache until they are
//! written, so an edit in place shows through.)
//!
//! There is no fallback: when `memfd_create`, sealing or `/proc/self/fd`
//! is missing, a pinned library is refused with the file and what is
//! missing, rather than opened by path. The copy's descriptor stays open
//! for the life of the process, as the library does (libraries are never
//! unloaded); that also keeps the number `N`, and so the name the loader
//! knows the library by, from being reused for a later library.
//!
//! A library without a pin is opened by path, with a warning once per file.
//!
//! # Each slot's pin is checked
//! [`LibraryCache`] opens a file once per load even when several slots name
//! it, and remembers the digest of the sealed copy it loaded. Every slot
//! that pins the file is compared with that digest, so two slots cannot
//! pin one file differently and both load; a slot without a pin still gets
//! the warning.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use keygate_sdk_host::{Library, LoadError};
use rustix::fs::{MemfdFlags, SealFlags};
use sha2::{Digest, Sha256};

use super::HostError;

/// Where the descriptors of this process appear as files, by number.
pub const PROC_SELF_FD: &str = "/proc/self/fd";

/// The name prefix of the sealed in-memory copies, as `/proc/self/maps`
/// shows them (`/memfd:keygate-pinned:libx.so (deleted)`).
pub const SEALED_COPY_PREFIX: &str = "keygate-pinned:";

/// Opens `path`, checking it against `pin` first when given (see the module
/// docs). Without a pin the host warns once per file per process.
pub fn open_library(path: &Path, pin: Option<&[u8; 32]>) -> Result<Library, HostError> {
    open_library_via(path, pin, Path::new(PROC_SELF_FD))
}

/// [`open_library`] with the folder where this process's descriptors
/// appear by number (normally [`PROC_SELF_FD`]; another place when `/proc`
/// is mounted elsewhere).
pub fn open_library_via(
    path: &Path,
    pin: Option<&[u8; 32]>,
    proc_self_fd: &Path,
) -> Result<Library, HostError> {
    match pin {
        None => {
            warn_unpinned_once(path);
            Library::open(path).map_err(HostError::Load)
        }
        Some(expected) => open_pinned(path, expected, proc_self_fd),
    }
}

fn open_pinned(
    path: &Path,
    expected: &[u8; 32],
    proc_self_fd: &Path,
) -> Result<Library, HostError> {
    if !path.exists() {
        return Err(HostError::Load(LoadError::Missing {
            path: path.to_owned(),
        }));
    }
    let io = |cause| HostError::Io {
        path: path.to_owned(),
        cause,
    };
    let sealing = |what: String| HostError::Sealing {
        path: path.to_owned(),
        what,
    };
    let mut file = File::open(path).map_err(io)?;
    let memfd = rustix::fs::memfd_create(
        sealed_copy_name(path),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| {
        sealing(format!(
            "cannot create a sealed in-memory copy (memfd_create: {e})"
        ))
    })?;
    let mut copy = File::from(memfd);
    let actual = copy_and_hash(&mut file, &mut copy).map_err(io)?;
    if &actual != expected {
        return Err(HostError::ChecksumMismatch {
            path: path.to_owned(),
            expected: hex::encode(expected),
            actual: hex::encode(actual),
        });
    }
    rustix::fs::fcntl_add_seals(
        &copy,
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL,
    )
    .map_err(|e| sealing(format!("cannot seal the in-memory copy (F_ADD_SEALS: {e})")))?;
    let fd_path = proc_self_fd.join(copy.as_raw_fd().to_string());
    if !fd_path.exists() {
        return Err(sealing(format!(
            "{} is missing (is /proc mounted?), so the dynamic loader cannot be given the \
             sealed copy",
            proc_self_fd.display()
        )));
    }
    let library = Library::open_as(&fd_path, path);
    // From here on the loader knows a library by this descriptor's path,
    // whether or not it accepted it: never let the number be reused.
    keep_for_the_process(copy.into());
    library.map_err(HostError::Load)
}

/// `keygate-pinned:<file name>`, short enough for `memfd_create`.
fn sealed_copy_name(path: &Path) -> String {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name = format!("{SEALED_COPY_PREFIX}{file_name}");
    // The kernel allows 249 bytes; keep well inside it, on a char boundary.
    const LIMIT: usize = 200;
    if name.len() > LIMIT {
        let mut cut = LIMIT;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name
}

/// Copies `from` into `to` and returns the SHA-256 of what was copied.
fn copy_and_hash(from: &mut File, to: &mut File) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
    }
    Ok(hasher.finalize().into())
}

fn keep_for_the_process(fd: OwnedFd) {
    static KEPT: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());
    KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(fd);
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

/// The libraries opened during one load, by path, each with the digest of
/// the sealed copy it runs from when it was pinned.
#[derive(Default)]
pub struct LibraryCache {
    files: HashMap<PathBuf, Opened>,
}

struct Opened {
    library: Library,
    /// The SHA-256 of the bytes that run, when they were checked.
    sealed: Option<[u8; 32]>,
}

impl LibraryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The library at `path` for one slot: opened (and checked against
    /// `pin`) the first time, taken from the cache afterwards, with this
    /// slot's `pin` compared against the digest of the copy that runs.
    /// A pinned slot after unpinned ones loads its own sealed copy.
    pub fn open(&mut self, path: &Path, pin: Option<&[u8; 32]>) -> Result<Library, HostError> {
        match (self.files.get(path), pin) {
            (Some(opened), None) => {
                warn_unpinned_once(path);
                Ok(opened.library.clone())
            }
            (
                Some(Opened {
                    library,
                    sealed: Some(loaded),
                }),
                Some(expected),
            ) => {
                if loaded == expected {
                    Ok(library.clone())
                } else {
                    Err(HostError::PinConflict {
                        path: path.to_owned(),
                        expected: hex::encode(expected),
                        loaded: hex::encode(loaded),
                    })
                }
            }
            (None, _) | (Some(Opened { sealed: None, .. }), Some(_)) => {
                let library = open_library(path, pin)?;
                self.files.insert(
                    path.to_owned(),
                    Opened {
                        library: library.clone(),
                        sealed: pin.copied(),
                    },
                );
                Ok(library)
            }
        }
    }
}

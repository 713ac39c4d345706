//! Spare record files: files kept (and made ahead) so that writes neither
//! create nor free an inode.
//!
//! Replacing a record swaps a new file in and takes the old one out; a
//! delete takes a file out. Removing those files and creating new ones for
//! the next writes is what a filesystem does worst under churn: ext4
//! without a journal (as on these machines) skips every inode freed in the
//! last minute when it allocates one, reading and scanning past each, so at
//! a thousand pairings a second creating a file cost more than everything
//! else together. So:
//!
//! - the files taken out are renamed into `<root>/.spare/` (a dot-folder:
//!   never read as records) and the next write fills one of them and swaps
//!   it in ([`Spares::take`], [`Spares::keep`]);
//! - a store object that keeps creating files anyway (records are added
//!   faster than others are freed: a pairing adds three) starts a *filler*:
//!   a thread at the lowest scheduling priority that keeps
//!   [`FILL_TARGET`] empty files made ahead in `.spare/`, so the creates
//!   happen in otherwise idle time, off the writers' path. A burst of writes
//!   uses what was made; once that is used up, writes create their own
//!   files again, as without a filler.
//!
//! A reader that opened a record just before it was swapped out may, if it
//! is slow enough for a later write to refill that file, read a mix: it
//! fails authentication, and `FsStore::read` reads the record again (the
//! path then names the current file) before calling it damaged.
//!
//! Several store objects (or processes) may each know a spare another one
//! has since used: opening it then finds nothing, and the next one is
//! taken. Spares left when a process ends are found by the next store
//! object that opens the store.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::durable::{DIR_MODE, TEMP_PREFIX, create_temp};
use keygate_seal::random_u64;

/// The folder, under the root, of spare record files.
pub(crate) const SPARE_DIR: &str = ".spare";

/// The most spare files a store object keeps; past it, a freed file is
/// removed.
const MAX_SPARES: usize = 1024;

/// How many files the filler keeps made ahead.
pub(crate) const FILL_TARGET: usize = 512;

/// How many files a store object creates on its write path before it
/// starts a filler: a process that writes a few records (the CLI, most
/// tests) never starts one.
pub(crate) const FILL_AFTER_CREATES: usize = 64;

/// Record files taken out of the key space, kept to be written again; see
/// the module docs. Used under the store lock only.
pub(crate) struct Spares {
    dir: PathBuf,
    free: Vec<PathBuf>,
    /// `.spare/` is known to exist.
    dir_made: bool,
    /// Files created on the write path so far.
    created: usize,
    /// Starts a filler after this many creates; `None`: never.
    fill_after: Option<usize>,
    filler: Option<Filler>,
}

impl Spares {
    /// The spares of the store at `root`: whatever `.spare/` holds. A
    /// filler starts after `fill_after` creates on the write path (`None`:
    /// never).
    pub(crate) fn new(root: &Path, fill_after: Option<usize>) -> Self {
        let dir = root.join(SPARE_DIR);
        let listed = fs::read_dir(&dir).map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .take(MAX_SPARES)
                .collect()
        });
        Self {
            dir,
            dir_made: listed.is_ok(),
            free: listed.unwrap_or_default(),
            created: 0,
            fill_after,
            filler: None,
        }
    }

    /// A spare file open for writing: a kept one, one made ahead, or a new
    /// one.
    pub(crate) fn take(&mut self) -> io::Result<(PathBuf, File)> {
        while let Some(path) = self
            .free
            .pop()
            .or_else(|| self.filler.as_ref().and_then(Filler::take))
        {
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => return Ok((path, file)),
                // Used by another store object meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        self.make_dir()?;
        let created = create_temp(&self.dir)?;
        self.created += 1;
        if self.filler.is_none() && self.fill_after.is_some_and(|n| self.created >= n) {
            self.filler = Some(Filler::start(self.dir.clone()));
        }
        Ok(created)
    }

    /// Keeps the file at `path` (in the spare folder) for a later write.
    pub(crate) fn keep(&mut self, path: PathBuf) {
        if self.free.len() < MAX_SPARES {
            self.free.push(path);
        } else {
            let _ = fs::remove_file(&path);
        }
    }

    /// A new name in the spare folder, if there is room for one more.
    pub(crate) fn room(&mut self) -> io::Result<Option<PathBuf>> {
        if self.free.len() >= MAX_SPARES {
            return Ok(None);
        }
        self.make_dir()?;
        Ok(Some(new_name(&self.dir)?))
    }

    /// The filler has started.
    #[cfg(test)]
    fn filling(&self) -> bool {
        self.filler.is_some()
    }

    fn make_dir(&mut self) -> io::Result<()> {
        if !self.dir_made {
            match DirBuilder::new().mode(DIR_MODE).create(&self.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            self.dir_made = true;
        }
        Ok(())
    }
}

fn new_name(dir: &Path) -> io::Result<PathBuf> {
    let n = random_u64().map_err(|e| io::Error::other(e.to_string()))?;
    Ok(dir.join(format!("{TEMP_PREFIX}{n:016x}")))
}

/// A thread keeping [`FILL_TARGET`] empty files made ahead; stopped (and
/// joined) when dropped.
struct Filler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    made: Mutex<Made>,
    /// The pool fell under half its target, or the filler must stop.
    wake: Condvar,
}

#[derive(Default)]
struct Made {
    files: Vec<PathBuf>,
    stop: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Made> {
        self.made.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Filler {
    fn start(dir: PathBuf) -> Self {
        let shared = Arc::new(Shared {
            made: Mutex::default(),
            wake: Condvar::new(),
        });
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("store-fs spares".into())
            .spawn(move || fill(&dir, &theirs))
            .ok();
        Self { shared, thread }
    }

    fn take(&self) -> Option<PathBuf> {
        let mut made = self.shared.lock();
        let file = made.files.pop();
        if made.files.len() < FILL_TARGET / 2 {
            self.shared.wake.notify_one();
        }
        file
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The filler thread: tops the pool up to its target whenever it falls
/// under half of it. Runs at the lowest priority (on Linux a nice value is
/// per thread), so it uses time the writers leave. Stops at the first
/// error: the write path then creates its own files, and reports errors.
fn fill(dir: &Path, shared: &Shared) {
    let _ = rustix::process::nice(19);
    let mut made = shared.lock();
    loop {
        while !made.stop && made.files.len() >= FILL_TARGET / 2 {
            made = shared.wake.wait(made).unwrap_or_else(|p| p.into_inner());
        }
        while !made.stop && made.files.len() < FILL_TARGET {
            drop(made);
            let Ok((path, file)) = create_temp(dir) else {
                return;
            };
            drop(file);
            made = shared.lock();
            made.files.push(path);
        }
        if made.stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare_files(root: &Path) -> usize {
        fs::read_dir(root.join(SPARE_DIR)).map_or(0, |d| d.count())
    }

    #[test]
    fn a_kept_file_is_the_next_one_taken() {
        let dir = tempfile::tempdir().unwrap();
        let mut spares = Spares::new(dir.path(), None);
        let (first, _) = spares.take().unwrap();
        spares.keep(first.clone());
        assert_eq!(spares.take().unwrap().0, first);
        assert_eq!(spare_files(dir.path()), 1);
    }

    #[test]
    fn spares_left_by_an_earlier_store_object_are_used_before_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut before = Spares::new(dir.path(), None);
        let kept: Vec<PathBuf> = (0..3).map(|_| before.take().unwrap().0).collect();
        drop(before);
        let mut after = Spares::new(dir.path(), None);
        let mut taken: Vec<PathBuf> = (0..3).map(|_| after.take().unwrap().0).collect();
        taken.sort();
        let mut kept = kept;
        kept.sort();
        assert_eq!(taken, kept);
        assert_eq!(spare_files(dir.path()), 3, "no new file was created");
    }

    #[test]
    fn a_spare_used_by_another_store_object_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = Spares::new(dir.path(), None);
        let (path, _) = one.take().unwrap();
        one.keep(path.clone());
        let mut other = Spares::new(dir.path(), None);
        fs::remove_file(&path).unwrap();
        let (taken, _) = other.take().unwrap();
        assert_ne!(taken, path);
        let (taken, _) = one.take().unwrap();
        assert_ne!(taken, path, "the file gone meanwhile is not handed out");
    }

    #[test]
    fn a_store_object_that_keeps_creating_files_gets_them_made_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let mut spares = Spares::new(dir.path(), Some(2));
        spares.take().unwrap();
        assert!(!spares.filling(), "one create starts nothing");
        spares.take().unwrap();
        assert!(spares.filling());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while spares.filler.as_ref().unwrap().shared.lock().files.len() < FILL_TARGET {
            assert!(
                std::time::Instant::now() < deadline,
                "the pool never filled"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let created = spares.created;
        for _ in 0..FILL_TARGET {
            spares.take().unwrap();
        }
        assert_eq!(spares.created, created, "every take came from the pool");
        drop(spares);
        // Made, taken and made again: whatever is left stays for later.
        assert!(spare_files(dir.path()) >= FILL_TARGET + 2);
    }

    #[test]
    fn without_a_threshold_no_filler_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut spares = Spares::new(dir.path(), None);
        for _ in 0..10 {
            spares.take().unwrap();
        }
        assert!(!spares.filling());
        assert_eq!(spare_files(dir.path()), 10);
    }
}

//! Walking the folder tree of records: `list` and the open-time probe for
//! "does this store hold any record".

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use keygate_sdk::validate_key;

use crate::path::{Entry, classify};

/// Visits every record under `dir` whose key starts with `prefix`, in no
/// particular order. `base` is the key prefix of `dir`'s records (`""` for
/// the root, else ending in `/`). Only folders that can hold a matching key
/// are entered; dot-files, temp files, symlinks and names the store never
/// writes are skipped. A folder that vanishes during the walk is skipped.
/// An error names the folder it happened in.
pub(crate) fn walk(
    dir: &Path,
    base: String,
    prefix: &str,
    visit: &mut dyn FnMut(String, PathBuf) -> ControlFlow<()>,
) -> Result<(), (PathBuf, io::Error)> {
    let mut pending = vec![(dir.to_path_buf(), base)];
    while let Some((dir, base)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(e) => return Err((dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| (dir.clone(), e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let file_type = entry.file_type().map_err(|e| (entry.path(), e))?;
            if !file_type.is_dir() && !file_type.is_file() {
                continue;
            }
            match classify(name, file_type.is_dir()) {
                Some(Entry::Record(segment)) => {
                    let key = format!("{base}{segment}");
                    if key.starts_with(prefix)
                        && validate_key(&key).is_ok()
                        && visit(key, entry.path()).is_break()
                    {
                        return Ok(());
                    }
                }
                Some(Entry::Dir(segment)) => {
                    let child = format!("{base}{segment}/");
                    if child.starts_with(prefix) || prefix.starts_with(&child) {
                        pending.push((entry.path(), child));
                    }
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// The first record found under `root` (key and file), if any.
pub(crate) fn first_record(root: &Path) -> Result<Option<(String, PathBuf)>, (PathBuf, io::Error)> {
    let mut found = None;
    walk(root, String::new(), "", &mut |key, path| {
        found = Some((key, path));
        ControlFlow::Break(())
    })?;
    Ok(found)
}

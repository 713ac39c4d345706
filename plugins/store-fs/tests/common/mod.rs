//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use keygate_sdk::{LogLevel, Logger, PluginContext, PluginError, StorePlugin};
use keygate_store_fs::FsStore;
use tempfile::TempDir;

/// A logger that keeps every line, to assert on warnings.
#[derive(Clone, Default)]
pub struct Lines(pub Arc<Mutex<Vec<(LogLevel, String)>>>);

impl Logger for Lines {
    fn log(&self, level: LogLevel, message: &str) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((level, message.to_owned()));
    }
}

impl Lines {
    pub fn warnings(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _)| *l == LogLevel::Warn)
            .map(|(_, m)| m.clone())
            .collect()
    }
}

/// A context whose config and state folder is `state`.
pub fn ctx(state: &Path) -> PluginContext {
    PluginContext::new("filesystem", state, state, Lines::default())
}

/// Opens a store with `config` in the state folder `state`.
pub fn open(state: &Path, config: &str) -> Result<FsStore, PluginError> {
    FsStore::from_config(config, ctx(state))
}

/// A fresh temp folder (the state folder) and a store in it with the
/// default config (`<state>/store`, `<state>/store.key`).
pub fn fresh() -> (TempDir, FsStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), "").expect("open a new store");
    (dir, store)
}

/// A store with the default config in the state folder `state`.
pub fn fresh_in(state: &Path) -> FsStore {
    open(state, "").expect("open a store")
}

/// Every file under `dir` with its contents, and every folder (as `None`),
/// keyed by path relative to `dir`.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path.strip_prefix(dir).expect("inside").to_path_buf();
            let ft = entry.file_type().expect("file type");
            if ft.is_dir() {
                out.insert(rel, None);
                pending.push(path);
            } else {
                out.insert(rel, Some(std::fs::read(&path).expect("read")));
            }
        }
    }
    out
}

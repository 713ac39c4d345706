//! Helpers shared by the integration tests: a plugin context whose log lines
//! are recorded, and a store opened the way the host opens it.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use keygate_example_store_sqlite::SqliteStore;
use keygate_sdk::{LogLevel, Logger, PluginContext, PluginError, StorePlugin};

/// The lines a plugin logged.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<(LogLevel, String)>>>);

impl Recorded {
    pub fn lines(&self) -> Vec<(LogLevel, String)> {
        self.0.lock().unwrap().clone()
    }
}

impl Logger for Recorded {
    fn log(&self, level: LogLevel, message: &str) {
        self.0.lock().unwrap().push((level, message.to_owned()));
    }
}

/// A context whose config folder is `config_dir`, and what it records.
pub fn context(config_dir: &Path) -> (PluginContext, Recorded) {
    let recorded = Recorded::default();
    let ctx = PluginContext::new(
        "sqlite",
        config_dir,
        &config_dir.join("state"),
        recorded.clone(),
    );
    (ctx, recorded)
}

/// Builds the store from `config` through its constructor, as the host does.
pub fn from_config(config_dir: &Path, config: &str) -> Result<SqliteStore, PluginError> {
    SqliteStore::from_config(config, context(config_dir).0)
}

/// The store on `config_dir/store.db`.
pub fn open_in(config_dir: &Path) -> SqliteStore {
    from_config(config_dir, "path = \"store.db\"").expect("open store.db")
}

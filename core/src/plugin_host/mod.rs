//! The plugin host: finds each configured plugin (built-in or library),
//! checks it, constructs it with its config table and hands it out behind
//! the SDK traits, so the rest of the core never knows where a plugin came
//! from.
//!
//! Loading is all-or-nothing: the first slot that fails stops start-up with
//! its reason, located in the config file. Once running, every error a
//! plugin returns is prefixed with its slot and name, e.g.
//! `store(sqlite): key "devices/x": … (conflict)`.

mod loader;
mod logger;
mod provenance;
mod slot;

pub use provenance::loaded_events;

use std::path::PathBuf;
use std::sync::Arc;

use keygate_sdk::{
    ApprovalPolicy, BatchStore, PluginContext, PluginError, PluginKind, SecretStore, Transport,
    WatchStore,
};
use keygate_sdk_host::{Library, LoadError, Origin, PluginInfo};
use serde::Serialize;

use crate::config::{Config, PluginSource, SlotConfig};

pub use loader::{
    LibraryCache, PROC_SELF_FD, SEALED_COPY_PREFIX, open_library, open_library_via, sha256_of,
};
pub use logger::TracingLogger;
pub use slot::Slot;

/// Why the plugins could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The ABI layer refused the library (missing, not a library, not a
    /// plugin, SDK version or layout mismatch).
    #[error(transparent)]
    Load(LoadError),
    /// Reading the library file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The library.
        path: PathBuf,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The file does not match its configured `sha256`.
    #[error(
        "{path}: SHA-256 is {actual} but config pins {expected}: refused, the file was not opened as a library"
    )]
    ChecksumMismatch {
        /// The library.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// Two slots pin one library file differently: the copy loaded for the
    /// first does not have the digest the second pins.
    #[error(
        "{path}: config pins SHA-256 {expected}, but this file is already loaded for another \
         slot from a checked copy whose SHA-256 is {loaded}: refused"
    )]
    PinConflict {
        /// The library.
        path: PathBuf,
        /// The digest this slot pins.
        expected: String,
        /// The digest of the copy already loaded.
        loaded: String,
    },
    /// A pinned library could not be loaded from a sealed copy of the bytes
    /// that were checked; it is never opened by path instead.
    #[error(
        "{path}: pinned library refused: {what}; a pinned library is only ever loaded from a \
         sealed copy of the checked bytes, never by path"
    )]
    Sealing {
        /// The library.
        path: PathBuf,
        /// What is missing or failed.
        what: String,
    },
    /// No built-in plugin of that kind has that name.
    #[error("no built-in {kind} plugin named {name:?} (built-in {kind} plugins: {known})")]
    UnknownBuiltin {
        /// The slot's kind.
        kind: PluginKind,
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
    /// The library holds no (or no such) plugin of the slot's kind.
    #[error("{origin}: {problem}")]
    NoSuchPlugin {
        /// The library.
        origin: String,
        /// What is missing and what the library holds.
        problem: String,
    },
    /// The plugin's constructor refused (typically its config table).
    #[error("{label}: could not start: {cause}")]
    Construct {
        /// `slot(name)`.
        label: String,
        /// The plugin's error.
        cause: PluginError,
    },
    /// Any of the above, located in the config file.
    #[error("{location}: {cause}")]
    InConfig {
        /// `file:line: key`.
        location: String,
        /// The failure.
        cause: Box<HostError>,
    },
}

/// A plugin as `keygate plugins list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PluginListing {
    /// The plugin's name.
    pub name: String,
    /// `store`, `approval` or `transport`.
    pub kind: String,
    /// The SDK version its library was built with.
    pub sdk_version: String,
    /// Its one-line description.
    pub description: String,
    /// `built-in (<crate>)` or the library path.
    pub source: String,
    /// The config slot it fills, if configured.
    pub slot: Option<String>,
}

/// One loaded plugin, for reporting.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// `slot(name)`, as errors and logs name it.
    pub label: String,
    /// Its manifest entry.
    pub info: PluginInfo,
    /// The SDK version of its library.
    pub sdk_version: String,
    /// Where it came from.
    pub origin: Origin,
}

/// The constructed plugins of a config.
pub struct PluginHost {
    /// The secret store.
    pub store: Arc<dyn SecretStore>,
    /// The same store as a [`BatchStore`], when its plugin exported the
    /// batch capability (`stores: [MyStore: batch]`); `None` for a store
    /// without it, including every store from a library built before the
    /// capability existed. One object with [`store`](Self::store): both
    /// label their errors `store(name):`.
    pub batch: Option<Arc<dyn BatchStore>>,
    /// The store's watch side, when its plugin exported the watch
    /// capability (`stores: [MyStore: watch]`): told when any process
    /// sharing the store commits a write. `None` for a store without it
    /// (identity state then polls). Labels its errors like the store.
    pub watch: Option<Arc<dyn WatchStore>>,
    /// The approval policy, if configured.
    pub approval: Option<Arc<dyn ApprovalPolicy>>,
    /// The transport, if configured.
    pub transport: Option<Arc<dyn Transport>>,
    /// What was loaded, store first.
    pub loaded: Vec<LoadedPlugin>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("loaded", &self.loaded)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// The store, as identity state uses it: with its batch capability
    /// when it has one.
    pub fn state_store(&self) -> crate::state::StateStore {
        match &self.batch {
            Some(batch) => crate::state::StateStore::batched(batch.clone()),
            None => crate::state::StateStore::plain(self.store.clone()),
        }
        .with_watch(self.watch.clone())
    }

    /// [`state_store`](Self::state_store), with every call's latency and
    /// every error recorded into `metrics` under the slot (`store`) and
    /// the plugin's name ([`MeasuredStore`](crate::metrics::store::MeasuredStore)).
    pub fn measured_state_store(
        &self,
        metrics: &crate::metrics::Metrics,
    ) -> crate::state::StateStore {
        let plugin = self
            .loaded
            .iter()
            .find(|p| p.info.kind == PluginKind::Store)
            .map(|p| p.info.name.to_string())
            .unwrap_or_default();
        let measured = Arc::new(crate::metrics::store::MeasuredStore::new(
            metrics,
            "store",
            &plugin,
            self.store.clone(),
            self.batch.clone(),
        ));
        if measured.has_batch() {
            crate::state::StateStore::batched(measured)
        } else {
            crate::state::StateStore::plain(measured)
        }
        .with_watch(self.watch.clone())
    }

    /// Loads and constructs every configured plugin, or none.
    pub fn load(config: &Config) -> Result<PluginHost, HostError> {
        let mut libraries = LibraryCache::default();
        let mut loaded = Vec::new();

        let (mut store, info) = Self::construct(
            config,
            &config.plugins.store,
            &mut libraries,
            |lib, name, cfg, ctx| lib.new_store(name, cfg, ctx),
        )?;
        let watch: Option<Arc<dyn WatchStore>> = store
            .take_watch()
            .map(|w| Arc::new(Slot::new(info.label.clone(), w)) as Arc<dyn WatchStore>);
        let (store, batch): (Arc<dyn SecretStore>, Option<Arc<dyn BatchStore>>) =
            match store.into_batch() {
                Ok(batch) => {
                    let batch = Arc::new(Slot::new(info.label.clone(), batch));
                    (batch.clone(), Some(batch))
                }
                Err(store) => (Arc::new(Slot::new(info.label.clone(), store)), None),
            };
        tracing::debug!(
            plugin = %info.label,
            batch = batch.is_some(),
            watch = watch.is_some(),
            "store capabilities"
        );
        loaded.push(info);

        let approval = match &config.plugins.approval {
            Some(slot) => {
                let (p, info) =
                    Self::construct(config, slot, &mut libraries, |lib, name, cfg, ctx| {
                        lib.new_approval(name, cfg, ctx)
                            .map(|h| Slot::new(String::new(), h))
                    })?;
                let p: Arc<dyn ApprovalPolicy> = Arc::new(p.labelled(&info.label));
                loaded.push(info);
                Some(p)
            }
            None => None,
        };
        let transport = match &config.plugins.transport {
            Some(slot) => {
                let (t, info) =
                    Self::construct(config, slot, &mut libraries, |lib, name, cfg, ctx| {
                        lib.new_transport(name, cfg, ctx)
                            .map(|h| Slot::new(String::new(), h))
                    })?;
                let t: Arc<dyn Transport> = Arc::new(t.labelled(&info.label));
                loaded.push(info);
                Some(t)
            }
            None => None,
        };
        Ok(PluginHost {
            store,
            batch,
            watch,
            approval,
            transport,
            loaded,
        })
    }

    fn construct<T>(
        config: &Config,
        slot: &SlotConfig,
        libraries: &mut LibraryCache,
        build: impl FnOnce(&Library, &str, &str, PluginContext) -> Result<T, PluginError>,
    ) -> Result<(T, LoadedPlugin), HostError> {
        let (library, info, location) = resolve_slot(config, slot, libraries)?;
        let label = format!("{}({})", slot.kind, info.name);
        let ctx = PluginContext::new(
            &label,
            &config.dir,
            &config.state_dir,
            TracingLogger::new(label.clone()),
        );
        let value = build(&library, &info.name, &slot.config_toml, ctx).map_err(|cause| {
            HostError::InConfig {
                location: location.clone(),
                cause: Box::new(HostError::Construct {
                    label: label.clone(),
                    cause,
                }),
            }
        })?;
        let sdk_version = library.manifest().sdk_version.to_string();
        tracing::info!(
            plugin = %label,
            source = %library.origin(),
            sdk = %sdk_version,
            "plugin loaded"
        );
        Ok((
            value,
            LoadedPlugin {
                label,
                info,
                sdk_version,
                origin: library.origin().clone(),
            },
        ))
    }
}

fn resolve_slot(
    config: &Config,
    slot: &SlotConfig,
    libraries: &mut LibraryCache,
) -> Result<(Library, PluginInfo, String), HostError> {
    let at = |line: usize, key: &str| format!("{}:{line}: {key}", config.path.display());
    match &slot.source {
        PluginSource::Builtin(name) => {
            let location = at(name.line, &name.key);
            let (library, info) =
                find_builtin(slot.kind, &name.value).map_err(|e| HostError::InConfig {
                    location: location.clone(),
                    cause: Box::new(e),
                })?;
            Ok((library, info, location))
        }
        PluginSource::Library { path, name, sha256 } => {
            let location = at(path.line, &path.key);
            let located = |e: HostError| HostError::InConfig {
                location: location.clone(),
                cause: Box::new(e),
            };
            let library = libraries
                .open(&path.value, sha256.as_ref().map(|s| &s.value))
                .map_err(located)?;
            let info = pick_plugin(&library, slot.kind, name.as_ref().map(|n| n.value.as_str()))
                .map_err(located)?;
            Ok((library, info, location))
        }
    }
}

/// Finds the built-in plugin `name` of `kind`.
pub fn find_builtin(kind: PluginKind, name: &str) -> Result<(Library, PluginInfo), HostError> {
    let mut known = Vec::new();
    for library in Library::builtins() {
        for info in library.manifest().plugins {
            if info.kind == kind {
                if info.name.as_str() == name {
                    return Ok((library, info));
                }
                known.push(info.name.to_string());
            }
        }
    }
    known.sort();
    Err(HostError::UnknownBuiltin {
        kind,
        name: name.to_owned(),
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    })
}

/// Chooses the plugin of `kind` (named `name`, if given) in a library.
pub fn pick_plugin(
    library: &Library,
    kind: PluginKind,
    name: Option<&str>,
) -> Result<PluginInfo, HostError> {
    let manifest = library.manifest();
    let holds = || {
        let all: Vec<String> = manifest
            .plugins
            .iter()
            .map(|p| format!("{} {:?}", p.kind, p.name.as_str()))
            .collect();
        if all.is_empty() {
            "nothing".to_owned()
        } else {
            all.join(", ")
        }
    };
    let of_kind: Vec<&PluginInfo> = manifest.plugins.iter().filter(|p| p.kind == kind).collect();
    let problem = match (name, of_kind.as_slice()) {
        (Some(n), _) => match of_kind.iter().find(|p| p.name.as_str() == n) {
            Some(p) => return Ok((*p).clone()),
            None => format!("holds no {kind} plugin named {n:?} (it holds: {})", holds()),
        },
        (None, [only]) => return Ok((*only).clone()),
        (None, []) => format!(
            "holds no {kind} plugin, so it cannot fill [plugins.{kind}] (it holds: {})",
            holds()
        ),
        (None, several) => format!(
            "holds several {kind} plugins ({}): choose one with `name`",
            several
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(HostError::NoSuchPlugin {
        origin: library.origin().to_string(),
        problem,
    })
}

/// Every built-in plugin, plus the configured library plugins when a config
/// is given (each library is opened and checked as at start-up).
pub fn list_plugins(config: Option<&Config>) -> Result<Vec<PluginListing>, HostError> {
    let mut rows = Vec::new();
    let slot_of = |origin: &Origin, info: &PluginInfo| -> Option<String> {
        let config = config?;
        config.plugins.iter().find_map(|slot| {
            if slot.kind != info.kind {
                return None;
            }
            let fills = match (&slot.source, origin) {
                (PluginSource::Builtin(name), Origin::Builtin(_)) => {
                    name.value == info.name.as_str()
                }
                (PluginSource::Library { path, name, .. }, Origin::File(file)) => {
                    path.value == *file
                        && name.as_ref().is_none_or(|n| n.value == info.name.as_str())
                }
                _ => false,
            };
            fills.then(|| slot.kind.to_string())
        })
    };
    let mut push = |library: &Library| {
        let manifest = library.manifest();
        for info in manifest.plugins.iter() {
            rows.push(PluginListing {
                name: info.name.to_string(),
                kind: info.kind.to_string(),
                sdk_version: manifest.sdk_version.to_string(),
                description: info.description.to_string(),
                source: library.origin().to_string(),
                slot: slot_of(library.origin(), info),
            });
        }
    };
    for library in Library::builtins() {
        push(&library);
    }
    if let Some(config) = config {
        let mut libraries = LibraryCache::new();
        let mut listed = Vec::<PathBuf>::new();
        for slot in config.plugins.iter() {
            if let PluginSource::Library { path, sha256, .. } = &slot.source {
                // Every slot's pin is checked, each library listed once.
                let library = libraries
                    .open(&path.value, sha256.as_ref().map(|s| &s.value))
                    .map_err(|e| HostError::InConfig {
                        location: format!("{}:{}: {}", config.path.display(), path.line, path.key),
                        cause: Box::new(e),
                    })?;
                if !listed.contains(&path.value) {
                    listed.push(path.value.clone());
                    push(&library);
                }
            }
        }
    }
    Ok(rows)
}

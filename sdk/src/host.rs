//! The host's side of the ABI: opening plugin libraries, reading their
//! manifests and constructing plugins. Policy (which file, checksums, config
//! slots) belongs to the host; this module only speaks the ABI and turns its
//! failures into [`LoadError`]s an operator can act on.

use std::path::{Path, PathBuf};

use abi_stable::{
    library::{LibraryError, lib_header_from_path},
    std_types::RStr,
};

use crate::abi::approval::ApprovalHandle;
use crate::abi::module::{LibraryManifest, PluginLibraryRef};
use crate::abi::store::StoreHandle;
use crate::abi::transport::TransportHandle;
use crate::{PluginContext, PluginError, SDK_VERSION};

/// Why a plugin library could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The path does not exist.
    #[error("{path}: no such file")]
    Missing {
        /// The library path.
        path: PathBuf,
    },
    /// The dynamic loader refused the file.
    #[error("{path}: not a loadable shared library: {reason}")]
    NotSharedLibrary {
        /// The library path.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// A shared library without a Keygate root module.
    #[error(
        "{path}: a shared library, but not a Keygate plugin (it exports no keygate-sdk root module)"
    )]
    NotAPlugin {
        /// The library path.
        path: PathBuf,
    },
    /// Built against an incompatible `keygate-sdk` version.
    #[error(
        "{path}: built against keygate-sdk {library}, but this host speaks keygate-sdk {host}: \
         rebuild the plugin against keygate-sdk {host}"
    )]
    VersionMismatch {
        /// The library path.
        path: PathBuf,
        /// The SDK version of the host.
        host: String,
        /// The SDK version the library declares.
        library: String,
    },
    /// Same version, different type layout: the library was built against
    /// a modified or foreign SDK.
    #[error(
        "{path}: its plugin ABI does not match this host's ({detail}): \
         rebuild the plugin against keygate-sdk {host}"
    )]
    AbiMismatch {
        /// The library path.
        path: PathBuf,
        /// The end of abi_stable's report, where the first difference is.
        detail: String,
        /// The SDK version of the host.
        host: String,
    },
    /// The library's root module failed to initialise.
    #[error("{path}: plugin library failed to initialise: {reason}")]
    Init {
        /// The library path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Where a library came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Linked into the host binary, from this crate.
    Builtin(&'static str),
    /// Loaded from this file.
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Builtin(krate) => write!(f, "built-in ({krate})"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A built-in library registered with [`register_builtin_plugins!`](crate::register_builtin_plugins).
#[doc(hidden)]
pub struct BuiltinLibrary {
    crate_name: &'static str,
    module: fn() -> PluginLibraryRef,
}

impl BuiltinLibrary {
    #[doc(hidden)]
    pub const fn new(crate_name: &'static str, module: fn() -> PluginLibraryRef) -> Self {
        Self { crate_name, module }
    }
}

inventory::collect!(BuiltinLibrary);

/// A loaded plugin library (built-in or from a file).
#[derive(Clone)]
pub struct Library {
    origin: Origin,
    module: PluginLibraryRef,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Library {
    /// Every built-in library linked into this binary, in a stable order.
    pub fn builtins() -> Vec<Library> {
        let mut libs: Vec<Library> = inventory::iter::<BuiltinLibrary>
            .into_iter()
            .map(|b| Library {
                origin: Origin::Builtin(b.crate_name),
                module: (b.module)(),
            })
            .collect();
        libs.sort_by_key(|l| match &l.origin {
            Origin::Builtin(name) => *name,
            Origin::File(_) => "",
        });
        libs
    }

    /// Opens the library at `path`, checks its SDK version and ABI layout
    /// and initialises its root module.
    pub fn open(path: &Path) -> Result<Library, LoadError> {
        Self::open_as(path, path)
    }

    /// Like [`Library::open`], but errors and [`Library::origin`] name
    /// `display` (used when the host opens the file through a descriptor it
    /// has already checksummed, e.g. `/proc/self/fd/N`).
    pub fn open_as(load_path: &Path, display: &Path) -> Result<Library, LoadError> {
        let path = display.to_owned();
        if !load_path.exists() {
            return Err(LoadError::Missing { path });
        }
        // The loader searches the library path for bare names; a plugin is
        // always a file the operator named.
        let load_path = if load_path.components().count() == 1 {
            Path::new(".").join(load_path)
        } else {
            load_path.to_owned()
        };
        let fail = |e| map_error(e, &path, &load_path);
        let header = lib_header_from_path(&load_path).map_err(fail)?;
        let module = header
            .init_root_module::<PluginLibraryRef>()
            .map_err(fail)?;
        Ok(Library {
            origin: Origin::File(path),
            module,
        })
    }

    /// Where it came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// What it holds.
    pub fn manifest(&self) -> LibraryManifest {
        (self.module.manifest())()
    }

    /// Constructs the store plugin `name` with its config table (TOML text).
    pub fn new_store(
        &self,
        name: &str,
        config: &str,
        ctx: PluginContext,
    ) -> Result<StoreHandle, PluginError> {
        (self.module.new_store())(RStr::from(name), RStr::from(config), ctx)
            .into_result()
            .map(StoreHandle::new)
    }

    /// Constructs the approval plugin `name`.
    pub fn new_approval(
        &self,
        name: &str,
        config: &str,
        ctx: PluginContext,
    ) -> Result<ApprovalHandle, PluginError> {
        (self.module.new_approval())(RStr::from(name), RStr::from(config), ctx)
            .into_result()
            .map(ApprovalHandle::new)
    }

    /// Constructs the transport plugin `name`.
    pub fn new_transport(
        &self,
        name: &str,
        config: &str,
        ctx: PluginContext,
    ) -> Result<TransportHandle, PluginError> {
        (self.module.new_transport())(RStr::from(name), RStr::from(config), ctx)
            .into_result()
            .map(TransportHandle::new)
    }
}

/// The SDK version this host was built with.
pub fn host_sdk_version() -> &'static str {
    SDK_VERSION
}

fn map_error(err: LibraryError, path: &Path, load_path: &Path) -> LoadError {
    let path = path.to_owned();
    match err {
        LibraryError::OpenError { err, .. } => LoadError::NotSharedLibrary {
            // The loader's text names the path it was given; say the
            // operator's path instead of a descriptor path.
            reason: err
                .to_string()
                .replace(&*load_path.to_string_lossy(), &path.to_string_lossy()),
            path,
        },
        LibraryError::GetSymbolError { .. } | LibraryError::InvalidAbiHeader(_) => {
            LoadError::NotAPlugin { path }
        }
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            LoadError::VersionMismatch {
                path,
                host: SDK_VERSION.to_owned(),
                library: actual_version.to_string(),
            }
        }
        LibraryError::AbiInstability(report) => LoadError::AbiMismatch {
            path,
            detail: report_tail(&report.to_string()),
            host: SDK_VERSION.to_owned(),
        },
        LibraryError::InvalidCAbi { .. } => LoadError::AbiMismatch {
            path,
            detail: "the library was built with an incompatible C ABI".to_owned(),
            host: SDK_VERSION.to_owned(),
        },
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => map_error(first, &path, load_path),
            None => LoadError::Init {
                path,
                reason: "unknown loader error".to_owned(),
            },
        },
        other => LoadError::Init {
            path,
            reason: other.to_string(),
        },
    }
}

/// abi_stable's layout report runs to tens of kilobytes with the useful part
/// at its end ("Error:mismatched type / Expected: .. / Found: .."): keep that
/// part, on one line.
fn report_tail(report: &str) -> String {
    let start = report.rfind("Error:").unwrap_or(0);
    let tail: String = report[start..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    const LIMIT: usize = 300;
    if tail.len() > LIMIT {
        let mut cut = LIMIT;
        while !tail.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &tail[..cut])
    } else {
        tail
    }
}

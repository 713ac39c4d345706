//! Why a plugin library was refused, one line naming the file.

use std::path::{Path, PathBuf};

use abi_stable::library::LibraryError;
use keygate_sdk::SDK_VERSION;

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
         rebuild the plugin against keygate-sdk {}",
        compatible_series(host)
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
         rebuild the plugin against keygate-sdk {}",
        compatible_series(host)
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

/// The versions a library may be built against to load into a host of
/// `version`, as people write them: `0.2` for `0.2.z` (while the SDK is 0.x
/// the minor version breaks), `1` for `1.y.z`.
fn compatible_series(version: &str) -> String {
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}"),
        (Some(major), _) => major.to_owned(),
        (None, _) => version.to_owned(),
    }
}

/// Maps abi_stable's refusal to a [`LoadError`] naming `path` (the
/// operator's path, even when the loader was given `load_path`).
pub(crate) fn map_error(err: LibraryError, path: &Path, load_path: &Path) -> LoadError {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compatible_series_is_the_minor_while_0x_and_the_major_after() {
        assert_eq!(compatible_series("0.2.0"), "0.2");
        assert_eq!(compatible_series("0.13.4"), "0.13");
        assert_eq!(compatible_series("1.4.2"), "1");
        assert_eq!(compatible_series(""), "");
    }

    #[test]
    fn the_report_tail_is_the_last_error_on_one_line_and_short() {
        let report = format!(
            "{}Error: first\nError:mismatched type\n Expected: A\n Found: B\n",
            "x".repeat(10_000)
        );
        assert_eq!(
            report_tail(&report),
            "Error:mismatched type Expected: A Found: B"
        );
        let long = format!("Error:{}", "é".repeat(400));
        let tail = report_tail(&long);
        assert!(tail.len() <= 300 + '…'.len_utf8(), "{}", tail.len());
        assert!(tail.ends_with('…'));
    }
}

//! The one error type of every plugin call.

use std::fmt;

use abi_stable::StableAbi;

use crate::Version;

/// What kind of failure a plugin call reports.
///
/// The host reacts to the kind (a `Conflict` is retried by a compare-and-swap
/// loop, `NotFound` is an answer, not a fault); the message is for people.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The key, record or connection does not exist.
    NotFound = 0,
    /// A compare-and-swap lost: the expected version is not the current one.
    Conflict = 1,
    /// The input is malformed: a bad key, a bad config table, a bad frame.
    Invalid = 2,
    /// A dependency is not reachable right now (disk, database, network).
    Unavailable = 3,
    /// A fault inside the plugin, including a caught panic.
    Internal = 4,
    /// The plugin does not offer this operation (an optional one, such as
    /// [`SecretStore::quarantine`](crate::SecretStore::quarantine)).
    Unsupported = 5,
}

impl ErrorKind {
    /// A short lowercase name, as shown in messages (`conflict`, `not found`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not found",
            Self::Conflict => "conflict",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal error",
            Self::Unsupported => "unsupported",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error returned by a plugin (or by the host to a plugin): a kind and a
/// message.
///
/// ```
/// use keygate_sdk::{ErrorKind, PluginError};
/// let err = PluginError::conflict("key \"a\": expected version 3, found 4");
/// assert_eq!(err.kind(), ErrorKind::Conflict);
/// assert_eq!(err.to_string(), "key \"a\": expected version 3, found 4 (conflict)");
/// // The host prefixes the slot and plugin name, as in every runtime error:
/// let err = err.context("store(sqlite)");
/// assert_eq!(err.to_string(), "store(sqlite): key \"a\": expected version 3, found 4 (conflict)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({kind})")]
pub struct PluginError {
    kind: ErrorKind,
    message: String,
}

impl PluginError {
    /// An error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// The [`ErrorKind::Conflict`] a store returns when a compare-and-swap
    /// on `key` expected one version (`None`: absent) and found another, in
    /// the one wording every store uses:
    ///
    /// ```
    /// use keygate_sdk::{ErrorKind, PluginError};
    /// let err = PluginError::version_conflict("devices/x", Some(3), Some(4));
    /// assert_eq!(err.kind(), ErrorKind::Conflict);
    /// assert_eq!(err.message(), "key \"devices/x\": expected version 3, found version 4");
    /// let err = PluginError::version_conflict("devices/x", None, Some(4));
    /// assert_eq!(err.message(), "key \"devices/x\": expected absent, found version 4");
    /// let err = PluginError::version_conflict("devices/x", Some(3), None);
    /// assert_eq!(err.message(), "key \"devices/x\": expected version 3, found absent");
    /// ```
    pub fn version_conflict(key: &str, expected: Option<Version>, found: Option<Version>) -> Self {
        let show = |v: Option<Version>| v.map_or("absent".to_owned(), |v| format!("version {v}"));
        Self::conflict(format!(
            "key {key:?}: expected {}, found {}",
            show(expected),
            show(found)
        ))
    }

    /// [`ErrorKind::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, same kind, with `context: ` put in front of its
    /// message.
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self::new(self.kind, format!("{context}: {}", self.message))
    }
}

/// Turns the payload of a caught panic into an [`ErrorKind::Internal`] error.
pub(crate) fn panic_to_error(what: &str, payload: Box<dyn std::any::Any + Send>) -> PluginError {
    let detail = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    };
    PluginError::internal(format!("plugin panicked in {what}: {detail}"))
}

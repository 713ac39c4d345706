//! The one error type that crosses the plugin boundary.

use std::fmt;

use abi_stable::{StableAbi, std_types::RString};

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
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    kind: ErrorKind,
    message: RString,
}

impl PluginError {
    /// An error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: RString::from(message.into()),
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

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }

    /// The same error, same kind, with `context: ` put in front of its
    /// message.
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self::new(self.kind, format!("{context}: {}", self.message))
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl std::error::Error for PluginError {}

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

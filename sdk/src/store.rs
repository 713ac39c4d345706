//! The `SecretStore` plugin kind: a versioned key/value store of opaque bytes.
//!
//! # Versions
//! Every record carries a version, a non-zero `u64` chosen by the store. A
//! write names the version it expects to replace, and the store refuses it
//! with [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) when the record
//! has moved on (compare-and-swap). Versions are opaque to callers; a store
//! must never hand out, for one key, a version that an earlier incarnation of
//! that key had (after a delete and a re-create), so a stale writer can never
//! win by accident. A global counter does this; so does a random start.
//!
//! # Keys
//! Keys follow the rules of [`crate::key`]; every store calls
//! [`validate_key`](crate::validate_key) first.
//!
//! # Errors
//! The host reacts to the [`ErrorKind`](crate::ErrorKind) of an error, so
//! choose it with care:
//! - [`Unavailable`](crate::ErrorKind::Unavailable) means the store cannot
//!   be reached *now* (disk, database, network): the host fails the whole
//!   operation, changes nothing, and tries again later.
//! - Any other error from `get` is about *that record*: the host treats the
//!   record as unreadable (tampered, torn, undecodable), names it, fails
//!   closed for what it covers (a device whose record cannot be read counts
//!   as revoked) and goes on with the rest. So never answer a transient
//!   fault with `Internal`.

use crate::PluginError;

/// A record version. Never zero.
pub type Version = u64;

/// A value read from a store together with its version.
#[derive(Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// The version to name in the next `put` or `delete`.
    pub version: Version,
}

impl std::fmt::Debug for Versioned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are secrets more often than not: never print them.
        f.debug_struct("Versioned")
            .field("len", &self.value.len())
            .field("version", &self.version)
            .finish()
    }
}

/// A secret store, as its author implements it.
///
/// All methods are synchronous and may be called from several threads at
/// once. A store that needs async I/O runs its own runtime inside the
/// plugin.
pub trait SecretStore: Send + Sync + 'static {
    /// Reads `key`: `None` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError>;

    /// Writes `value` under `key` if the current version is `expected`
    /// (`None`: the key must not exist). Returns the new version; a mismatch
    /// is [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) and changes
    /// nothing.
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError>;

    /// Deletes `key` if its current version is `expected`. A missing key is
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound), a different
    /// version [`ErrorKind::Conflict`](crate::ErrorKind::Conflict).
    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError>;

    /// The keys that start with `prefix` (a plain string prefix, `""` for
    /// all), in ascending byte order.
    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError>;

    /// Moves the record at `key` out of the key space whatever its state,
    /// including a record the store itself cannot open (tampered, torn,
    /// sealed under another name), and keeps its bytes where an operator
    /// can look at them. Returns where it went, in words for the operator
    /// (a path, a table). Afterwards `key` is absent and may be written
    /// again. [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) if there
    /// is no such record.
    ///
    /// Optional: the default answers
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported), and
    /// `keygate state check --quarantine` then tells the operator to move
    /// the record aside by the store's own means.
    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        Err(PluginError::unsupported(format!(
            "this store cannot move record {key:?} aside"
        )))
    }
}

impl<S: SecretStore + ?Sized> SecretStore for std::sync::Arc<S> {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        (**self).get(key)
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        (**self).put(key, value, expected)
    }
    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        (**self).delete(key, expected)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        (**self).list(prefix)
    }
    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        (**self).quarantine(key)
    }
}

impl<S: SecretStore + ?Sized> SecretStore for Box<S> {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        (**self).get(key)
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        (**self).put(key, value, expected)
    }
    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        (**self).delete(key, expected)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        (**self).list(prefix)
    }
    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        (**self).quarantine(key)
    }
}

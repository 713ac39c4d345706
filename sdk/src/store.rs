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
}

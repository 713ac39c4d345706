//! Where a store's key comes from: the `key_file` and `passphrase_env`
//! fields every sealing store takes, with the same defaults and the same
//! refusals.
//!
//! - `key_file`: the 32-byte key file (see [`crate::keyfile`]); relative
//!   paths resolve against the config file's folder; default
//!   `<state_dir>/store.key`.
//! - `passphrase_env`: the name of an environment variable holding a
//!   passphrase; the key is derived from it with Argon2id (see
//!   [`crate::kdf`]) and no key file is used. Setting both fields is an
//!   error, and so is a variable that is missing or empty.
//!
//! Errors are `Invalid` and name the field, worded as
//! `keygate_sdk::config::parse` words its own: `field "key_file": ...`.

use std::ffi::OsString;
use std::path::PathBuf;

use keygate_sdk::{PluginContext, PluginError};
use zeroize::Zeroizing;

/// The key file's name in the state folder when `key_file` is not set.
pub const DEFAULT_KEY_FILE: &str = "store.key";

/// Where the store key comes from.
pub enum KeySource {
    /// A 32-byte key file, created if the store is new.
    File(PathBuf),
    /// A passphrase read from an environment variable when the store was
    /// configured.
    Passphrase {
        /// The variable's name, for messages.
        var: String,
        /// Its value, wiped when dropped.
        passphrase: Zeroizing<Vec<u8>>,
    },
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Passphrase { var, .. } => f
                .debug_struct("Passphrase")
                .field("var", var)
                .finish_non_exhaustive(),
        }
    }
}

/// A refusal of `field` after parsing.
fn invalid(field: &str, message: impl std::fmt::Display) -> PluginError {
    PluginError::invalid(format!("field {field:?}: {message}"))
}

/// Reads the passphrase from the variable `var`.
fn read_passphrase(var: &str) -> Result<Zeroizing<Vec<u8>>, PluginError> {
    let field = "passphrase_env";
    if var.is_empty() || var.contains('=') || var.contains('\0') {
        return Err(invalid(
            field,
            format_args!("{var:?} is not an environment variable name"),
        ));
    }
    let value: OsString = std::env::var_os(var).ok_or_else(|| {
        invalid(
            field,
            format_args!(
                "environment variable {var} is not set (it must hold the store passphrase)"
            ),
        )
    })?;
    let bytes = Zeroizing::new(value.into_encoded_bytes());
    if bytes.is_empty() {
        return Err(invalid(
            field,
            format_args!("environment variable {var} is empty (it must hold the store passphrase)"),
        ));
    }
    Ok(bytes)
}

impl KeySource {
    /// The key source the `key_file` and `passphrase_env` fields (as
    /// written, before defaults) name; reads the passphrase now.
    pub fn from_fields(
        key_file: Option<PathBuf>,
        passphrase_env: Option<String>,
        ctx: &PluginContext,
    ) -> Result<Self, PluginError> {
        if key_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(invalid("key_file", "must not be empty"));
        }
        match (key_file, passphrase_env) {
            (Some(_), Some(_)) => Err(PluginError::invalid(
                "fields \"key_file\" and \"passphrase_env\": set one or the other, not both \
                 (with passphrase_env no key file is used)",
            )),
            (None, Some(var)) => Ok(Self::Passphrase {
                passphrase: read_passphrase(&var)?,
                var,
            }),
            (Some(path), None) => Ok(Self::File(ctx.resolve_path(path))),
            (None, None) => Ok(Self::File(ctx.state_dir().join(DEFAULT_KEY_FILE))),
        }
    }

    /// The key's origin in words, for messages: `key file PATH` or `the
    /// passphrase in $VAR`.
    pub fn describe(&self) -> String {
        match self {
            Self::File(path) => format!("key file {}", path.display()),
            Self::Passphrase { var, .. } => format!("the passphrase in ${var}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use keygate_sdk::{ErrorKind, LogLevel, Logger};

    use super::*;

    struct Quiet;
    impl Logger for Quiet {
        fn log(&self, _: LogLevel, _: &str) {}
    }

    fn ctx() -> PluginContext {
        PluginContext::new(
            "seal",
            Path::new("/etc/keygate"),
            Path::new("/var/lib/keygate"),
            Quiet,
        )
    }

    fn error_of(key_file: Option<&str>, var: Option<&str>) -> String {
        let err = KeySource::from_fields(key_file.map(PathBuf::from), var.map(Into::into), &ctx())
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        err.message().to_owned()
    }

    #[test]
    fn the_default_key_file_lives_in_the_state_dir() {
        let s = KeySource::from_fields(None, None, &ctx()).unwrap();
        assert!(matches!(&s, KeySource::File(p) if p == Path::new("/var/lib/keygate/store.key")));
        let s = KeySource::from_fields(Some("k".into()), None, &ctx()).unwrap();
        assert_eq!(s.describe(), "key file /etc/keygate/k");
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(
            error_of(Some(""), None),
            "field \"key_file\": must not be empty"
        );
        let both = error_of(Some("k"), Some("P"));
        assert!(
            both.contains("key_file") && both.contains("passphrase_env"),
            "{both}"
        );
        let var = "KEYGATE_SEAL_UNIT_TEST_SURELY_UNSET";
        let msg = error_of(None, Some(var));
        assert!(msg.contains("passphrase_env") && msg.contains(var), "{msg}");
        assert!(error_of(None, Some("")).contains("passphrase_env"));
    }
}

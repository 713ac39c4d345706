//! The store's config table.
//!
//! ```toml
//! [plugins.store]
//! use = "filesystem"
//! [plugins.store.config]
//! root = "store"                 # default: <state_dir>/store
//! key_file = "/etc/keygate/key"  # default: <state_dir>/store.key
//! # or, instead of key_file:
//! # passphrase_env = "KEYGATE_STORE_PASSPHRASE"
//! ```
//!
//! - `root`: the folder of records. Relative paths are relative to the
//!   config file's folder.
//! - `key_file`: the 32-byte key, created (mode 0600) when a new store is
//!   opened the first time. It may live apart from the data (another disk,
//!   a mounted secret) so a copy of the root alone reveals nothing.
//! - `passphrase_env`: the name of an environment variable holding a
//!   passphrase. The key is then derived from it with Argon2id and a random
//!   salt kept in `<root>/.kdf`, and no key file is used. Setting both
//!   `key_file` and `passphrase_env` is an error, and so is a variable that
//!   is missing or empty when the store opens.
//!
//! Every error is `Invalid` and names the field (and, for what the TOML
//! itself gets wrong, the line: see `keygate_sdk::config`).

use std::ffi::OsString;
use std::path::PathBuf;

use keygate_sdk::{PluginContext, PluginError};
use serde::Deserialize;
use zeroize::Zeroizing;

/// The config table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    root: Option<PathBuf>,
    key_file: Option<PathBuf>,
    passphrase_env: Option<String>,
}

/// Where the store key comes from.
pub(crate) enum KeySource {
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

/// The config with defaults applied and paths resolved.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The folder of records.
    pub root: PathBuf,
    /// Where the key comes from.
    pub key: KeySource,
}

/// A refusal of `field` after parsing, worded as `config::parse` words its
/// own: `field "root": must not be empty`.
fn invalid(field: &str, message: impl std::fmt::Display) -> PluginError {
    PluginError::invalid(format!("field {field:?}: {message}"))
}

fn non_empty_path(field: &str, path: Option<PathBuf>) -> Result<Option<PathBuf>, PluginError> {
    match path {
        Some(p) if p.as_os_str().is_empty() => Err(invalid(field, "must not be empty")),
        other => Ok(other),
    }
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

/// Parses the config table (TOML text, possibly empty) and applies
/// defaults from `ctx`.
pub(crate) fn parse(text: &str, ctx: &PluginContext) -> Result<Settings, PluginError> {
    let raw: RawConfig = keygate_sdk::config::parse(text)?;
    let root = non_empty_path("root", raw.root)?
        .map_or_else(|| ctx.state_dir().join("store"), |p| ctx.resolve_path(p));
    let key_file = non_empty_path("key_file", raw.key_file)?;
    let key = match (key_file, raw.passphrase_env) {
        (Some(_), Some(_)) => {
            return Err(PluginError::invalid(
                "fields \"key_file\" and \"passphrase_env\": set one or the other, not both \
                 (with passphrase_env no key file is used)",
            ));
        }
        (None, Some(var)) => KeySource::Passphrase {
            passphrase: read_passphrase(&var)?,
            var,
        },
        (Some(path), None) => KeySource::File(ctx.resolve_path(path)),
        (None, None) => KeySource::File(ctx.state_dir().join("store.key")),
    };
    Ok(Settings { root, key })
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
            "filesystem",
            Path::new("/etc/keygate"),
            Path::new("/var/lib/keygate"),
            Quiet,
        )
    }

    fn error_of(text: &str) -> String {
        let err = parse(text, &ctx()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        err.message().to_owned()
    }

    #[test]
    fn defaults_live_in_the_state_dir() {
        let s = parse("", &ctx()).unwrap();
        assert_eq!(s.root, Path::new("/var/lib/keygate/store"));
        assert!(
            matches!(&s.key, KeySource::File(p) if p == Path::new("/var/lib/keygate/store.key"))
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_config_dir() {
        let s = parse("root = \"data\"\nkey_file = \"/keys/k\"", &ctx()).unwrap();
        assert_eq!(s.root, Path::new("/etc/keygate/data"));
        assert!(matches!(&s.key, KeySource::File(p) if p == Path::new("/keys/k")));
    }

    #[test]
    fn errors_name_the_field() {
        assert!(
            error_of("rooot = \"x\"").starts_with("line 1: field \"rooot\": unknown field `rooot`")
        );
        assert!(error_of("\nroot = 5").starts_with("line 2: field \"root\": invalid type"));
        assert_eq!(error_of("root = \"\""), "field \"root\": must not be empty");
        assert_eq!(
            error_of("key_file = \"\""),
            "field \"key_file\": must not be empty"
        );
        let both = error_of("key_file = \"k\"\npassphrase_env = \"P\"");
        assert!(
            both.contains("key_file") && both.contains("passphrase_env"),
            "{both}"
        );
    }

    #[test]
    fn a_missing_passphrase_variable_is_named() {
        let var = "KEYGATE_STORE_FS_UNIT_TEST_SURELY_UNSET";
        let msg = error_of(&format!("passphrase_env = \"{var}\""));
        assert!(msg.contains("passphrase_env") && msg.contains(var), "{msg}");
        assert!(error_of("passphrase_env = \"\"").contains("passphrase_env"));
    }
}

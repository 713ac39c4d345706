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
//!   opened the first time (the field and `passphrase_env` are read by
//!   `keygate_seal::KeySource`, shared with the `postgres` store). It may live apart from the data (another disk,
//!   a mounted secret) so a copy of the root alone reveals nothing.
//! - `passphrase_env`: the name of an environment variable holding a
//!   passphrase. The key is then derived from it with Argon2id and a random
//!   salt kept in `<root>/.kdf`, and no key file is used. Setting both
//!   `key_file` and `passphrase_env` is an error, and so is a variable that
//!   is missing or empty when the store opens.
//!
//! Every error is `Invalid` and names the field (and, for what the TOML
//! itself gets wrong, the line: see `keygate_sdk::config`).

use std::path::PathBuf;

use keygate_sdk::{PluginContext, PluginError};
pub(crate) use keygate_seal::KeySource;
use serde::Deserialize;

/// The config table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    root: Option<PathBuf>,
    key_file: Option<PathBuf>,
    passphrase_env: Option<String>,
}

/// The config with defaults applied and paths resolved.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The folder of records.
    pub root: PathBuf,
    /// Where the key comes from.
    pub key: KeySource,
}

/// Parses the config table (TOML text, possibly empty) and applies
/// defaults from `ctx`.
pub(crate) fn parse(text: &str, ctx: &PluginContext) -> Result<Settings, PluginError> {
    let raw: RawConfig = keygate_sdk::config::parse(text)?;
    let root = match raw.root {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(PluginError::invalid("field \"root\": must not be empty"));
        }
        Some(p) => ctx.resolve_path(p),
        None => ctx.state_dir().join("store"),
    };
    let key = KeySource::from_fields(raw.key_file, raw.passphrase_env, ctx)?;
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

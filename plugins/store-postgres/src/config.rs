//! The store's config table.
//!
//! ```toml
//! [plugins.store]
//! use = "postgres"
//! [plugins.store.config]
//! url = "postgres://keygate@db.example:5432/keygate?sslmode=verify-full"
//! # or, so no password sits in config.toml:
//! # url_env = "KEYGATE_DATABASE_URL"
//! pool_size = 4                 # connections, 1..=64
//! connect_timeout_ms = 5000     # also how long a call waits for a connection
//! statement_timeout_ms = 10000  # the server cancels a statement after this
//! # ca_file = "/etc/keygate/db-ca.pem"   # trust this CA for TLS
//! key_file = "store.key"        # default <state_dir>/store.key
//! # passphrase_env = "KEYGATE_STORE_PASSPHRASE"   # instead of key_file
//! ```
//!
//! - `url` / `url_env`: exactly one. The URL is a `postgres://` (or
//!   `postgresql://`) URL; `url_env` names an environment variable holding
//!   one, and a variable that is missing or empty is an error naming it.
//!   The password is never shown: messages name the host, the port and the
//!   database only.
//! - `sslmode` in the URL: `require`, `verify-ca` or `verify-full` connect
//!   with TLS and verify the server's certificate chain and name (against
//!   `ca_file` when set, else the Mozilla roots); `disable`, `allow`,
//!   `prefer` or no `sslmode` connect over plain TCP. See the `tls` module.
//! - `statement_timeout_ms`: set as the session's `statement_timeout` on
//!   every connection, so a statement stuck behind a lock (a transaction
//!   left open by another client, say) fails as `Unavailable` after this
//!   long instead of holding a mutation forever. 0 is refused: PostgreSQL
//!   reads it as "no limit".
//! - `key_file` / `passphrase_env`: as for the filesystem store (the same
//!   defaults, relative to the same folders; see `keygate_seal::source`),
//!   so every gateway names the same key.
//!
//! Every error is `Invalid` and names the field (and, for what the TOML
//! itself gets wrong, the line: see `keygate_sdk::config`).

use std::path::PathBuf;
use std::time::Duration;

use keygate_sdk::{PluginContext, PluginError};
use keygate_seal::KeySource;
use serde::Deserialize;

use crate::connect::Target;

/// The default number of pooled connections.
pub const DEFAULT_POOL_SIZE: u32 = 4;
/// The most pooled connections a store may ask for.
pub const MAX_POOL_SIZE: u32 = 64;
/// The default connect timeout, in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5000;
/// The default statement timeout, in milliseconds.
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 10_000;

/// The config table as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    url: Option<String>,
    url_env: Option<String>,
    pool_size: Option<u32>,
    connect_timeout_ms: Option<u64>,
    statement_timeout_ms: Option<u64>,
    ca_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    passphrase_env: Option<String>,
}

/// The config with defaults applied and paths resolved.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The database and how to reach it.
    pub target: Target,
    /// How many connections the pool keeps at most.
    pub pool_size: u32,
    /// How long connecting (and waiting for a pooled connection) may take.
    pub connect_timeout: Duration,
    /// Where the key comes from.
    pub key: KeySource,
}

/// A refusal of `field` after parsing, worded as `config::parse` words its
/// own: `field "url": ...`.
pub(crate) fn invalid(field: &str, message: impl std::fmt::Display) -> PluginError {
    PluginError::invalid(format!("field {field:?}: {message}"))
}

/// Reads the URL from the variable `var`.
fn url_from_env(var: &str) -> Result<String, PluginError> {
    let field = "url_env";
    if var.is_empty() || var.contains('=') || var.contains('\0') {
        return Err(invalid(
            field,
            format_args!("{var:?} is not an environment variable name"),
        ));
    }
    match std::env::var_os(var) {
        None => Err(invalid(
            field,
            format_args!("environment variable {var} is not set (it must hold the database URL)"),
        )),
        Some(v) if v.is_empty() => Err(invalid(
            field,
            format_args!("environment variable {var} is empty (it must hold the database URL)"),
        )),
        Some(v) => v.into_string().map_err(|_| {
            invalid(
                field,
                format_args!("environment variable {var} is not valid UTF-8"),
            )
        }),
    }
}

/// Parses the config table (TOML text) and applies defaults from `ctx`.
pub(crate) fn parse(text: &str, ctx: &PluginContext) -> Result<Settings, PluginError> {
    let raw: RawConfig = keygate_sdk::config::parse(text)?;
    let (field, url) = match (raw.url, raw.url_env) {
        (Some(_), Some(_)) => {
            return Err(PluginError::invalid(
                "fields \"url\" and \"url_env\": set one or the other, not both",
            ));
        }
        (None, None) => {
            return Err(PluginError::invalid(
                "field \"url\": missing: set url = \"postgres://USER@HOST:PORT/DATABASE\" or \
                 url_env = \"VARIABLE\" naming an environment variable that holds it",
            ));
        }
        (Some(url), None) => ("url", url),
        (None, Some(var)) => ("url_env", url_from_env(&var)?),
    };
    let pool_size = raw.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
    if !(1..=MAX_POOL_SIZE).contains(&pool_size) {
        return Err(invalid(
            "pool_size",
            format_args!("{pool_size} is out of range (1 to {MAX_POOL_SIZE})"),
        ));
    }
    let timeout_ms = raw.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS);
    if timeout_ms == 0 {
        return Err(invalid("connect_timeout_ms", "must be more than 0"));
    }
    let connect_timeout = Duration::from_millis(timeout_ms);
    let statement_ms = raw
        .statement_timeout_ms
        .unwrap_or(DEFAULT_STATEMENT_TIMEOUT_MS);
    if statement_ms == 0 {
        return Err(invalid(
            "statement_timeout_ms",
            "must be more than 0 (PostgreSQL reads 0 as no limit)",
        ));
    }
    let ca_file = match raw.ca_file {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(invalid("ca_file", "must not be empty"));
        }
        other => other.map(|p| ctx.resolve_path(p)),
    };
    let mut target =
        Target::parse(&url, ca_file, connect_timeout).map_err(|e| invalid(field, e))?;
    target.set_statement_timeout(Duration::from_millis(statement_ms));
    let key = KeySource::from_fields(raw.key_file, raw.passphrase_env, ctx)?;
    Ok(Settings {
        target,
        pool_size,
        connect_timeout,
        key,
    })
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
            "postgres",
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
    fn defaults_apply() {
        let s = parse("url = \"postgres://k@db:6000/kg\"", &ctx()).unwrap();
        assert_eq!(s.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(s.connect_timeout, Duration::from_millis(5000));
        assert_eq!(
            s.target.config().get_options(),
            Some("-c statement_timeout=10000")
        );
        assert_eq!(s.target.to_string(), "db:6000/kg");
        assert!(
            matches!(&s.key, KeySource::File(p) if p == Path::new("/var/lib/keygate/store.key"))
        );
    }

    #[test]
    fn errors_name_the_field() {
        assert!(error_of("urll = \"x\"").starts_with("line 1: field \"urll\": unknown field"));
        assert!(error_of("").starts_with("field \"url\": missing"));
        let both = error_of("url = \"postgres://a@b/c\"\nurl_env = \"V\"");
        assert!(both.contains("url") && both.contains("url_env"), "{both}");
        assert!(
            error_of("url = \"postgres://a@b/c\"\npool_size = 0")
                .starts_with("field \"pool_size\"")
        );
        assert!(
            error_of("url = \"postgres://a@b/c\"\npool_size = 65")
                .starts_with("field \"pool_size\"")
        );
        assert!(
            error_of("url = \"postgres://a@b/c\"\nconnect_timeout_ms = 0")
                .starts_with("field \"connect_timeout_ms\"")
        );
        assert!(
            error_of("url = \"postgres://a@b/c\"\nstatement_timeout_ms = 0")
                .starts_with("field \"statement_timeout_ms\"")
        );
        assert!(error_of("url = \"mysql://a@b/c\"").starts_with("field \"url\""));
    }

    #[test]
    fn a_missing_url_variable_is_named() {
        let var = "KEYGATE_STORE_PG_UNIT_TEST_SURELY_UNSET";
        let msg = error_of(&format!("url_env = \"{var}\""));
        assert!(
            msg.starts_with("field \"url_env\"") && msg.contains(var),
            "{msg}"
        );
    }

    #[test]
    fn a_bad_url_never_shows_its_password() {
        let msg = error_of("url = \"postgres://k:hunter2@db:notaport/kg\"");
        assert!(!msg.contains("hunter2"), "{msg}");
        let msg = error_of("url = \"postgres://k:hunter2@db/kg?sslmode=sometimes\"");
        assert!(!msg.contains("hunter2") && msg.contains("sslmode"), "{msg}");
    }
}

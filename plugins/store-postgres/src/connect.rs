//! Where the database is: the URL taken apart into a client config, the
//! TLS mode, and the place (`host:port/database`) that every message names
//! instead of the URL, so the password is never shown.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use postgres::config::{Host, SslMode};

/// The port PostgreSQL listens on when the URL names none.
const DEFAULT_PORT: u16 = 5432;

/// How the connection is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// Plain TCP (or a Unix socket).
    Plain,
    /// TLS, with the server's certificate chain and name verified.
    Verified,
}

/// The database to connect to.
pub(crate) struct Target {
    config: postgres::Config,
    tls: TlsMode,
    ca_file: Option<PathBuf>,
    place: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the config: it holds the password.
        f.debug_struct("Target")
            .field("place", &self.place)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// `host:port/database`, for messages.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.place)
    }
}

impl Target {
    /// Parses a `postgres://` URL. The error (shown after the field's name)
    /// never quotes the URL.
    pub(crate) fn parse(
        url: &str,
        ca_file: Option<PathBuf>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err("must be a postgres:// URL (postgres://USER@HOST:PORT/DATABASE)".into());
        }
        // tokio-postgres reads only disable/prefer/require: take sslmode out
        // and decide the mode here.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut tls = TlsMode::Plain;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslmode", mode)) => {
                    tls = match mode {
                        "disable" | "allow" | "prefer" => TlsMode::Plain,
                        "require" | "verify-ca" | "verify-full" => TlsMode::Verified,
                        other => {
                            return Err(format!(
                                "sslmode {other:?} is not one of disable, allow, prefer, \
                                 require, verify-ca, verify-full"
                            ));
                        }
                    }
                }
                _ => rest.push(pair),
            }
        }
        let url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let mut config = postgres::Config::from_str(&url)
            .map_err(|e| format!("not a valid postgres URL: {e}"))?;
        if ca_file.is_some() && tls == TlsMode::Plain {
            return Err(
                "ca_file is set but the URL does not ask for TLS: add ?sslmode=verify-full".into(),
            );
        }
        config.ssl_mode(match tls {
            TlsMode::Plain => SslMode::Disable,
            TlsMode::Verified => SslMode::Require,
        });
        config.connect_timeout(connect_timeout);
        config.application_name("keygate");
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => return Err("names no host (postgres://USER@HOST:PORT/DATABASE)".into()),
        };
        let port = config.get_ports().first().copied().unwrap_or(DEFAULT_PORT);
        let db = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
            .to_owned();
        Ok(Self {
            config,
            tls,
            ca_file,
            place: format!("{host}:{port}/{db}"),
        })
    }

    /// Adds `statement_timeout` to the session options every connection
    /// starts with (after any `options` the URL gives).
    pub(crate) fn set_statement_timeout(&mut self, timeout: Duration) {
        let setting = format!("-c statement_timeout={}", timeout.as_millis());
        let options = match self.config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {setting}"),
            _ => setting,
        };
        self.config.options(&options);
    }

    /// The client config (it holds the password: never print it).
    pub(crate) fn config(&self) -> &postgres::Config {
        &self.config
    }

    /// Whether and how TLS is used.
    pub(crate) fn tls(&self) -> TlsMode {
        self.tls
    }

    /// The CA file to trust, if any.
    pub(crate) fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<Target, String> {
        Target::parse(url, None, Duration::from_secs(1))
    }

    #[test]
    fn the_place_names_host_port_and_database_only() {
        let t = parse("postgres://kg:secret@db.example:6543/state").unwrap();
        assert_eq!(t.to_string(), "db.example:6543/state");
        assert!(!format!("{t:?}").contains("secret"));
        assert_eq!(t.tls(), TlsMode::Plain);
        assert_eq!(
            parse("postgresql://kg@db").unwrap().to_string(),
            "db:5432/kg"
        );
    }

    #[test]
    fn the_statement_timeout_follows_the_urls_own_options() {
        let mut t = parse("postgres://kg@db/x?options=-c%20search_path%3Dkg").unwrap();
        t.set_statement_timeout(Duration::from_millis(2500));
        assert_eq!(
            t.config().get_options(),
            Some("-c search_path=kg -c statement_timeout=2500")
        );
    }

    #[test]
    fn sslmode_decides_tls() {
        for (mode, tls) in [
            ("disable", TlsMode::Plain),
            ("prefer", TlsMode::Plain),
            ("require", TlsMode::Verified),
            ("verify-ca", TlsMode::Verified),
            ("verify-full", TlsMode::Verified),
        ] {
            let t = parse(&format!(
                "postgres://kg@db/x?application_name=a&sslmode={mode}"
            ))
            .unwrap();
            assert_eq!(t.tls(), tls, "{mode}");
        }
        assert!(parse("postgres://kg@db/x?sslmode=maybe").is_err());
        let err = Target::parse(
            "postgres://kg@db/x",
            Some("/ca.pem".into()),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(err.contains("ca_file"), "{err}");
    }
}

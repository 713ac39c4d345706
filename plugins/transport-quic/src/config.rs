//! The transport's own config table (`[plugins.transport.config]`). Every
//! key is optional; the crate docs list them.

use std::time::Duration;

use keygate_sdk::PluginError;
use serde::Deserialize;

/// The settings of one `quic` transport.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuicConfig {
    /// Longest a handshake may take, inbound or outbound.
    #[serde(
        default = "defaults::handshake_timeout",
        deserialize_with = "keygate_sdk::config::duration"
    )]
    pub handshake_timeout: Duration,
    /// A connection silent for this long is closed.
    #[serde(
        default = "defaults::idle_timeout",
        deserialize_with = "keygate_sdk::config::duration"
    )]
    pub idle_timeout: Duration,
    /// How often an idle connection is pinged so it stays open; `"0s"`
    /// sends no pings.
    #[serde(
        default = "defaults::keep_alive",
        deserialize_with = "keygate_sdk::config::duration"
    )]
    pub keep_alive: Duration,
    /// Inbound connections open at once; past it new ones are refused.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// Bytes of receive and send buffer asked of the kernel for each UDP
    /// socket; 0 keeps the system's default.
    #[serde(default = "defaults::socket_buffer")]
    pub socket_buffer: u32,
}

mod defaults {
    use std::time::Duration;

    pub(super) fn handshake_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn idle_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn keep_alive() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn max_connections() -> u32 {
        16384
    }
    pub(super) fn socket_buffer() -> u32 {
        4 << 20
    }
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: defaults::handshake_timeout(),
            idle_timeout: defaults::idle_timeout(),
            keep_alive: defaults::keep_alive(),
            max_connections: defaults::max_connections(),
            socket_buffer: defaults::socket_buffer(),
        }
    }
}

impl QuicConfig {
    /// Reads the table (TOML text; empty means all defaults) and checks the
    /// values against each other.
    ///
    /// # Errors
    /// [`ErrorKind::Invalid`](keygate_sdk::ErrorKind::Invalid), naming the
    /// line and the field.
    pub fn parse(text: &str) -> Result<Self, PluginError> {
        let config: Self = keygate_sdk::config::parse(text)?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), PluginError> {
        let refuse =
            |field: &str, why: &str| Err(PluginError::invalid(format!("field {field:?}: {why}")));
        if self.handshake_timeout.is_zero() {
            return refuse("handshake_timeout", "must be longer than 0s");
        }
        if self.idle_timeout.is_zero() {
            return refuse("idle_timeout", "must be longer than 0s");
        }
        // QUIC carries the idle timeout in milliseconds as a varint (< 2^62).
        if quinn::IdleTimeout::try_from(self.idle_timeout).is_err() {
            return refuse("idle_timeout", "is too long");
        }
        if !self.keep_alive.is_zero() && self.keep_alive >= self.idle_timeout {
            return refuse(
                "keep_alive",
                "must be shorter than idle_timeout (or \"0s\" for no pings)",
            );
        }
        if self.max_connections == 0 {
            return refuse("max_connections", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use keygate_sdk::ErrorKind;

    use super::*;

    fn refused(text: &str) -> String {
        let err = QuicConfig::parse(text).expect_err(text);
        assert_eq!(err.kind(), ErrorKind::Invalid);
        err.message().to_owned()
    }

    #[test]
    fn an_empty_table_gives_the_documented_defaults() {
        let c = QuicConfig::parse("").unwrap();
        assert_eq!(c, QuicConfig::default());
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.keep_alive, Duration::from_secs(10));
        assert_eq!(c.max_connections, 16384);
        assert_eq!(c.socket_buffer, 4 << 20);
    }

    #[test]
    fn every_key_is_read() {
        let c = QuicConfig::parse(
            "handshake_timeout = \"3s\"\nidle_timeout = \"2m\"\nkeep_alive = \"0s\"\nmax_connections = 2\nsocket_buffer = 0\n",
        )
        .unwrap();
        assert_eq!(c.handshake_timeout, Duration::from_secs(3));
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.keep_alive, Duration::ZERO);
        assert_eq!(c.max_connections, 2);
        assert_eq!(c.socket_buffer, 0);
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        assert_eq!(
            refused("max_connections = 1\nidle_timeout = \"soon\"\n"),
            "line 2: field \"idle_timeout\": \"soon\" is not a duration such as \"90s\", \"10m\" or \"1h30m\""
        );
        assert!(
            refused("\nmax_conections = 1")
                .starts_with("line 2: field \"max_conections\": unknown field `max_conections`")
        );
        assert!(
            refused("max_connections = \"many\"")
                .starts_with("line 1: field \"max_connections\": invalid type")
        );
        assert_eq!(
            refused("max_connections = 0"),
            "field \"max_connections\": must be at least 1"
        );
        assert_eq!(
            refused("handshake_timeout = \"0s\""),
            "field \"handshake_timeout\": must be longer than 0s"
        );
        assert!(
            refused("keep_alive = \"30s\"").starts_with("field \"keep_alive\": must be shorter")
        );
    }
}

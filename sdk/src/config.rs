//! Reading a plugin's config table.
//!
//! The host hands each constructor its `[plugins.<slot>.config]` table as
//! TOML text. [`parse`] turns it into the plugin's own config type with
//! serde, and every failure into an [`ErrorKind::Invalid`](crate::ErrorKind::Invalid)
//! error that says where, in the table the operator wrote:
//!
//! ```
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     path: String,
//!     #[serde(default)]
//!     busy_timeout_ms: u32,
//! }
//!
//! let config: Config = keygate_sdk::config::parse("path = \"keygate.db\"").unwrap();
//! assert_eq!(config.path, "keygate.db");
//!
//! let err = keygate_sdk::config::parse::<Config>("busy_timeout_ms = 10\npath = 5").unwrap_err();
//! assert_eq!(
//!     err.message(),
//!     "line 2: field \"path\": invalid type: integer `5`, expected a string"
//! );
//! let err = keygate_sdk::config::parse::<Config>("path = \"a\"\ncolour = \"blue\"").unwrap_err();
//! assert!(err.message().starts_with("line 2: field \"colour\": unknown field `colour`"));
//! ```
//!
//! Unknown fields are refused when the type says
//! `#[serde(deny_unknown_fields)]` (do say it: a misspelt setting should stop
//! the gateway, not be ignored). An empty text is an empty table, so a type
//! whose fields all have defaults parses from it. Errors are one line; the
//! host puts the slot and the config file's location in front of them.
//!
//! Durations are written as people write them (`"90s"`, `"10m"`,
//! `"1h30m"`, see [`parse_duration`]); [`duration`] reads such a field, and
//! a bad one is reported with its line and field like any other error:
//!
//! ```
//! use std::time::Duration;
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     #[serde(deserialize_with = "keygate_sdk::config::duration")]
//!     timeout: Duration,
//! }
//! let config: Config = keygate_sdk::config::parse("timeout = \"1m30s\"").unwrap();
//! assert_eq!(config.timeout, Duration::from_secs(90));
//! let err = keygate_sdk::config::parse::<Config>("\ntimeout = \"10\"").unwrap_err();
//! assert_eq!(
//!     err.message(),
//!     "line 2: field \"timeout\": \"10\" is not a duration such as \"90s\", \"10m\" or \"1h30m\""
//! );
//! ```

use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::PluginError;

/// Parses a config table given as TOML text into `T`. See the
/// [module docs](self) for the error format.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, PluginError> {
    toml::from_str::<T>(text).map_err(|err| describe(text, err))
}

/// Parses a duration as people write it in config and on the command
/// line: one or more `<number><unit>` groups, unit `s`, `m`, `h` or `d`
/// (`90s`, `10m`, `1h`, `1h30m`, `7d`).
///
/// # Errors
/// A message saying what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = || format!("{text:?} is not a duration such as \"90s\", \"10m\" or \"1h30m\"");
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.trim().chars() {
        match c {
            '0'..='9' => {
                let digit = u64::from(c as u8 - b'0');
                number = Some(
                    number
                        .unwrap_or(0)
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(digit))
                        .ok_or_else(expected)?,
                );
            }
            's' | 'm' | 'h' | 'd' => {
                let unit = match c {
                    's' => 1,
                    'm' => 60,
                    'h' => 3600,
                    _ => 86_400,
                };
                let n = number.take().ok_or_else(expected)?;
                total = n
                    .checked_mul(unit)
                    .and_then(|secs| total.checked_add(secs))
                    .ok_or_else(expected)?;
            }
            _ => return Err(expected()),
        }
    }
    if number.is_some() || text.trim().is_empty() {
        return Err(expected());
    }
    Ok(Duration::from_secs(total))
}

/// Reads a duration field written as a string (see [`parse_duration`]):
/// `#[serde(deserialize_with = "keygate_sdk::config::duration")]`.
///
/// # Errors
/// The deserializer's error for a value that is not a string or not a
/// duration.
pub fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// One line: `line N: field "a.b": message`, with the parts that are known.
fn describe(text: &str, mut err: toml::de::Error) -> PluginError {
    let message = one_line(err.message());
    let line = err
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| before.matches('\n').count() + 1);
    // The key path is only shown by the error's Display, when it has no
    // input to quote: "<message>\nin `a.b`".
    err.set_input(None);
    let shown = err.to_string();
    let mut field: Option<String> = shown
        .lines()
        .filter_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .next_back()
        .map(str::to_owned);
    if let Some(named) = quoted_after(&message, "unknown field `")
        .or_else(|| quoted_after(&message, "missing field `"))
    {
        field = Some(match field {
            Some(parent) if parent != named => format!("{parent}.{named}"),
            _ => named.to_owned(),
        });
    }
    let mut out = String::new();
    if let Some(line) = line.filter(|_| !text.trim().is_empty()) {
        out.push_str(&format!("line {line}: "));
    }
    if let Some(field) = field {
        out.push_str(&format!("field {field:?}: "));
    }
    out.push_str(&message);
    PluginError::invalid(out)
}

/// The text between `prefix` and the next backquote in `message`.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &message[message.find(prefix)? + prefix.len()..];
    rest.split('`').next()
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::ErrorKind;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Config {
        path: String,
        #[serde(default)]
        retries: u32,
        #[serde(default)]
        limits: Limits,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Limits {
        #[serde(default)]
        max: u32,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct AllDefault {
        #[serde(default)]
        retries: u32,
    }

    fn refused<T: DeserializeOwned + std::fmt::Debug>(text: &str) -> String {
        let err = parse::<T>(text).expect_err(text);
        assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
        assert!(!err.message().contains('\n'), "one line: {err:?}");
        err.message().to_owned()
    }

    #[test]
    fn a_wrong_type_names_the_line_and_the_field() {
        assert_eq!(
            refused::<Config>("retries = 1\n\npath = 5\n"),
            "line 3: field \"path\": invalid type: integer `5`, expected a string"
        );
    }

    #[test]
    fn a_wrong_type_in_a_nested_table_names_the_dotted_field() {
        assert_eq!(
            refused::<Config>("path = \"p\"\n[limits]\nmax = \"ten\"\n"),
            "line 3: field \"limits.max\": invalid type: string \"ten\", expected u32"
        );
    }

    #[test]
    fn an_unknown_field_is_refused_naming_it_and_its_line() {
        let message = refused::<Config>("path = \"p\"\ncolour = \"blue\"\n");
        assert!(
            message
                .starts_with("line 2: field \"colour\": unknown field `colour`, expected one of"),
            "{message}"
        );
        let message = refused::<Config>("path = \"p\"\n[limits]\nmin = 1\n");
        assert!(
            message.starts_with("line 3: field \"limits.min\": unknown field `min`"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(
            refused::<Config>(""),
            "field \"path\": missing field `path`"
        );
        assert!(refused::<Config>("retries = 2").contains("field \"path\": missing field `path`"));
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let message = refused::<Config>("path = \"p\"\nretries = \n");
        assert!(message.starts_with("line 2: "), "{message}");
    }

    #[test]
    fn an_empty_text_is_an_empty_table() {
        assert_eq!(parse::<AllDefault>("").unwrap(), AllDefault::default());
        assert_eq!(parse::<AllDefault>("  \n").unwrap(), AllDefault::default());
    }

    #[test]
    fn a_good_table_parses() {
        assert_eq!(
            parse::<Config>("path = \"p\"\nretries = 3\n[limits]\nmax = 9\n").unwrap(),
            Config {
                path: "p".into(),
                retries: 3,
                limits: Limits { max: 9 }
            }
        );
    }

    #[test]
    fn durations_parse_as_written() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(129_600)));
        for bad in ["", "10", "m", "10 m", "1w", "-5s", "99999999999999999999s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for text in [
            "\0",
            "[[[",
            "a = ",
            "= 1",
            "path = \"\\u{d800}\"",
            "\u{feff}x",
        ] {
            let _ = parse::<Config>(text);
        }
    }
}

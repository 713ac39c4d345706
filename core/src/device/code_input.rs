//! Reading a pairing code from the device's operator.
//!
//! A code is read from `KEYGATE_PAIRING_CODE`, or from a terminal prompt,
//! or from standard input when that is not a terminal; never from a
//! command-line argument, which any user of the machine can read in the
//! process list.

use std::io::{BufRead, Write};

use zeroize::Zeroizing;

/// The environment variable a code may come from.
pub const CODE_ENV: &str = "KEYGATE_PAIRING_CODE";

/// The longest line read as a code (a `keygate://` URI with several
/// gateway addresses fits easily).
pub const MAX_CODE_LEN: usize = 4096;

/// Why no code could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodeInputError {
    /// Reading failed.
    #[error("cannot read the pairing code from {from}: {source}")]
    Io {
        /// `standard input` or `the terminal`.
        from: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// Nothing was given.
    #[error("no pairing code: type it at the prompt, pipe it on standard input or set {CODE_ENV}")]
    Empty,
    /// More than a code can be.
    #[error("the pairing code is longer than {MAX_CODE_LEN} bytes")]
    TooLong,
}

/// Reads a code: `env` if it is set and not empty (the value of
/// [`CODE_ENV`]); else one line of `input`, after writing `prompt` to
/// `prompt_to` when `input` is a terminal. Surrounding whitespace is
/// trimmed; the code comes back in memory that is wiped on drop.
pub fn read_code(
    env: Option<String>,
    input: &mut dyn BufRead,
    input_is_terminal: bool,
    prompt_to: &mut dyn Write,
    prompt: &str,
) -> Result<Zeroizing<String>, CodeInputError> {
    let from = if input_is_terminal {
        "the terminal"
    } else {
        "standard input"
    };
    let raw = match env.map(Zeroizing::new) {
        Some(value) if !value.trim().is_empty() => value,
        _ => {
            if input_is_terminal {
                write!(prompt_to, "{prompt}")
                    .and_then(|()| prompt_to.flush())
                    .map_err(|source| CodeInputError::Io { from, source })?;
            }
            let mut line = Zeroizing::new(String::new());
            let mut limited = std::io::Read::take(input, MAX_CODE_LEN as u64 + 1);
            limited
                .read_line(&mut line)
                .map_err(|source| CodeInputError::Io { from, source })?;
            line
        }
    };
    let code = raw.trim();
    if code.is_empty() {
        return Err(CodeInputError::Empty);
    }
    if code.len() > MAX_CODE_LEN {
        return Err(CodeInputError::TooLong);
    }
    Ok(Zeroizing::new(code.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(env: Option<&str>, input: &str, terminal: bool) -> (Result<String, String>, String) {
        let mut prompt = Vec::new();
        let out = read_code(
            env.map(str::to_owned),
            &mut input.as_bytes(),
            terminal,
            &mut prompt,
            "pairing code: ",
        )
        .map(|c| c.to_string())
        .map_err(|e| e.to_string());
        (out, String::from_utf8(prompt).unwrap())
    }

    #[test]
    fn the_environment_wins_then_one_line_of_input() {
        assert_eq!(
            read(Some(" 4820 3917\n"), "11111111\n", true).0.unwrap(),
            "4820 3917"
        );
        assert_eq!(read(None, "48203917\nmore\n", false).0.unwrap(), "48203917");
        assert_eq!(read(Some("  "), "48203917", false).0.unwrap(), "48203917");
    }

    #[test]
    fn a_terminal_is_prompted_and_a_pipe_is_not() {
        assert_eq!(read(None, "1\n", true).1, "pairing code: ");
        assert_eq!(read(None, "1\n", false).1, "");
        assert_eq!(read(Some("1"), "", true).1, "", "no prompt when set");
    }

    #[test]
    fn nothing_or_too_much_is_refused_saying_how_to_give_a_code() {
        let err = read(None, "\n", false).0.unwrap_err();
        assert!(err.contains(CODE_ENV), "{err}");
        assert!(read(None, "", false).0.is_err());
        let long = "7".repeat(MAX_CODE_LEN + 10);
        assert!(
            read(None, &long, false)
                .0
                .unwrap_err()
                .contains("longer than")
        );
        let exact = "7".repeat(MAX_CODE_LEN);
        assert_eq!(read(None, &exact, false).0.unwrap(), exact);
    }
}

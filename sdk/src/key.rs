//! The rules every store key follows, checked in one place.
//!
//! A key is a non-empty UTF-8 string of at most [`MAX_KEY_LEN`] bytes, made
//! of `/`-separated segments. No segment is empty, `.` or `..`, and no
//! character is a control character (this includes NUL). Any other Unicode
//! is allowed: `devices/κ/🔑` is a valid key. Stores call [`validate_key`]
//! before they touch their backing storage, so a key can never name a path
//! outside a store's root, and two spellings (`a//b`, `a/./b`) never name one
//! record.

use crate::PluginError;

/// The longest key a store must accept, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Checks `key` against the rules above; the error is [`crate::ErrorKind::Invalid`]
/// and quotes the key.
pub fn validate_key(key: &str) -> Result<(), PluginError> {
    if key.is_empty() {
        return Err(PluginError::invalid("empty key"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(PluginError::invalid(format!(
            "key of {} bytes is longer than the limit of {MAX_KEY_LEN}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(PluginError::invalid(format!(
            "key {key:?} contains a control character"
        )));
    }
    for segment in key.split('/') {
        match segment {
            "" => {
                return Err(PluginError::invalid(format!(
                    "key {key:?} has an empty segment (leading, trailing or double '/')"
                )));
            }
            "." | ".." => {
                return Err(PluginError::invalid(format!(
                    "key {key:?} has a {segment:?} segment"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a `list` prefix: empty (everything) or free of control characters
/// and `.`/`..` segments. A prefix may end in the middle of a segment.
pub fn validate_prefix(prefix: &str) -> Result<(), PluginError> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.len() > MAX_KEY_LEN || prefix.chars().any(char::is_control) {
        return Err(PluginError::invalid(format!(
            "invalid list prefix {prefix:?}"
        )));
    }
    if prefix.split('/').any(|s| s == "." || s == "..") {
        return Err(PluginError::invalid(format!(
            "list prefix {prefix:?} has a '.' or '..' segment"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn ordinary_and_odd_keys_are_accepted() {
        for key in [
            "a",
            "devices/abc",
            "ключ/🔑",
            "a.b/..c/d..",
            "x y",
            "ca/root.key",
        ] {
            validate_key(key).unwrap_or_else(|e| panic!("{key:?}: {e}"));
        }
    }

    #[test]
    fn escaping_or_ambiguous_keys_are_refused() {
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for key in [
            "", "..", "a/../b", "./a", "a/.", "/a", "a/", "a//b", "a\0b", "a\nb", &long,
        ] {
            let err = validate_key(key).expect_err(key);
            assert_eq!(err.kind(), ErrorKind::Invalid, "{key:?}");
        }
    }

    #[test]
    fn prefixes_may_be_partial_but_not_escape() {
        validate_prefix("").unwrap();
        validate_prefix("dev").unwrap();
        validate_prefix("devices/").unwrap();
        assert!(validate_prefix("../").is_err());
        assert!(validate_prefix("a/./").is_err());
    }
}

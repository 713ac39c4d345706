//! Key names ↔ file names under the store's root.
//!
//! A key `a/b/c` is the file `<root>/a/b/c.rec`: each `/`-separated segment
//! is one directory level, and the last one is a file with the
//! [`RECORD_SUFFIX`]. Each segment is percent-encoded so that only
//! `[A-Za-z0-9_-]` and `%XX` (upper-case hex) appear on disk:
//!
//! - `.` is encoded too, so no encoded name is `.` or `..` and no encoded
//!   name starts with a dot. Dot-files (`.lock`, `.keycheck`, `.tmp-…`) are
//!   free for the store's own use and can never be mistaken for a record.
//! - `/` cannot appear in a segment, so no key reaches outside its
//!   directory, let alone outside the root.
//! - Record files end in `.rec` and directories have no suffix, so `a` (the
//!   file `a.rec`) and `a/b` (the file `b.rec` in the directory `a`) coexist.
//! - The mapping is one-to-one: [`decode_segment`] accepts only the
//!   canonical encoding (no lower-case hex, no needless escapes), so every
//!   record file found by `list` is the one `get` reads for that key, and a
//!   foreign file with a non-canonical name is ignored.
//!
//! A segment whose on-disk name (with the suffix) would exceed
//! [`MAX_NAME_LEN`] bytes, the limit of common Unix file systems, is
//! refused as `Invalid`, and a longer name found on disk is not a record. The limit is the same for every segment, since any
//! segment may be a directory for one key and a record for another.
//!
//! Upper and lower case stay distinct, so the root must live on a
//! case-sensitive file system (the norm on Linux).

use std::path::PathBuf;

use keygate_sdk::PluginError;

/// The suffix of every record file.
pub(crate) const RECORD_SUFFIX: &str = ".rec";

/// The longest file name written, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// The longest encoded segment: room is left for [`RECORD_SUFFIX`].
pub(crate) const MAX_ENCODED_SEGMENT_LEN: usize = MAX_NAME_LEN - RECORD_SUFFIX.len();

fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends the encoding of one key segment to `out`.
pub(crate) fn encode_segment(segment: &str, out: &mut String) {
    for &byte in segment.as_bytes() {
        if is_plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
}

fn encoded_len(segment: &str) -> usize {
    segment
        .bytes()
        .map(|b| if is_plain(b) { 1 } else { 3 })
        .sum()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Decodes one on-disk name back into a key segment. `None` unless `name`
/// is exactly what [`encode_segment`] makes of some segment without `/`.
pub(crate) fn decode_segment(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if is_plain(byte) {
            out.push(byte);
            i += 1;
        } else if byte == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            let decoded = (hi << 4) | lo;
            // Canonical form only: a plain byte is never escaped, and a
            // segment never holds a separator.
            if is_plain(decoded) || decoded == b'/' {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The record file of `key`, relative to the root. `key` has passed
/// `validate_key`; a segment too long to be a file name is `Invalid`.
pub(crate) fn record_path(key: &str) -> Result<PathBuf, PluginError> {
    let mut path = PathBuf::new();
    let mut segments = key.split('/').peekable();
    let mut name = String::new();
    while let Some(segment) = segments.next() {
        let len = encoded_len(segment);
        if len > MAX_ENCODED_SEGMENT_LEN {
            return Err(PluginError::invalid(format!(
                "key {key:?}: a segment of {} bytes takes {len} bytes once encoded as a file \
                 name; the filesystem store allows at most {MAX_ENCODED_SEGMENT_LEN} per segment",
                segment.len()
            )));
        }
        name.clear();
        encode_segment(segment, &mut name);
        if segments.peek().is_none() {
            name.push_str(RECORD_SUFFIX);
        }
        path.push(&name);
    }
    Ok(path)
}

/// Where `list(prefix)` looks: the directory its complete segments name
/// (relative to the root), and the key prefix every record in it has.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ListStart {
    /// The directory to walk, relative to the root.
    pub dir: PathBuf,
    /// The keys of that directory's records start with this (`""` or ends
    /// in `/`).
    pub base: String,
}

/// The subtree `list(prefix)` must walk, or `None` when no key can have
/// `prefix` (an empty or over-long complete segment).
pub(crate) fn list_start(prefix: &str) -> Option<ListStart> {
    let complete = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => {
            return Some(ListStart {
                dir: PathBuf::new(),
                base: String::new(),
            });
        }
    };
    let mut dir = PathBuf::new();
    let mut name = String::new();
    for segment in complete.split('/') {
        if segment.is_empty() || encoded_len(segment) > MAX_ENCODED_SEGMENT_LEN {
            return None;
        }
        name.clear();
        encode_segment(segment, &mut name);
        dir.push(&name);
    }
    Some(ListStart {
        dir,
        base: format!("{complete}/"),
    })
}

/// What a directory entry is, read from its name alone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A record file holding this key segment.
    Record(String),
    /// A directory for keys continuing with this segment.
    Dir(String),
}

/// Classifies the name of an entry found while walking the root: `None` for
/// the store's own dot-files (lock, key check, temp files) and for names
/// the store never writes, over-long ones included (their keys would be
/// refused by [`record_path`]).
pub(crate) fn classify(name: &str, is_dir: bool) -> Option<Entry> {
    if name.starts_with('.') {
        return None;
    }
    let encoded = if is_dir {
        name
    } else {
        name.strip_suffix(RECORD_SUFFIX)?
    };
    if encoded.len() > MAX_ENCODED_SEGMENT_LEN {
        return None;
    }
    let segment = decode_segment(encoded)?;
    Some(if is_dir {
        Entry::Dir(segment)
    } else {
        Entry::Record(segment)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(segment: &str) -> String {
        let mut out = String::new();
        encode_segment(segment, &mut out);
        out
    }

    #[test]
    fn encoding_uses_only_safe_characters_and_round_trips() {
        for segment in [
            "a",
            "devices",
            "with space",
            ".",
            "..",
            ".hidden",
            "dots..inside",
            "ключ",
            "🔑",
            "%2F",
            "a%2Fb",
            "UPPER",
            "x.rec",
        ] {
            let encoded = encode(segment);
            assert!(
                encoded
                    .bytes()
                    .all(|b| is_plain(b) || b == b'%' || b.is_ascii_hexdigit()),
                "{encoded:?}"
            );
            assert!(!encoded.contains('.'), "{encoded:?}");
            assert_eq!(decode_segment(&encoded).as_deref(), Some(segment));
        }
    }

    #[test]
    fn only_the_canonical_encoding_decodes() {
        assert_eq!(decode_segment("a%2E"), Some("a.".to_owned()));
        assert_eq!(decode_segment("a%2e"), None, "lower-case hex");
        assert_eq!(decode_segment("%61"), None, "needless escape of 'a'");
        assert_eq!(
            decode_segment("a%2Fb"),
            None,
            "a separator inside a segment"
        );
        assert_eq!(decode_segment("a.b"), None);
        assert_eq!(decode_segment("a%2"), None);
        assert_eq!(decode_segment(""), None);
        assert_eq!(decode_segment("%FF"), None, "not UTF-8");
    }

    #[test]
    fn keys_map_to_nested_record_files() {
        assert_eq!(record_path("a").unwrap(), PathBuf::from("a.rec"));
        assert_eq!(
            record_path("a/b/c").unwrap(),
            PathBuf::from("a/b/c.rec"),
            "a and a/b must not collide"
        );
        assert_eq!(
            record_path("dots..inside/.hidden").unwrap(),
            PathBuf::from("dots%2E%2Einside/%2Ehidden.rec")
        );
    }

    #[test]
    fn over_long_segments_are_invalid() {
        let ok = "k".repeat(MAX_ENCODED_SEGMENT_LEN);
        record_path(&ok).unwrap();
        record_path(&format!("{ok}/x")).unwrap();
        let long = "k".repeat(MAX_ENCODED_SEGMENT_LEN + 1);
        let err = record_path(&format!("{long}/x")).unwrap_err();
        assert_eq!(err.kind(), keygate_sdk::ErrorKind::Invalid);
        let dots = ".".repeat(MAX_ENCODED_SEGMENT_LEN / 3 + 1);
        assert!(record_path(&format!("a/{dots}")).is_err());
    }

    #[test]
    fn list_starts_at_the_deepest_complete_segment() {
        assert_eq!(
            list_start("dev"),
            Some(ListStart {
                dir: PathBuf::new(),
                base: String::new()
            })
        );
        assert_eq!(
            list_start("devices/ab"),
            Some(ListStart {
                dir: PathBuf::from("devices"),
                base: "devices/".to_owned()
            })
        );
        assert_eq!(
            list_start("a b/c/"),
            Some(ListStart {
                dir: PathBuf::from("a%20b/c"),
                base: "a b/c/".to_owned()
            })
        );
        assert_eq!(list_start("a//"), None);
    }

    #[test]
    fn dot_files_and_foreign_names_are_not_records() {
        assert_eq!(classify(".lock", false), None);
        assert_eq!(classify(".tmp-0123", false), None);
        assert_eq!(classify("notes.txt", false), None);
        assert_eq!(classify("a.rec", true), None);
        assert_eq!(classify("a.rec", false), Some(Entry::Record("a".into())));
        assert_eq!(classify("a", true), Some(Entry::Dir("a".into())));
    }

    #[test]
    fn names_longer_than_any_segment_are_not_records() {
        // Found by the fuzz target `store_fs_segment` (regression input
        // fuzz/regressions/store_fs_segment/over-long-name): a folder whose
        // name was 252 plain characters was listed as the prefix of keys
        // that `get` refuses as too long.
        let longest = "k".repeat(MAX_ENCODED_SEGMENT_LEN);
        assert_eq!(classify(&longest, true), Some(Entry::Dir(longest.clone())));
        let record = format!("{longest}{RECORD_SUFFIX}");
        assert_eq!(classify(&record, false), Some(Entry::Record(longest)));
        let over = "k".repeat(MAX_ENCODED_SEGMENT_LEN + 1);
        assert!(record_path(&format!("{over}/x")).is_err());
        assert_eq!(classify(&over, true), None);
        assert_eq!(classify(&format!("{over}{RECORD_SUFFIX}"), false), None);
    }
}

//! Helpers shared by the fuzz targets in `fuzz_targets/`.

use std::borrow::Cow;

/// The longest error message any parser may produce, whatever the input:
/// errors repeat at most a shortened echo of the input (80 characters,
/// escaped), never the whole of it.
pub const MAX_MESSAGE_LEN: usize = 2048;

/// The input as text: itself when it is UTF-8, else converted lossily
/// (invalid sequences become U+FFFD), so every input reaches the parser.
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A cheap, deterministic number derived from the input, for choosing
/// positions (the bit to flip, where to cut) without spending input bytes.
pub fn mix(data: &[u8]) -> usize {
    data.iter().fold(0x9e37_79b9_usize, |h, &b| {
        h.rotate_left(5)
            .wrapping_mul(31)
            .wrapping_add(usize::from(b))
    })
}

/// The first 8 bytes as a big-endian `u64` (zero-padded) and the rest.
pub fn split_u64(data: &[u8]) -> (u64, &[u8]) {
    let n = data.len().min(8);
    let mut bytes = [0u8; 8];
    bytes[8 - n..].copy_from_slice(&data[..n]);
    (u64::from_be_bytes(bytes), &data[n..])
}

/// Asserts that an error message is present and bounded.
pub fn check_message(message: &str) {
    assert!(!message.is_empty(), "empty error message");
    assert!(
        message.len() <= MAX_MESSAGE_LEN,
        "error message of {} bytes: {message:?}",
        message.len()
    );
}

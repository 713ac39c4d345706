//! The filesystem store's record decoder (`crypto::open_record`), through
//! the `fuzzing` feature of keygate-store-fs.
//!
//! The input is opened as a record file; properties: no panic, a record
//! that opens has a non-zero version and the value's length is the file's
//! less the header and tag, and it does not open under another key name.
//! The input is also sealed as a value (its first 8 bytes as the version)
//! and must open to exactly that, while the same file with one bit flipped,
//! or cut short, is refused.

#![no_main]

use keygate_fuzz::{check_message, mix, split_u64};
use keygate_store_fs::fuzzing::{open_record, seal_record};
use libfuzzer_sys::fuzz_target;

/// The store key of every record the targets seal (seeds included).
const KEY: [u8; 32] = *b"keygate fuzz store key: not real";
/// The key name every record is sealed under.
const NAME: &str = "identity/devices/kgd1fuzz";
/// Magic, format version, record version, nonce, tag.
const OVERHEAD: usize = 4 + 1 + 8 + 12 + 16;

fuzz_target!(|data: &[u8]| {
    match open_record(&KEY, NAME, data.to_vec()) {
        Ok((version, value)) => {
            assert_ne!(version, 0);
            assert_eq!(value.len() + OVERHEAD, data.len());
            assert_eq!(data[5..13], version.to_be_bytes());
            assert!(open_record(&KEY, "identity/devices/other", data.to_vec()).is_err());
        }
        Err(message) => check_message(&message),
    }

    let (version, _) = split_u64(data);
    let sealed = seal_record(&KEY, NAME, version, data).expect("sealing a small value");
    let opened = open_record(&KEY, NAME, sealed.clone());
    if version == 0 {
        assert!(opened.is_err(), "version 0 is never written, so never read");
    } else {
        assert_eq!(opened, Ok((version, data.to_vec())));
    }

    let h = mix(data);
    let mut flipped = sealed.clone();
    flipped[h % sealed.len()] ^= 1 << (h % 8);
    assert!(
        open_record(&KEY, NAME, flipped).is_err(),
        "a flipped bit opened"
    );
    let cut = (h / 8) % sealed.len();
    assert!(
        open_record(&KEY, NAME, sealed[..cut].to_vec()).is_err(),
        "a cut file opened"
    );
});

//! The filesystem store's key check decoder (`crypto::open_check`, the
//! `.keycheck` file that tells a wrong key at open), through the `fuzzing`
//! feature of keygate-store-fs.
//!
//! Properties: no panic on any file; a file that passes has the one valid
//! length; a fresh key check passes under its key and fails under any other
//! key, with one bit flipped, or cut short.

#![no_main]

use keygate_fuzz::{check_message, mix};
use keygate_store_fs::fuzzing::{open_check, seal_check};
use libfuzzer_sys::fuzz_target;

/// The store key of every key check the targets seal (seeds included).
const KEY: [u8; 32] = *b"keygate fuzz store key: not real";
/// Magic, format version, nonce, the sealed constant, tag.
const CHECK_LEN: usize = 4 + 1 + 12 + 32 + 16;

fuzz_target!(|data: &[u8]| {
    match open_check(&KEY, data.to_vec()) {
        Ok(()) => assert_eq!(data.len(), CHECK_LEN),
        Err(message) => check_message(&message),
    }

    let check = seal_check(&KEY).expect("sealing the key check");
    assert_eq!(open_check(&KEY, check.clone()), Ok(()));

    let h = mix(data);
    let mut other = KEY;
    other[h % 32] ^= 1 << (h % 8);
    assert!(
        open_check(&other, check.clone()).is_err(),
        "another key passed"
    );
    let mut flipped = check.clone();
    flipped[(h / 8) % CHECK_LEN] ^= 1 << ((h / 256) % 8);
    assert!(open_check(&KEY, flipped).is_err(), "a flipped bit passed");
    let cut = (h / 2048) % CHECK_LEN;
    assert!(
        open_check(&KEY, check[..cut].to_vec()).is_err(),
        "a cut file passed"
    );
});

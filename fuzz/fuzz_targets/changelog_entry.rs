//! `ChangeEntry::decode(seq, bytes)`: the first 8 input bytes are `seq`
//! (big-endian), the rest the stored entry.
//!
//! Properties: no panic; an error names the entry's key; an entry that
//! decodes carries `seq`, which is within `1..=MAX_SEQ` (so arithmetic on
//! it cannot overflow), and encodes back to bytes that decode to the same
//! entry.

#![no_main]

use keygate_core::state::changelog::{ChangeEntry, MAX_SEQ, change_key};
use keygate_fuzz::split_u64;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (seq, bytes) = split_u64(data);
    match ChangeEntry::decode(seq, bytes) {
        Ok(entry) => {
            assert_eq!(entry.seq, seq);
            assert!((1..=MAX_SEQ).contains(&seq), "{seq}");
            let again = serde_json::to_vec(&entry).expect("encoding an entry");
            assert_eq!(ChangeEntry::decode(seq, &again).ok(), Some(entry));
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&change_key(seq)), "{message}");
        }
    }
});

//! `keygate_proto::Message::decode` on arbitrary bytes.
//!
//! Properties: no panic; an error message is bounded whatever the input;
//! decoding is canonical: whatever decodes re-encodes to exactly the input,
//! which decodes to the same message again.

#![no_main]

use keygate_fuzz::check_message;
use keygate_proto::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Message::decode(data) {
        Ok(m) => {
            let bytes = m.encode();
            assert_eq!(bytes, data, "{m:?} is not canonical");
            assert_eq!(Message::decode(&bytes).as_ref(), Ok(&m));
        }
        Err(e) => check_message(&e.to_string()),
    }
});

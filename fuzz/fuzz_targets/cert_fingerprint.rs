//! `CertFingerprint::parse` on arbitrary text (non-UTF-8 bytes converted
//! lossily).
//!
//! Properties: no panic; an error message is bounded whatever the input;
//! whatever parses is 64 hex digits and displays as their lower-case form,
//! which parses (also upper-cased, and through serde) to the same value.
//! The fingerprint of the input's first 32 bytes does the same.

#![no_main]

use keygate_core::identity::CertFingerprint;
use keygate_fuzz::{check_message, text};
use libfuzzer_sys::fuzz_target;

fn round_trips(fp: CertFingerprint) {
    let shown = fp.to_string();
    assert_eq!(shown.len(), 64, "{shown:?}");
    assert_eq!(shown, shown.to_ascii_lowercase());
    assert_eq!(CertFingerprint::parse(&shown), Ok(fp));
    assert_eq!(CertFingerprint::parse(&shown.to_ascii_uppercase()), Ok(fp));
    let json = serde_json::to_string(&fp).expect("serializing a fingerprint");
    assert_eq!(
        serde_json::from_str::<CertFingerprint>(&json).ok(),
        Some(fp)
    );
}

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    match CertFingerprint::parse(&text) {
        Ok(fp) => {
            assert_eq!(
                fp.to_string(),
                text.to_ascii_lowercase(),
                "non-canonical form"
            );
            round_trips(fp);
        }
        Err(e) => check_message(&e.to_string()),
    }

    if let Some(bytes) = data.first_chunk::<32>() {
        let fp = CertFingerprint::from_bytes(*bytes);
        assert_eq!(fp.as_bytes(), bytes);
        round_trips(fp);
    }
});

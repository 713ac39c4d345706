//! `DeviceId::parse` on arbitrary text (non-UTF-8 bytes converted lossily).
//!
//! Properties: no panic; an error message is bounded whatever the input;
//! whatever parses is the canonical form in lower or upper case, displays
//! as 42 lower-case characters that parse (also upper-cased, and through
//! serde) to the same id. The id of a key made from the input's first 32
//! bytes does the same.

#![no_main]

use keygate_core::identity::{DEVICE_ID_LEN, DeviceId, DeviceKey};
use keygate_fuzz::{check_message, text};
use libfuzzer_sys::fuzz_target;

fn round_trips(id: DeviceId) {
    let shown = id.to_string();
    assert_eq!(shown.len(), DEVICE_ID_LEN, "{shown:?}");
    assert_eq!(shown, shown.to_ascii_lowercase());
    assert_eq!(DeviceId::parse(&shown), Ok(id));
    assert_eq!(DeviceId::parse(&shown.to_ascii_uppercase()), Ok(id));
    let json = serde_json::to_string(&id).expect("serializing an id");
    assert_eq!(serde_json::from_str::<DeviceId>(&json).ok(), Some(id));
}

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    match DeviceId::parse(&text) {
        Ok(id) => {
            assert_eq!(
                id.to_string(),
                text.to_ascii_lowercase(),
                "non-canonical form"
            );
            round_trips(id);
        }
        Err(e) => check_message(&e.to_string()),
    }

    if let Some(seed) = data.first_chunk::<32>() {
        let key = DeviceKey::from_seed(seed);
        let id = key.device_id();
        assert!(id.matches(&key.public_key()));
        round_trips(id);
    }
});

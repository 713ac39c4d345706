//! Bad input never panics: arbitrary text through every parser an operator
//! or a peer can reach (config files, device ids, fingerprints, public keys,
//! lock files, store keys) gives a value or an error, nothing else.

use std::path::Path;

use keygate_core::config::Config;
use keygate_core::identity::{CertFingerprint, DeviceId, DevicePublicKey};
use keygate_core::state::lock::Holder;
use proptest::prelude::*;

/// Text that looks like TOML often enough to reach past the tokenizer.
fn tomlish() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("[plugins.store]\n".to_owned()),
        Just("[plugins.approval]\n".to_owned()),
        Just("[plugins.store.config]\n".to_owned()),
        Just("[identity]\n".to_owned()),
        Just("use = \"memory\"\n".to_owned()),
        Just("library = \"x.so\"\n".to_owned()),
        Just("sha256 = \"00\"\n".to_owned()),
        Just("state_dir = 1\n".to_owned()),
        Just("client_cert_validity_hours = 0\n".to_owned()),
        Just("lock_timeout_secs = 99999999999\n".to_owned()),
        "[a-z_.]{1,12} = [0-9\"a-z\\[\\]{},]{0,12}\n",
        "\\PC{0,20}",
    ];
    proptest::collection::vec(pieces, 0..10).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn config_text_never_panics(text in tomlish()) {
        if let Err(e) = Config::parse(&text, Path::new("/etc/keygate/config.toml")) {
            prop_assert!(e.to_string().starts_with("/etc/keygate/config.toml"), "{}", e);
        }
    }

    #[test]
    fn device_ids_parse_or_refuse(text in "(kgd1)?[qpzry9x8gf2tvdw0s3jn54khce6mua7lA-Z01bio]{0,45}") {
        if let Ok(id) = DeviceId::parse(&text) {
            prop_assert_eq!(id.to_string(), text.to_lowercase());
        }
    }

    #[test]
    fn fingerprints_and_public_keys_parse_or_refuse(text in "[0-9a-fA-Fg-z]{0,70}") {
        if let Ok(fp) = CertFingerprint::parse(&text) {
            prop_assert_eq!(fp.to_string(), text.to_lowercase());
        }
        let _ = text.parse::<DevicePublicKey>();
    }

    #[test]
    fn lock_files_parse_or_are_ignored(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Holder::parse(&bytes);
    }

    #[test]
    fn lock_records_that_look_right_parse_or_are_ignored(
        pid in any::<u64>(), host in "\\PC{0,20}", ms in any::<i64>(), purpose in "\\PC{0,20}"
    ) {
        let line = format!(
            "{{\"pid\":{pid},\"host\":{host:?},\"since_unix_ms\":{ms},\"mode\":\"exclusive\",\"purpose\":{purpose:?}}}"
        );
        let _ = Holder::parse(line.as_bytes());
    }

    #[test]
    fn store_keys_are_valid_only_without_escapes(key in "[a-z./\\x00\\n]{0,12}") {
        if keygate_sdk::validate_key(&key).is_ok() {
            prop_assert!(!key.is_empty());
            prop_assert!(key.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
            prop_assert!(!key.chars().any(char::is_control));
        }
    }
}

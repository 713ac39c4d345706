//! Arbitrary bytes in a record file, and arbitrary keys, never panic and
//! never read back as data: every get of a garbage record is an error that
//! names the record, and the file is left as found.

use keygate_sdk::SecretStore;
use proptest::prelude::*;

mod common;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn garbage_in_a_record_file_is_an_error_naming_the_record(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (_dir, store) = common::fresh();
        store.put("devices/g", b"genuine", None).unwrap();
        let file = store.record_file("devices/g").unwrap();
        std::fs::write(&file, &bytes).unwrap();
        let err = store.get("devices/g").unwrap_err();
        prop_assert!(err.message().starts_with("record \"devices/g\": "), "{}", err);
        prop_assert_eq!(std::fs::read(&file).unwrap(), bytes);
    }

    #[test]
    fn arbitrary_keys_are_accepted_or_refused_without_escaping_the_root(key in "\\PC{0,40}") {
        let (dir, store) = common::fresh();
        if store.put(&key, b"v", None).is_ok() {
            prop_assert_eq!(store.get(&key).unwrap().unwrap().value, b"v".to_vec());
            let file = store.record_file(&key).unwrap();
            prop_assert!(file.starts_with(store.root()), "{} outside the root", file.display());
        }
        // Nothing was created beside the store's folders.
        let outside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("store"))
            .collect();
        prop_assert!(outside.is_empty(), "{:?}", outside);
    }
}

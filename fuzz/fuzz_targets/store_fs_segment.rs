//! The filesystem store's file-name codec (`path::decode_segment`,
//! `encode_segment`, `record_path`, `classify`), through the `fuzzing`
//! feature of keygate-store-fs.
//!
//! Properties: no panic; only canonical names decode (re-encoding a decoded
//! name gives the name back, so the mapping is one-to-one); every segment
//! encodes to a safe name that decodes back to it; a valid key maps to a
//! relative path with one plain component per segment, within the file-name
//! limit, that `list` reads back as the same segments; and the other way
//! round, a name `list` accepts (the input as a record or folder name) leads
//! to a key that `get` can read, at that very file.

#![no_main]

use std::path::{Component, Path};

use keygate_fuzz::text;
use keygate_sdk::validate_key;
use keygate_store_fs::fuzzing::{classify, decode_segment, encode_segment, record_path};
use libfuzzer_sys::fuzz_target;

fn safe(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || byte == b'%'
}

fuzz_target!(|data: &[u8]| {
    let text = text(data);

    if let Some(segment) = decode_segment(&text) {
        assert!(!segment.is_empty() && !segment.contains('/'), "{segment:?}");
        assert_eq!(encode_segment(&segment), text, "non-canonical name decoded");
    }

    for segment in text.split('/') {
        let name = encode_segment(segment);
        assert!(name.bytes().all(safe), "{segment:?} encoded as {name:?}");
        if !segment.is_empty() {
            assert_eq!(decode_segment(&name).as_deref(), Some(segment));
        }
    }

    // `list` turns a record file `<name>.rec` into the key segment `name`
    // and a folder `name` into the prefix `name/` (keeping only valid keys);
    // `get` must then find that very file.
    for is_dir in [false, true] {
        let name = if is_dir {
            text.to_string()
        } else {
            format!("{text}.rec")
        };
        let Some(segment) = classify(&name, is_dir) else {
            continue;
        };
        let (key, file) = if is_dir {
            (format!("{segment}/x"), format!("{text}/x.rec"))
        } else {
            (segment, name.clone())
        };
        if validate_key(&key).is_ok() {
            match record_path(&key) {
                Ok(path) => assert_eq!(path, Path::new(&file), "{key:?}"),
                Err(e) => panic!("list would give {key:?} (from {name:?}), which get refuses: {e}"),
            }
        }
    }

    if let Ok(path) = record_path(&text) {
        assert!(path.is_relative(), "{path:?}");
        let segments: Vec<&str> = text.split('/').collect();
        let components: Vec<Component<'_>> = path.components().collect();
        assert_eq!(components.len(), segments.len(), "{text:?} -> {path:?}");
        for (i, (component, segment)) in components.iter().zip(&segments).enumerate() {
            let Component::Normal(name) = component else {
                panic!("{text:?} -> {path:?}: component {component:?}");
            };
            let name = name.to_str().expect("encoded names are ASCII");
            assert!(name.len() <= 255, "{name:?}");
            let is_dir = i + 1 < segments.len();
            assert_eq!(
                classify(name, is_dir).as_deref(),
                Some(*segment),
                "{text:?}"
            );
        }
    }
});

//! `Config::parse` on arbitrary text (bytes that are not UTF-8 are
//! converted lossily), as read from an absolute path, a bare file name, `""`
//! and `/`. Properties: no panic; an accepted config hands every plugin a
//! `config` table that parses back as TOML; slot lines and error lines lie
//! within the text; every error starts with the file name.

#![no_main]

use std::path::Path;

use keygate_core::config::{Config, ConfigError};
use keygate_fuzz::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    let lines = text.matches('\n').count() + 1;
    // An absolute path, a bare file name, and paths without a parent.
    let paths = ["/etc/keygate/config.toml", "config.toml", "", "/"];
    for path in paths.map(Path::new) {
        match Config::parse(&text, path) {
            Ok(config) => {
                assert!(
                    config.state_dir.starts_with(&config.dir) || config.state_dir.is_absolute()
                );
                for slot in config.plugins.iter() {
                    assert!((1..=lines).contains(&slot.line), "slot line {}", slot.line);
                    if let Err(e) = slot.config_toml.parse::<toml::Table>() {
                        panic!(
                            "plugins.{}.config re-serialised as {:?}, which does not parse: {e}",
                            slot.kind, slot.config_toml
                        );
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.starts_with(&path.display().to_string()),
                    "{message}"
                );
                if let ConfigError::Invalid { line, .. } = e {
                    assert!(
                        (1..=lines).contains(&line),
                        "line {line} of {lines}: {message}"
                    );
                }
            }
        }
    }
});

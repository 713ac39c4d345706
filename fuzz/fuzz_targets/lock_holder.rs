//! `Holder::parse` on the content of a lock file.
//!
//! Properties: no panic, whether the content is read as a holder or as "no
//! holder recorded"; a holder displays, and its time is shown as RFC 3339
//! in UTC to the second.

#![no_main]

use keygate_core::state::lock::Holder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(holder) = Holder::parse(data) {
        let since = holder.since_rfc3339();
        let shape = since.len() >= 20
            && since.ends_with('Z')
            && since.bytes().rev().nth(9) == Some(b'T')
            && since
                .bytes()
                .filter(|b| !b.is_ascii_digit())
                .eq("--T::Z".bytes());
        assert!(shape, "{since:?}");
        let shown = holder.to_string();
        assert!(
            shown.starts_with(&format!("pid {} on host ", holder.pid)),
            "{shown}"
        );
        assert!(shown.contains(&since), "{shown}");
    }
});

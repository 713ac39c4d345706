//! The filesystem store's journal reader (`journal::scan` and the frame
//! body decoder, as recovery runs them), through the `fuzzing` feature of
//! keygate-store-fs.
//!
//! The input is read as the journal after its header; properties: no
//! panic, valid frames end inside the input and, when no torn tail is
//! reported, at its end. Then ops made from the input are written as two
//! frames and must read back exactly; a flipped bit in the first frame
//! (a valid one follows) is a damaged journal, never other ops; a flipped
//! bit in the last frame, or the stretch cut inside it, is a torn tail and
//! only the first frame is kept.

#![no_main]

use keygate_fuzz::{check_message, mix};
use keygate_store_fs::fuzzing::{JournalOp, journal_frame, scan_journal};
use libfuzzer_sys::fuzz_target;

/// The store key every frame is authenticated under.
const KEY: [u8; 32] = *b"keygate fuzz store key: not real";
/// The journal generation of every frame.
const GENERATION: u64 = 7;
/// Where the stretch starts in the journal file (just past a header).
const BASE: u64 = 48;

/// Up to four ops cut from `data`: puts of its slices, or deletes.
fn ops_from(data: &[u8]) -> Vec<JournalOp> {
    let n = data.first().map_or(1, |b| usize::from(b % 4) + 1);
    let chunk = data.len().div_ceil(n).max(1);
    (0..n)
        .map(|i| {
            let key = format!("identity/fuzz/{i}");
            let part = data.get(i * chunk..).unwrap_or_default();
            let part = &part[..part.len().min(chunk)];
            let delete = part.first().is_some_and(|b| b & 1 == 1);
            (key, (!delete).then(|| part.to_vec()))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    match scan_journal(&KEY, GENERATION, BASE, data) {
        Ok((_, end, torn)) => {
            assert!(end <= data.len());
            assert!(torn || end == data.len(), "untorn yet bytes left over");
        }
        Err(message) => check_message(&message),
    }

    let first_ops = ops_from(data);
    let second_ops = ops_from(&data[data.len() / 2..]);
    let first = journal_frame(&KEY, GENERATION, BASE, &first_ops).expect("a small frame");
    let second = journal_frame(&KEY, GENERATION, BASE + first.len() as u64, &second_ops)
        .expect("a small frame");
    let both = [first.as_slice(), second.as_slice()].concat();
    assert_eq!(
        scan_journal(&KEY, GENERATION, BASE, &both),
        Ok((vec![first_ops.clone(), second_ops], both.len(), false))
    );

    let h = mix(data);
    let mut damaged = both.clone();
    damaged[h % first.len()] ^= 1 << (h % 8);
    assert!(
        scan_journal(&KEY, GENERATION, BASE, &damaged).is_err(),
        "a flipped bit in a frame followed by a valid one was not called damage"
    );

    let mut torn = both.clone();
    torn[first.len() + h % second.len()] ^= 1 << (h % 8);
    let kept = Ok((vec![first_ops.clone()], first.len(), true));
    assert_eq!(scan_journal(&KEY, GENERATION, BASE, &torn), kept);
    let cut = first.len() + 1 + (h / 8) % (second.len() - 1);
    assert_eq!(scan_journal(&KEY, GENERATION, BASE, &both[..cut]), kept);

    // Read at another offset or generation, the same bytes are no frames.
    let elsewhere = scan_journal(&KEY, GENERATION, BASE + 1, &both);
    assert!(matches!(elsewhere, Ok((frames, 0, true)) if frames.is_empty()));
});

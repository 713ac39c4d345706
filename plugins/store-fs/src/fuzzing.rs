//! Entry points for the fuzz targets in the repository's `fuzz/` crate,
//! compiled only with the `fuzzing` feature. Not API: hidden from the docs
//! and free to change with the fuzz targets.
//!
//! They reach the crate-private decoders the way the store does: a record
//! file's bytes as read from disk, the key check file, the journal's frames
//! after its header, and the on-disk names of key segments. Errors are returned as their display text, the
//! text the store puts after a record's name.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::path;
use keygate_seal::{KEY_LEN, Sealer, StoreKey};

fn sealer(key: &[u8; KEY_LEN]) -> Sealer {
    Sealer::new(&StoreKey::new(Zeroizing::new(*key)))
}

/// Opens `bytes` as the record file of key `name` under the store key
/// `key`: its version and value, or why it was refused.
pub fn open_record(
    key: &[u8; KEY_LEN],
    name: &str,
    bytes: Vec<u8>,
) -> Result<(u64, Vec<u8>), String> {
    sealer(key)
        .open_record(name, bytes)
        .map_err(|e| e.to_string())
}

/// The record file the store writes for `value` under key `name` at
/// `version`.
pub fn seal_record(
    key: &[u8; KEY_LEN],
    name: &str,
    version: u64,
    value: &[u8],
) -> Result<Vec<u8>, String> {
    sealer(key)
        .seal_record(name, version, value)
        .map_err(|e| e.to_string())
}

/// Verifies `bytes` as the key check file (`.keycheck`) of a store whose
/// key is `key`.
pub fn open_check(key: &[u8; KEY_LEN], bytes: Vec<u8>) -> Result<(), String> {
    sealer(key).open_check(bytes).map_err(|e| e.to_string())
}

/// A new key check file for `key`.
pub fn seal_check(key: &[u8; KEY_LEN]) -> Result<Vec<u8>, String> {
    sealer(key).seal_check().map_err(|e| e.to_string())
}

/// The key segment an on-disk name stands for, if it is the canonical
/// encoding of one.
pub fn decode_segment(name: &str) -> Option<String> {
    path::decode_segment(name)
}

/// The on-disk name of one key segment.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::new();
    path::encode_segment(segment, &mut out);
    out
}

/// The record file of `key` relative to the root, after the same key
/// validation the store does; the refusal's text otherwise.
pub fn record_path(key: &str) -> Result<PathBuf, String> {
    keygate_sdk::validate_key(key).map_err(|e| e.to_string())?;
    path::record_path(key).map_err(|e| e.to_string())
}

/// The key segment of a directory entry found under the root (`None` for
/// the store's own dot-files and foreign names), as `list` reads it.
pub fn classify(name: &str, is_dir: bool) -> Option<String> {
    match path::classify(name, is_dir)? {
        path::Entry::Record(segment) | path::Entry::Dir(segment) => Some(segment),
    }
}

/// One op of a journal frame: a key, and the sealed record file a put
/// writes (`None`: a delete).
pub type JournalOp = (String, Option<Vec<u8>>);

/// Reads `bytes` as the journal of `generation` from file offset `base`
/// on, under the store key `key`, the way recovery does: the ops of each
/// valid frame, where the valid frames end, and whether the rest is a torn
/// tail to cut off; or why the journal is damaged.
pub fn scan_journal(
    key: &[u8; KEY_LEN],
    generation: u64,
    base: u64,
    bytes: &[u8],
) -> Result<(Vec<Vec<JournalOp>>, usize, bool), String> {
    let (frames, end, torn) = crate::journal::scan_ops(&sealer(key), generation, base, bytes)?;
    let frames = frames
        .into_iter()
        .map(|ops| ops.into_iter().map(from_op).collect())
        .collect();
    Ok((frames, end, torn))
}

/// The journal frame the store writes for `ops` at offset `offset` of the
/// journal of `generation`.
pub fn journal_frame(
    key: &[u8; KEY_LEN],
    generation: u64,
    offset: u64,
    ops: &[JournalOp],
) -> Result<Vec<u8>, String> {
    let ops: Vec<crate::journal::Op> = ops.iter().cloned().map(to_op).collect();
    crate::journal::frame_of(&sealer(key), generation, offset, &ops)
}

fn from_op(op: crate::journal::Op) -> JournalOp {
    match op {
        crate::journal::Op::Put { key, record } => (key, Some(record)),
        crate::journal::Op::Delete { key } => (key, None),
    }
}

fn to_op((key, record): JournalOp) -> crate::journal::Op {
    match record {
        Some(record) => crate::journal::Op::Put { key, record },
        None => crate::journal::Op::Delete { key },
    }
}

//! The write-ahead journal: every write (`put`, `delete`, `apply_batch`)
//! becomes durable with one `fdatasync`, however many records it touches.
//!
//! # The write path
//! Under the store lock, a write
//! 1. brings the store up to date with the journal ([`Journal::recover`]),
//! 2. reads every record it touches and compares the expected versions
//!    (a mismatch, an invalid or damaged record: nothing is written at all),
//! 3. seals each new record exactly as a record file holds it (its new
//!    version inside),
//! 4. appends **one frame** holding all its ops to `<root>/.journal` and
//!    `fdatasync`s it: **the commit point**,
//! 5. applies the ops: each put as a temp file swapped in for the record
//!    file (see `durable::replace`), each delete as an unlink, **without
//!    any sync**,
//! 6. sets the "applied" mark (below), and checkpoints if the journal has
//!    grown past [`CHECKPOINT_BYTES`].
//!
//! So a write costs one sync plus cheap file operations, and the record
//! files are exactly what they were before the journal (readers, `list`,
//! the crypto, the key check: all unchanged; `get` and `list` take no
//! lock). Because *every* write goes through the journal, nothing is ever
//! written to a record file that is not the effect of the journal's last
//! frame or of a frame before it: re-applying frames is idempotent.
//!
//! # Journal file (`<root>/.journal`, format version 1)
//! A header, then frames one after the other:
//! ```text
//! header (57 bytes)
//! offset  size  field
//!      0     4  magic "KGSJ"
//!      4     1  format version (1)
//!      5     8  generation, big-endian u64: new at every checkpoint
//!     13    16  boot id of the boot the frames were written in
//!     29    12  nonce
//!     41    16  GCM tag over bytes 0..29 (associated data, no plaintext)
//!
//! frame (53 + n bytes)
//!      0     4  magic "KGJF"
//!      4     1  format version (1)
//!      5     8  generation (the header's), big-endian u64
//!     13     8  offset of this frame in the file, big-endian u64
//!     21     4  body length n, big-endian u32 (at most MAX_BODY_LEN)
//!     25     n  body
//!   25+n    12  nonce, fresh from the OS random source
//!   37+n    16  GCM tag over bytes 0..25+n (associated data, no plaintext)
//!
//! body
//!      4  op count, big-endian u32; then per op:
//!      1  kind: 1 put, 2 delete
//!      2  key length, big-endian u16; then the key (UTF-8)
//!         put only: record length (big-endian u32), then the sealed
//!         record file (format in the `crypto` module), version inside
//! ```
//! Header and frames are authenticated with the store key (AES-256-GCM used
//! as a MAC: the bytes are associated data), not encrypted: a body holds
//! sealed records and key names, and key names are file names anyway.
//! A frame carries its generation and its own offset, so it only
//! authenticates in the journal and at the place it was written; a journal
//! from another store (another key) fails at its header.
//!
//! # Recovery
//! Each store object remembers the journal as it last left it: its file
//! (held open, so the inode number is not reused), generation and length.
//! At open and at the start of every write, under the lock:
//! - **Unchanged** (same inode, same length: one `stat`): nothing to do.
//! - **Grown** (another store object or process wrote since): those
//!   frames were written in this boot, and every frame but the last was
//!   applied before its writer released the lock (the page cache is
//!   shared), so only the last frame can be unapplied (its writer died
//!   between commit and apply): it is applied again, unless the "applied"
//!   mark says it was.
//! - **Replaced** by a checkpoint, or first sight at open: the header is
//!   checked and every frame authenticated. If the header's boot id is this
//!   boot's, the last frame is applied again as above. If it is another
//!   boot's (the machine went down: files renamed without a sync may be
//!   lost, empty or old), **every** frame is applied again in order (for
//!   each key, its last op), then a checkpoint makes it all durable and
//!   starts a journal of this boot. A journal therefore only ever holds
//!   frames of the boot its header names.
//! - **Missing**: a new journal is started (a store created before the
//!   journal existed has durable records; one whose journal was moved
//!   aside by hand gets a warning).
//!
//! The **"applied" mark** is 20 bytes at the start of `<root>/.lock`
//! (`"KGSA"`, generation, length), written without a sync after each apply:
//! when it matches the journal's generation and length, the last frame was
//! applied and is not applied again. It only saves work (a lost or stale
//! mark means one more idempotent re-apply), and it is only trusted within
//! a boot.
//!
//! **Torn tail.** A frame is only ever appended at the end, and a writer
//! that dies mid-append leaves the lock, so the next writer cuts the torn
//! frame off before appending: a bad frame can only be the last one. So,
//! reading frames in order, a frame that is incomplete or fails
//! authentication is a **torn tail** if no valid frame follows it (its
//! write was never committed, so never reported done): it is cut off, with
//! a warning. If a valid frame follows (found by its magic, and it must
//! authenticate at its own offset), the journal is **damaged**: an
//! `Internal` error naming the journal file and the offset, and the store
//! refuses every write until the journal is repaired (nothing in it is
//! applied). The store still opens, for reading.
//!
//! # Checkpoint
//! When a write leaves the journal at [`CHECKPOINT_BYTES`] or more, and
//! before `quarantine` (a rename outside the journal, which a later replay
//! must not undo by re-creating the key), under the lock:
//! 1. `syncfs` on the root's filesystem: every record file written since
//!    the last checkpoint (all frames are applied by then) is durable;
//! 2. a new journal, header only, with generation + 1 and this boot's id,
//!    is written to a temp file, `fdatasync`ed, renamed over `.journal`,
//!    and the root folder is fsynced.
//!
//! A crash before the rename leaves the old journal (its replay is
//! idempotent); after it, the new one. A failed checkpoint after a write
//! is logged and tried again after the next write; the write it followed
//! stands. A failed checkpoint after a replay fails that open or write,
//! and the next one replays again.
//!
//! # Failures and limits
//! - A write whose apply fails after its commit (a file that cannot be
//!   written) is an `Unavailable` error that says the write is committed:
//!   its frame is the journal's last, and the next write (by any store
//!   object) or open applies it.
//! - One write's frame body holds at most [`MAX_BODY_LEN`] (256 MiB) of
//!   keys and sealed records. The store had no limit on a value's size, so
//!   rather than a value limit times an op count, the whole write is
//!   bounded (a batch of many records and one large value both fit); the
//!   size is checked before anything is sealed, and a larger write is
//!   `Invalid`. Recovery holds the journal in memory: the checkpoint
//!   threshold plus one frame at most.
//! - Re-applying frames assumes nothing but the journal writes record
//!   files. `quarantine` checkpoints first. A record file restored by hand
//!   (from a backup) for a key written since the last checkpoint is put
//!   back to the journal's version if the machine loses power before the
//!   next checkpoint, or if the last frame is that key's and its writer
//!   died before applying it.
//!
//! # Design notes: where this differs from the first sketch, and why
//! - *Per-object "dirty set" of files to fsync at checkpoint*: wrong with
//!   several writers. A checkpoint by one store object (or process) would
//!   drop frames whose files another object wrote and never synced, and a
//!   power loss would then lose acknowledged writes. `syncfs` flushes
//!   every file of the filesystem, whoever wrote it (deriving the set from
//!   the journal's own frames would also work, but costs one sync per
//!   file). Measured on the development VM (ext4, a loaded shared disk),
//!   after 2,000 record files of 2 KiB were replaced as the store does:
//!   one `fdatasync` per file plus the folder took 5.3–6.1 s, one `syncfs`
//!   66–73 ms (the data goes out in one sorted pass, with one filesystem
//!   journal commit). The price: `syncfs` also flushes other programs'
//!   dirty data on the same filesystem, once per checkpoint.
//! - *Truncating the journal in place at checkpoint*: not atomic. A crash
//!   between rewriting the header (new generation) and the truncation
//!   leaves frames that no longer authenticate, and a torn header would
//!   make the store unwritable. The new journal is written beside and
//!   renamed over the old one; store objects notice the new inode.
//! - *Re-applying the last frame whenever the journal changed*: correct,
//!   but two store objects (or processes) taking turns would each write
//!   every record of the other's batches a second time; the "applied"
//!   mark avoids that.
//! - *A failed `fdatasync` of the journal*: the frame is cut off again
//!   (and the cut synced) before the error is returned; left in place, the
//!   next writer would apply a write reported as failed.
//! - No checkpoint when a store object is dropped: it would cost a
//!   `syncfs` at the end of every short-lived process (a CLI command), and
//!   is not needed: a restart replays at most [`CHECKPOINT_BYTES`] of
//!   frames once.
//! - Without a boot id (`/proc/sys/kernel/random/boot_id` unreadable), a
//!   journal replaced or first seen is always replayed in full and
//!   checkpointed: safe, only slower.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use keygate_sdk::{PluginContext, PluginError, validate_key};

use crate::spares::{self, Spares};
use crate::{durable, path};
use keygate_seal::{NONCE_LEN, Sealer, TAG_LEN, random_u64};

/// The journal's file name in the root.
pub(crate) const JOURNAL_FILE: &str = ".journal";
/// The journal size at which a write is followed by a checkpoint.
pub(crate) const CHECKPOINT_BYTES: u64 = 4 << 20;
/// The largest frame body: a write whose sealed records (with their keys)
/// take more is refused as `Invalid`.
pub(crate) const MAX_BODY_LEN: usize = 256 << 20;

const HEADER_MAGIC: &[u8; 4] = b"KGSJ";
const FRAME_MAGIC: &[u8; 4] = b"KGJF";
const MARK_MAGIC: &[u8; 4] = b"KGSA";
const FORMAT_VERSION: u8 = 1;
/// The length of a boot id.
pub(crate) const BOOT_ID_LEN: usize = 16;
const HEADER_AAD_LEN: usize = 4 + 1 + 8 + BOOT_ID_LEN;
/// The length of the journal's header.
pub(crate) const HEADER_LEN: usize = HEADER_AAD_LEN + NONCE_LEN + TAG_LEN;
const FRAME_PREFIX_LEN: usize = 4 + 1 + 8 + 8 + 4;
/// Bytes a frame takes besides its body.
pub(crate) const FRAME_OVERHEAD: usize = FRAME_PREFIX_LEN + NONCE_LEN + TAG_LEN;
const MARK_LEN: usize = 4 + 8 + 8;
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";

/// A point in the write path where the crash tests kill their process.
/// Not API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Half-way through appending a frame: a torn tail.
    MidAppend,
    /// After the frame's `fdatasync` (committed), before any op is applied.
    AfterCommit,
    /// After applying the first half (rounded down) of a frame's ops.
    MidApply,
    /// In a checkpoint, after the `syncfs`, before the new journal replaces
    /// the old one.
    MidCheckpoint,
}

/// Settings for tests and benchmarks, given to
/// [`FsStore::open_tuned`](crate::FsStore::open_tuned). Not API.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Taken for this boot's id instead of the kernel's, to simulate a
    /// restart of the machine.
    pub boot_id: Option<[u8; BOOT_ID_LEN]>,
    /// The checkpoint threshold instead of [`CHECKPOINT_BYTES`].
    pub checkpoint_bytes: Option<u64>,
    /// Kill the process (SIGKILL) the n-th time (1: the first) the write
    /// path reaches this point.
    pub crash: Option<(CrashPoint, u64)>,
}

/// One op of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Write `record` (a sealed record file) as `key`'s record file.
    Put { key: String, record: Vec<u8> },
    /// Remove `key`'s record file.
    Delete { key: String },
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::Delete { key } => key,
        }
    }
}

/// The bytes one op takes in a frame body: a key of `key_len` bytes and,
/// for a put, a sealed record of `record_len` bytes.
pub(crate) fn op_len(key_len: usize, record_len: Option<usize>) -> usize {
    1 + 2 + key_len + record_len.map_or(0, |n| 4 + n)
}

/// The bytes a frame body takes before its ops.
pub(crate) const BODY_PREFIX_LEN: usize = 4;

fn encode_body(ops: &[Op]) -> Vec<u8> {
    let len = BODY_PREFIX_LEN
        + ops
            .iter()
            .map(|op| match op {
                Op::Put { key, record } => op_len(key.len(), Some(record.len())),
                Op::Delete { key } => op_len(key.len(), None),
            })
            .sum::<usize>();
    let mut body = Vec::with_capacity(len);
    // Counts and lengths fit: the caller bounded the body by MAX_BODY_LEN,
    // and keys by validate_key.
    body.extend_from_slice(&(ops.len() as u32).to_be_bytes());
    for op in ops {
        let key = op.key().as_bytes();
        body.push(match op {
            Op::Put { .. } => OP_PUT,
            Op::Delete { .. } => OP_DELETE,
        });
        body.extend_from_slice(&(key.len() as u16).to_be_bytes());
        body.extend_from_slice(key);
        if let Op::Put { record, .. } = op {
            body.extend_from_slice(&(record.len() as u32).to_be_bytes());
            body.extend_from_slice(record);
        }
    }
    body
}

/// Reads fixed-size fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the frame body ends early".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn decode_body(body: &[u8]) -> Result<Vec<Op>, String> {
    let mut r = Reader(body);
    let count = r.u32()?;
    let mut ops = Vec::new();
    for _ in 0..count {
        let kind = r.u8()?;
        let key_len = usize::from(r.u16()?);
        let key = std::str::from_utf8(r.take(key_len)?)
            .map_err(|_| "a key is not UTF-8".to_owned())?
            .to_owned();
        validate_key(&key)
            .and_then(|()| path::record_path(&key).map(drop))
            .map_err(|e| format!("a key is not valid: {e}"))?;
        ops.push(match kind {
            OP_PUT => {
                let len = r.u32()? as usize;
                Op::Put {
                    key,
                    record: r.take(len)?.to_vec(),
                }
            }
            OP_DELETE => Op::Delete { key },
            other => return Err(format!("unknown op kind {other}")),
        });
    }
    if !r.0.is_empty() {
        return Err("the frame body has bytes after its last op".into());
    }
    Ok(ops)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(b)
}

fn nonce_and_tag(bytes: &[u8]) -> ([u8; NONCE_LEN], [u8; TAG_LEN]) {
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[..NONCE_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&bytes[NONCE_LEN..NONCE_LEN + TAG_LEN]);
    (nonce, tag)
}

fn cannot_seal(e: impl std::fmt::Display) -> PluginError {
    PluginError::internal(format!("cannot authenticate a journal entry: {e}"))
}

/// The journal's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    generation: u64,
    boot: [u8; BOOT_ID_LEN],
}

fn encode_header(sealer: &Sealer, header: &Header) -> Result<Vec<u8>, PluginError> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    out.extend_from_slice(HEADER_MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&header.generation.to_be_bytes());
    out.extend_from_slice(&header.boot);
    let (nonce, tag) = sealer.authenticate(&out).map_err(cannot_seal)?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Reads the header at the start of `bytes` (the whole journal file).
fn decode_header(sealer: &Sealer, bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() >= 5 && &bytes[..4] != HEADER_MAGIC {
        return Err("not a journal (no keygate journal header)".into());
    }
    if bytes.len() >= 5 && bytes[4] != FORMAT_VERSION {
        return Err(format!(
            "unsupported journal format version {} (this build reads version {FORMAT_VERSION})",
            bytes[4]
        ));
    }
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "truncated header ({} bytes; the header has {HEADER_LEN})",
            bytes.len()
        ));
    }
    let (nonce, tag) = nonce_and_tag(&bytes[HEADER_AAD_LEN..]);
    if !sealer.verify(&nonce, &bytes[..HEADER_AAD_LEN], &tag) {
        return Err(
            "its header does not authenticate with this store's key (tampered, or the \
             journal of another store)"
                .into(),
        );
    }
    let mut boot = [0u8; BOOT_ID_LEN];
    boot.copy_from_slice(&bytes[13..13 + BOOT_ID_LEN]);
    Ok(Header {
        generation: u64_at(bytes, 5),
        boot,
    })
}

/// The frame holding `body`, to be written at `offset` of the journal of
/// `generation`.
fn encode_frame(
    sealer: &Sealer,
    generation: u64,
    offset: u64,
    body: &[u8],
) -> Result<Vec<u8>, PluginError> {
    let mut frame = Vec::with_capacity(FRAME_OVERHEAD + body.len());
    frame.extend_from_slice(FRAME_MAGIC);
    frame.push(FORMAT_VERSION);
    frame.extend_from_slice(&generation.to_be_bytes());
    frame.extend_from_slice(&offset.to_be_bytes());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(body);
    let (nonce, tag) = sealer.authenticate(&frame).map_err(cannot_seal)?;
    frame.extend_from_slice(&nonce);
    frame.extend_from_slice(&tag);
    Ok(frame)
}

/// Checks the frame at `at` in `bytes` (the journal of `generation` from
/// file offset `base` on): its body's range and its end, if it is a whole,
/// authentic frame of this journal written at this very place.
fn check_frame(
    sealer: &Sealer,
    generation: u64,
    base: u64,
    bytes: &[u8],
    at: usize,
) -> Option<(Range<usize>, usize)> {
    let rest = bytes.get(at..)?;
    if rest.len() < FRAME_PREFIX_LEN
        || &rest[..4] != FRAME_MAGIC
        || rest[4] != FORMAT_VERSION
        || u64_at(rest, 5) != generation
        || u64_at(rest, 13) != base + at as u64
    {
        return None;
    }
    let n = u32_at(rest, 21) as usize;
    // Both halves: with an empty body, a saturating subtraction would let
    // a stretch too short for the nonce and tag through.
    if rest.len() < FRAME_OVERHEAD || rest.len() - FRAME_OVERHEAD < n {
        return None;
    }
    let body_end = FRAME_PREFIX_LEN + n;
    let (nonce, tag) = nonce_and_tag(&rest[body_end..]);
    sealer.verify(&nonce, &rest[..body_end], &tag).then_some((
        at + FRAME_PREFIX_LEN..at + body_end,
        at + FRAME_OVERHEAD + n,
    ))
}

/// The frames found in a stretch of the journal.
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    /// The body of each valid frame, in order, as ranges of the stretch.
    bodies: Vec<Range<usize>>,
    /// Where the valid frames end (within the stretch).
    end: usize,
    /// Whether bytes after `end` are a torn tail to cut off.
    torn: bool,
}

/// Reads the frames of `bytes`, the journal of `generation` from file
/// offset `base` to its end. A bad frame is a torn tail unless a valid
/// frame follows it; then the journal is damaged (the error says where).
fn scan(sealer: &Sealer, generation: u64, base: u64, bytes: &[u8]) -> Result<Scan, String> {
    let mut bodies = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if let Some((body, end)) = check_frame(sealer, generation, base, bytes, at) {
            bodies.push(body);
            at = end;
            continue;
        }
        let mut from = at + 1;
        while let Some(i) = bytes.get(from..).and_then(|rest| {
            rest.windows(FRAME_MAGIC.len())
                .position(|w| w == FRAME_MAGIC)
        }) {
            let next = from + i;
            if check_frame(sealer, generation, base, bytes, next).is_some() {
                return Err(format!(
                    "the frame at offset {} is damaged (incomplete or not authentic), yet a \
                     valid frame follows at offset {}",
                    base + at as u64,
                    base + next as u64
                ));
            }
            from = next + 1;
        }
        return Ok(Scan {
            bodies,
            end: at,
            torn: true,
        });
    }
    Ok(Scan {
        bodies,
        end: at,
        torn: false,
    })
}

/// For the fuzz targets (`fuzzing` module): the ops of each valid frame in
/// `bytes` (the journal of `generation` from offset `base`), where they
/// end, and whether a torn tail follows; or why the journal is damaged, or
/// why a frame's body does not decode.
#[cfg(feature = "fuzzing")]
pub(crate) fn scan_ops(
    sealer: &Sealer,
    generation: u64,
    base: u64,
    bytes: &[u8],
) -> Result<(Vec<Vec<Op>>, usize, bool), String> {
    let found = scan(sealer, generation, base, bytes)?;
    let frames = found
        .bodies
        .iter()
        .map(|body| decode_body(&bytes[body.clone()]))
        .collect::<Result<_, _>>()?;
    Ok((frames, found.end, found.torn))
}

/// For the fuzz targets: the frame holding `ops`, written at `offset` of
/// the journal of `generation`.
#[cfg(feature = "fuzzing")]
pub(crate) fn frame_of(
    sealer: &Sealer,
    generation: u64,
    offset: u64,
    ops: &[Op],
) -> Result<Vec<u8>, String> {
    encode_frame(sealer, generation, offset, &encode_body(ops)).map_err(|e| e.to_string())
}

/// This boot's id, from the kernel; `None` if it cannot be read.
fn kernel_boot_id() -> Option<[u8; BOOT_ID_LEN]> {
    let text = fs::read_to_string(BOOT_ID_FILE).ok()?;
    parse_boot_id(&text)
}

/// A boot id as the kernel prints it (a UUID: 32 hex digits and dashes).
fn parse_boot_id(text: &str) -> Option<[u8; BOOT_ID_LEN]> {
    let digits: Vec<u8> = text
        .trim()
        .bytes()
        .filter(|&b| b != b'-')
        .map(|b| char::from(b).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()?;
    if digits.len() != 2 * BOOT_ID_LEN {
        return None;
    }
    let mut id = [0u8; BOOT_ID_LEN];
    for (byte, pair) in id.iter_mut().zip(digits.chunks(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    Some(id)
}

/// The "applied" mark in the lock file: the generation and length of the
/// journal whose frames are all applied. `None` if unreadable.
fn read_mark(mark: &File) -> Option<(u64, u64)> {
    let mut buf = [0u8; MARK_LEN];
    mark.read_exact_at(&mut buf, 0).ok()?;
    (&buf[..4] == MARK_MAGIC).then(|| (u64_at(&buf, 4), u64_at(&buf, 12)))
}

/// Sets the "applied" mark. Not synced, and a failure is ignored: a stale
/// mark only means the last frame is applied once more.
fn write_mark(mark: &File, generation: u64, len: u64) {
    let mut buf = [0u8; MARK_LEN];
    buf[..4].copy_from_slice(MARK_MAGIC);
    buf[4..12].copy_from_slice(&generation.to_be_bytes());
    buf[12..].copy_from_slice(&len.to_be_bytes());
    let _ = mark.write_all_at(&buf, 0);
}

/// Kills the process at once, as a crash would (the crash tests only).
fn die() -> ! {
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    std::process::abort()
}

/// What a store object knows of the journal as it last left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    dev: u64,
    ino: u64,
    generation: u64,
    /// Where its valid frames end: all applied.
    len: u64,
}

/// What the journal needs from its store for one call.
pub(crate) struct Env<'a> {
    /// The store's key.
    pub sealer: &'a Sealer,
    /// For warnings.
    pub ctx: &'a PluginContext,
    /// The lock file, holding the "applied" mark.
    pub mark: &'a File,
}

/// A store object's side of the journal. Only used under the store lock.
pub(crate) struct Journal {
    root: PathBuf,
    path: PathBuf,
    boot: Option<[u8; BOOT_ID_LEN]>,
    checkpoint_bytes: u64,
    crash: Option<(CrashPoint, u64)>,
    /// The journal file as last seen (kept open: its inode number cannot be
    /// reused while it is), with what was seen of it.
    current: Option<(File, Seen)>,
    /// Record files to write again instead of creating new ones.
    spares: Spares,
}

impl Journal {
    /// The journal of the store at `root`; nothing is read yet.
    pub(crate) fn new(root: &Path, tuning: &Tuning) -> Self {
        Self {
            root: root.to_path_buf(),
            path: root.join(JOURNAL_FILE),
            boot: tuning.boot_id.or_else(kernel_boot_id),
            checkpoint_bytes: tuning.checkpoint_bytes.unwrap_or(CHECKPOINT_BYTES),
            crash: tuning.crash,
            current: None,
            spares: Spares::new(root, Some(spares::FILL_AFTER_CREATES)),
        }
    }

    fn damaged(&self, detail: &str) -> PluginError {
        PluginError::internal(format!(
            "journal {}: {detail}; the store refuses writes until the journal is repaired \
             (restore it from a backup; or, if the machine has not restarted since the last \
             write, move it aside: the record files then hold every write but possibly the \
             last, and a new journal is started)",
            self.path.display()
        ))
    }

    fn io_error(&self, what: &str, e: &io::Error) -> PluginError {
        PluginError::unavailable(format!(
            "cannot {what} the journal {}: {e}",
            self.path.display()
        ))
    }

    /// Whether the point `point` of the crash tests is reached for the
    /// time that kills.
    fn crash_now(&mut self, point: CrashPoint) -> bool {
        match &mut self.crash {
            Some((p, n)) if *p == point => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            _ => false,
        }
    }

    /// Brings the record files up to date with the journal (see the
    /// module docs). Under the store lock, before every write.
    pub(crate) fn recover(&mut self, env: &Env<'_>) -> Result<(), PluginError> {
        let meta = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.current.is_some() {
                    env.ctx.warn(&format!(
                        "the journal {} was removed; a new one is started",
                        self.path.display()
                    ));
                }
                let generation = random_u64().map_err(cannot_seal)?;
                return self.start(env, generation);
            }
            Err(e) => return Err(self.io_error("read", &e)),
        };
        if let Some((file, seen)) = &self.current
            && seen.dev == meta.dev()
            && seen.ino == meta.ino()
            && meta.len() >= seen.len
        {
            let seen = *seen;
            if meta.len() == seen.len {
                return Ok(());
            }
            // Frames written since by other store objects, in this boot.
            if read_mark(env.mark) == Some((seen.generation, meta.len())) {
                self.current = self.current.take().map(|(file, _)| {
                    (
                        file,
                        Seen {
                            len: meta.len(),
                            ..seen
                        },
                    )
                });
                return Ok(());
            }
            let mut bytes = vec![0u8; (meta.len() - seen.len) as usize];
            file.read_exact_at(&mut bytes, seen.len)
                .map_err(|e| self.io_error("read", &e))?;
            let (file, _) = self.current.take().expect("checked above");
            return self.settle(env, file, seen, &bytes);
        }
        self.reload(env)
    }

    /// Reads the journal afresh: its header, then every frame.
    fn reload(&mut self, env: &Env<'_>) -> Result<(), PluginError> {
        self.current = None;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| self.io_error("open", &e))?;
        let meta = file.metadata().map_err(|e| self.io_error("read", &e))?;
        let mut bytes = vec![0u8; meta.len() as usize];
        file.read_exact_at(&mut bytes, 0)
            .map_err(|e| self.io_error("read", &e))?;
        let header = decode_header(env.sealer, &bytes).map_err(|d| self.damaged(&d))?;
        let seen = Seen {
            dev: meta.dev(),
            ino: meta.ino(),
            generation: header.generation,
            len: HEADER_LEN as u64,
        };
        let frames = &bytes[HEADER_LEN..];
        if self.boot.is_some_and(|boot| boot == header.boot) {
            self.settle(env, file, seen, frames)
        } else {
            self.replay(env, file, seen, frames)
        }
    }

    /// Scans `bytes` (the journal after `seen.len`) and cuts off a torn
    /// tail; returns the valid frames.
    fn read_frames(
        &self,
        env: &Env<'_>,
        file: &File,
        seen: Seen,
        bytes: &[u8],
    ) -> Result<Scan, PluginError> {
        let found =
            scan(env.sealer, seen.generation, seen.len, bytes).map_err(|d| self.damaged(&d))?;
        if found.torn {
            let end = seen.len + found.end as u64;
            file.set_len(end)
                .map_err(|e| self.io_error("cut the torn tail off", &e))?;
            env.ctx.warn(&format!(
                "journal {}: dropped {} bytes at offset {end}, an incomplete last entry (a write \
                 that died before its commit, so never reported done)",
                self.path.display(),
                bytes.len() - found.end
            ));
        }
        Ok(found)
    }

    /// Frames written in this boot after `seen.len`: only the last can be
    /// unapplied; applies it again unless the mark says it was applied.
    fn settle(
        &mut self,
        env: &Env<'_>,
        file: File,
        seen: Seen,
        bytes: &[u8],
    ) -> Result<(), PluginError> {
        let found = self.read_frames(env, &file, seen, bytes)?;
        let end = seen.len + found.end as u64;
        if read_mark(env.mark) != Some((seen.generation, end)) {
            if let Some(last) = found.bodies.last() {
                let ops = decode_body(&bytes[last.clone()]).map_err(|d| self.damaged(&d))?;
                self.apply(&ops, &[])?;
            }
            write_mark(env.mark, seen.generation, end);
        }
        self.current = Some((file, Seen { len: end, ..seen }));
        Ok(())
    }

    /// Frames of another boot: applies every one again (for each key, its
    /// last op), then checkpoints.
    fn replay(
        &mut self,
        env: &Env<'_>,
        file: File,
        seen: Seen,
        bytes: &[u8],
    ) -> Result<(), PluginError> {
        let found = self.read_frames(env, &file, seen, bytes)?;
        let mut last: HashMap<String, Op> = HashMap::new();
        let mut ops = 0;
        for body in &found.bodies {
            for op in decode_body(&bytes[body.clone()]).map_err(|d| self.damaged(&d))? {
                ops += 1;
                last.insert(op.key().to_owned(), op);
            }
        }
        let ops_to_apply: Vec<Op> = last.into_values().collect();
        self.apply(&ops_to_apply, &[])?;
        // Until the checkpoint has worked, this object takes the journal
        // as unseen: its next write replays it again.
        drop(file);
        self.checkpoint(env, seen.generation)?;
        if !found.bodies.is_empty() {
            env.ctx.info(&format!(
                "journal {}: applied again the {} writes ({ops} record writes) made before the \
                 machine restarted, and made them durable",
                self.path.display(),
                found.bodies.len()
            ));
        }
        Ok(())
    }

    /// Writes a new journal (header only, this boot, `generation`)
    /// durably in place of the old, and takes it as the current one.
    fn start(&mut self, env: &Env<'_>, generation: u64) -> Result<(), PluginError> {
        let header = encode_header(
            env.sealer,
            &Header {
                generation,
                boot: self.boot.unwrap_or_default(),
            },
        )?;
        let file = durable::create_durable(&self.root, JOURNAL_FILE, &header)
            .map_err(|e| self.io_error("write", &e))?;
        let meta = file.metadata().map_err(|e| self.io_error("read", &e))?;
        let seen = Seen {
            dev: meta.dev(),
            ino: meta.ino(),
            generation,
            len: HEADER_LEN as u64,
        };
        self.current = Some((file, seen));
        write_mark(env.mark, generation, seen.len);
        Ok(())
    }

    /// Makes every applied record file durable and starts a new journal
    /// after the one of `generation`. Every frame of the current journal
    /// must be applied.
    fn checkpoint(&mut self, env: &Env<'_>, generation: u64) -> Result<(), PluginError> {
        durable::sync_filesystem(&self.root).map_err(|e| {
            PluginError::unavailable(format!(
                "cannot flush the store's files to disk (syncfs on {}): {e}",
                self.root.display()
            ))
        })?;
        if self.crash_now(CrashPoint::MidCheckpoint) {
            die();
        }
        self.start(env, generation.wrapping_add(1))
    }

    /// Checkpoints if the journal holds any frame: before an operation
    /// outside the journal (quarantine) that a replay must not undo. Call
    /// [`Journal::recover`] first.
    pub(crate) fn checkpoint_if_written(&mut self, env: &Env<'_>) -> Result<(), PluginError> {
        match self.current {
            None => Err(PluginError::internal("journal checkpoint before recovery")),
            Some((_, seen)) if seen.len == HEADER_LEN as u64 => Ok(()),
            Some((_, seen)) => self.checkpoint(env, seen.generation),
        }
    }

    /// Applies `ops` to the record files, without syncing. `absent[i]`:
    /// the i-th op's record file was seen not to exist under this hold of
    /// the lock (a replay, which cannot know, passes none).
    fn apply(&mut self, ops: &[Op], absent: &[bool]) -> Result<(), PluginError> {
        for (i, op) in ops.iter().enumerate() {
            if i == ops.len() / 2 && self.crash_now(CrashPoint::MidApply) {
                die();
            }
            let key = op.key();
            let rel = path::record_path(key)?;
            let done = match op {
                Op::Put { record, .. } => durable::replace(
                    &mut self.spares,
                    &self.root,
                    &rel,
                    record,
                    absent.get(i).copied().unwrap_or(false),
                ),
                Op::Delete { .. } => {
                    durable::remove_unsynced(&mut self.spares, &self.root.join(&rel))
                }
            };
            done.map_err(|e| {
                PluginError::unavailable(format!(
                    "cannot write record {key:?}: {e}; file {}; the write is committed to the \
                     journal {} and is completed by the store's next write, or when it is next \
                     opened",
                    self.root.join(&rel).display(),
                    self.path.display()
                ))
            })?;
        }
        Ok(())
    }

    /// Commits `ops` (one frame, one `fdatasync`), applies them, and
    /// checkpoints if the journal has grown past the threshold. Call
    /// [`Journal::recover`] first, under the same hold of the lock;
    /// `absent[i]`: the i-th op's record was read as missing under it.
    pub(crate) fn write(
        &mut self,
        env: &Env<'_>,
        ops: &[Op],
        absent: &[bool],
    ) -> Result<(), PluginError> {
        let Some((_, seen)) = self.current else {
            return Err(PluginError::internal("journal write before recovery"));
        };
        let body = encode_body(ops);
        let frame = encode_frame(env.sealer, seen.generation, seen.len, &body)?;
        let torn = self.crash_now(CrashPoint::MidAppend);
        let Some((file, _)) = &self.current else {
            return Err(PluginError::internal("journal write before recovery"));
        };
        if torn {
            let _ = file.write_all_at(&frame[..frame.len() / 2], seen.len);
            die();
        }
        if let Err(e) = file
            .write_all_at(&frame, seen.len)
            .and_then(|()| file.sync_data())
        {
            // Take the frame back, so no later recovery applies a write
            // reported as failed.
            let outcome = match file.set_len(seen.len).and_then(|()| file.sync_data()) {
                Ok(()) => "nothing was written",
                Err(_) => "the write may or may not take effect",
            };
            // What this object remembers stays as before the append: the
            // next recovery compares it with the file again.
            return Err(PluginError::unavailable(format!(
                "cannot append to the journal {}: {e}; {outcome}",
                self.path.display()
            )));
        }
        if self.crash_now(CrashPoint::AfterCommit) {
            die();
        }
        self.apply(ops, absent)?;
        let end = seen.len + frame.len() as u64;
        write_mark(env.mark, seen.generation, end);
        if let Some((_, s)) = &mut self.current {
            s.len = end;
        }
        if end >= self.checkpoint_bytes
            && let Err(e) = self.checkpoint(env, seen.generation)
        {
            env.ctx.warn(&format!(
                "journal checkpoint failed: {e}; the write itself is durable, and the \
                 checkpoint is tried again after the next write"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_seal::{MIN_RECORD_LEN, StoreKey};

    fn sealer() -> Sealer {
        Sealer::new(&StoreKey::generate().unwrap())
    }

    fn ops() -> Vec<Op> {
        vec![
            Op::Put {
                key: "devices/a".into(),
                record: b"KGSR sealed bytes".to_vec(),
            },
            Op::Delete {
                key: "devices/b".into(),
            },
            Op::Put {
                key: "x".into(),
                record: Vec::new(),
            },
        ]
    }

    /// Frames of `bodies` written one after the other from `base`.
    fn frames(s: &Sealer, generation: u64, base: u64, bodies: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut starts = Vec::new();
        for body in bodies {
            starts.push(out.len());
            out.extend(encode_frame(s, generation, base + out.len() as u64, body).unwrap());
        }
        (out, starts)
    }

    #[test]
    fn bodies_round_trip_and_their_length_is_what_the_size_check_counts() {
        let ops = ops();
        let body = encode_body(&ops);
        assert_eq!(decode_body(&body).unwrap(), ops);
        let counted = BODY_PREFIX_LEN
            + op_len("devices/a".len(), Some(17))
            + op_len("devices/b".len(), None)
            + op_len(1, Some(0));
        assert_eq!(body.len(), counted);
        // The size check counts a put's record as MIN_RECORD_LEN + value.
        let record = sealer().seal_record("k", 1, &[7u8; 100]).unwrap();
        assert_eq!(record.len(), MIN_RECORD_LEN + 100);
        assert_eq!(decode_body(&encode_body(&[])).unwrap(), vec![]);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let body = encode_body(&ops());
        for cut in 0..body.len() {
            assert!(decode_body(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(
            decode_body(&longer)
                .unwrap_err()
                .contains("after its last op")
        );
        let mut kind = body.clone();
        kind[4] = 9;
        assert!(
            decode_body(&kind)
                .unwrap_err()
                .contains("unknown op kind 9")
        );
        let bad_key = encode_body(&[Op::Delete {
            key: "../escape".into(),
        }]);
        assert!(decode_body(&bad_key).unwrap_err().contains("not valid"));
        let mut not_utf8 = encode_body(&[Op::Delete { key: "ab".into() }]);
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xFF;
        assert!(decode_body(&not_utf8).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn headers_authenticate_with_the_key_only() {
        let s = sealer();
        let header = Header {
            generation: 0x0102_0304_0506_0708,
            boot: [0xAB; BOOT_ID_LEN],
        };
        let bytes = encode_header(&s, &header).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(&bytes[..4], b"KGSJ");
        assert_eq!(decode_header(&s, &bytes).unwrap(), header);
        // Trailing frames do not matter to the header.
        let mut longer = bytes.clone();
        longer.extend_from_slice(b"frames");
        assert_eq!(decode_header(&s, &longer).unwrap(), header);
        assert!(
            decode_header(&sealer(), &bytes)
                .unwrap_err()
                .contains("another store")
        );
        for i in 5..HEADER_LEN {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode_header(&s, &bad).is_err(), "byte {i}");
        }
        let mut magic = bytes.clone();
        magic[0] = b'X';
        assert!(
            decode_header(&s, &magic)
                .unwrap_err()
                .contains("not a journal")
        );
        let mut version = bytes.clone();
        version[4] = 2;
        assert!(
            decode_header(&s, &version)
                .unwrap_err()
                .contains("version 2")
        );
        assert!(
            decode_header(&s, &bytes[..HEADER_LEN - 1])
                .unwrap_err()
                .contains("truncated")
        );
        assert!(decode_header(&s, &[]).unwrap_err().contains("truncated"));
    }

    #[test]
    fn a_tail_too_short_for_nonce_and_tag_is_torn_whatever_its_length_field_says() {
        // Found by the `store_fs_journal` fuzz target: a prefix naming an
        // empty body, followed by fewer bytes than a nonce and tag, made
        // recovery index past the end.
        let s = sealer();
        for n in [0u32, 1, 40] {
            for short in 0..NONCE_LEN + TAG_LEN {
                let mut bytes = Vec::new();
                bytes.extend_from_slice(FRAME_MAGIC);
                bytes.push(FORMAT_VERSION);
                bytes.extend_from_slice(&7u64.to_be_bytes());
                bytes.extend_from_slice(&48u64.to_be_bytes());
                bytes.extend_from_slice(&n.to_be_bytes());
                bytes.resize(FRAME_PREFIX_LEN + short, 0x2a);
                let found = scan(&s, 7, 48, &bytes).unwrap();
                assert!(
                    found.bodies.is_empty() && found.torn,
                    "n {n}, {short} bytes"
                );
            }
        }
    }

    #[test]
    fn a_frame_authenticates_only_in_its_journal_at_its_place() {
        let s = sealer();
        let body = encode_body(&ops());
        let frame = encode_frame(&s, 7, 57, &body).unwrap();
        assert_eq!(frame.len(), FRAME_OVERHEAD + body.len());
        let end = frame.len();
        assert_eq!(
            check_frame(&s, 7, 57, &frame, 0),
            Some((FRAME_PREFIX_LEN..FRAME_PREFIX_LEN + body.len(), end))
        );
        assert_eq!(check_frame(&s, 8, 57, &frame, 0), None, "other generation");
        assert_eq!(check_frame(&s, 7, 58, &frame, 0), None, "other offset");
        assert_eq!(check_frame(&sealer(), 7, 57, &frame, 0), None, "other key");
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x10;
            assert_eq!(check_frame(&s, 7, 57, &bad, 0), None, "byte {i}");
        }
        assert_eq!(check_frame(&s, 7, 57, &frame[..end - 1], 0), None);
        // An authentic frame of another format version is not read as this
        // one (a later version written with the same key).
        let mut future = frame[..FRAME_PREFIX_LEN + body.len()].to_vec();
        future[4] = 2;
        let (nonce, tag) = s.authenticate(&future).unwrap();
        future.extend_from_slice(&nonce);
        future.extend_from_slice(&tag);
        assert_eq!(check_frame(&s, 7, 57, &future, 0), None, "version 2");
        // A frame claiming a body longer than what follows is not read.
        let mut huge = frame.clone();
        huge[21..25].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(check_frame(&s, 7, 57, &huge, 0), None);
    }

    #[test]
    fn a_scan_finds_every_frame_in_order() {
        let s = sealer();
        let (bytes, starts) = frames(&s, 3, 100, &[b"one", b"two", b"three"]);
        let found = scan(&s, 3, 100, &bytes).unwrap();
        assert!(!found.torn);
        assert_eq!(found.end, bytes.len());
        let bodies: Vec<&[u8]> = found.bodies.iter().map(|r| &bytes[r.clone()]).collect();
        assert_eq!(bodies, [&b"one"[..], b"two", b"three"]);
        assert_eq!(found.bodies[1].start, starts[1] + FRAME_PREFIX_LEN);
        assert_eq!(
            scan(&s, 3, 100, &[]).unwrap(),
            Scan {
                bodies: vec![],
                end: 0,
                torn: false
            }
        );
    }

    #[test]
    fn a_torn_last_frame_is_a_tail_to_cut() {
        let s = sealer();
        let (bytes, starts) = frames(&s, 3, 100, &[b"one", b"two", b"three"]);
        for cut in starts[2] + 1..bytes.len() {
            let found = scan(&s, 3, 100, &bytes[..cut]).unwrap();
            assert!(found.torn, "cut at {cut}");
            assert_eq!(found.end, starts[2]);
            assert_eq!(found.bodies.len(), 2);
        }
        // A last frame complete in length but not authentic (e.g. zeros or
        // garbage after a power loss), or zeros past the end.
        let mut garbage = bytes.clone();
        garbage[starts[2] + 30] ^= 1;
        let found = scan(&s, 3, 100, &garbage).unwrap();
        assert!(found.torn);
        assert_eq!((found.end, found.bodies.len()), (starts[2], 2));
        // The torn tail holds the frame magic more than once, none of them
        // a frame (a record's bytes may hold anything).
        let mut magic = bytes[..starts[2] + 40].to_vec();
        magic.extend_from_slice(b"KGJF..KGJFKGJF....");
        let found = scan(&s, 3, 100, &magic).unwrap();
        assert!(found.torn);
        assert_eq!((found.end, found.bodies.len()), (starts[2], 2));
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0u8; 4096]);
        let found = scan(&s, 3, 100, &zeros).unwrap();
        assert!(found.torn);
        assert_eq!((found.end, found.bodies.len()), (bytes.len(), 3));
    }

    #[test]
    fn a_bad_frame_followed_by_a_valid_one_is_damage() {
        let s = sealer();
        let (bytes, starts) = frames(&s, 3, 100, &[b"one", b"two", b"three"]);
        // A flipped body byte, and a flipped length (which a scan could not
        // step over): both are found, with the valid frame after them.
        for at in [starts[1] + FRAME_PREFIX_LEN + 1, starts[1] + 22] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            let err = scan(&s, 3, 100, &bad).unwrap_err();
            assert!(
                err.contains(&format!("offset {}", 100 + starts[1]))
                    && err.contains(&format!("offset {}", 100 + starts[2])),
                "{err}"
            );
        }
        // The first frame damaged: the two after it are found.
        let mut bad = bytes.clone();
        bad[starts[0]] = b'X';
        assert!(scan(&s, 3, 100, &bad).is_err());
    }

    #[test]
    fn boot_ids_parse_as_the_kernel_prints_them() {
        let id = parse_boot_id("4f26713e-ac10-45fb-8d79-b318446d3dd1\n").unwrap();
        assert_eq!(id[0], 0x4f);
        assert_eq!(id[15], 0xd1);
        assert_eq!(parse_boot_id("4F26713EAC1045FB8D79B318446D3DD1"), Some(id));
        assert_eq!(parse_boot_id("4f26713e-ac10-45fb-8d79-b318446d3d"), None);
        assert_eq!(
            parse_boot_id("4f26713e-ac10-45fb-8d79-b318446d3dd1ff"),
            None
        );
        assert_eq!(parse_boot_id("xf26713e-ac10-45fb-8d79-b318446d3dd1"), None);
        assert_eq!(parse_boot_id(""), None);
        if let Ok(text) = fs::read_to_string(BOOT_ID_FILE) {
            assert_eq!(kernel_boot_id(), parse_boot_id(&text));
            assert!(kernel_boot_id().is_some(), "{text:?}");
        }
    }

    #[test]
    fn the_mark_round_trips_and_a_foreign_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("lock"))
            .unwrap();
        assert_eq!(read_mark(&file), None, "empty");
        write_mark(&file, 0x1122_3344_5566_7788, 0x99AA_BBCC_DDEE_FF00);
        assert_eq!(
            read_mark(&file),
            Some((0x1122_3344_5566_7788, 0x99AA_BBCC_DDEE_FF00))
        );
        file.write_all_at(b"XXXX", 0).unwrap();
        assert_eq!(read_mark(&file), None, "no magic");
    }
}

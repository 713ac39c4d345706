//! The write-ahead journal, in one process: what a power loss can do to
//! files renamed without a sync is undone from the journal on the next
//! boot; within a boot only the last frame is applied again, and only when
//! its writer did not finish; torn tails are cut off; damage and foreign
//! journals refuse writes; checkpoints empty the journal; a quarantine is
//! not undone by a replay.
//!
//! A "boot" here is the boot id the store is told (a doc-hidden setting),
//! so a restart of the machine is simulated by reopening with another one
//! after doing to the files what a power loss could.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use keygate_sdk::{BatchOp, BatchStore, ErrorKind, LogLevel, PluginContext, SecretStore, Version};
use keygate_store_fs::{FsStore, Tuning};

mod common;

const BOOT_A: [u8; 16] = [0xA1; 16];
const BOOT_B: [u8; 16] = [0xB2; 16];
const HEADER_LEN: u64 = 57;

fn open_tuned(state: &Path, tuning: Tuning) -> (FsStore, common::Lines) {
    let lines = common::Lines::default();
    let ctx = PluginContext::new("filesystem", state, state, lines.clone());
    let store = FsStore::open_tuned("", ctx, &tuning).expect("open the store");
    (store, lines)
}

/// Opens the store in `state` as if in the boot `boot`.
fn open_in(state: &Path, boot: [u8; 16]) -> (FsStore, common::Lines) {
    open_tuned(
        state,
        Tuning {
            boot_id: Some(boot),
            ..Tuning::default()
        },
    )
}

fn journal(store: &FsStore) -> PathBuf {
    store.root().join(".journal")
}

fn journal_len(store: &FsStore) -> u64 {
    std::fs::metadata(journal(store)).unwrap().len()
}

/// The journal header's generation and boot id.
fn header(store: &FsStore) -> (u64, Vec<u8>) {
    let bytes = std::fs::read(journal(store)).unwrap();
    (
        u64::from_be_bytes(bytes[5..13].try_into().unwrap()),
        bytes[13..29].to_vec(),
    )
}

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// What a writer that died between its commit and its apply leaves: no
/// "applied" mark for its frame.
fn clear_mark(store: &FsStore) {
    std::fs::write(store.root().join(".lock"), [0u8; 20]).unwrap();
}

fn put(key: &str, value: &[u8], expected: Option<Version>) -> BatchOp {
    BatchOp::Put {
        key: key.to_owned(),
        value: value.to_vec(),
        expected,
    }
}

/// Every record: key, value, version.
fn state(store: &FsStore) -> Vec<(String, Vec<u8>, Version)> {
    store
        .list("")
        .unwrap()
        .into_iter()
        .map(|key| {
            let v = store.get(&key).unwrap().unwrap();
            (key, v.value, v.version)
        })
        .collect()
}

fn all_messages(lines: &common::Lines, level: LogLevel) -> Vec<String> {
    lines
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, _)| *l == level)
        .map(|(_, m)| m.clone())
        .collect()
}

#[test]
fn a_power_loss_is_undone_from_the_journal_on_the_next_boot() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), BOOT_A);
    let v = store
        .apply_batch(&[
            put("p/a", b"a1", None),
            put("p/b", b"b1", None),
            put("p/c", b"c1", None),
        ])
        .unwrap();
    let file = |key: &str| store.record_file(key).unwrap();
    let b_before_delete = std::fs::read(file("p/b")).unwrap();
    let c_first = std::fs::read(file("p/c")).unwrap();
    store
        .apply_batch(&[
            put("p/a", b"a2", v[0]),
            BatchOp::Delete {
                key: "p/b".into(),
                expected: v[1].unwrap(),
            },
            put("q/new/deep", b"d1", None),
        ])
        .unwrap();
    store.put("p/c", b"c2", v[2]).unwrap();
    store.put("p/e", b"e1", None).unwrap();
    let expected = state(&store);
    let (generation, _) = header(&store);
    let (a, c, d, e, b) = (
        file("p/a"),
        file("p/c"),
        file("q/new/deep"),
        file("p/e"),
        file("p/b"),
    );
    drop(store);

    // What the disk may hold after a power loss, since none of these
    // renames and unlinks was synced: a renamed file empty, an older
    // file back, a new file (and its folders) gone, a half-written file,
    // a deleted file back.
    std::fs::write(&a, b"").unwrap();
    std::fs::write(&c, &c_first).unwrap();
    std::fs::remove_dir_all(dir.path().join("store/q")).unwrap();
    let half = std::fs::read(&e).unwrap();
    std::fs::write(&e, &half[..half.len() / 2]).unwrap();
    std::fs::write(&b, &b_before_delete).unwrap();
    assert!(!d.exists());

    let (store, lines) = open_in(dir.path(), BOOT_B);
    assert_eq!(state(&store), expected, "every acknowledged write is back");
    // ... and the journal was checkpointed into a journal of this boot.
    assert_eq!(journal_len(&store), HEADER_LEN);
    assert_eq!(header(&store), (generation + 1, BOOT_B.to_vec()));
    assert!(
        all_messages(&lines, LogLevel::Info)
            .iter()
            .any(|m| m.contains("4 writes (8 record writes)")),
        "{:?}",
        lines.0.lock().unwrap()
    );
    // The store carries on from there.
    let v = store.get("p/a").unwrap().unwrap().version;
    store.put("p/a", b"a3", Some(v)).unwrap();
}

#[test]
fn within_a_boot_only_an_unfinished_last_frame_is_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), BOOT_A);
    store.put("s/x", b"x", None).unwrap();
    let vy = store.put("s/y", b"y", None).unwrap();
    let (x, y) = (
        store.record_file("s/x").unwrap(),
        store.record_file("s/y").unwrap(),
    );
    drop(store);

    // The last writer finished (its mark is set): reopening applies
    // nothing again.
    let (x_ino, y_ino) = (ino(&x), ino(&y));
    let (store, _) = open_in(dir.path(), BOOT_A);
    assert_eq!((ino(&x), ino(&y)), (x_ino, y_ino));
    drop(store);

    // The last writer died after its commit, before renaming its file:
    // the last frame is applied again, and only it.
    std::fs::remove_file(&y).unwrap();
    clear_mark_in(dir.path());
    let (store, _) = open_in(dir.path(), BOOT_A);
    let got = store.get("s/y").unwrap().expect("s/y is back");
    assert_eq!((got.value.as_slice(), got.version), (&b"y"[..], vy));
    assert_eq!(ino(&x), x_ino, "an earlier frame was applied again");
}

fn clear_mark_in(state: &Path) {
    std::fs::write(state.join("store/.lock"), [0u8; 20]).unwrap();
}

#[test]
fn a_store_already_open_completes_a_write_another_object_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = open_in(dir.path(), BOOT_A);
    let (b, _) = open_in(dir.path(), BOOT_A);
    a.put("o/1", b"1", None).unwrap();
    let one = ino(&a.record_file("o/1").unwrap());
    // b catches up on a's frame without writing o/1 again: the mark says
    // it was applied.
    b.put("o/2", b"2", None).unwrap();
    assert_eq!(ino(&a.record_file("o/1").unwrap()), one);

    let v = a
        .apply_batch(&[put("o/3", b"3", None), put("o/4", b"4", None)])
        .unwrap();
    // As if a died after its commit: no files, no mark.
    std::fs::remove_file(a.record_file("o/3").unwrap()).unwrap();
    std::fs::remove_file(a.record_file("o/4").unwrap()).unwrap();
    clear_mark(&a);
    drop(a);
    assert_eq!(b.get("o/3").unwrap(), None, "readers do not recover");
    b.put("o/5", b"5", None).unwrap();
    for (key, value, version) in [("o/3", b"3", v[0]), ("o/4", b"4", v[1])] {
        let got = b.get(key).unwrap().expect("completed by b's write");
        assert_eq!(
            (got.value.as_slice(), Some(got.version)),
            (&value[..], version)
        );
    }
}

#[test]
fn a_torn_tail_is_cut_off_with_a_warning_and_earlier_frames_stay() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), BOOT_A);
    let va = store.put("t/a", b"a", None).unwrap();
    let good = std::fs::read(journal(&store)).unwrap();
    store.put("t/b", b"b", None).unwrap();
    let full = std::fs::read(journal(&store)).unwrap();
    let b_file = store.record_file("t/b").unwrap();
    drop(store);

    // A writer died half-way through appending t/b's frame: it never
    // committed, so its file was never written.
    let torn = &full[..good.len() + (full.len() - good.len()) / 2];
    std::fs::write(dir.path().join("store/.journal"), torn).unwrap();
    std::fs::remove_file(&b_file).unwrap();
    let (store, lines) = open_in(dir.path(), BOOT_A);
    assert_eq!(std::fs::read(journal(&store)).unwrap(), good, "cut off");
    let warnings = lines.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("dropped") && w.contains(&journal(&store).display().to_string())),
        "{warnings:?}"
    );
    assert_eq!(store.get("t/b").unwrap(), None);
    assert_eq!(store.get("t/a").unwrap().unwrap().version, va);

    // A store object already open notices one on its next write too.
    let mut appended = std::fs::read(journal(&store)).unwrap();
    appended.extend_from_slice(b"KGJF\x01 half a frame");
    std::fs::write(journal(&store), &appended).unwrap();
    store.put("t/c", b"c", None).unwrap();
    assert!(lines.warnings().len() > warnings.len());
    drop(store);
    let (store, lines) = open_in(dir.path(), BOOT_A);
    assert!(lines.warnings().is_empty(), "{:?}", lines.warnings());
    assert_eq!(store.list("").unwrap(), ["t/a", "t/c"]);
}

#[test]
fn a_damaged_frame_in_the_middle_refuses_writes_naming_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), BOOT_A);
    store.put("m/a", b"a", None).unwrap();
    let second = journal_len(&store);
    store.put("m/b", b"b", None).unwrap();
    store.put("m/c", b"c", None).unwrap();
    let path = journal(&store);
    drop(store);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[second as usize + 30] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    // The store opens (for reading), says why at error level, and refuses
    // every write without touching the journal.
    let (store, lines) = open_in(dir.path(), BOOT_A);
    let errors = all_messages(&lines, LogLevel::Error);
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&path.display().to_string())),
        "{errors:?}"
    );
    assert_eq!(store.get("m/a").unwrap().unwrap().value, b"a");
    let err = store.put("m/d", b"d", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(
        err.message().contains(&path.display().to_string())
            && err.message().contains(&format!("offset {second}")),
        "{err}"
    );
    let v = store.get("m/a").unwrap().unwrap().version;
    assert_eq!(
        store.delete("m/a", v).unwrap_err().kind(),
        ErrorKind::Internal
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the journal is kept");
    assert_eq!(store.get("m/d").unwrap(), None);
}

#[test]
fn a_journal_of_another_store_is_refused() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let (store, _) = open_in(ours.path(), BOOT_A);
    store.put("f/a", b"a", None).unwrap();
    let (other, _) = open_in(theirs.path(), BOOT_A);
    other.put("f/a", b"theirs", None).unwrap();
    std::fs::copy(journal(&other), journal(&store)).unwrap();
    drop(store);

    let (store, _) = open_in(ours.path(), BOOT_A);
    let err = store.put("f/b", b"b", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(
        err.message().contains("another store")
            && err
                .message()
                .contains(&journal(&store).display().to_string()),
        "{err}"
    );
    assert_eq!(store.get("f/a").unwrap().unwrap().value, b"a");
    // Moved aside, a new journal is started and writes work again.
    std::fs::rename(journal(&store), ours.path().join("journal.bad")).unwrap();
    store.put("f/b", b"b", None).unwrap();
    assert_eq!(journal_len(&store), HEADER_LEN + 53 + 4 + 3 + 3 + 4 + 42);
}

#[test]
fn a_removed_journal_is_started_again_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (store, lines) = open_in(dir.path(), BOOT_A);
    store.put("r/a", b"a", None).unwrap();
    std::fs::remove_file(journal(&store)).unwrap();
    store.put("r/b", b"b", None).unwrap();
    assert!(
        lines.warnings().iter().any(|w| w.contains("was removed")),
        "{:?}",
        lines.warnings()
    );
    assert_eq!(store.list("").unwrap(), ["r/a", "r/b"]);
    // A store from before the journal (no journal at all) opens quietly.
    drop(store);
    std::fs::remove_file(dir.path().join("store/.journal")).unwrap();
    let (store, lines) = open_in(dir.path(), BOOT_A);
    assert!(lines.warnings().is_empty(), "{:?}", lines.warnings());
    assert_eq!(journal_len(&store), HEADER_LEN);
    assert_eq!(store.list("").unwrap(), ["r/a", "r/b"]);
}

#[test]
fn a_checkpoint_empties_the_journal_past_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        boot_id: Some(BOOT_A),
        checkpoint_bytes: Some(8192),
        ..Tuning::default()
    };
    let (store, _) = open_tuned(dir.path(), tuning.clone());
    // Another store object, open throughout, follows the new journals.
    let (other, _) = open_tuned(dir.path(), tuning);
    let (generation, _) = header(&store);
    let value = [0x5Au8; 2000];
    let mut lens = Vec::new();
    for i in 0..9 {
        store.put(&format!("c/{i}"), &value, None).unwrap();
        lens.push(journal_len(&store));
    }
    // Four frames of 2,104 bytes pass 8,192: the fourth write checkpoints.
    assert_eq!(lens[3], HEADER_LEN, "{lens:?}");
    assert_eq!(lens[7], HEADER_LEN, "{lens:?}");
    assert!(lens[2] > 6000 && lens[8] > 2000, "{lens:?}");
    assert_eq!(header(&store), (generation + 2, BOOT_A.to_vec()));
    other.put("c/other", b"o", None).unwrap();
    assert_eq!(store.get("c/other").unwrap().unwrap().value, b"o");
    // Everything is there, also after a restart of the machine.
    let expected = state(&store);
    drop((store, other));
    let (store, _) = open_in(dir.path(), BOOT_B);
    assert_eq!(state(&store), expected);
    assert_eq!(expected.len(), 10);
}

#[test]
fn a_quarantine_is_not_undone_by_a_replay_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), BOOT_A);
    store.put("q/bad", b"soon damaged", None).unwrap();
    store.put("q/worse", b"soon damaged too", None).unwrap();
    store.put("q/good", b"fine", None).unwrap();
    for key in ["q/bad", "q/worse"] {
        std::fs::write(store.record_file(key).unwrap(), b"damaged").unwrap();
    }
    let (generation, _) = header(&store);
    store.quarantine("q/bad").unwrap();
    assert_eq!(journal_len(&store), HEADER_LEN, "checkpointed first");
    assert_eq!(header(&store).0, generation + 1);
    // With nothing in the journal, there is nothing to checkpoint.
    store.quarantine("q/worse").unwrap();
    assert_eq!(header(&store).0, generation + 1);
    drop(store);
    let (store, _) = open_in(dir.path(), BOOT_B);
    assert_eq!(store.get("q/bad").unwrap(), None);
    assert_eq!(store.list("").unwrap(), ["q/good"]);
}

#[test]
fn a_store_object_follows_a_journal_replaced_by_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        boot_id: Some(BOOT_A),
        checkpoint_bytes: Some(4096),
        ..Tuning::default()
    };
    let (store, _) = open_tuned(dir.path(), tuning.clone());
    let (other, _) = open_tuned(dir.path(), tuning);
    // Journal 1: k = v1, then a pad that passes the threshold.
    let v = store.put("j/k", &[1u8; 2000], None).unwrap();
    let first_frame_end = journal_len(&store);
    store.put("j/pad", &[0u8; 2000], None).unwrap();
    assert_eq!(journal_len(&store), HEADER_LEN, "checkpointed");
    // Journal 2: k = v2, in a frame of the same size at the same place.
    store.put("j/k", &[2u8; 2000], Some(v)).unwrap();
    assert_eq!(journal_len(&store), first_frame_end);
    // `other` still holds journal 1 open; it must read the new one, not
    // take the old one's frames for new ones.
    other.put("j/other", b"o", None).unwrap();
    assert_eq!(store.get("j/k").unwrap().unwrap().value, [2u8; 2000]);
}

#[test]
fn a_journal_that_cannot_be_read_is_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), BOOT_A);
    store.put("l/a", b"a", None).unwrap();
    // A symlink to itself: every look at it fails (not "not found").
    let path = journal(&store);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(".journal", &path).unwrap();
    let err = store.put("l/b", b"b", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains(&path.display().to_string()), "{err}");
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the journal was replaced"
    );
    assert_eq!(store.get("l/b").unwrap(), None);
}

#[test]
fn a_write_that_could_not_be_applied_is_completed_by_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open_in(dir.path(), BOOT_A);
    // A foreign file where the folder of "blocked/x" must go: the key
    // reads as absent, the commit works, renaming into the folder fails.
    let blocker = store.root().join("blocked");
    std::fs::write(&blocker, b"in the way").unwrap();
    let err = store.put("blocked/x", b"x", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("committed to the journal"), "{err}");
    std::fs::remove_file(&blocker).unwrap();
    store.put("other", b"o", None).unwrap();
    assert_eq!(store.get("blocked/x").unwrap().unwrap().value, b"x");
}

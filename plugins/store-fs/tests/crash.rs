//! Batches survive crashes all or nothing, in real processes: a child
//! applies batches that write one counter value to `KEYS` keys (and create
//! and delete others) and dies by SIGKILL, at a random moment or at a
//! chosen point of the write path (mid-append, after the commit, mid-apply,
//! mid-checkpoint). After each death every batch is whole, no acknowledged
//! batch is lost, and a store object opened before the death (in this
//! process) completes a committed batch on its next write, as a freshly
//! opened one does on open.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keygate_sdk::{BatchOp, BatchStore, PluginContext, SecretStore, StorePlugin, Version};
use keygate_store_fs::{CrashPoint, FsStore, Tuning};

mod common;

/// Set in a child: the state folder.
const STATE_VAR: &str = "KEYGATE_STORE_FS_CRASH_STATE";
/// Set in a child: where it dies (`random` for nowhere: it is killed).
const POINT_VAR: &str = "KEYGATE_STORE_FS_CRASH_POINT";
/// Set in a child: the how-many-th time at that point it dies.
const AFTER_VAR: &str = "KEYGATE_STORE_FS_CRASH_AFTER";

/// The keys that always hold the same counter value.
const KEYS: usize = 8;
/// A small threshold, so children checkpoint every few batches.
const CHECKPOINT_BYTES: u64 = 48 * 1024;

fn counter_key(j: usize) -> String {
    format!("c/k{j}")
}

fn point_named(name: &str) -> Option<CrashPoint> {
    match name {
        "MidAppend" => Some(CrashPoint::MidAppend),
        "AfterCommit" => Some(CrashPoint::AfterCommit),
        "MidApply" => Some(CrashPoint::MidApply),
        "MidCheckpoint" => Some(CrashPoint::MidCheckpoint),
        _ => None,
    }
}

fn value_of(n: u64) -> Vec<u8> {
    // 1 KiB, so batches are frames of about 9 KiB.
    let mut v = n.to_le_bytes().to_vec();
    v.resize(1024, (n % 251) as u8);
    v
}

fn counter_of(value: &[u8]) -> u64 {
    assert_eq!(value.len(), 1024, "a counter value of the wrong size");
    let n = u64::from_le_bytes(value[..8].try_into().unwrap());
    assert_eq!(value, value_of(n), "a counter value is garbled");
    n
}

/// The counter (every counter key must hold the same one: 0 before the
/// first batch) after checking the other keys agree with it.
fn checked_counter(store: &dyn SecretStore) -> u64 {
    let values: Vec<Option<(u64, Version)>> = (0..KEYS)
        .map(|j| {
            store
                .get(&counter_key(j))
                .unwrap_or_else(|e| panic!("{}: {e}", counter_key(j)))
                .map(|v| (counter_of(&v.value), v.version))
        })
        .collect();
    let n = values[0].map_or(0, |(n, _)| n);
    for (j, v) in values.iter().enumerate() {
        assert_eq!(
            v.map_or(0, |(n, _)| n),
            n,
            "half a batch: key {j} disagrees with key 0 ({values:?})"
        );
    }
    let mut expected: Vec<String> = Vec::new();
    if n > 0 {
        expected.extend((0..KEYS).map(counter_key));
        expected.push(format!("c/gen-{n:06}"));
    }
    if n % 2 == 1 {
        expected.push("c/odd".into());
    }
    expected.sort();
    assert_eq!(
        store.list("c/").unwrap(),
        expected,
        "the keys created and deleted with counter {n}"
    );
    n
}

/// The batch that moves the counter from its current value `n` to n + 1.
fn next_batch(store: &dyn SecretStore) -> (u64, Vec<BatchOp>) {
    let version = |key: &str| store.get(key).unwrap().map(|v| v.version);
    let n = checked_counter(store);
    let mut ops: Vec<BatchOp> = (0..KEYS)
        .map(|j| BatchOp::Put {
            key: counter_key(j),
            value: value_of(n + 1),
            expected: version(&counter_key(j)),
        })
        .collect();
    ops.push(BatchOp::Put {
        key: format!("c/gen-{:06}", n + 1),
        value: b"gen".to_vec(),
        expected: None,
    });
    if n > 0 {
        let old = format!("c/gen-{n:06}");
        ops.push(BatchOp::Delete {
            expected: version(&old).unwrap(),
            key: old,
        });
    }
    if n % 2 == 1 {
        ops.push(BatchOp::Delete {
            key: "c/odd".into(),
            expected: version("c/odd").unwrap(),
        });
    } else {
        ops.push(BatchOp::Put {
            key: "c/odd".into(),
            value: b"odd".to_vec(),
            expected: None,
        });
    }
    (n + 1, ops)
}

/// The child: applies batches until it dies, printing `ACKED <n>` once the
/// batch to counter n has returned `Ok`. Does nothing in a normal run.
#[test]
fn crash_child() {
    let Some(state) = std::env::var_os(STATE_VAR) else {
        return;
    };
    let point = point_named(&std::env::var(POINT_VAR).unwrap());
    let after: u64 = std::env::var(AFTER_VAR).unwrap().parse().unwrap();
    let tuning = Tuning {
        checkpoint_bytes: Some(CHECKPOINT_BYTES),
        crash: point.map(|p| (p, after)),
        ..Tuning::default()
    };
    let store = FsStore::open_tuned("", common::ctx(Path::new(&state)), &tuning)
        .expect("the child opens the store");
    loop {
        let (n, ops) = next_batch(&store);
        store.apply_batch(&ops).expect("a batch");
        // On a line of its own: libtest may have written "test crash_child
        // ... " before it.
        println!("\nACKED {n}");
    }
}

/// Runs a child that dies at `point` (`None`: killed after a random
/// delay); returns the last counter it reported done.
fn run_child(state: &Path, point: Option<(CrashPoint, u64)>, delay: Duration) -> Option<u64> {
    let (name, after) = match point {
        Some((p, n)) => (format!("{p:?}"), n),
        None => ("random".into(), 0),
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(STATE_VAR, state)
        .env(POINT_VAR, &name)
        .env(AFTER_VAR, after.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if point.is_none() && started.elapsed() >= delay {
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        if started.elapsed() >= Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("the child did not die at {name} ({after}) within 30 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the child {name} ({after}) did not die by SIGKILL: {status:?}\n{out}\n{err}"
    );
    out.lines()
        .filter_map(|l| l.strip_prefix("ACKED "))
        .map(|n| n.parse().unwrap())
        .max()
}

fn random_below(n: u64) -> u64 {
    keygate_seal::random_u64().unwrap() % n
}

#[test]
fn batches_killed_anywhere_are_all_or_nothing_and_none_acknowledged_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    // Open before any child runs, and kept open throughout.
    let early_lines = common::Lines::default();
    let early = FsStore::from_config(
        "",
        PluginContext::new("filesystem", dir.path(), dir.path(), early_lines.clone()),
    )
    .unwrap();
    let mut counter = 0;
    let points = [
        None,
        Some(CrashPoint::MidAppend),
        Some(CrashPoint::AfterCommit),
        Some(CrashPoint::MidApply),
        Some(CrashPoint::MidCheckpoint),
    ];
    for round in 0..25 {
        let point = points[round % points.len()].map(|p| {
            let after = match p {
                CrashPoint::MidCheckpoint => 1 + random_below(2),
                _ => 1 + random_below(6),
            };
            (p, after)
        });
        let delay = Duration::from_millis(30 + random_below(150));
        let acked = run_child(dir.path(), point, delay);
        let before = acked.unwrap_or(counter);
        let allowed: &[u64] = match point.map(|(p, _)| p) {
            // Torn mid-append: never committed.
            Some(CrashPoint::MidAppend) => &[before],
            // Committed, not yet reported: completed by recovery.
            Some(_) => &[before + 1],
            None => &[before, before + 1],
        };
        // The object opened early completes a committed batch on its next
        // write (even rounds), and so does a fresh open (odd rounds, and
        // after the early object in even ones).
        let fresh_first = round % 2 == 1;
        let mut seen = Vec::new();
        let fresh_lines = common::Lines::default();
        let dropped_before = early_lines.warnings().len();
        for fresh in [fresh_first, !fresh_first] {
            let n = if fresh {
                let ctx =
                    PluginContext::new("filesystem", dir.path(), dir.path(), fresh_lines.clone());
                checked_counter(&FsStore::from_config("", ctx).unwrap())
            } else {
                let probe = early.get("probe").unwrap().map(|v| v.version);
                early.put("probe", b"p", probe).unwrap();
                checked_counter(&early)
            };
            seen.push(n);
        }
        assert_eq!(seen[0], seen[1]);
        if point.is_some_and(|(p, _)| p == CrashPoint::MidAppend) {
            // Whichever store recovered first cut off the half frame.
            let warnings = [
                &early_lines.warnings()[dropped_before..],
                &fresh_lines.warnings()[..],
            ]
            .concat();
            // About half a batch's frame (9 KiB) was cut off.
            let dropped: Vec<u64> = warnings
                .iter()
                .filter_map(|w| w.split("dropped ").nth(1)?.split(' ').next()?.parse().ok())
                .collect();
            assert!(
                matches!(dropped[..], [n] if (3000..6000).contains(&n)),
                "round {round}: no torn tail of half a frame after dying mid-append: \
                 {warnings:?}"
            );
        }
        assert!(
            allowed.contains(&seen[0]),
            "round {round}, {point:?}: counter {} after the child acknowledged {acked:?} \
             (from {counter}); expected one of {allowed:?}",
            seen[0]
        );
        if std::env::var_os("KEYGATE_STORE_FS_TEST_VERBOSE").is_some() {
            eprintln!(
                "round {round}: {point:?}: acked {acked:?}, counter {counter} -> {}",
                seen[0]
            );
        }
        counter = seen[0];
    }
    assert!(counter > 10, "the children made little progress: {counter}");

    // And a restart of the machine replays the journal to the same state.
    drop(early);
    let tuning = Tuning {
        boot_id: Some([0x5E; 16]),
        ..Tuning::default()
    };
    let store = FsStore::open_tuned("", common::ctx(dir.path()), &tuning).unwrap();
    assert_eq!(checked_counter(&store), counter);
}

#[test]
fn a_store_open_before_another_process_died_completes_its_committed_batch() {
    for point in [CrashPoint::AfterCommit, CrashPoint::MidApply] {
        let dir = tempfile::tempdir().unwrap();
        let early = common::fresh_in(dir.path());
        let (_, first) = next_batch(&early);
        early.apply_batch(&first).unwrap();
        assert_eq!(
            run_child(dir.path(), Some((point, 1)), Duration::ZERO),
            None
        );
        // Readers take no lock and recover nothing: the batch is not (or
        // not wholly) there yet.
        let values: Vec<u64> = (0..KEYS)
            .map(|j| counter_of(&early.get(&counter_key(j)).unwrap().unwrap().value))
            .collect();
        match point {
            CrashPoint::AfterCommit => assert_eq!(values, [1; KEYS]),
            // 11 ops (8 counters, a create, two deletes): the first 5 done.
            _ => assert_eq!(values, [2, 2, 2, 2, 2, 1, 1, 1], "half applied"),
        }
        early.put("probe", b"p", None).unwrap();
        assert_eq!(checked_counter(&early), 2, "{point:?}");
    }
}

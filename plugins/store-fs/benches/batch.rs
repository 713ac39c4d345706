//! What the journal buys: the durable time of one `apply_batch` of 1, 8,
//! 64 and 256 updates of 2 KiB records, against the same number of single
//! durable `put`s, and against the same number of file writes the way the
//! store made every write durable before the journal (temp file,
//! `fdatasync`, rename, fsync of the folder: two syncs each).
//!
//! Every measured write is the real durable path, checkpoints included:
//! the journal checkpoints (one `syncfs`) every 4 MiB, about every 1,900
//! records of 2 KiB, and those runs are part of the figures. The
//! pre-journal column is plain `std` file operations on files of the same
//! size in the same kind of folder (no lock, no read of the current record,
//! no sealing: those cost microseconds), so it is the floor of what the old
//! path cost.
//!
//! Criterion measures each case in turn; then, since a shared disk's
//! background load comes and goes, a summary measures batch and single
//! puts interleaved (rounds alternating, order swapped each round) and
//! prints medians per record.
//!
//! Run: `cargo bench -p keygate-store-fs --bench batch` (with
//! `KEYGATE_STORE_FS_BENCH_CHECKPOINT_MIB=16` for another checkpoint
//! threshold).

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_main};
use keygate_sdk::{BatchOp, BatchStore, SecretStore, Version};
use keygate_store_fs::FsStore;

const SIZES: [usize; 4] = [1, 8, 64, 256];
const VALUE_LEN: usize = 2048;
/// A sealed record's bytes besides its value.
const SEAL_OVERHEAD: usize = 41;

fn key(i: usize) -> String {
    format!("devices/{i:04}")
}

/// A store holding 256 records of 2 KiB, and their current versions.
struct Fixture {
    store: FsStore,
    versions: RefCell<Vec<Version>>,
    value: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        // The checkpoint threshold can be changed for a run, to compare.
        let tuning = keygate_store_fs::Tuning {
            checkpoint_bytes: std::env::var("KEYGATE_STORE_FS_BENCH_CHECKPOINT_MIB")
                .ok()
                .map(|mib| mib.parse::<u64>().expect("a number of MiB") << 20),
            ..Default::default()
        };
        let store = FsStore::open_tuned(
            "",
            keygate_sdk_testing::test_context("filesystem", dir.path()),
            &tuning,
        )
        .expect("open the store");
        let value = vec![0xA5u8; VALUE_LEN];
        let ops: Vec<BatchOp> = (0..256)
            .map(|i| BatchOp::Put {
                key: key(i),
                value: value.clone(),
                expected: None,
            })
            .collect();
        let versions = store
            .apply_batch(&ops)
            .expect("create the records")
            .into_iter()
            .map(|v| v.expect("a put's version"))
            .collect();
        Self {
            store,
            versions: RefCell::new(versions),
            value,
            _dir: dir,
        }
    }

    /// One durable batch updating the first `n` records; its time.
    fn batch(&self, n: usize) -> Duration {
        let mut versions = self.versions.borrow_mut();
        let ops: Vec<BatchOp> = (0..n)
            .map(|i| BatchOp::Put {
                key: key(i),
                value: self.value.clone(),
                expected: Some(versions[i]),
            })
            .collect();
        let start = Instant::now();
        let new = self.store.apply_batch(&ops).expect("durable batch");
        let took = start.elapsed();
        for (v, n) in versions.iter_mut().zip(new) {
            *v = n.expect("a put's version");
        }
        took
    }

    /// `n` durable single puts updating the first `n` records; their time.
    fn singles(&self, n: usize) -> Duration {
        let mut versions = self.versions.borrow_mut();
        let start = Instant::now();
        for (i, version) in versions.iter_mut().enumerate().take(n) {
            *version = self
                .store
                .put(&key(i), &self.value, Some(*version))
                .expect("durable put");
        }
        start.elapsed()
    }
}

/// The file writes the store made for each put before the journal: temp
/// file, fdatasync, rename over the record, fsync of the folder.
struct PreJournal {
    dir: PathBuf,
    bytes: Vec<u8>,
    _root: tempfile::TempDir,
}

impl PreJournal {
    fn new() -> Self {
        let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let dir = root.path().join("devices");
        std::fs::create_dir(&dir).expect("folder");
        let bytes = vec![0x5Au8; VALUE_LEN + SEAL_OVERHEAD];
        let this = Self {
            dir,
            bytes,
            _root: root,
        };
        this.writes(256);
        this
    }

    fn write_one(dir: &Path, i: usize, bytes: &[u8]) -> std::io::Result<()> {
        let temp = dir.join(format!(".tmp-{i}"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        drop(file);
        std::fs::rename(&temp, dir.join(format!("{i:04}.rec")))?;
        File::open(dir)?.sync_all()
    }

    fn writes(&self, n: usize) -> Duration {
        let start = Instant::now();
        for i in 0..n {
            Self::write_one(&self.dir, i, &self.bytes).expect("pre-journal write");
        }
        start.elapsed()
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn batches(c: &mut Criterion) {
    let fixture = Fixture::new();
    let old = PreJournal::new();
    let _ = std::process::Command::new("sync").status();

    let mut group = c.benchmark_group("durable_2KiB_updates");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    for n in SIZES {
        group.bench_function(format!("apply_batch_of_{n}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| fixture.batch(n)).sum());
        });
        group.bench_function(format!("{n}_single_puts"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| fixture.singles(n)).sum());
        });
        group.bench_function(format!("{n}_pre_journal_file_writes"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| old.writes(n)).sum());
        });
    }
    group.finish();

    // Interleaved: batch, singles and pre-journal writes take turns, so
    // background disk load weighs on all alike. Enough rounds for a few
    // checkpoints at every size.
    eprintln!("interleaved medians, per record (records/s), 2 KiB updates, checkpoints included:");
    for n in SIZES {
        let rounds = (4096 / n).clamp(12, 200);
        let (mut batch, mut single, mut pre) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let mut order: [u8; 3] = [0, 1, 2];
            order.rotate_left(round % 3);
            for which in order {
                match which {
                    0 => batch.push(fixture.batch(n).as_secs_f64() / n as f64),
                    1 => single.push(fixture.singles(n).as_secs_f64() / n as f64),
                    _ => pre.push(old.writes(n).as_secs_f64() / n as f64),
                }
            }
        }
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
        let (bm, sm, pm) = (mean(&batch), mean(&single), mean(&pre));
        let slowest = batch.iter().copied().fold(0.0, f64::max) * n as f64;
        let (b, s, p) = (median(batch), median(single), median(pre));
        eprintln!(
            "  {n:>3} records, {rounds} rounds: batch {:.1} µs ({:.0}/s; mean {:.1} µs; \
             slowest batch {:.1} ms), single put {:.1} µs (mean {:.1}), pre-journal write \
             {:.1} µs (mean {:.1}); single/batch {:.1}x, pre-journal/batch {:.1}x (means)",
            b * 1e6,
            1.0 / bm,
            bm * 1e6,
            slowest * 1e3,
            s * 1e6,
            sm * 1e6,
            p * 1e6,
            pm * 1e6,
            sm / bm,
            pm / bm,
        );
    }
}

// In a private module: the macro's generated `pub fn` carries no docs.
mod group {
    criterion::criterion_group!(benches, super::batches);
}
criterion_main!(group::benches);

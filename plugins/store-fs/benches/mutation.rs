//! A durable `put` (the update of an existing 2 KiB record) in a store that
//! holds 1,000 and then 100,000 other records, in one run, with the ratio
//! of the two means printed at the end: the cost of a mutation must not
//! grow with the number of records.
//!
//! The other records are written through a bench-only fast path (no lock,
//! no temp file, no fsync, two threads), then flushed with `sync` before
//! measuring; every measured `put` is the real durable path (lock, read and
//! authenticate the current record, seal, one journal frame and its
//! `fdatasync`, temp file swapped in for the record, and the journal's
//! checkpoint every 4 MiB). The target record sits in the same folder as
//! the others.
//!
//! Criterion measures each size in turn; the ratio is then measured with
//! the two stores interleaved, since a shared disk's background load comes
//! and goes.
//!
//! Run: `cargo bench -p keygate-store-fs --bench mutation`

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_main};
use keygate_sdk::{SecretStore, StorePlugin};
use keygate_store_fs::FsStore;

const TARGET: &str = "devices/target";
const SIZES: [usize; 2] = [1_000, 100_000];

fn open(state: &Path) -> FsStore {
    FsStore::from_config("", keygate_sdk_testing::test_context("filesystem", state))
        .expect("open the store")
}

/// Fills the store with `n` records of 256 bytes beside the target.
fn populate(store: &FsStore, n: usize) {
    let value = vec![0x5Au8; 256];
    let threads = 2;
    std::thread::scope(|s| {
        for t in 0..threads {
            let value = &value;
            s.spawn(move || {
                for i in (t..n).step_by(threads) {
                    store
                        .insert_unsynced_for_bench(&format!("devices/{i:08}"), value)
                        .expect("populate");
                }
            });
        }
    });
    // Flush the fast path's writes so they do not land on the measured
    // fsyncs.
    let _ = std::process::Command::new("sync").status();
}

/// A store in its own temp folder, filled with `others` records, and the
/// current version of its target record.
struct Fixture {
    others: usize,
    store: FsStore,
    version: Cell<u64>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(others: usize, value: &[u8]) -> Self {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let store = open(dir.path());
        let started = Instant::now();
        populate(&store, others);
        eprintln!(
            "populated {others} records in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert_eq!(store.list("devices/").expect("list").len(), others);
        let version = Cell::new(store.put(TARGET, value, None).expect("create target"));
        Self {
            others,
            store,
            version,
            _dir: dir,
        }
    }

    /// `iters` durable updates of the target; their total time.
    fn puts(&self, iters: u64, value: &[u8]) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            let v = self
                .store
                .put(TARGET, value, Some(self.version.get()))
                .expect("durable put");
            self.version.set(v);
        }
        start.elapsed()
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn mutation(c: &mut Criterion) {
    let value = vec![0xA5u8; 2048];
    let fixtures: Vec<Fixture> = SIZES.iter().map(|&n| Fixture::new(n, &value)).collect();
    // Let the fast path's writeback settle before anything is timed.
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));

    let mut group = c.benchmark_group("durable_put_update_2KiB");
    group.sample_size(50);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));
    for fixture in &fixtures {
        group.bench_function(format!("{}_other_records", fixture.others), |b| {
            b.iter_custom(|iters| fixture.puts(iters, &value));
        });
    }
    group.finish();

    // The ratio, measured interleaved: rounds of 100 puts alternate between
    // the two stores (order swapped each round), so a disk made busy by
    // something else for a while weighs on both alike.
    const ROUNDS: usize = 30;
    const PUTS: u64 = 100;
    let mut per_put: Vec<Vec<f64>> = vec![Vec::new(); fixtures.len()];
    for round in 0..ROUNDS {
        let order: Vec<usize> = if round % 2 == 0 {
            vec![0, 1]
        } else {
            vec![1, 0]
        };
        for i in order {
            let t = fixtures[i].puts(PUTS, &value);
            per_put[i].push(t.as_secs_f64() / PUTS as f64);
        }
    }
    let medians: Vec<f64> = per_put.into_iter().map(median).collect();
    for (fixture, m) in fixtures.iter().zip(&medians) {
        eprintln!(
            "interleaved: median of {ROUNDS} rounds x {PUTS} durable puts with {} other records: {:.3} ms per put",
            fixture.others,
            m * 1e3
        );
    }
    eprintln!(
        "ratio 100,000 / 1,000 other records (interleaved medians): {:.3} (1.0 = no growth)",
        medians[1] / medians[0]
    );
}

// In a private module: the macro's generated `pub fn` carries no docs.
mod group {
    criterion::criterion_group!(benches, super::mutation);
}
criterion_main!(group::benches);

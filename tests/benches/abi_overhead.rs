//! SecretStore `get` and `put` on the memory store: a direct Rust call
//! against the same store through the ABI from a loaded cdylib, in one run.
//!
//! Run: `cargo bench -p keygate-tests --bench abi_overhead`
//! (the bench builds the cdylib first). It prints the added nanoseconds per
//! call; the target is under 100 ns.

// criterion_group! generates undocumented items.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keygate_sdk::SecretStore;
use keygate_sdk_host::Library;
use keygate_store_memory::MemoryStore;

fn stores() -> (Box<dyn SecretStore>, Box<dyn SecretStore>) {
    let direct: Box<dyn SecretStore> = Box::new(MemoryStore::new());
    let lib = Library::open(&keygate_tests::cdylib("keygate-fixture-memory-cdylib"))
        .expect("open cdylib");
    let ctx = keygate_sdk_testing::test_context("store(memory)", "/".as_ref());
    let through_abi: Box<dyn SecretStore> =
        Box::new(lib.new_store("memory", "", ctx).expect("construct"));
    (direct, through_abi)
}

fn bench(c: &mut Criterion) {
    let (direct, abi) = stores();
    let value = vec![7u8; 64];
    for (name, store) in [("direct", &direct), ("abi", &abi)] {
        let v = store.put("devices/kgd1example", &value, None).unwrap();
        let mut group = c.benchmark_group("memory_store");
        group.bench_function(format!("get/{name}"), |b| {
            b.iter(|| black_box(store.get(black_box("devices/kgd1example")).unwrap()))
        });
        let mut version = v;
        group.bench_function(format!("put/{name}"), |b| {
            b.iter(|| {
                version = store
                    .put(
                        black_box("devices/kgd1example"),
                        black_box(&value),
                        Some(version),
                    )
                    .unwrap();
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);

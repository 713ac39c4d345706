//! Compare-and-swap holds between store objects on one root and between
//! processes, not only between the threads of one store.

use std::path::Path;
use std::process::{Command, Stdio};

use keygate_sdk::{ErrorKind, SecretStore};

mod common;

const COUNTER: &str = "shared/counter";
/// Set in a child process of `cas_holds_across_processes`: the state folder.
const CHILD_STATE_VAR: &str = "KEYGATE_STORE_FS_TEST_CHILD_STATE";
const CHILD_INCREMENTS_VAR: &str = "KEYGATE_STORE_FS_TEST_CHILD_INCREMENTS";

/// Adds one to the counter with a compare-and-swap loop; returns how many
/// conflicts it met.
fn increment(store: &dyn SecretStore) -> u64 {
    let mut conflicts = 0;
    loop {
        let current = store.get(COUNTER).expect("get").expect("counter exists");
        let n = u64::from_le_bytes(current.value.as_slice().try_into().expect("8 bytes"));
        match store.put(COUNTER, &(n + 1).to_le_bytes(), Some(current.version)) {
            Ok(_) => return conflicts,
            Err(e) if e.kind() == ErrorKind::Conflict => conflicts += 1,
            Err(e) => panic!("increment: {e}"),
        }
    }
}

fn count(store: &dyn SecretStore) -> u64 {
    let value = store.get(COUNTER).unwrap().unwrap().value;
    u64::from_le_bytes(value.as_slice().try_into().unwrap())
}

#[test]
fn two_store_objects_on_one_root_keep_cas_correct() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::open(dir.path(), "").unwrap();
    let b = common::open(dir.path(), "").unwrap();
    a.put(COUNTER, &0u64.to_le_bytes(), None).unwrap();
    const EACH: u64 = 40;
    std::thread::scope(|s| {
        for store in [&a, &b, &a, &b] {
            s.spawn(move || {
                for _ in 0..EACH {
                    increment(store);
                }
            });
        }
    });
    assert_eq!(count(&a), 4 * EACH);
    assert_eq!(count(&b), 4 * EACH);
    // A create racing on both objects: exactly one wins.
    let results: Vec<_> = std::thread::scope(|s| {
        let ha = s.spawn(|| a.put("once", b"a", None));
        let hb = s.spawn(|| b.put("once", b"b", None));
        vec![ha.join().unwrap(), hb.join().unwrap()]
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(e) if e.kind() == ErrorKind::Conflict))
    );
}

/// The child side of `cas_holds_across_processes`: does nothing in a normal
/// test run, and increments the shared counter when started as a child.
#[test]
fn multi_process_child() {
    let Some(state) = std::env::var_os(CHILD_STATE_VAR) else {
        return;
    };
    let n: u64 = std::env::var(CHILD_INCREMENTS_VAR)
        .expect("increments")
        .parse()
        .expect("a number");
    let store = common::open(Path::new(&state), "").expect("child opens the store");
    let conflicts: u64 = (0..n).map(|_| increment(&store)).sum();
    println!("child conflicts: {conflicts}");
}

#[test]
fn cas_holds_across_processes() {
    const CHILDREN: u64 = 3;
    const EACH: u64 = 30;
    let dir = tempfile::tempdir().unwrap();
    let store = common::open(dir.path(), "").unwrap();
    store.put(COUNTER, &0u64.to_le_bytes(), None).unwrap();
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "multi_process_child",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(CHILD_STATE_VAR, dir.path())
                .env(CHILD_INCREMENTS_VAR, EACH.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a child test process")
        })
        .collect();
    // This process competes too.
    let conflicts: u64 = (0..EACH).map(|_| increment(&store)).sum();
    for child in children {
        let out = child.wait_with_output().expect("wait for child");
        assert!(
            out.status.success(),
            "a child failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if std::env::var_os("KEYGATE_STORE_FS_TEST_VERBOSE").is_some() {
            eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
    if std::env::var_os("KEYGATE_STORE_FS_TEST_VERBOSE").is_some() {
        eprintln!("parent conflicts: {conflicts}");
    }
    assert_eq!(count(&store), (CHILDREN + 1) * EACH, "an update was lost");
}

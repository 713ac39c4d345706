//! The two-tier state lock, across real processes: this test binary
//! re-executes itself as the holder process (`lock_holder_child`).

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use keygate_core::state::lock::{
    Holder, LOCK_FILE_NAME, LockError, LockMode, StaleReason, StateLock, StateLockGuard, host_name,
};

/// Set in the child: the state directory to lock.
const CHILD_DIR: &str = "KEYGATE_LOCK_CHILD_DIR";
/// Set in the child: `exclusive` or `shared`.
const CHILD_MODE: &str = "KEYGATE_LOCK_CHILD_MODE";
/// The purpose the child records.
const CHILD_PURPOSE: &str = "devices revoke (test child)";

// A guard can be moved to (and dropped on) another thread, e.g. out of a
// `spawn_blocking` task.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<StateLockGuard>();
    assert_send::<StateLock>();
};

/// Not a test of its own: when re-executed with `KEYGATE_LOCK_CHILD_DIR`,
/// takes the lock, prints `LOCKED`, and holds it until stdin closes.
#[test]
fn lock_holder_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mode = match std::env::var(CHILD_MODE).as_deref() {
        Ok("shared") => LockMode::Shared,
        _ => LockMode::Exclusive,
    };
    let lock = StateLock::new(Path::new(&dir)).expect("child: state lock");
    let guard = lock
        .acquire(mode, CHILD_PURPOSE, Duration::from_secs(5))
        .expect("child: acquire");
    let mut stdout = std::io::stdout();
    writeln!(stdout, "LOCKED").expect("child: stdout");
    stdout.flush().expect("child: flush");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(guard);
}

/// Another process holding the lock; killed when dropped.
struct HolderProcess {
    child: Child,
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl HolderProcess {
    fn spawn(dir: &Path, mode: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .args([
                "--exact",
                "lock_holder_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir)
            .env(CHILD_MODE, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn holder process");
        let mut lines = BufReader::new(child.stdout.take().expect("child stdout")).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("LOCKED") => break,
                Some(Ok(_)) => continue,
                other => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("holder process ended before locking: {other:?}");
                }
            }
        }
        HolderProcess {
            child,
            _stdout: lines,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap it so that its PID is gone from `/proc`.
    fn kill(&mut self) {
        self.child.kill().expect("kill holder");
        self.child.wait().expect("reap holder");
    }
}

impl Drop for HolderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn state_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn unwrap_timeout(result: Result<StateLockGuard, LockError>) -> (LockError, Option<Holder>) {
    match result {
        Err(error @ LockError::Timeout { .. }) => {
            let LockError::Timeout { holder, .. } = &error else {
                unreachable!()
            };
            let holder = holder.clone();
            (error, holder)
        }
        Err(other) => panic!("expected a timeout, got {other}"),
        Ok(_) => panic!("expected a timeout, got the lock"),
    }
}

/// The PID of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("wait for true");
    assert!(
        !Path::new("/proc").join(pid.to_string()).exists(),
        "pid {pid} still in /proc"
    );
    pid
}

fn write_record(dir: &Path, pid: u32, host: &str, purpose: &str) {
    let record = format!(
        "{{\"pid\":{pid},\"host\":\"{host}\",\"since\":\"2026-11-22T08:00:00.000Z\",\
         \"since_unix_ms\":1795334400000,\"mode\":\"exclusive\",\"purpose\":\"{purpose}\"}}\n"
    );
    std::fs::write(dir.join(LOCK_FILE_NAME), record).expect("write record");
}

/// Runs `f` with a subscriber that captures log output as text.
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::default());
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let logs = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
    (out, logs)
}

#[test]
fn live_holder_in_another_process_makes_a_waiter_time_out_naming_it() {
    let dir = state_dir();
    let holder_process = HolderProcess::spawn(dir.path(), "exclusive");
    let lock = StateLock::new(dir.path()).unwrap();

    let start = Instant::now();
    let result = lock.acquire_exclusive("devices approve", Duration::from_millis(500));
    let elapsed = start.elapsed();
    let (error, holder) = unwrap_timeout(result);

    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(1500),
        "waited {elapsed:?}"
    );
    let holder = holder.expect("the holder recorded itself");
    assert_eq!(holder.pid, holder_process.pid());
    assert_eq!(holder.host, host_name());
    assert_eq!(holder.purpose, CHILD_PURPOSE);
    assert_eq!(holder.mode, LockMode::Exclusive);
    let text = error.to_string();
    let lock_path = lock.lock_path().display().to_string();
    for needle in [
        format!(
            "state lock {lock_path} is held by pid {}",
            holder_process.pid()
        ),
        format!("on host {}", host_name()),
        format!("({CHILD_PURPOSE})"),
        "gave up after 500ms".to_owned(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in {text:?}");
    }

    // A reader waits for a writer too.
    let (_, holder) = unwrap_timeout(lock.acquire_shared("list", Duration::from_millis(100)));
    assert_eq!(holder.map(|h| h.pid), Some(holder_process.pid()));
}

#[test]
fn lock_of_a_killed_holder_is_taken_over_promptly() {
    let dir = state_dir();
    let mut holder_process = HolderProcess::spawn(dir.path(), "exclusive");
    let dead = holder_process.pid();
    holder_process.kill();
    let lock = StateLock::new(dir.path()).unwrap();

    let start = Instant::now();
    let guard = lock
        .acquire_exclusive("devices revoke", Duration::from_secs(2))
        .expect("the flock of a dead holder is free");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );

    let previous = guard.took_over_from().expect("a takeover is reported");
    assert_eq!(previous.pid, dead);
    assert_eq!(previous.purpose, CHILD_PURPOSE);
    assert_eq!(
        guard.takeover().map(|t| t.reason),
        Some(StaleReason::DeadProcess)
    );

    // The record now names this process.
    let content = std::fs::read(lock.lock_path()).unwrap();
    let now_held_by = Holder::parse(&content).expect("record of the new holder");
    assert_eq!(now_held_by.pid, std::process::id());
    assert_eq!(now_held_by.purpose, "devices revoke");
}

#[test]
fn stale_record_of_an_exited_pid_is_taken_over_and_logged() {
    let dir = state_dir();
    let pid = dead_pid();
    write_record(dir.path(), pid, host_name(), "ca rotate");
    let lock = StateLock::new(dir.path()).unwrap();

    let (guard, logs) = capture_logs(|| {
        lock.acquire_exclusive("devices revoke", Duration::from_secs(1))
            .expect("acquire over a stale record")
    });

    let takeover = guard.takeover().expect("a takeover is reported");
    assert_eq!(takeover.reason, StaleReason::DeadProcess);
    assert_eq!(takeover.previous.pid, pid);
    assert_eq!(takeover.previous.host, host_name());
    assert_eq!(takeover.previous.purpose, "ca rotate");
    assert_eq!(takeover.previous.since_rfc3339(), "2026-11-22T08:00:00Z");
    let expected = format!(
        "taking over state lock left by dead pid {pid} on host {} since 2026-11-22T08:00:00Z",
        host_name()
    );
    assert!(logs.contains(&expected), "{expected:?} not in {logs:?}");
    assert!(logs.contains("WARN"), "{logs:?}");
}

#[test]
fn stale_record_of_a_live_pid_without_the_flock_is_taken_over() {
    let dir = state_dir();
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    write_record(dir.path(), sleeper.id(), host_name(), "pairing");
    let lock = StateLock::new(dir.path()).unwrap();

    let (result, logs) = capture_logs(|| lock.acquire_exclusive("x", Duration::from_secs(1)));
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    let guard = result.expect("the flock is the truth: a live pid without it holds nothing");
    let takeover = guard.takeover().expect("a takeover is reported");
    assert_eq!(takeover.reason, StaleReason::ProcessAliveWithoutLock);
    assert_eq!(takeover.previous.pid, sleeper.id());
    let expected = format!("holder pid {} on host", sleeper.id());
    assert!(logs.contains(&expected), "{logs:?}");
    assert!(logs.contains("no longer holds the lock"), "{logs:?}");
}

#[test]
fn stale_record_from_another_host_is_taken_over_and_says_so() {
    let dir = state_dir();
    let other_host = format!("not-{}", host_name());
    write_record(dir.path(), 4242, &other_host, "devices revoke");
    let lock = StateLock::new(dir.path()).unwrap();

    let (guard, logs) = capture_logs(|| {
        lock.acquire_exclusive("x", Duration::from_secs(1))
            .expect("the flock is free")
    });

    let takeover = guard.takeover().expect("a takeover is reported");
    assert_eq!(takeover.reason, StaleReason::OtherHost);
    assert_eq!(takeover.previous.host, other_host);
    assert!(
        logs.contains(&format!("pid 4242 on another host {other_host}")),
        "{logs:?}"
    );
}

#[test]
fn garbage_in_the_lock_file_is_ignored() {
    for garbage in [&b"\xff\xfe not a record {"[..], b"", b"{\"pid\":\"x\"}\n"] {
        let dir = state_dir();
        std::fs::write(dir.path().join(LOCK_FILE_NAME), garbage).unwrap();
        let lock = StateLock::new(dir.path()).unwrap();

        let guard = lock
            .acquire_exclusive("devices list", Duration::from_secs(1))
            .expect("garbage is not an error");
        assert!(guard.took_over_from().is_none(), "{garbage:?}");
    }
}

#[test]
fn exclusive_holder_records_itself_and_clears_the_record_on_release() {
    let dir = state_dir();
    let lock = StateLock::new(dir.path()).unwrap();
    let before = std::time::SystemTime::now() - Duration::from_secs(1);

    let guard = lock
        .acquire_exclusive("devices revoke", Duration::from_secs(1))
        .unwrap();
    let content = std::fs::read_to_string(lock.lock_path()).unwrap();
    assert_eq!(content.lines().count(), 1, "{content:?}");
    let holder = Holder::parse(content.as_bytes()).expect("a holder record");
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.host, host_name());
    assert_eq!(holder.purpose, "devices revoke");
    assert_eq!(holder.mode, LockMode::Exclusive);
    assert!(holder.since >= before);

    let size = std::fs::metadata(lock.lock_path()).unwrap().len();

    // Released: blanked in place, the same size (no block is freed and
    // allocated again on every mutation), and read as no holder.
    let blank = |path: &std::path::Path| {
        let content = std::fs::read(path).unwrap();
        assert_eq!(content.len() as u64, size);
        assert!(content.iter().all(|b| *b == b' '), "{content:?}");
        assert!(Holder::parse(&content).is_none());
    };
    guard.release().expect("release");
    blank(lock.lock_path());

    // Dropping releases too.
    let guard = lock
        .acquire_exclusive("again", Duration::from_secs(1))
        .unwrap();
    drop(guard);
    blank(lock.lock_path());

    // Whatever longer content the file held (another writer's garbage) is
    // covered whole by the record, and blanked whole.
    std::fs::write(lock.lock_path(), "z".repeat(900)).unwrap();
    let guard = lock
        .acquire_exclusive("long", Duration::from_secs(1))
        .unwrap();
    let content = std::fs::read_to_string(lock.lock_path()).unwrap();
    assert_eq!(content.len(), 900);
    assert_eq!(content.lines().count(), 1, "{content:?}");
    assert_eq!(Holder::parse(content.as_bytes()).unwrap().purpose, "long");
    drop(guard);
    let content = std::fs::read(lock.lock_path()).unwrap();
    assert_eq!(content.len(), 900);
    assert!(content.iter().all(|b| *b == b' '));
}

/// The in-process tier, not the flock, is what makes a second thread wait:
/// shared flocks of two open files coexist, so only the tier can keep a
/// second shared acquirer in this process out.
#[test]
fn in_one_process_a_second_thread_waits_for_the_first_guard_even_in_shared_mode() {
    let dir = state_dir();
    let lock = StateLock::new(dir.path()).unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let (acquired_tx, acquired_rx) = mpsc::channel();

    let first = {
        let lock = lock.clone();
        let released = Arc::clone(&released);
        std::thread::spawn(move || {
            let guard = lock
                .acquire_shared("first", Duration::from_secs(1))
                .unwrap();
            acquired_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            released.store(true, Ordering::SeqCst);
            drop(guard);
        })
    };
    acquired_rx.recv().unwrap();

    // A separate `StateLock` value, through another spelling of the same
    // directory, shares the in-process tier.
    let other = StateLock::new(&dir.path().join(".")).unwrap();
    let guard = other
        .acquire_shared("second", Duration::from_secs(2))
        .expect("the second thread gets the lock once the first drops it");
    assert!(
        released.load(Ordering::SeqCst),
        "acquired while the first guard was held"
    );
    drop(guard);
    first.join().unwrap();
}

#[test]
fn in_process_waiter_times_out_naming_this_process() {
    let dir = state_dir();
    let lock = StateLock::new(dir.path()).unwrap();
    let guard = lock
        .acquire_shared("refresh", Duration::from_secs(1))
        .unwrap();

    // In this process, shared excludes like exclusive; and a guard moved to
    // another thread still holds the lock.
    let held_elsewhere = std::thread::spawn(move || guard);
    let guard = held_elsewhere.join().unwrap();
    let (error, holder) = unwrap_timeout(lock.acquire_shared("list", Duration::from_millis(100)));
    let holder = holder.expect("the in-process holder is known");
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.purpose, "refresh");
    assert_eq!(holder.mode, LockMode::Shared);
    assert!(
        error
            .to_string()
            .contains("(refresh, shared) (this process)"),
        "{error}"
    );

    drop(guard);
    let _after = lock
        .acquire_exclusive("after", Duration::from_millis(100))
        .expect("free once the guard is dropped");
}

#[test]
fn shared_readers_in_two_processes_coexist_and_keep_a_writer_out() {
    let dir = state_dir();
    let _reader = HolderProcess::spawn(dir.path(), "shared");
    let lock = StateLock::new(dir.path()).unwrap();

    let start = Instant::now();
    let guard = lock
        .acquire_shared("devices list", Duration::from_millis(500))
        .expect("readers in two processes hold the lock together");
    assert!(
        start.elapsed() < Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(guard.mode(), LockMode::Shared);
    assert_eq!(
        std::fs::read(lock.lock_path()).unwrap(),
        b"",
        "readers record nothing"
    );
    drop(guard);

    let start = Instant::now();
    let (error, holder) =
        unwrap_timeout(lock.acquire_exclusive("devices revoke", Duration::from_millis(300)));
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert!(holder.is_none());
    assert!(matches!(
        error,
        LockError::Timeout {
            held_shared: true,
            ..
        }
    ));
    assert!(
        error
            .to_string()
            .contains("is held by one or more shared readers"),
        "{error}"
    );
}

#[test]
fn lock_file_is_created_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = state_dir();
    let lock = StateLock::new(dir.path()).unwrap();
    assert!(!lock.lock_path().exists(), "new() does not create the file");
    let _guard = lock.acquire_exclusive("x", Duration::from_secs(1)).unwrap();
    let mode = std::fs::metadata(lock.lock_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}

#[test]
fn missing_state_dir_is_an_error_naming_it() {
    let dir = state_dir();
    let missing = dir.path().join("no-such-state");
    let error = StateLock::new(&missing).expect_err("missing dir");
    assert!(matches!(error, LockError::Io { .. }));
    assert!(
        error.to_string().contains(&missing.display().to_string()),
        "{error}"
    );

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let error = StateLock::new(&file).expect_err("a file is not a state dir");
    assert!(error.to_string().contains("not a directory"), "{error}");
}

/// Open descriptors of this process on `path`.
fn open_descriptors(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == path)
        .count()
}

#[test]
fn the_lock_file_stays_open_between_holders_and_a_replaced_file_is_reopened() {
    let dir = state_dir();
    let lock = StateLock::new(dir.path()).unwrap();
    for _ in 0..3 {
        let guard = lock
            .acquire_exclusive("devices list", Duration::from_secs(1))
            .unwrap();
        drop(guard);
    }
    let path = lock.lock_path().to_owned();
    assert_eq!(open_descriptors(&path), 1, "opened once, kept open");

    // Someone replaces the file: the next holder locks the new one (a lock
    // on the old, unlinked file would exclude nobody).
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"").unwrap();
    let guard = lock
        .acquire_exclusive("after the swap", Duration::from_secs(1))
        .unwrap();
    let other = std::fs::File::open(&path).unwrap();
    assert!(
        matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        "the file now at the path is the one locked"
    );
    drop(guard);
    assert!(other.try_lock().is_ok());
}

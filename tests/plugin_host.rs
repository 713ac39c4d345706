//! The plugin host against real plugin libraries built as cdylib and loaded
//! by path: good libraries load, several in one process; every bad library
//! is refused with the file and the reason; a panicking plugin returns an
//! error and the host goes on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use keygate_core::config::Config;
use keygate_core::plugin_host::{
    HostError, PluginHost, SEALED_COPY_PREFIX, open_library, open_library_via,
};
use keygate_sdk::{ApprovalRequest, Decision, DeviceId, ErrorKind, PairingMethod};
use keygate_sdk_host::{Library, LoadError, Origin};
use keygate_tests::{cdylib, toml_path};
use sha2::{Digest, Sha256};
// Link the built-in memory store so its registration is present.
use keygate_store_memory as _;

const ALICE: &str = "kgd190vqdjtlpcq27xslcveglfmr4ynfwg7gwpkq0k";
const BOB: &str = "kgd1sxmr0k8u6trd5c6eu6trzyapzux7090ylx66zk";

fn config(dir: &Path, body: &str) -> Config {
    let path = dir.join("config.toml");
    std::fs::write(&path, body).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("config: {e}"))
}

fn load(body: &str) -> (tempfile::TempDir, Result<PluginHost, HostError>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), body);
    let host = PluginHost::load(&cfg);
    (dir, host)
}

fn load_err(body: &str) -> String {
    match load(body).1 {
        Ok(host) => panic!("expected a refusal, loaded {host:?}"),
        Err(e) => e.to_string(),
    }
}

fn store_slot(library: &Path, extra: &str) -> String {
    format!("[plugins.store]\nlibrary = {}\n{extra}", toml_path(library))
}

#[test]
fn missing_library_is_refused_naming_the_file() {
    let err = load_err(&store_slot(Path::new("/nonexistent/libnope.so"), ""));
    assert!(
        err.contains("/nonexistent/libnope.so: no such file"),
        "{err}"
    );
    assert!(
        err.contains("config.toml:2: plugins.store.library"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_shared_library_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, b"#!/bin/sh\necho not a library\n").unwrap();
    let err = load_err(&store_slot(&fake, ""));
    assert!(
        err.contains(&format!(
            "{}: not a loadable shared library",
            fake.display()
        )),
        "{err}"
    );
}

#[test]
fn a_shared_library_that_is_not_a_plugin_is_refused() {
    let lib = cdylib("keygate-fixture-not-a-plugin");
    let err = load_err(&store_slot(&lib, ""));
    assert!(
        err.contains(&format!(
            "{}: a shared library, but not a Keygate plugin",
            lib.display()
        )),
        "{err}"
    );
}

#[test]
fn a_plugin_built_against_sdk_0_1_is_refused_with_both_versions_and_what_to_do() {
    assert!(keygate_sdk::SDK_VERSION.starts_with("0.2."));
    let lib = cdylib("keygate-fixture-abi-version");
    let err = load_err(&store_slot(&lib, ""));
    let expected = format!(
        "/config.toml:2: plugins.store.library: {}: built against keygate-sdk 0.1.3, but this \
         host speaks keygate-sdk {}: rebuild the plugin against keygate-sdk 0.2",
        lib.display(),
        keygate_sdk::SDK_VERSION
    );
    assert!(err.ends_with(&expected), "{err}");
}

#[test]
fn a_plugin_with_a_different_abi_layout_is_refused_with_the_difference() {
    let lib = cdylib("keygate-fixture-abi-layout");
    let err = match Library::open(&lib) {
        Ok(_) => panic!("a foreign layout was accepted"),
        Err(e @ LoadError::AbiMismatch { .. }) => e.to_string(),
        Err(other) => panic!("wrong error: {other}"),
    };
    // The tail of abi_stable's report, on one line: what was expected
    // and what was found. The fixture declares its own root-module type, so
    // the first difference is the package that type comes from.
    assert_eq!(
        err,
        format!(
            "{}: its plugin ABI does not match this host's (Error:mismatched package \
             Expected: keygate-sdk Found: keygate-fixture-abi-layout): rebuild the plugin \
             against keygate-sdk 0.2",
            lib.display()
        )
    );
    // The host is alive and loads a good library afterwards.
    let good =
        Library::open(&cdylib("keygate-fixture-faulty")).expect("good library after a bad one");
    assert_eq!(good.manifest().plugins.len(), 2);
}

#[test]
fn a_plugin_of_the_wrong_kind_is_refused_for_the_slot() {
    let lib = cdylib("keygate-example-approval-allowlist");
    let err = load_err(&store_slot(&lib, ""));
    assert!(
        err.contains("holds no store plugin, so it cannot fill [plugins.store]"),
        "{err}"
    );
    assert!(err.contains("approval \"allowlist\""), "{err}");
}

#[test]
fn an_unknown_builtin_is_refused_with_line_and_known_names() {
    let err = load_err("state_dir = \"s\"\n\n[plugins.store]\nuse = \"cassandra\"\n");
    assert!(
        err.contains(
            "config.toml:4: plugins.store.use: no built-in store plugin named \"cassandra\""
        ),
        "{err}"
    );
    assert!(err.contains("memory"), "{err}");
}

#[test]
fn an_unknown_name_inside_a_library_is_refused() {
    let lib = cdylib("keygate-fixture-faulty");
    let err = load_err(&store_slot(&lib, "name = \"nope\"\n"));
    assert!(
        err.contains("holds no store plugin named \"nope\""),
        "{err}"
    );
    assert!(err.contains("store \"faulty\""), "{err}");
}

#[test]
fn a_library_with_several_plugins_of_a_kind_needs_a_name() {
    let lib = cdylib("keygate-fixture-faulty");
    let err = load_err(&store_slot(&lib, ""));
    assert!(
        err.contains(
            "holds several store plugins (faulty, panics-at-start): choose one with `name`"
        ),
        "{err}"
    );
}

#[test]
fn a_constructor_rejecting_its_config_reaches_the_operator_with_the_plugin_name() {
    let lib = cdylib("keygate-fixture-faulty");
    let err = load_err(&store_slot(
        &lib,
        "name = \"faulty\"\n[plugins.store.config]\nreject = true\n",
    ));
    assert!(
        err.contains("store(faulty): could not start: field `reject`: this store refuses to start, as configured (invalid)"),
        "{err}"
    );
}

#[test]
fn a_constructor_that_panics_is_an_error_not_a_crash() {
    let lib = cdylib("keygate-fixture-faulty");
    let err = load_err(&store_slot(&lib, "name = \"panics-at-start\"\n"));
    assert!(err.contains("store(panics-at-start): could not start: plugin panicked in constructor: constructor exploded"), "{err}");
}

#[test]
fn a_panic_in_a_plugin_method_is_an_error_and_the_next_call_works() {
    let lib = cdylib("keygate-fixture-faulty");
    let (_dir, host) = load(&store_slot(&lib, "name = \"faulty\"\n"));
    let host = host.expect("load");
    let store = &host.store;
    let v = store.put("a/b", b"1", None).expect("put");
    let err = store.get("panic/now").expect_err("the trap");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(
        err.to_string(),
        "store(faulty): plugin panicked in get: the faulty store was asked for panic/now (internal error)"
    );
    // Same store object, next calls work.
    assert_eq!(
        store
            .get("a/b")
            .expect("get after panic")
            .expect("present")
            .version,
        v
    );
    store.put("a/b", b"2", Some(v)).expect("put after panic");
}

#[test]
fn runtime_errors_are_prefixed_with_slot_and_plugin() {
    let (_dir, host) = load("[plugins.store]\nuse = \"memory\"\n");
    let store = host.expect("load").store;
    store.put("k", b"1", None).unwrap();
    let err = store.put("k", b"2", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string().starts_with("store(memory): key \"k\""),
        "{err}"
    );
}

fn sha256_hex(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// Whether `/proc/self/maps` has a mapping whose line contains `needle`.
fn mapped(needle: &str) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .any(|l| l.contains(needle))
}

/// A copy of `package`'s cdylib as `dir/file_name`, so a test can pin it,
/// find it in `/proc/self/maps` and change it without touching the build.
fn library_copy(package: &str, dir: &Path, file_name: &str) -> PathBuf {
    let copy = dir.join(file_name);
    std::fs::copy(cdylib(package), &copy).unwrap();
    copy
}

#[test]
fn a_matching_sha256_pin_loads() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_copy(
        "keygate-example-store-sqlite",
        dir.path(),
        "libsqlite_matching_pin.so",
    );
    let body = format!(
        "{}sha256 = \"{}\"\n[plugins.store.config]\npath = \"db.sqlite\"\n",
        store_slot(&lib, ""),
        sha256_hex(&lib)
    );
    let host = PluginHost::load(&config(dir.path(), &body)).expect("pinned library loads");
    host.store.put("x", b"y", None).unwrap();
    assert!(
        dir.path().join("db.sqlite").exists(),
        "relative plugin path resolves against the config folder"
    );
    // It runs from the sealed in-memory copy, not from the file.
    assert!(
        mapped(&format!(
            "/memfd:{SEALED_COPY_PREFIX}libsqlite_matching_pin.so"
        )),
        "no sealed copy mapped"
    );
    assert!(
        !mapped(&lib.display().to_string()),
        "the pinned file itself is mapped"
    );
    assert_eq!(host.loaded[0].origin.to_string(), lib.display().to_string());
}

/// The payload fixture's constant: its first bytes and its length.
const PAYLOAD_MARKER: &[u8] = b"KEYGATE-PINNED-PAYLOAD-v1-MARKER";
const PAYLOAD_LEN: usize = 64 * 1024;

#[test]
fn an_edit_in_place_after_the_pin_check_does_not_change_what_runs() {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;

    let dir = tempfile::tempdir().unwrap();
    let lib = library_copy("keygate-fixture-pinned", dir.path(), "libpayload_edit.so");
    let before = std::fs::read(&lib).unwrap();
    let at = before
        .windows(PAYLOAD_MARKER.len())
        .position(|w| w == PAYLOAD_MARKER)
        .expect("the payload is in the file");
    let original = before[at..at + PAYLOAD_LEN].to_vec();
    let body = store_slot(&lib, &format!("sha256 = \"{}\"\n", sha256_hex(&lib)));
    let (_config_dir, host) = load(&body);
    let host = host.expect("pinned library loads");
    let read = || {
        host.store
            .get("any")
            .expect("get")
            .expect("the payload store always answers")
            .value
    };
    assert!(
        read() == original,
        "the fixture does not return its constant"
    );

    // Overwrite the constant in place: same inode, same length, no
    // truncation, as an attacker with write access to the file would.
    let inode = std::fs::metadata(&lib).unwrap().ino();
    let forged = vec![0xA5u8; PAYLOAD_LEN];
    let mut file = std::fs::OpenOptions::new().write(true).open(&lib).unwrap();
    file.seek(SeekFrom::Start(at as u64)).unwrap();
    file.write_all(&forged).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let after = std::fs::read(&lib).unwrap();
    assert_eq!(std::fs::metadata(&lib).unwrap().ino(), inode);
    assert_eq!(after.len(), before.len());
    assert_eq!(&after[at..at + PAYLOAD_LEN], forged.as_slice());

    let now = read();
    assert!(
        now != forged,
        "the edit in place reached the running plugin"
    );
    assert!(
        now == original,
        "the running plugin returns neither version"
    );
}

#[test]
fn an_unpinned_library_is_opened_by_path_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_copy(
        "keygate-fixture-pinned",
        dir.path(),
        "libpayload_unpinned.so",
    );
    let (out, host) = capture_log(|| load(&store_slot(&lib, "")));
    host.1.expect("unpinned library loads");
    assert!(mapped(&lib.display().to_string()), "not opened by path");
    assert!(!mapped(&format!(
        "{SEALED_COPY_PREFIX}libpayload_unpinned.so"
    )));
    let warning = out
        .lines()
        .find(|l| {
            l.contains("plugin library has no sha256 pin in config")
                && l.contains(&lib.display().to_string())
        })
        .unwrap_or_else(|| panic!("no warning:\n{out}"));
    assert!(warning.contains("WARN"), "{warning}");
}

#[test]
fn a_pinned_library_is_refused_rather_than_opened_by_path_without_proc_self_fd() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_copy("keygate-fixture-pinned", dir.path(), "libpayload_noproc.so");
    let pin = Sha256::digest(std::fs::read(&lib).unwrap()).into();
    let err = match open_library_via(&lib, Some(&pin), Path::new("/nonexistent/proc/self/fd")) {
        Ok(_) => panic!("loaded without /proc/self/fd"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        format!(
            "{}: pinned library refused: /nonexistent/proc/self/fd is missing (is /proc \
             mounted?), so the dynamic loader cannot be given the sealed copy; a pinned \
             library is only ever loaded from a sealed copy of the checked bytes, never by path",
            lib.display()
        )
    );
    assert!(
        !mapped(&lib.display().to_string()),
        "opened by path after all"
    );
}

#[test]
fn a_pinned_library_refused_by_the_loader_is_named_by_its_path_not_the_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_copy(
        "keygate-fixture-abi-version",
        dir.path(),
        "libold_pinned.so",
    );
    let err = load_err(&store_slot(
        &lib,
        &format!("sha256 = \"{}\"\n", sha256_hex(&lib)),
    ));
    assert!(
        err.ends_with(&format!(
            "/config.toml:2: plugins.store.library: {}: built against keygate-sdk 0.1.3, but \
             this host speaks keygate-sdk {}: rebuild the plugin against keygate-sdk 0.2",
            lib.display(),
            keygate_sdk::SDK_VERSION
        )),
        "{err}"
    );
    assert!(!err.contains("/proc/self/fd"), "{err}");
}

/// The descriptor of this process whose target is `target`, opened anew.
fn reopen_descriptor_of(target: &str) -> std::fs::File {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let path = entry.unwrap().path();
        if std::fs::read_link(&path).is_ok_and(|t| t.to_string_lossy() == target) {
            return std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
        }
    }
    panic!("no descriptor of {target}");
}

#[test]
fn the_sealed_copy_cannot_be_written_grown_shrunk_or_unsealed() {
    use rustix::fs::SealFlags;

    let dir = tempfile::tempdir().unwrap();
    let lib = library_copy("keygate-fixture-pinned", dir.path(), "libpayload_sealed.so");
    let pin = Sha256::digest(std::fs::read(&lib).unwrap()).into();
    let _library = open_library(&lib, Some(&pin)).expect("pinned library loads");
    let mut copy = reopen_descriptor_of(&format!(
        "/memfd:{SEALED_COPY_PREFIX}libpayload_sealed.so (deleted)"
    ));
    assert_eq!(
        rustix::fs::fcntl_get_seals(&copy).unwrap(),
        SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK | SealFlags::SEAL
    );
    let len = copy.metadata().unwrap().len();
    assert_eq!(len, std::fs::metadata(&lib).unwrap().len());
    assert!(copy.write_all(b"x").is_err(), "the copy took a write");
    assert!(copy.set_len(len + 1).is_err(), "the copy grew");
    assert!(copy.set_len(len - 1).is_err(), "the copy shrank");
    assert!(
        rustix::fs::fcntl_add_seals(&copy, SealFlags::FUTURE_WRITE).is_err(),
        "the seals can still be changed"
    );
}

#[test]
fn a_pinned_library_with_a_long_non_ascii_name_gets_a_shortened_copy_name() {
    let dir = tempfile::tempdir().unwrap();
    // 247 bytes; the copy's name would be 262, over the kernel's limit.
    let name = format!("libx{}.so", "é".repeat(120));
    let lib = library_copy("keygate-fixture-pinned", dir.path(), &name);
    let pin = Sha256::digest(std::fs::read(&lib).unwrap()).into();
    let library = open_library(&lib, Some(&pin)).expect("pinned library loads");
    assert_eq!(library.manifest().plugins[0].name.as_str(), "payload");
    // Cut at 200 bytes, back to a character boundary: 15 + 4 + 90 × 2.
    let short = format!("{SEALED_COPY_PREFIX}libx{}", "é".repeat(90));
    assert_eq!(short.len(), 199);
    assert!(
        mapped(&format!("/memfd:{short} (deleted)")),
        "no copy named {short}"
    );
}

#[test]
fn pinned_libraries_loaded_one_after_another_are_each_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("keygate-fixture-pinned", "payload"),
        ("keygate-fixture-faulty", "faulty"),
        ("keygate-fixture-loopback", "loopback"),
        ("keygate-fixture-memory-cdylib", "memory"),
    ];
    for round in 0..2 {
        for (package, first_plugin) in cases {
            let lib = library_copy(package, dir.path(), &format!("lib{round}{first_plugin}.so"));
            let pin = Sha256::digest(std::fs::read(&lib).unwrap()).into();
            let library = open_library(&lib, Some(&pin)).expect("pinned library loads");
            assert_eq!(
                library.manifest().plugins[0].name.as_str(),
                first_plugin,
                "{} loaded as another library",
                lib.display()
            );
        }
    }
}

/// A config with the pinned fixture in two slots: the store slot first
/// (line 2 names its library), the approval slot after it (line 5).
fn two_slots(lib: &Path, store_pin: Option<&str>, approval_pin: Option<&str>) -> String {
    let pin = |p: Option<&str>| p.map_or(String::new(), |p| format!("sha256 = \"{p}\"\n"));
    format!(
        "[plugins.store]\nlibrary = {lib}\n{}[plugins.approval]\nlibrary = {lib}\n{}",
        pin(store_pin),
        pin(approval_pin),
        lib = toml_path(lib),
    )
}

#[test]
fn a_second_slot_pinning_the_same_library_differently_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_copy(
        "keygate-fixture-pinned",
        dir.path(),
        "libpayload_two_pins.so",
    );
    let right = sha256_hex(&lib);
    let wrong = "ab".repeat(32);
    let err = load_err(&two_slots(&lib, Some(&right), Some(&wrong)));
    assert!(
        err.ends_with(&format!(
            "config.toml:5: plugins.approval.library: {}: config pins SHA-256 {wrong}, but this \
             file is already loaded for another slot from a checked copy whose SHA-256 is \
             {right}: refused",
            lib.display()
        )),
        "{err}"
    );
    // The same pin twice loads, both plugins from one sealed copy.
    let (_dir, host) = load(&two_slots(&lib, Some(&right), Some(&right)));
    let host = host.expect("one pin, two slots");
    assert_eq!(host.loaded.len(), 2);
}

#[test]
fn a_pinned_slot_after_an_unpinned_one_is_still_checked() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_copy(
        "keygate-fixture-pinned",
        dir.path(),
        "libpayload_late_pin.so",
    );
    let right = sha256_hex(&lib);
    let wrong = "cd".repeat(32);
    let err = load_err(&two_slots(&lib, None, Some(&wrong)));
    assert!(
        err.ends_with(&format!(
            "config.toml:4: plugins.approval.library: {}: SHA-256 is {right} but config pins \
             {wrong}: refused, the file was not opened as a library",
            lib.display()
        )),
        "{err}"
    );
    // With the right pin, the pinned slot runs from a sealed copy of its own.
    let (_dir, host) = load(&two_slots(&lib, None, Some(&right)));
    host.expect("a right late pin loads");
    assert!(mapped(&format!(
        "{SEALED_COPY_PREFIX}libpayload_late_pin.so"
    )));
}

#[test]
fn a_second_slot_without_a_pin_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let lib = library_copy(
        "keygate-fixture-pinned",
        dir.path(),
        "libpayload_late_unpinned.so",
    );
    let right = sha256_hex(&lib);
    let (out, (_dir, host)) = capture_log(|| load(&two_slots(&lib, Some(&right), None)));
    host.expect("loads");
    assert!(
        out.lines()
            .any(|l| l.contains("no sha256 pin") && l.contains(&lib.display().to_string())),
        "no warning for the unpinned slot:\n{out}"
    );
}

#[test]
fn a_sha256_mismatch_is_refused_before_the_file_is_opened() {
    // A file that is not even a library: had it been opened, the error
    // would say so. The pin check must come first.
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, b"definitely not ELF").unwrap();
    let wrong = "00".repeat(32);
    let err = load_err(&store_slot(&fake, &format!("sha256 = \"{wrong}\"\n")));
    assert!(
        err.contains(&format!(
            "{}: SHA-256 is {}",
            fake.display(),
            sha256_hex(&fake)
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "but config pins {wrong}: refused, the file was not opened"
        )),
        "{err}"
    );
    assert!(!err.contains("not a loadable shared library"), "{err}");

    // And a real plugin with a wrong pin is refused the same way.
    let lib = cdylib("keygate-fixture-faulty");
    let err = load_err(&store_slot(
        &lib,
        &format!("name = \"faulty\"\nsha256 = \"{wrong}\"\n"),
    ));
    assert!(err.contains("SHA-256 is"), "{err}");
}

#[test]
fn one_bad_slot_stops_the_whole_load() {
    let store = cdylib("keygate-fixture-faulty");
    let body = format!(
        "{}name = \"faulty\"\n[plugins.approval]\nlibrary = \"/nonexistent/libpolicy.so\"\n",
        store_slot(&store, "")
    );
    let err = load_err(&body);
    assert!(
        err.contains("plugins.approval.library: /nonexistent/libpolicy.so: no such file"),
        "{err}"
    );
}

#[test]
fn several_external_libraries_load_in_one_process() {
    let store = cdylib("keygate-example-store-sqlite");
    let policy = cdylib("keygate-example-approval-allowlist");
    let transport = cdylib("keygate-fixture-loopback");
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "[plugins.store]\nlibrary = {}\n[plugins.store.config]\npath = \"s.db\"\n\
         [plugins.approval]\nlibrary = {}\n[plugins.approval.config]\ndevices = [{ALICE:?}]\n\
         [plugins.transport]\nlibrary = {}\n",
        toml_path(&store),
        toml_path(&policy),
        toml_path(&transport)
    );
    let host = PluginHost::load(&config(dir.path(), &body)).expect("three libraries");
    let labels: Vec<&str> = host.loaded.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "store(sqlite)",
            "approval(allowlist)",
            "transport(loopback)"
        ]
    );
    // Each is its own library, not the first one cached for the type.
    host.store.put("k", b"v", None).expect("sqlite store works");
    let policy = host.approval.as_ref().expect("policy");
    let req = |id: &str| {
        let id = DeviceId::parse(id).unwrap();
        ApprovalRequest::new(id, "n", PairingMethod::Pin, "127.0.0.1:1", &[], 0)
    };
    assert_eq!(policy.evaluate(&req(ALICE)).unwrap(), Decision::Approve);
    assert_eq!(
        policy.evaluate(&req(BOB)).unwrap(),
        Decision::deny(format!("device {BOB} is not on the allowlist"))
    );
    assert!(host.transport.is_some());
    // And the memory store fixture, a fourth library, opens beside them.
    let memory = Library::open(&cdylib("keygate-fixture-memory-cdylib")).expect("fourth library");
    assert_eq!(memory.manifest().plugins[0].name.as_str(), "memory");
}

/// A `tracing` writer capturing output in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns what this test binary has logged so far, from any
/// thread, with `f`'s value. One global subscriber, set once: scoped
/// subscribers on parallel test threads share tracing's per-callsite
/// cache and can miss each other's events. Callers look for lines that
/// only their own test writes (a unique path or marker).
fn capture_log<T>(f: impl FnOnce() -> T) -> (String, T) {
    static LOG: OnceLock<Capture> = OnceLock::new();
    let log = LOG.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        capture
    });
    let value = f();
    let out = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    (out, value)
}

#[test]
fn plugin_log_lines_reach_the_host_log_under_the_plugin_name() {
    let lib = cdylib("keygate-fixture-faulty");
    let (out, (_dir, host)) = capture_log(|| {
        load(&store_slot(
            &lib,
            "name = \"faulty\"\n[plugins.store.config]\nmarker = \"m-31337\"\n",
        ))
    });
    host.expect("load");
    let line = out
        .lines()
        .find(|l| l.contains("faulty store ready, marker=m-31337"))
        .unwrap_or_else(|| panic!("plugin line missing from host log:\n{out}"));
    assert!(line.contains("plugin=\"store(faulty)\""), "{line}");
    assert!(line.contains("INFO"), "{line}");
}

/// A built-in store registered by this test binary the way a built-in
/// plugin crate registers its plugins. Its `get` panics: only the SDK's
/// shim on the far side of the ABI catches that, so a host that called a
/// built-in directly would see the panic, not an error.
mod tripwire {
    use keygate_sdk::{PluginContext, PluginError, SecretStore, StorePlugin, Version, Versioned};

    pub struct Tripwire;

    impl SecretStore for Tripwire {
        fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
            panic!("tripwire sprung on {key:?}");
        }
        fn put(
            &self,
            key: &str,
            _: &[u8],
            expected: Option<Version>,
        ) -> Result<Version, PluginError> {
            Err(PluginError::version_conflict(key, expected, Some(7)))
        }
        fn delete(&self, key: &str, _: Version) -> Result<(), PluginError> {
            Err(PluginError::not_found(format!("key {key:?}")))
        }
        fn list(&self, _: &str) -> Result<Vec<String>, PluginError> {
            Ok(Vec::new())
        }
    }

    impl StorePlugin for Tripwire {
        const NAME: &'static str = "tripwire";
        const DESCRIPTION: &'static str = "Test built-in: get panics";
        fn from_config(_: &str, _: PluginContext) -> Result<Self, PluginError> {
            Ok(Self)
        }
    }

    keygate_sdk::register_builtin_plugins! {
        stores: [Tripwire],
    }
}

#[test]
fn builtins_load_through_the_same_abi_as_libraries() {
    // A panic in a built-in comes back as the SDK's error: the call went
    // through the ABI shim, as a call into a library does.
    let (_dir, host) = load("[plugins.store]\nuse = \"tripwire\"\n");
    let host = host.expect("the test built-in loads");
    assert_eq!(host.loaded[0].origin, Origin::Builtin("keygate-tests"));
    assert_eq!(host.loaded[0].sdk_version, keygate_sdk::SDK_VERSION);
    let err = host.store.get("a/b").expect_err("the tripwire");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(
        err.to_string(),
        "store(tripwire): plugin panicked in get: tripwire sprung on \"a/b\" (internal error)"
    );
    let err = host.store.put("k", b"v", Some(3)).expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        "store(tripwire): key \"k\": expected version 3, found version 7 (conflict)"
    );

    // The built-in memory store: its manifest carries this SDK's version
    // and its errors keep their kind under the slot's label.
    let (_dir, host) = load("[plugins.store]\nuse = \"memory\"\n");
    let host = host.expect("memory loads");
    assert_eq!(
        host.loaded[0].origin,
        Origin::Builtin("keygate-store-memory")
    );
    assert_eq!(host.loaded[0].sdk_version, keygate_sdk::SDK_VERSION);
    let v = host.store.put("k", b"1", None).unwrap();
    let err = host.store.put("k", b"2", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!("store(memory): key \"k\": expected absent, found version {v} (conflict)")
    );
}

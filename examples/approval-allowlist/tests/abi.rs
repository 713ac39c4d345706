//! The policy as the host sees it: the `cdylib` this package builds, opened
//! by path through the host's loader (`keygate_sdk_testing::host`), constructed from TOML text and asked
//! through the ABI.
//!
//! Cargo builds the `cdylib` next to this test binary (in `deps/`) because
//! the package's library has `crate-type = ["cdylib", "rlib"]`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use keygate_sdk::{
    ApprovalPolicy, ApprovalRequest, Decision, DeviceId, ErrorKind, LogLevel, Logger,
    PairingMethod, PluginContext, PluginKind, SDK_VERSION,
};
use keygate_sdk_testing::host::Library;

#[derive(Clone, Default)]
struct Recorded(Arc<Mutex<Vec<(LogLevel, String)>>>);

impl Logger for Recorded {
    fn log(&self, level: LogLevel, message: &str) {
        self.0.lock().unwrap().push((level, message.to_owned()));
    }
}

fn context() -> (PluginContext, Recorded) {
    let recorded = Recorded::default();
    let dir = Path::new("/nonexistent/keygate");
    let ctx = PluginContext::new("allowlist", dir, &dir.join("state"), recorded.clone());
    (ctx, recorded)
}

fn library_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("test binary folder");
    dir.join(format!(
        "{}keygate_example_approval_allowlist{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

fn library() -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let path = library_path();
        Library::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    })
}

fn request(device: &str, unix_time_secs: u64) -> ApprovalRequest {
    ApprovalRequest::new(
        DeviceId::parse(device).expect("a device id"),
        "build agent",
        PairingMethod::Qr,
        "198.51.100.4:50000",
        &["shell", "browser"],
        unix_time_secs,
    )
}

const ALICE: &str = "kgd190vqdjtlpcq27xslcveglfmr4ynfwg7gwpkq0k";
const BOB: &str = "kgd1sxmr0k8u6trd5c6eu6trzyapzux7090ylx66zk";
const EVE: &str = "kgd1s5nz4hm52x9mkux8ew2v6c2emytxnedg3t5hxh";
const CONFIG: &str = "devices = [\"kgd190vqdjtlpcq27xslcveglfmr4ynfwg7gwpkq0k\", \"kgd1sxmr0k8u6trd5c6eu6trzyapzux7090ylx66zk\"]\nhours = \"08:00-18:00\"\n";
/// 2024-10-31 at 12:00 and 19:00 UTC.
const NOON: u64 = 20_027 * 86_400 + 12 * 3600;
const EVENING: u64 = 20_027 * 86_400 + 19 * 3600;

#[test]
fn manifest_lists_one_allowlist_policy_built_with_this_sdk() {
    let manifest = library().manifest();
    assert_eq!(manifest.sdk_version.as_str(), SDK_VERSION);
    let plugins: Vec<_> = manifest
        .plugins
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(plugins, vec![("allowlist", PluginKind::Approval)]);
}

#[test]
fn decisions_cross_the_abi_with_their_reasons() {
    let (ctx, _) = context();
    let policy = library()
        .new_approval("allowlist", CONFIG, ctx)
        .expect("construct through the ABI");
    assert_eq!(
        policy.evaluate(&request(BOB, NOON)).expect("evaluate"),
        Decision::Approve
    );
    assert_eq!(
        policy.evaluate(&request(EVE, NOON)).expect("evaluate"),
        Decision::deny(format!("device {EVE} is not on the allowlist"))
    );
    assert_eq!(
        policy.evaluate(&request(ALICE, EVENING)).expect("evaluate"),
        Decision::deny("outside approval hours 08:00-18:00 UTC")
    );
}

#[test]
fn bad_config_through_the_abi_is_invalid_and_names_the_field() {
    let (ctx, _) = context();
    let err = library()
        .new_approval(
            "allowlist",
            &format!("devices = [{ALICE:?}]\nhours = \"9-5\""),
            ctx,
        )
        .err()
        .expect("bad hours refused");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(
        err.message().starts_with("field \"hours\": \"9-5\": "),
        "{err}"
    );
}

#[test]
fn no_store_or_transport_is_offered() {
    let (ctx, _) = context();
    let err = library()
        .new_store("allowlist", "", ctx)
        .err()
        .expect("not a store");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
fn construction_logs_one_info_line_through_the_host_logger() {
    let (ctx, recorded) = context();
    let _policy = library()
        .new_approval("allowlist", CONFIG, ctx)
        .expect("construct");
    let lines = recorded.0.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, LogLevel::Info);
    assert!(lines[0].1.contains("2 listed device(s)"), "{lines:?}");
    assert!(lines[0].1.contains("08:00-18:00 UTC"), "{lines:?}");
}

//! Support for the end-to-end tests: builds the `keygate` binary and the
//! plugin libraries the tests load by path (`cargo test` alone does not
//! produce a workspace's cdylibs), and finds them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use keygate_core::config::Config;
use keygate_core::plugin_host::PluginHost;
use keygate_core::state::IdentityManager;
// The built-in stores the configs below name.
use keygate_store_fs as _;
use keygate_store_memory as _;

/// The packages whose artifacts the tests use.
const PACKAGES: &[&str] = &[
    "keygate-core",
    "keygate-example-store-sqlite",
    "keygate-example-approval-allowlist",
    "keygate-fixture-faulty",
    "keygate-fixture-loopback",
    "keygate-fixture-abi-layout",
    "keygate-fixture-abi-version",
    "keygate-fixture-not-a-plugin",
    "keygate-fixture-memory-cdylib",
    "keygate-fixture-pinned",
];

/// The target folder of the running test's profile (`target/debug`).
pub fn profile_dir() -> PathBuf {
    // Tests and benches run from target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_owned()
}

/// Builds every artifact once per test process, with the test's profile.
pub fn build_artifacts() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile = profile_dir();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.arg("build").arg("--quiet");
        match profile.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
            None => {}
        }
        for p in PACKAGES {
            cmd.args(["-p", p]);
        }
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the test artifacts failed");
    });
}

/// The built cdylib of `package` (e.g. `keygate-example-store-sqlite`).
pub fn cdylib(package: &str) -> PathBuf {
    build_artifacts();
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let path = profile_dir().join(file);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// The built `keygate` binary.
pub fn keygate_bin() -> PathBuf {
    build_artifacts();
    let path = profile_dir().join(format!("keygate{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A `keygate` command with `--config` set and logging at info.
pub fn keygate(config: &Path) -> Command {
    let mut cmd = Command::new(keygate_bin());
    cmd.arg("--config").arg(config);
    cmd.env_remove("KEYGATE_CONFIG").env("KEYGATE_LOG", "info");
    cmd
}

/// Output of a finished command, as text.
pub struct Ran {
    /// Exit status success.
    pub ok: bool,
    /// Exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs `cmd` to completion.
pub fn run(cmd: &mut Command) -> Ran {
    let out = cmd.output().expect("spawn");
    Ran {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes `text` as `config.toml` in `dir` and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A TOML basic string for a path.
pub fn toml_path(path: &Path) -> String {
    serde_json::to_string(&path.to_string_lossy()).expect("json string")
}

/// Writes a config using the `filesystem` store with state in
/// `dir/state` (and a generous lock timeout: tests run many writers).
pub fn fs_config(dir: &Path) -> PathBuf {
    write_config(
        dir,
        "state_dir = \"state\"\n[plugins.store]\nuse = \"filesystem\"\n[identity]\nlock_timeout_secs = 30\n",
    )
}

/// Loads `config`'s plugins and opens its identity state, as the CLI does.
pub fn open_identity(config: &Path) -> (PluginHost, Arc<IdentityManager>) {
    let config = Config::load(config).expect("config");
    let host = PluginHost::load(&config).expect("plugins");
    let manager = IdentityManager::open(
        host.store.clone(),
        &config.state_dir,
        config.identity.clone(),
        SystemTime::now(),
    )
    .expect("identity state opens");
    (host, Arc::new(manager))
}

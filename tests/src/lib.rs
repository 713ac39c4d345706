//! Support for the end-to-end tests: builds the `keygate` binary and the
//! plugin libraries the tests load by path (`cargo test` alone does not
//! produce a workspace's cdylibs), and finds them.

pub mod postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use keygate_core::config::Config;
use keygate_core::plugin_host::PluginHost;
use keygate_core::state::IdentityManager;
// The built-in plugins the configs below name.
use keygate_approval_pin_qr as _;
use keygate_store_fs as _;
use keygate_store_memory as _;
use keygate_transport_quic as _;

pub mod prometheus;

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
    "keygate-fixture-quic-cdylib",
    "keygate-fixture-pinned",
    "keygate-fixture-pre-batch",
    "keygate-fixture-pre-watch",
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

/// A temporary folder with a `config.toml` using the `filesystem` store
/// with state in `state/`, plus `extra` config lines.
pub fn setup(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!("state_dir = \"state\"\n[plugins.store]\nuse = \"filesystem\"\n{extra}"),
    );
    (dir, config)
}

/// A UDP port on 127.0.0.1 that was free a moment ago (the OS picked it;
/// another process could take it before the gateway binds it, which the
/// ephemeral range makes unlikely).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (see [`free_port`]).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free TCP port")
        .port()
}

/// The config tables `gateway run` needs besides the store: the built-in
/// `quic` transport, listening on a free loopback port (so tests running
/// at once never share one).
pub fn serving() -> String {
    format!(
        "[plugins.transport]\nuse = \"quic\"\n[gateway]\nlisten = \"127.0.0.1:{}\"\nadvertise = [\"127.0.0.1\"]\n",
        free_port()
    )
}

/// Runs `keygate ARGS` on `config` and asserts it succeeded.
pub fn ok(config: &Path, args: &[&str]) -> Ran {
    let out = run(keygate(config).args(args));
    assert!(out.ok, "keygate {args:?} failed:\n{}", out.stderr);
    out
}

/// Runs `keygate ARGS` on `config`, asserts it succeeded and parses its
/// output as JSON.
pub fn json(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = ok(config, args);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
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
        host.state_store(),
        &config.state_dir,
        config.identity.clone(),
        SystemTime::now(),
    )
    .expect("identity state opens");
    (host, Arc::new(manager))
}

/// A store for fault tests: an in-memory store whose reads can be made to
/// fail once at the N-th call (as an unreachable store does), and whose
/// records can be damaged (as a tampered file is) and mended.
#[derive(Default)]
pub struct FaultyStore {
    inner: keygate_store_memory::MemoryStore,
    reads: std::sync::atomic::AtomicUsize,
    fail_at: std::sync::atomic::AtomicUsize,
    damaged: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl FaultyStore {
    /// An empty store with no fault armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the `n`-th read (`get` or `list`, counted from now, from 1)
    /// fail as `Unavailable`; 0 disarms it.
    pub fn fail_read(&self, n: usize) {
        use std::sync::atomic::Ordering;
        self.reads.store(0, Ordering::SeqCst);
        self.fail_at.store(n, Ordering::SeqCst);
    }

    /// Reads since the last [`fail_read`](Self::fail_read).
    pub fn reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every call on `key` fails as a damaged record does (`Internal`).
    pub fn damage(&self, key: &str) {
        self.damaged_keys().insert(key.to_owned());
    }

    /// Undoes [`damage`](Self::damage) (a record restored from a backup).
    pub fn mend(&self, key: &str) {
        self.damaged_keys().remove(key);
    }

    fn damaged_keys(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.damaged.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self, what: &str) -> Result<(), keygate_sdk::PluginError> {
        use std::sync::atomic::Ordering;
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at.load(Ordering::SeqCst) {
            return Err(keygate_sdk::PluginError::unavailable(format!(
                "{what}: the store is unreachable (injected at read {n})"
            )));
        }
        Ok(())
    }

    fn check(&self, key: &str) -> Result<(), keygate_sdk::PluginError> {
        if self.damaged_keys().contains(key) {
            return Err(keygate_sdk::PluginError::internal(format!(
                "record {key:?}: authentication failed (injected damage)"
            )));
        }
        Ok(())
    }
}

impl keygate_sdk::SecretStore for FaultyStore {
    fn get(&self, key: &str) -> Result<Option<keygate_sdk::Versioned>, keygate_sdk::PluginError> {
        self.read(key)?;
        self.check(key)?;
        self.inner.get(key)
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<keygate_sdk::Version>,
    ) -> Result<keygate_sdk::Version, keygate_sdk::PluginError> {
        self.check(key)?;
        self.inner.put(key, value, expected)
    }
    fn delete(
        &self,
        key: &str,
        expected: keygate_sdk::Version,
    ) -> Result<(), keygate_sdk::PluginError> {
        self.check(key)?;
        self.inner.delete(key, expected)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, keygate_sdk::PluginError> {
        self.read(prefix)?;
        self.inner.list(prefix)
    }
    /// Moves a record aside whatever its state, damaged ones included.
    fn quarantine(&self, key: &str) -> Result<String, keygate_sdk::PluginError> {
        self.mend(key);
        self.inner.quarantine(key)
    }
}

/// A `keygate gateway run` child whose stderr lines the test reads as they
/// come; stopped with SIGINT (as Ctrl-C) when dropped.
pub struct GatewayProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl GatewayProcess {
    /// Starts `keygate gateway run` on `config` (with `env` set, e.g.
    /// `KEYGATE_LOG`; an empty value removes the variable) and waits for
    /// its ready line.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> GatewayProcess {
        Self::start_with(config, env, &[])
    }

    /// [`start`](Self::start) with more arguments after `gateway run`.
    pub fn start_with(config: &Path, env: &[(&str, &str)], args: &[&str]) -> GatewayProcess {
        use std::io::BufRead;
        let mut cmd = keygate(config);
        for (k, v) in env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let mut child = cmd
            .args(["gateway", "run"])
            .args(args)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn the gateway");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut gateway = GatewayProcess {
            child,
            lines,
            seen: Vec::new(),
        };
        gateway.wait_for("gateway ready", std::time::Duration::from_secs(30));
        gateway
    }

    /// Waits up to `timeout` for a line containing `needle` and returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "the gateway never logged {needle:?}; it logged:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGINT and returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        self.interrupt();
        self.child.wait().is_ok_and(|s| s.success())
    }

    fn interrupt(&self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.interrupt();
            let _ = self.child.wait();
        }
    }
}

/// How long [`NodeProcess::wait_for`] waits.
pub const NODE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A `keygate node …` child whose stderr the test reads line by line.
pub struct NodeProcess {
    /// The process.
    pub child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl NodeProcess {
    /// Starts `keygate ARGS` with `code` (if any) as `KEYGATE_PAIRING_CODE`.
    pub fn spawn(args: &[&str], code: Option<&str>) -> NodeProcess {
        let mut cmd = Command::new(keygate_bin());
        cmd.args(args)
            .env_remove("KEYGATE_PAIRING_CODE")
            .env("KEYGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(code) = code {
            cmd.env("KEYGATE_PAIRING_CODE", code);
        }
        let mut child = cmd.spawn().expect("spawn keygate node");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProcess {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits up to 20 s for a line of stderr containing `needle`.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + NODE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("the node never said {needle:?}:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits for the exit: (code, stdout, the rest of stderr).
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        use std::io::Read;
        let status = self.child.wait().unwrap();
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        while let Ok(line) = self
            .lines
            .recv_timeout(std::time::Duration::from_millis(200))
        {
            self.seen.push(line);
        }
        (status.code(), out, self.seen.join("\n"))
    }

    /// Sends SIGINT.
    pub fn interrupt(&self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A device's pairing over `link`, run to its end: the last progress, or
/// why it stopped.
pub fn converse(
    link: &keygate_core::device::link::Link,
    identity: &keygate_core::device::DeviceIdentity,
    code: &str,
) -> Result<
    keygate_core::device::pairing::Progress,
    keygate_core::device::pairing::DevicePairingError,
> {
    let binding = keygate_proto::Binding {
        ca_fingerprint: link.ca_fingerprint(),
        channel_binding: link.channel_binding(),
    };
    let code = keygate_core::device::pairing::PairingCode::parse(code).unwrap();
    let (mut pairing, hello) = keygate_core::device::pairing::DevicePairing::start(
        &mut rand::rng(),
        identity,
        &code,
        "probe",
        &[],
        vec![],
        binding,
    )?;
    let exchange = link.exchange().unwrap();
    exchange.send(&hello).unwrap();
    loop {
        let answer = exchange.recv(NODE_WAIT).expect("the gateway answers");
        match pairing.on_message(&answer)? {
            keygate_core::device::pairing::Progress::Send(next) => exchange.send(&next).unwrap(),
            keygate_core::device::pairing::Progress::Accepted { .. } => {}
            done => return Ok(done),
        }
    }
}

//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary
//! folder owned by the `postgres` user (the server refuses to run as root,
//! and tests run as root here), a server on a free loopback port with its
//! socket in that folder, stopped and removed when the last handle goes.
//!
//! ```ignore
//! let cluster = keygate_tests::postgres::shared();   // one per test binary
//! let url = cluster.create_database("t1");             // a fresh database
//! ```
//!
//! The binaries (`initdb`, `pg_ctl`) are looked for on `PATH`, then in
//! `pg_config --bindir`, then in `/usr/lib/postgresql/*/bin`; without them
//! the start panics saying to install Debian's `postgresql-15` (what
//! `scripts/setup` does). No test is skipped for want of a server.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The superuser the cluster is created with (trust authentication).
pub const USER: &str = "keygate";

/// The OS user the server runs as.
const OS_USER: &str = "postgres";

/// A running (or stopped) throwaway cluster.
pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    next_db: AtomicU32,
    /// A process in a session of its own that stops the server and
    /// removes the folder when its stdin closes: when this handle is
    /// dropped, or when the test process dies without dropping it (killed
    /// by a timeout), so no server outlives its test binary.
    watchdog: Option<Child>,
}

/// Starts the watchdog of the cluster in `dir` (see `PgCluster::watchdog`).
fn watchdog(bin: &Path, dir: &Path) -> Option<Child> {
    Command::new("setsid")
        .args([
            "sh",
            "-c",
            "cat >/dev/null; runuser -u postgres -- \"$1\" -D \"$2/data\" -m immediate stop \
             >/dev/null 2>&1; rm -rf \"$2\"",
            "sh",
        ])
        .arg(bin.join("pg_ctl"))
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// The folder holding `initdb` and `pg_ctl`.
fn bin_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return dir;
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").is_file() {
            return dir;
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|d| d.join("initdb").is_file())
            .collect();
        found.sort();
        if let Some(dir) = found.pop() {
            return dir;
        }
    }
    panic!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, in `pg_config \
         --bindir` or in /usr/lib/postgresql/*/bin: install Debian's postgresql-15 \
         (`apt-get install postgresql-15`, which scripts/setup does)"
    );
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn as_postgres(bin: &Path, tool: &str, args: &[&str]) -> Output {
    Command::new("runuser")
        .args(["-u", OS_USER, "--"])
        .arg(bin.join(tool))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} as {OS_USER} through runuser: {e}"))
}

fn check(tool: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{tool} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    /// Creates and starts a cluster.
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("keygate-pg-")
            .tempdir()
            .expect("a temporary folder")
            .keep();
        let status = Command::new("chown")
            .arg(format!("{OS_USER}:"))
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {OS_USER} {}", dir.display());
        // Before initdb: a test killed during it leaves no folder either.
        let watchdog = watchdog(&bin, &dir);
        let data = dir.join("data");
        let out = as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                USER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        check("initdb", &out);
        let cluster = Self {
            watchdog,
            dir,
            port: free_port(),
            bin,
            next_db: AtomicU32::new(0),
        };
        cluster.start_server();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Starts the server (after [`PgCluster::stop_server`]) on the same
    /// port, waiting until it accepts connections.
    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let out = as_postgres(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            panic!(
                "pg_ctl start failed ({}):\n{}\n{}\nserver log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Stops the server at once (`-m immediate`: connections drop).
    pub fn stop_server(&self) {
        let out = as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        check("pg_ctl stop", &out);
    }

    /// Stops and starts the server.
    pub fn restart(&self) {
        self.stop_server();
        self.start_server();
    }

    /// The cluster's folder (owned by the `postgres` user; the server's
    /// socket and log live here, its data in `data/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hands `path` (a file written as root) to the server's user, mode
    /// 0600, as PostgreSQL wants its TLS key.
    pub fn give_to_server(&self, path: &Path) {
        let status = Command::new("chown")
            .arg(format!("{OS_USER}:"))
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown {}", path.display());
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    /// Appends `lines` to the server's `postgresql.conf` (effective at the
    /// next [`PgCluster::restart`]).
    pub fn append_config(&self, lines: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("data/postgresql.conf"))
            .expect("open postgresql.conf");
        file.write_all(lines.as_bytes())
            .expect("write postgresql.conf");
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of database `db`.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A synchronous client of database `db`, for tests that look at or
    /// edit the tables directly.
    pub fn client(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.url_for(db), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {db}: {e}"))
    }

    /// Creates database `name`; returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let mut client = self.client("postgres");
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        self.url_for(name)
    }

    /// Creates a database with a name no other call gave; returns the name.
    pub fn fresh_database(&self, label: &str) -> String {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name: String = format!("{label}_{n}")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let name = name.to_ascii_lowercase();
        self.create_database(&name);
        name
    }

    /// Stops the server and removes the folder.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(mut watchdog) = self.watchdog.take() {
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());

/// The test binary's shared cluster: started by the first caller, stopped
/// when the last handle is dropped (and started again by a later caller).
/// Tests that stop the server use a cluster of their own
/// ([`PgCluster::start`]).
pub fn shared() -> Arc<PgCluster> {
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = slot.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(PgCluster::start());
    *slot = Arc::downgrade(&cluster);
    cluster
}

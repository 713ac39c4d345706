//! The built-in `postgres` store against a real PostgreSQL server (a
//! throwaway cluster, see `keygate_tests::postgres`): the SDK's
//! conformance suites, and the refusals that matter: values, versions and
//! rows edited in the table, wrong or missing keys, a database that is
//! unreachable, down for a while, or newer than this build.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keygate_core::config::Config;
use keygate_core::plugin_host::PluginHost;
use keygate_sdk::{
    BatchOp, BatchStore, ErrorKind, PluginError, SecretStore, StorePlugin, WatchStore,
};
use keygate_sdk_testing::{WithGuard, test_context};
use keygate_store_postgres::{PgStore, SCHEMA_VERSION};
use keygate_tests::postgres::{self, PgCluster, free_port};
use tempfile::TempDir;

/// Opens a store on `url` with `dir` as config and state folder.
fn open_in(dir: &Path, url: &str, extra: &str) -> Result<PgStore, PluginError> {
    PgStore::from_config(
        &format!("url = {url:?}\n{extra}"),
        test_context("store(postgres)", dir),
    )
}

/// A store on a fresh database of the shared cluster, and what it needs.
struct Db {
    cluster: Arc<PgCluster>,
    name: String,
    dir: TempDir,
}

impl Db {
    fn new(label: &str) -> Self {
        let cluster = postgres::shared();
        let name = cluster.fresh_database(label);
        Self {
            cluster,
            name,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> String {
        self.cluster.url_for(&self.name)
    }

    fn open(&self) -> PgStore {
        open_in(self.dir.path(), &self.url(), "").expect("open")
    }

    fn open_err(&self, dir: &Path, extra: &str) -> PluginError {
        match open_in(dir, &self.url(), extra) {
            Ok(store) => panic!("opened {store:?}"),
            Err(e) => e,
        }
    }

    fn sql(&self) -> ::postgres::Client {
        self.cluster.client(&self.name)
    }

    /// The row of `key` as stored: version and sealed value.
    fn row(&self, key: &str) -> Option<(i64, Vec<u8>)> {
        self.sql()
            .query_opt(
                "SELECT version, value FROM keygate_records WHERE key = $1",
                &[&key],
            )
            .unwrap()
            .map(|row| (row.get(0), row.get(1)))
    }
}

fn make_store() -> WithGuard<PgStore, Db> {
    let db = Db::new("conformance");
    WithGuard(db.open(), db)
}

mod conformance {
    keygate_sdk_testing::secret_store_conformance!(super::make_store);
}

mod batch_conformance {
    keygate_sdk_testing::batch_store_conformance!(super::make_store);
}

mod watch_conformance {
    keygate_sdk_testing::watch_store_conformance!(super::make_store);
}

/// The sessions listening for writes on database `name`.
fn listeners(cluster: &PgCluster, name: &str) -> i64 {
    cluster
        .client("postgres")
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'keygate watch'",
            &[&name],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_write_through_another_store_object_wakes_a_watcher_and_it_then_reads_the_write() {
    let db = Db::new("watch2");
    let (writer, watcher) = (db.open(), db.open());
    let seen = watcher.wait_for_writes(0, Duration::ZERO).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            writer.put("revocations/d1", b"x", None).unwrap();
        });
        let moved = watcher
            .wait_for_writes(seen, Duration::from_secs(30))
            .unwrap();
        assert_ne!(moved, seen, "a write on another connection woke no one");
        // Notified at commit: a read after the wake sees the write.
        assert!(watcher.get("revocations/d1").unwrap().is_some());
    });
    // A conflict writes nothing and commits nothing: no wake.
    let seen = watcher.wait_for_writes(0, Duration::ZERO).unwrap();
    let err = writer.put("revocations/d1", b"y", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(
        watcher
            .wait_for_writes(seen, Duration::from_millis(300))
            .unwrap(),
        seen,
        "a write that failed woke the watcher"
    );
}

#[test]
fn a_store_listens_only_once_asked_and_stops_when_dropped() {
    let db = Db::new("listen");
    let store = db.open();
    store.put("k", b"v", None).unwrap();
    assert_eq!(listeners(&db.cluster, &db.name), 0, "a CLI never listens");
    store.wait_for_writes(0, Duration::ZERO).unwrap();
    assert_eq!(listeners(&db.cluster, &db.name), 1);
    drop(store);
    let gone = Instant::now();
    while listeners(&db.cluster, &db.name) != 0 {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "the listening connection outlived its store"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_watcher_is_unavailable_while_the_database_is_down_and_listens_again_by_itself() {
    // A cluster of its own: this test stops the server.
    let cluster = PgCluster::start();
    let name = cluster.fresh_database("watchdown");
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url_for(&name);
    let watcher = open_in(dir.path(), &url, "connect_timeout_ms = 500").unwrap();
    let writer = open_in(dir.path(), &url, "connect_timeout_ms = 500").unwrap();
    let before = watcher.wait_for_writes(0, Duration::ZERO).unwrap();
    cluster.stop_server();
    let started = Instant::now();
    let err = loop {
        match watcher.wait_for_writes(before, Duration::from_millis(300)) {
            Err(e) => break e,
            Ok(p) => assert_eq!(p, before, "moved with the server down"),
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never noticed");
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.message()
            .contains(&format!("127.0.0.1:{}/{name}", cluster.port()))
            && err.message().contains("not listening for writes"),
        "{err}"
    );
    cluster.start_server();
    // Back by itself; the position moved, as writes may have been missed.
    let back = watcher
        .wait_for_writes(before, Duration::from_secs(30))
        .expect("listening again after the restart");
    assert_ne!(back, before);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            writer.put("after", b"v", None).unwrap();
        });
        let moved = watcher
            .wait_for_writes(back, Duration::from_secs(30))
            .unwrap();
        assert_ne!(moved, back, "a write after the restart woke no one");
    });
}

fn assert_tampered(err: PluginError, key: &str) {
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(
        err.message().contains(&format!("record {key:?}")),
        "names the key: {err}"
    );
    assert!(err.message().contains("tampered"), "{err}");
}

#[test]
fn a_value_edited_in_the_table_is_internal_naming_the_key_and_nothing_else_changes() {
    let db = Db::new("edited");
    let store = db.open();
    let v = store.put("devices/x", b"secret", None).unwrap();
    store.put("devices/y", b"other", None).unwrap();
    let (_, sealed) = db.row("devices/x").unwrap();
    assert!(
        !sealed.windows(6).any(|w| w == b"secret"),
        "sealed in the table"
    );
    db.sql()
        .execute(
            "UPDATE keygate_records SET value = set_byte(value, 30, get_byte(value, 30) # 1) \
             WHERE key = 'devices/x'",
            &[],
        )
        .unwrap();
    let edited = db.row("devices/x").unwrap();
    assert_tampered(store.get("devices/x").unwrap_err(), "devices/x");
    // Never overwritten, nor deleted, by a write naming its version.
    assert_tampered(
        store.put("devices/x", b"new", Some(v)).unwrap_err(),
        "devices/x",
    );
    assert_tampered(store.delete("devices/x", v).unwrap_err(), "devices/x");
    assert_eq!(
        db.row("devices/x").unwrap(),
        edited,
        "the row is left as found"
    );
    assert_eq!(store.get("devices/y").unwrap().unwrap().value, b"other");
    assert_eq!(store.list("devices/").unwrap(), ["devices/x", "devices/y"]);
    // Quarantine moves it aside; the key may be written again.
    let place = store.quarantine("devices/x").unwrap();
    assert!(
        place.starts_with("table keygate_quarantine, id "),
        "{place}"
    );
    assert!(store.get("devices/x").unwrap().is_none());
    let kept: Vec<u8> = db
        .sql()
        .query_one(
            "SELECT value FROM keygate_quarantine WHERE key = 'devices/x'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(kept, edited.1, "the quarantined bytes are the row's");
    store.put("devices/x", b"again", None).unwrap();
}

#[test]
fn a_version_column_changed_in_the_table_is_refused() {
    let db = Db::new("version");
    let store = db.open();
    let v = store.put("k", b"value", None).unwrap();
    db.sql()
        .execute(
            "UPDATE keygate_records SET version = version + 1 WHERE key = 'k'",
            &[],
        )
        .unwrap();
    assert_tampered(store.get("k").unwrap_err(), "k");
    // Not even the row's own version lets a write through.
    assert_tampered(store.put("k", b"x", Some(v + 1)).unwrap_err(), "k");
    assert_eq!(db.row("k").unwrap().0, v as i64 + 1);
}

#[test]
fn a_row_copied_to_another_key_is_refused() {
    let db = Db::new("copied");
    let store = db.open();
    store.put("devices/a", b"a's value", None).unwrap();
    db.sql()
        .execute(
            "INSERT INTO keygate_records (key, version, value) \
             SELECT 'devices/b', version, value FROM keygate_records WHERE key = 'devices/a'",
            &[],
        )
        .unwrap();
    assert_tampered(store.get("devices/b").unwrap_err(), "devices/b");
    assert_eq!(store.get("devices/a").unwrap().unwrap().value, b"a's value");
}

#[test]
fn a_wrong_key_file_is_refused_at_open_naming_it() {
    let db = Db::new("wrongkey");
    db.open().put("k", b"v", None).unwrap();
    let other = tempfile::tempdir().unwrap();
    let key_file = other.path().join("store.key");
    std::fs::write(&key_file, [7u8; 32]).unwrap();
    let err = db.open_err(other.path(), "");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(
        err.message().starts_with(&format!(
            "key file {} does not match the key database 127.0.0.1:{}/{} was initialised with",
            key_file.display(),
            db.cluster.port(),
            db.name
        )),
        "{err}"
    );
    assert!(err.message().contains("copy the key file"), "{err}");
}

#[test]
fn a_missing_key_file_for_a_database_with_records_is_an_error_and_no_new_key() {
    let db = Db::new("nokey");
    db.open().put("k", b"v", None).unwrap();
    // The key check is gone too: the records alone must stop a new key.
    db.sql()
        .execute("DELETE FROM keygate_meta WHERE name = 'keycheck'", &[])
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let err = db.open_err(other.path(), "");
    let key_file = other.path().join("store.key");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(
        err.message()
            .starts_with(&format!("key file {} does not exist", key_file.display())),
        "{err}"
    );
    assert!(!key_file.exists(), "no new key file");
    // And with the right key the check is written again.
    let store = db.open();
    assert_eq!(store.get("k").unwrap().unwrap().value, b"v");
    let checks: i64 = db
        .sql()
        .query_one(
            "SELECT count(*) FROM keygate_meta WHERE name = 'keycheck'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(checks, 1);
}

#[test]
fn two_gateways_racing_to_initialise_an_empty_database_end_with_one_key() {
    let db = Db::new("race");
    let dirs: Vec<TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let url = db.url();
    let results: Vec<Result<PgStore, PluginError>> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|dir| s.spawn(|| open_in(dir.path(), &url, "")))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<usize> = (0..2).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(won.len(), 1, "exactly one opens");
    let lost = 1 - won[0];
    let err = results[lost].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(err.message().contains("copy the key file"), "{err}");
    assert!(
        !dirs[lost].path().join("store.key").exists(),
        "the loser made no key"
    );
    // Copying the winner's key file is the fix.
    std::fs::copy(
        dirs[won[0]].path().join("store.key"),
        dirs[lost].path().join("store.key"),
    )
    .unwrap();
    open_in(dirs[lost].path(), &url, "").expect("opens with the winner's key");
}

#[test]
fn a_passphrase_store_keeps_its_salt_in_the_meta_table_and_refuses_another_passphrase() {
    let db = Db::new("passphrase");
    let var = "KEYGATE_PG_TEST_PASSPHRASE";
    let wrong = "KEYGATE_PG_TEST_PASSPHRASE_WRONG";
    // SAFETY: these variable names are used by this test only.
    unsafe {
        std::env::set_var(var, "correct horse");
        std::env::set_var(wrong, "battery staple");
    }
    let config = format!("passphrase_env = {var:?}");
    let store = open_in(db.dir.path(), &db.url(), &config).unwrap();
    store.put("k", b"v", None).unwrap();
    drop(store);
    assert!(!db.dir.path().join("store.key").exists());
    let kdf: i64 = db
        .sql()
        .query_one("SELECT count(*) FROM keygate_meta WHERE name = 'kdf'", &[])
        .unwrap()
        .get(0);
    assert_eq!(kdf, 1);
    let err = db.open_err(db.dir.path(), &format!("passphrase_env = {wrong:?}"));
    assert!(
        err.message()
            .starts_with(&format!("the passphrase in ${wrong} does not match")),
        "{err}"
    );
    let err = db.open_err(db.dir.path(), "");
    assert!(err.message().contains("passphrase_env"), "{err}");
    let store = open_in(db.dir.path(), &db.url(), &config).unwrap();
    assert_eq!(store.get("k").unwrap().unwrap().value, b"v");
}

#[test]
fn a_missing_url_variable_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let var = "KEYGATE_PG_TEST_URL_SURELY_UNSET";
    let err = PgStore::from_config(
        &format!("url_env = {var:?}"),
        test_context("store(postgres)", dir.path()),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(
        err.message().starts_with("field \"url_env\"") && err.message().contains(var),
        "{err}"
    );
}

#[test]
fn a_database_unreachable_at_open_is_unavailable_naming_host_and_port_not_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("postgres://keygate:hunter2@127.0.0.1:{port}/state");
    let err = open_in(dir.path(), &url, "connect_timeout_ms = 1000").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.message()
            .starts_with(&format!("database 127.0.0.1:{port}/state: cannot connect")),
        "{err}"
    );
    assert!(!err.message().contains("hunter2"), "{err}");
    assert!(
        !dir.path().join("store.key").exists(),
        "no key without a database"
    );
}

#[test]
fn a_database_down_after_open_is_unavailable_and_the_same_store_recovers() {
    // A cluster of its own: this test stops the server.
    let cluster = PgCluster::start();
    let name = cluster.fresh_database("down");
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(
        dir.path(),
        &cluster.url_for(&name),
        "connect_timeout_ms = 500\npool_size = 2",
    )
    .unwrap();
    let v = store.put("k", b"1", None).unwrap();
    // Several connections in the pool, all of them about to break.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| store.list("").unwrap());
        }
    });
    cluster.stop_server();
    for result in [
        store.get("k").map(drop),
        store.put("k", b"2", Some(v)).map(drop),
        store.list("").map(drop),
        store
            .apply_batch(&[BatchOp::Delete {
                key: "k".into(),
                expected: v,
            }])
            .map(drop),
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(
            err.message()
                .contains(&format!("127.0.0.1:{}/{name}", cluster.port())),
            "{err}"
        );
    }
    cluster.start_server();
    // The first calls after the restart work: broken connections are
    // replaced, not handed out.
    assert_eq!(store.get("k").unwrap().unwrap().value, b"1");
    let v2 = store.put("k", b"2", Some(v)).unwrap();
    assert_eq!(store.get("k").unwrap().unwrap().version, v2);
}

#[test]
fn a_newer_schema_version_is_refused_naming_both_versions() {
    let db = Db::new("schema");
    db.open().put("k", b"v", None).unwrap();
    let newer = SCHEMA_VERSION + 1;
    db.sql()
        .execute(
            "UPDATE keygate_meta SET value = convert_to($1, 'UTF8') WHERE name = 'schema_version'",
            &[&newer.to_string()],
        )
        .unwrap();
    let err = db.open_err(db.dir.path(), "");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
    assert!(
        err.message().contains(&format!(
            "has keygate schema version {newer}, newer than version {SCHEMA_VERSION}"
        )),
        "{err}"
    );
}

#[test]
fn two_store_objects_racing_cas_increments_lose_no_update() {
    let db = Db::new("cas");
    let stores = [db.open(), db.open()];
    stores[0].put("counter", b"0", None).unwrap();
    const THREADS_PER_STORE: usize = 4;
    const INCREMENTS: usize = 25;
    std::thread::scope(|s| {
        for store in &stores {
            for _ in 0..THREADS_PER_STORE {
                s.spawn(move || {
                    for _ in 0..INCREMENTS {
                        loop {
                            let cur = store.get("counter").unwrap().unwrap();
                            let n: usize =
                                std::str::from_utf8(&cur.value).unwrap().parse().unwrap();
                            match store.put(
                                "counter",
                                (n + 1).to_string().as_bytes(),
                                Some(cur.version),
                            ) {
                                Ok(_) => break,
                                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                });
            }
        }
    });
    let total = stores.len() * THREADS_PER_STORE * INCREMENTS;
    assert_eq!(
        stores[1].get("counter").unwrap().unwrap().value,
        total.to_string().as_bytes()
    );
}

#[test]
fn the_gateway_loads_the_store_by_name_with_its_batch_and_watch_capabilities() {
    let db = Db::new("host");
    let config = keygate_tests::write_config(
        db.dir.path(),
        &format!(
            "state_dir = \"state\"\n\n[plugins.store]\nuse = \"postgres\"\n\
             [plugins.store.config]\nurl = {:?}\npool_size = 2\n",
            db.url()
        ),
    );
    let host = PluginHost::load(&Config::load(&config).expect("config")).expect("load");
    let store = &host.store;
    let v = store.put("devices/a", b"1", None).unwrap();
    let batch = host
        .batch
        .as_ref()
        .expect("the postgres store has the batch capability");
    let versions = batch
        .apply_batch(&[
            BatchOp::Put {
                key: "devices/a".into(),
                value: b"2".to_vec(),
                expected: Some(v),
            },
            BatchOp::Put {
                key: "devices/b".into(),
                value: b"3".to_vec(),
                expected: None,
            },
        ])
        .unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(store.list("devices/").unwrap(), ["devices/a", "devices/b"]);
    assert!(host.watch.is_some(), "the postgres store reports writes");
    let err = batch
        .apply_batch(&[
            BatchOp::Put {
                key: "devices/c".into(),
                value: b"4".to_vec(),
                expected: None,
            },
            BatchOp::Delete {
                key: "devices/a".into(),
                expected: v,
            },
        ])
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("store(postgres)"), "labelled: {err}");
    assert_eq!(store.list("devices/").unwrap(), ["devices/a", "devices/b"]);
    assert!(
        db.dir.path().join("state/store.key").is_file(),
        "the key file is in the gateway's state folder"
    );
}

/// A CA and a server certificate for 127.0.0.1 and localhost, written
/// into the cluster's folder for the server; the CA's PEM.
fn serve_tls(cluster: &PgCluster) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "keygate test database CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let dir = cluster.dir();
    std::fs::write(dir.join("server.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    cluster.give_to_server(&dir.join("server.crt"));
    cluster.give_to_server(&dir.join("server.key"));
    cluster.append_config(&format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
        dir.join("server.crt").display(),
        dir.join("server.key").display()
    ));
    cluster.restart();
    ca_cert.pem()
}

#[test]
fn tls_to_the_database_verifies_the_server_against_ca_file() {
    let cluster = PgCluster::start();
    let ca = serve_tls(&cluster);
    let name = cluster.fresh_database("tls");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("db-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let url = format!("{}?sslmode=verify-full", cluster.url_for(&name));
    let store = open_in(dir.path(), &url, "ca_file = \"db-ca.pem\"").expect("TLS open");
    store.put("k", b"v", None).unwrap();
    assert_eq!(store.get("k").unwrap().unwrap().value, b"v");
    let tls_connections: i64 = cluster
        .client(&name)
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'keygate' AND s.ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(tls_connections >= 1, "the pool's connection is TLS");
    drop(store);
    // Without the CA the server is not trusted: refused, not downgraded.
    let other = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("store.key"), other.path().join("store.key")).unwrap();
    let url = format!("{}?sslmode=require", cluster.url_for(&name));
    let err = open_in(other.path(), &url, "").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("UnknownIssuer"), "{err}");
}

#[test]
fn concurrent_creations_of_one_key_give_one_winner_and_conflicts() {
    let db = Db::new("creations");
    let stores = [db.open(), db.open()];
    for round in 0..10 {
        let key = format!("k/{round}");
        let barrier = std::sync::Barrier::new(8);
        let results: Vec<Result<u64, PluginError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (store, key, barrier) = (&stores[i % 2], &key, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        store.put(key, format!("{i}").as_bytes(), None)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        for err in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
        }
    }
}

#[test]
fn a_write_the_database_refuses_for_its_own_reasons_is_unavailable_not_a_conflict() {
    let db = Db::new("refused");
    let store = db.open();
    db.sql()
        .batch_execute(
            "CREATE FUNCTION keygate_test_refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'disk quota exceeded (test)'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT ON keygate_records \
             FOR EACH ROW EXECUTE FUNCTION keygate_test_refuse();",
        )
        .unwrap();
    let err = store.put("k", b"v", None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(
        err.message().contains("disk quota exceeded (test)"),
        "{err}"
    );
    assert!(store.get("k").unwrap().is_none());
}

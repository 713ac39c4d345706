use keygate_sdk::{LogLevel, Logger, PluginContext, StorePlugin};
struct Q;
impl Logger for Q { fn log(&self, _: LogLevel, _: &str) {} }
#[test]
fn timing() {
    let d = tempfile::tempdir().unwrap();
    unsafe { std::env::set_var("KG_TIMING_PW", "pw") };
    let t = std::time::Instant::now();
    let _s = keygate_store_fs::FsStore::from_config("passphrase_env = \"KG_TIMING_PW\"", PluginContext::new("f", d.path(), d.path(), Q)).unwrap();
    eprintln!("open with passphrase: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let _s = keygate_store_fs::FsStore::from_config("root = \"r2\"", PluginContext::new("f", d.path(), d.path(), Q)).unwrap();
    eprintln!("open with key file: {:?}", t.elapsed());
}

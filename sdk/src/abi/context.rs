//! [`PluginContext`] and its logger across the boundary.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::{
    StableAbi, sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RArc, RStr, RString, RVec},
};

use crate::context::{LogLevel, Logger, PluginContext};

/// The host's logger as seen across the boundary.
#[sabi_trait]
pub trait AbiLogger: Send + Sync + Clone {
    /// Records one line.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, message: RStr<'_>);
}

/// A shareable logger object.
pub type LoggerBox = AbiLogger_TO<'static, RArc<()>>;

/// The host's logger, exported.
#[derive(Clone)]
struct LoggerAdapter(Arc<dyn Logger>);

impl AbiLogger for LoggerAdapter {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        // A panic must not unwind into the plugin's frames.
        let _ = catch_unwind(AssertUnwindSafe(|| self.0.log(level, message.as_str())));
    }
}

/// An exported logger, as the plugin calls it.
struct LoggerClient(LoggerBox);

impl Logger for LoggerClient {
    fn log(&self, level: LogLevel, message: &str) {
        AbiLogger_TO::log(&self.0, level, message.into());
    }
}

/// The ABI form of [`PluginContext`]. Paths travel as their bytes (Unix).
#[repr(C)]
#[derive(StableAbi, Clone)]
pub struct AbiPluginContext {
    plugin_name: RString,
    config_dir: RVec<u8>,
    state_dir: RVec<u8>,
    logger: LoggerBox,
}

fn path_bytes(path: &Path) -> RVec<u8> {
    path.as_os_str().as_bytes().into()
}

fn bytes_path(bytes: &RVec<u8>) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes.as_slice()))
}

impl From<PluginContext> for AbiPluginContext {
    fn from(ctx: PluginContext) -> Self {
        Self {
            plugin_name: ctx.plugin_name.as_str().into(),
            config_dir: path_bytes(&ctx.config_dir),
            state_dir: path_bytes(&ctx.state_dir),
            logger: AbiLogger_TO::from_ptr(RArc::new(LoggerAdapter(ctx.logger)), TD_Opaque),
        }
    }
}

impl From<AbiPluginContext> for PluginContext {
    fn from(ctx: AbiPluginContext) -> Self {
        Self {
            plugin_name: ctx.plugin_name.into_string(),
            config_dir: bytes_path(&ctx.config_dir),
            state_dir: bytes_path(&ctx.state_dir),
            logger: Arc::new(LoggerClient(ctx.logger)),
        }
    }
}

//! The logger callback as an ABI-stable trait object.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use abi_stable::{
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RArc, RStr},
};

use crate::context::{LogLevel, Logger};

/// The host's logger as seen across the boundary.
#[sabi_trait]
pub trait AbiLogger: Send + Sync + Clone {
    /// Records one line.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, message: RStr<'_>);
}

/// A shareable logger object.
pub type LoggerBox = AbiLogger_TO<'static, RArc<()>>;

#[derive(Clone)]
struct LoggerAdapter(Arc<dyn Logger>);

impl AbiLogger for LoggerAdapter {
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        // A panic must not unwind into the plugin's frames.
        let _ = catch_unwind(AssertUnwindSafe(|| self.0.log(level, message.as_str())));
    }
}

pub(crate) fn logger_box(logger: impl Logger) -> LoggerBox {
    AbiLogger_TO::from_ptr(RArc::new(LoggerAdapter(Arc::new(logger))), TD_Opaque)
}

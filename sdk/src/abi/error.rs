//! [`PluginError`] across the boundary, and the guard that turns a panic
//! into one.

use std::panic::{AssertUnwindSafe, catch_unwind};

use abi_stable::{
    StableAbi,
    std_types::{RResult, RString},
};

use crate::error::panic_to_error;
use crate::{ErrorKind, PluginError};

/// The ABI form of [`PluginError`].
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct AbiPluginError {
    kind: ErrorKind,
    message: RString,
}

impl From<PluginError> for AbiPluginError {
    fn from(e: PluginError) -> Self {
        Self {
            kind: e.kind(),
            message: e.message().into(),
        }
    }
}

impl From<AbiPluginError> for PluginError {
    fn from(e: AbiPluginError) -> Self {
        PluginError::new(e.kind, e.message.into_string())
    }
}

/// A result as it crosses the boundary.
pub type AbiResult<T> = RResult<T, AbiPluginError>;

/// Back from the boundary: the plain result, values converted with `From`.
pub fn from_abi<A, T: From<A>>(result: AbiResult<A>) -> Result<T, PluginError> {
    result.into_result().map(T::from).map_err(PluginError::from)
}

/// Runs `f`, turning its error into the ABI form and a panic into an
/// `Internal` error naming `what`.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, PluginError>) -> AbiResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(payload) => RResult::RErr(panic_to_error(what, payload).into()),
    }
}

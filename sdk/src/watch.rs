//! The `watch` capability of stores: being told that a write committed,
//! by this process or any other sharing the store, instead of polling.
//!
//! A store that has it implements [`WatchStore`] next to
//! [`SecretStore`](crate::SecretStore) and marks itself in the export
//! macro (`stores: [MyStore: batch + watch]`, or `[MyStore: watch]`).
//! Libraries built before the capability existed still load; the host then
//! polls the store as it always did. Like `batch`, the capability comes as
//! a new trait offered through a new constructor of the root module; the
//! `SecretStore` trait does not change.
//!
//! Keygate's gateway uses it to follow the identity state: a revocation
//! committed through another gateway (or the CLI on another host) reaches
//! this one's revocation index as soon as the store reports the write,
//! rather than at its next poll.

use std::time::Duration;

use crate::PluginError;

/// A store that reports committed writes.
///
/// # Contract
/// The store keeps a **write position**: a `u64` it changes (by any
/// amount; only equality matters) every time it learns that a write
/// committed, whoever made it. It starts anywhere.
///
/// - `wait_for_writes(seen, timeout)` returns the position as soon as it
///   differs from `seen`, at once if it already does, and otherwise after
///   about `timeout` with the unchanged position. `timeout` zero reads the
///   position without waiting.
/// - **No lost wake-ups.** A write that commits after the position was
///   read as `seen` changes the position (soon after it commits: the
///   store's notification delay), so a caller that reads the position,
///   then reads the store, then waits with that position never sleeps
///   through a write its read did not see.
/// - **When in doubt, move.** A store that may have missed writes (its
///   notification channel dropped and was re-established) changes the
///   position: a spurious wake-up costs the caller one read, a missed one
///   costs correctness.
/// - A store that cannot watch *now* (the channel is down) answers
///   [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable), after
///   waiting about `timeout`; callers then fall back to polling until it
///   answers again.
/// - Safe to call from several threads at once.
pub trait WatchStore: Send + Sync + 'static {
    /// Waits until the write position differs from `seen`, or `timeout`
    /// passes; returns the position. See the trait's contract.
    fn wait_for_writes(&self, seen: u64, timeout: Duration) -> Result<u64, PluginError>;
}

impl<S: WatchStore + ?Sized> WatchStore for std::sync::Arc<S> {
    fn wait_for_writes(&self, seen: u64, timeout: Duration) -> Result<u64, PluginError> {
        (**self).wait_for_writes(seen, timeout)
    }
}

impl<S: WatchStore + ?Sized> WatchStore for Box<S> {
    fn wait_for_writes(&self, seen: u64, timeout: Duration) -> Result<u64, PluginError> {
        (**self).wait_for_writes(seen, timeout)
    }
}

//! The secret store as the gateway uses it, measured: every call's latency
//! and every error, by slot, plugin and operation. The plugin host wraps
//! the store in it when it hands the store to identity state
//! ([`PluginHost::measured_state_store`](crate::plugin_host::PluginHost::measured_state_store)),
//! so every store call of the gateway is counted.
//!
//! A call costs one `Instant::now` pair and two atomic adds (three on an
//! error): the handles are looked up once, when the wrapper is built.

use std::sync::Arc;
use std::time::Instant;

use keygate_sdk::{BatchOp, BatchStore, PluginError, SecretStore, Version, Versioned};
use prometheus_client::metrics::counter::Counter;

use super::{AtomicHistogram, Metrics, StoreLabels};

/// The operations measured, in [`Op`] order.
const OPERATIONS: [&str; 6] = ["get", "put", "delete", "list", "quarantine", "batch"];

#[derive(Clone, Copy)]
enum Op {
    Get,
    Put,
    Delete,
    List,
    Quarantine,
    Batch,
}

/// One operation's handles.
struct Handles {
    latency: AtomicHistogram,
    errors: Counter,
}

/// A store (and its batch capability, when it has one) whose calls are
/// measured into a [`Metrics`].
pub struct MeasuredStore {
    records: Arc<dyn SecretStore>,
    batch: Option<Arc<dyn BatchStore>>,
    handles: Vec<Handles>,
}

impl std::fmt::Debug for MeasuredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasuredStore")
            .field("batch", &self.batch.is_some())
            .finish_non_exhaustive()
    }
}

impl MeasuredStore {
    /// Measures `records` (and `batch`, the same store's batch capability)
    /// under `slot` and `plugin`.
    pub fn new(
        metrics: &Metrics,
        slot: &str,
        plugin: &str,
        records: Arc<dyn SecretStore>,
        batch: Option<Arc<dyn BatchStore>>,
    ) -> Self {
        let handles = OPERATIONS
            .iter()
            .map(|operation| {
                let labels = StoreLabels {
                    slot: slot.to_owned(),
                    plugin: plugin.to_owned(),
                    operation,
                };
                Handles {
                    latency: metrics.store_latency.get_or_create_owned(&labels),
                    errors: metrics.store_errors.get_or_create_owned(&labels),
                }
            })
            .collect();
        Self {
            records,
            batch,
            handles,
        }
    }

    /// Whether the wrapped store has the batch capability.
    pub fn has_batch(&self) -> bool {
        self.batch.is_some()
    }

    fn measure<T>(
        &self,
        op: Op,
        call: impl FnOnce() -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        let handles = &self.handles[op as usize];
        let started = Instant::now();
        let result = call();
        handles.latency.observe(started.elapsed());
        if result.is_err() {
            handles.errors.inc();
        }
        result
    }
}

impl SecretStore for MeasuredStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, PluginError> {
        self.measure(Op::Get, || self.records.get(key))
    }
    fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Version>,
    ) -> Result<Version, PluginError> {
        self.measure(Op::Put, || self.records.put(key, value, expected))
    }
    fn delete(&self, key: &str, expected: Version) -> Result<(), PluginError> {
        self.measure(Op::Delete, || self.records.delete(key, expected))
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>, PluginError> {
        self.measure(Op::List, || self.records.list(prefix))
    }
    fn quarantine(&self, key: &str) -> Result<String, PluginError> {
        self.measure(Op::Quarantine, || self.records.quarantine(key))
    }
}

impl BatchStore for MeasuredStore {
    /// # Errors
    /// `Unsupported` when the wrapped store has no batch capability (the
    /// host hands this wrapper out as a batch store only when it has).
    fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
        self.measure(Op::Batch, || match &self.batch {
            Some(batch) => batch.apply_batch(ops),
            None => Err(PluginError::unsupported(
                "this store has no batch capability",
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_store_memory::MemoryStore;

    fn measured(metrics: &Metrics) -> MeasuredStore {
        let store = Arc::new(MemoryStore::new());
        MeasuredStore::new(metrics, "store", "memory", store.clone(), Some(store))
    }

    fn labels(operation: &'static str) -> StoreLabels {
        StoreLabels {
            slot: "store".into(),
            plugin: "memory".into(),
            operation,
        }
    }

    fn latency(metrics: &Metrics, operation: &'static str) -> AtomicHistogram {
        metrics
            .store_latency
            .get_or_create_owned(&labels(operation))
    }

    fn errors(metrics: &Metrics, operation: &'static str) -> u64 {
        metrics
            .store_errors
            .get_or_create_owned(&labels(operation))
            .get()
    }

    #[test]
    fn every_call_is_timed_under_its_operation_and_an_error_is_counted_under_its_own() {
        let metrics = Metrics::new();
        let store = measured(&metrics);
        let v = store.put("a", b"1", None).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().value, b"1");
        assert_eq!(store.list("").unwrap(), ["a"]);
        // A compare-and-swap that fails: the error is the store's, counted.
        let conflict = store.put("a", b"2", None).unwrap_err();
        assert_eq!(conflict.kind(), keygate_sdk::ErrorKind::Conflict);
        store
            .apply_batch(&[BatchOp::Delete {
                key: "a".into(),
                expected: v,
            }])
            .unwrap();
        assert_eq!(latency(&metrics, "put").count(), 2);
        assert_eq!(latency(&metrics, "get").count(), 1);
        assert_eq!(latency(&metrics, "list").count(), 1);
        assert_eq!(latency(&metrics, "batch").count(), 1);
        assert_eq!(latency(&metrics, "delete").count(), 0);
        assert!(latency(&metrics, "put").sum() > std::time::Duration::ZERO);
        assert_eq!(errors(&metrics, "put"), 1);
        assert_eq!(errors(&metrics, "get"), 0);
        assert_eq!(errors(&metrics, "batch"), 0);
        let text = metrics.encode(&Default::default()).unwrap();
        assert!(
            text.contains(
                "keygate_store_operation_errors_total{slot=\"store\",plugin=\"memory\",operation=\"put\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "keygate_store_operation_seconds_count{slot=\"store\",plugin=\"memory\",operation=\"put\"} 2"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_store_without_the_batch_capability_refuses_a_batch_and_counts_it() {
        let metrics = Metrics::new();
        let store = MeasuredStore::new(
            &metrics,
            "store",
            "memory",
            Arc::new(MemoryStore::new()),
            None,
        );
        assert!(!store.has_batch());
        let err = store.apply_batch(&[]).unwrap_err();
        assert_eq!(err.kind(), keygate_sdk::ErrorKind::Unsupported);
        assert_eq!(errors(&metrics, "batch"), 1);
    }
}

//! The memory store, called directly, passes the SecretStore, BatchStore
//! and WatchStore conformance suites.

use keygate_store_memory::MemoryStore;

keygate_sdk_testing::secret_store_conformance!(MemoryStore::new);
keygate_sdk_testing::batch_store_conformance!(MemoryStore::new);
keygate_sdk_testing::watch_store_conformance!(MemoryStore::new);

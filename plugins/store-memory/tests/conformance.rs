//! The memory store, called directly, passes the SecretStore conformance suite.

use keygate_store_memory::MemoryStore;

keygate_sdk_testing::secret_store_conformance!(MemoryStore::new);

//! What a mutation's plan reads through.
//!
//! A plan (the closure given to `IdentityManager::mutate`) reads the state
//! it decides on and returns the records to write. It runs inside a commit
//! group (see the `group` module), after the plans of its group that came
//! before it, whose writes are not in the store yet: so it reads through
//! the group's overlay, never the store directly. [`Planner`] is the only
//! door a plan has: it offers the reads (through the overlay) and the CA
//! and settings, and nothing that would bypass the overlay.

use keygate_sdk::{SecretStore, Version};
use serde::de::DeserializeOwned;

use super::IdentityError;
use super::UnreadableRecord;
use super::fault::{Read, read_record};
use super::manager::{IdentityManager, IdentitySettings, Listing, decode};
use crate::ca::CertificateAuthority;

/// A plan's view of the state: the store as its group left it so far.
pub(crate) struct Planner<'a> {
    pub(super) m: &'a IdentityManager,
    pub(super) store: &'a dyn SecretStore,
}

impl Planner<'_> {
    /// The store, as the group left it so far.
    pub(super) fn store(&self) -> &dyn SecretStore {
        self.store
    }

    /// The CA.
    pub(super) fn ca(&self) -> &CertificateAuthority {
        self.m.ca()
    }

    /// The settings.
    pub(super) fn settings(&self) -> &IdentitySettings {
        self.m.settings()
    }

    /// The record at `key` with its version.
    pub(super) fn get_record<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Version)>, IdentityError> {
        get_record_in(self.store, key)
    }

    /// The keys under `prefix`.
    pub(super) fn store_list(&self, prefix: &str) -> Result<Vec<String>, IdentityError> {
        Ok(self.store.list(prefix)?)
    }

    /// Every record under `prefix`; see [`all_in`].
    pub(super) fn all<T: DeserializeOwned>(
        &self,
        prefix: &str,
        names: impl Fn(&str, &T) -> bool,
    ) -> Result<Listing<T>, IdentityError> {
        all_in(self.store, prefix, names)
    }
}

/// The record at `key` in `store`, with its version; a record that does
/// not decode is an error naming the key.
pub(super) fn get_record_in<T: DeserializeOwned>(
    store: &dyn SecretStore,
    key: &str,
) -> Result<Option<(T, Version)>, IdentityError> {
    match store.get(key)? {
        None => Ok(None),
        Some(v) => Ok(Some((decode(key, &v.value)?, v.version))),
    }
}

/// Every record under `prefix` that reads, and the ones that do not.
/// `names` checks that a record is the one its key (without the prefix)
/// names. Only a transient store failure is an error.
pub(super) fn all_in<T: DeserializeOwned>(
    store: &dyn SecretStore,
    prefix: &str,
    names: impl Fn(&str, &T) -> bool,
) -> Result<Listing<T>, IdentityError> {
    let mut listing = Listing {
        records: Vec::new(),
        unreadable: Vec::new(),
    };
    for key in store.list(prefix)? {
        let unreadable = |reason: String| UnreadableRecord {
            key: key.clone(),
            reason,
        };
        match read_record::<T>(store, &key)? {
            Read::Absent => {}
            Read::Found(record, _) if names(&key[prefix.len()..], &record) => {
                listing.records.push(record)
            }
            Read::Found(..) => listing.unreadable.push(unreadable(
                "it holds another record than its key names".into(),
            )),
            Read::Unreadable(reason) => listing.unreadable.push(unreadable(reason)),
        }
    }
    Ok(listing)
}

//! Errors of identity state.

use keygate_sdk::PluginError;

use crate::ca::CaError;
use crate::identity::{CertFingerprint, DeviceId};
use crate::state::lock::LockError;

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The store refused or failed (its message names the slot, plugin and
    /// key).
    #[error(transparent)]
    Store(#[from] PluginError),
    /// The state lock could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The CA could not be made, loaded or could not issue.
    #[error("CA: {0}")]
    Ca(CaError),
    /// A record exists but cannot be decoded.
    #[error("record {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The store key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The state was written by another schema version.
    #[error(
        "identity state has schema {found:?}, this keygate reads {expected:?}: refusing to touch it"
    )]
    Schema {
        /// What the state says.
        found: String,
        /// What this build supports.
        expected: &'static str,
    },
    /// No such device.
    #[error("device {0} is not known here (never enrolled or paired)")]
    UnknownDevice(DeviceId),
    /// No such certificate.
    #[error("no certificate with fingerprint {0} was issued here")]
    UnknownCertificate(CertFingerprint),
    /// The device is revoked.
    #[error("device {device_id} is revoked ({reason}): it can never pair or connect again")]
    DeviceRevoked {
        /// The device.
        device_id: DeviceId,
        /// The recorded reason.
        reason: String,
    },
    /// Minting one more code would pass the limit of codes live at once.
    #[error(
        "{live} {method} codes are live, the most there may be at once: wait for one to be used or expire"
    )]
    TooManyLiveCodes {
        /// `PIN` or `QR`.
        method: &'static str,
        /// How many are live.
        live: usize,
    },
    /// An operator name that cannot be used.
    #[error("operator name {name:?}: {reason}")]
    OperatorName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An operator of that name exists (or existed: names are never
    /// reused, so the audit log names one operator each).
    #[error("operator {0:?} exists already (names are never reused, revoked ones included)")]
    OperatorExists(String),
    /// No operator of that name.
    #[error("no operator {0:?} was added here")]
    UnknownOperator(String),
    /// Another writer committed while this mutation was being planned
    /// (another gateway sharing the store, which the state lock does not
    /// exclude, or a process that bypassed the lock), every time it was
    /// planned again ([`RACE_ATTEMPTS`](super::manager::RACE_ATTEMPTS) tries).
    #[error(
        "{key:?} kept changing under this mutation (another gateway sharing the store, or a writer outside the state lock): gave up after {} tries",
        super::manager::RACE_ATTEMPTS
    )]
    Raced {
        /// The key.
        key: String,
    },
}

// Not `#[from]`: the message already carries the CA error, so it is not
// also a `source` (which would print it twice in a context chain).
impl From<CaError> for IdentityError {
    fn from(e: CaError) -> Self {
        Self::Ca(e)
    }
}

impl IdentityError {
    /// The same error for another member of a commit group (see the `group`
    /// module): every member of a group that failed to commit gets it.
    pub(crate) fn for_another_member(&self) -> IdentityError {
        match self {
            Self::Store(e) => Self::Store(e.clone()),
            Self::Corrupt { key, reason } => Self::corrupt(key, reason),
            Self::Raced { key } => Self::Raced { key: key.clone() },
            Self::Schema { found, expected } => Self::Schema {
                found: found.clone(),
                expected,
            },
            // A lock or CA error: the words are what matters to the caller.
            other => Self::Store(PluginError::unavailable(other.to_string())),
        }
    }

    pub(crate) fn corrupt(key: &str, reason: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            key: key.to_owned(),
            reason: reason.to_string(),
        }
    }
}

//! The numbers read when Prometheus scrapes, rather than recorded as they
//! change.

use std::time::{Duration, SystemTime};

use crate::gateway::Gateway;
use crate::state::pairing::RequestStatus;
use crate::state::{IdentityError, IdentityManager};

/// How far ahead `certificates_expiring_soon` looks.
pub const EXPIRING_WITHIN: Duration = Duration::from_secs(24 * 60 * 60);

/// What a scrape reads from the running gateway and its identity state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Nodes registered now.
    pub connected_nodes: u64,
    /// Pairing requests waiting for a decision.
    pub pending_requests: u64,
    /// Certificates, neither revoked nor expired, that expire within
    /// [`EXPIRING_WITHIN`].
    pub certificates_expiring_soon: u64,
    /// Times this process met an unreadable record.
    pub unreadable_records_met: u64,
}

impl Snapshot {
    /// Reads the snapshot at `now`: the gateway's node table, the
    /// revocation index (in memory) and the approval records (as
    /// `keygate pairing list` reads them, without the state lock).
    ///
    /// # Errors
    /// The store cannot be reached to list the approval records.
    pub fn take(
        gateway: &Gateway,
        identity: &IdentityManager,
        now: SystemTime,
    ) -> Result<Snapshot, IdentityError> {
        let pending = identity
            .approvals()?
            .records
            .iter()
            .filter(|r| r.status(now) == RequestStatus::Pending)
            .count();
        Ok(Snapshot {
            connected_nodes: gateway.node_count() as u64,
            pending_requests: pending as u64,
            certificates_expiring_soon: identity.certificates_expiring(now, EXPIRING_WITHIN) as u64,
            unreadable_records_met: identity.unreadable_met(),
        })
    }
}

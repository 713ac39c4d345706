//! `ApprovalPolicy` across the boundary.

use abi_stable::{
    StableAbi, sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, RString, RVec},
};

use super::error::{AbiResult, guarded};
use crate::approval::{ApprovalPolicy, ApprovalRequest, Decision, PairingMethod};
use crate::device_id::{DeviceId, ID_BYTES};

/// The ABI form of [`ApprovalRequest`]: the device id travels as its bytes.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct AbiApprovalRequest {
    device_id: [u8; ID_BYTES],
    device_name: RString,
    method: PairingMethod,
    remote_addr: RString,
    capabilities: RVec<RString>,
    unix_time_secs: u64,
}

impl From<&ApprovalRequest> for AbiApprovalRequest {
    fn from(r: &ApprovalRequest) -> Self {
        Self {
            device_id: *r.device_id.as_bytes(),
            device_name: r.device_name.as_str().into(),
            method: r.method,
            remote_addr: r.remote_addr.as_str().into(),
            capabilities: r.capabilities.iter().map(|c| c.as_str().into()).collect(),
            unix_time_secs: r.unix_time_secs,
        }
    }
}

impl From<&AbiApprovalRequest> for ApprovalRequest {
    fn from(r: &AbiApprovalRequest) -> Self {
        Self {
            device_id: DeviceId::from_id_bytes(r.device_id),
            device_name: r.device_name.to_string(),
            method: r.method,
            remote_addr: r.remote_addr.to_string(),
            capabilities: r.capabilities.iter().map(|c| c.to_string()).collect(),
            unix_time_secs: r.unix_time_secs,
        }
    }
}

/// The ABI form of [`Decision`].
#[repr(u8)]
#[derive(StableAbi, Debug, Clone)]
pub enum AbiDecision {
    /// [`Decision::Approve`].
    Approve,
    /// [`Decision::Deny`].
    Deny(RString),
    /// [`Decision::Pending`].
    Pending,
}

impl From<Decision> for AbiDecision {
    fn from(d: Decision) -> Self {
        match d {
            Decision::Approve => Self::Approve,
            Decision::Deny(reason) => Self::Deny(reason.into()),
            Decision::Pending => Self::Pending,
        }
    }
}

impl From<AbiDecision> for Decision {
    fn from(d: AbiDecision) -> Self {
        match d {
            AbiDecision::Approve => Self::Approve,
            AbiDecision::Deny(reason) => Self::Deny(reason.into_string()),
            AbiDecision::Pending => Self::Pending,
        }
    }
}

/// The ABI form of [`ApprovalPolicy`].
#[sabi_trait]
pub trait AbiApprovalPolicy: Send + Sync {
    /// See [`ApprovalPolicy::evaluate`].
    #[sabi(last_prefix_field)]
    fn evaluate(&self, request: &AbiApprovalRequest) -> AbiResult<AbiDecision>;
}

/// An owned policy object as it crosses the boundary.
pub type ApprovalBox = AbiApprovalPolicy_TO<'static, RBox<()>>;

struct ApprovalAdapter<P>(P);

impl<P: ApprovalPolicy> AbiApprovalPolicy for ApprovalAdapter<P> {
    fn evaluate(&self, request: &AbiApprovalRequest) -> AbiResult<AbiDecision> {
        guarded("evaluate", || {
            self.0.evaluate(&request.into()).map(AbiDecision::from)
        })
    }
}

/// Wraps an author's policy for export.
pub fn export_approval(policy: impl ApprovalPolicy) -> ApprovalBox {
    AbiApprovalPolicy_TO::from_value(ApprovalAdapter(policy), TD_Opaque)
}

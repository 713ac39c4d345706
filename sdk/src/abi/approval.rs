//! `ApprovalPolicy` across the boundary.

use abi_stable::{
    sabi_trait,
    sabi_trait::TD_Opaque,
    std_types::{RBox, RResult},
};

use super::store::guarded;
use crate::PluginError;
use crate::approval::{ApprovalPolicy, ApprovalRequest, Decision};

/// The ABI form of [`ApprovalPolicy`].
#[sabi_trait]
pub trait AbiApprovalPolicy: Send + Sync {
    /// See [`ApprovalPolicy::evaluate`].
    #[sabi(last_prefix_field)]
    fn evaluate(&self, request: &ApprovalRequest) -> RResult<Decision, PluginError>;
}

/// An owned policy object as it crosses the boundary.
pub type ApprovalBox = AbiApprovalPolicy_TO<'static, RBox<()>>;

struct ApprovalAdapter<P>(P);

impl<P: ApprovalPolicy> AbiApprovalPolicy for ApprovalAdapter<P> {
    fn evaluate(&self, request: &ApprovalRequest) -> RResult<Decision, PluginError> {
        guarded("evaluate", || self.0.evaluate(request))
    }
}

/// Wraps an author's policy for export.
pub fn export_approval(policy: impl ApprovalPolicy) -> ApprovalBox {
    AbiApprovalPolicy_TO::from_value(ApprovalAdapter(policy), TD_Opaque)
}

/// The host's handle on a policy obtained through the ABI.
pub struct ApprovalHandle(ApprovalBox);

impl ApprovalHandle {
    pub(crate) fn new(inner: ApprovalBox) -> Self {
        Self(inner)
    }
}

impl ApprovalPolicy for ApprovalHandle {
    fn evaluate(&self, request: &ApprovalRequest) -> Result<Decision, PluginError> {
        self.0.evaluate(request).into_result()
    }
}

//! The `ApprovalPolicy` plugin kind: decides whether a device that proved a
//! pairing code may receive a certificate.

use abi_stable::{
    StableAbi,
    std_types::{RString, RVec},
};

use crate::PluginError;

/// How a device proved it holds a pairing code.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairingMethod {
    /// A numeric PIN, through a PAKE.
    Pin = 0,
    /// A QR code carrying a one-time token and the CA fingerprint.
    Qr = 1,
}

impl PairingMethod {
    /// `"pin"` or `"qr"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pin => "pin",
            Self::Qr => "qr",
        }
    }
}

/// What a policy is asked about. The pairing proof has already been checked
/// by the host when a policy sees a request.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    device_id: RString,
    device_name: RString,
    method: PairingMethod,
    remote_addr: RString,
    capabilities: RVec<RString>,
    unix_time_secs: u64,
}

impl ApprovalRequest {
    /// Built by the host (and by tests).
    pub fn new(
        device_id: &str,
        device_name: &str,
        method: PairingMethod,
        remote_addr: &str,
        capabilities: &[&str],
        unix_time_secs: u64,
    ) -> Self {
        Self {
            device_id: device_id.into(),
            device_name: device_name.into(),
            method,
            remote_addr: remote_addr.into(),
            capabilities: capabilities.iter().map(|c| RString::from(*c)).collect(),
            unix_time_secs,
        }
    }

    /// The device id (checksummed, see the identity docs).
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The name the device gave itself. Untrusted, for display.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// PIN or QR.
    pub fn method(&self) -> PairingMethod {
        self.method
    }

    /// The address the request came from, `ip:port`.
    pub fn remote_addr(&self) -> &str {
        &self.remote_addr
    }

    /// The capabilities the device asks for (e.g. `"shell"`).
    pub fn capabilities(&self) -> impl Iterator<Item = &str> {
        self.capabilities.iter().map(RString::as_str)
    }

    /// When the request was made, in seconds since the Unix epoch (UTC). A
    /// policy uses this rather than reading a clock, so it can be tested.
    pub fn unix_time_secs(&self) -> u64 {
        self.unix_time_secs
    }
}

/// A policy's answer.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Issue the certificate now.
    Approve,
    /// Refuse; the reason is shown to the device and the operator.
    Deny(RString),
    /// Wait for an operator to approve or reject.
    Pending,
}

impl Decision {
    /// A `Deny` with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self::Deny(RString::from(reason.into()))
    }
}

/// An approval policy, as its author implements it.
pub trait ApprovalPolicy: Send + Sync + 'static {
    /// Decides on one request. An error is treated as a denial by the host,
    /// and logged.
    fn evaluate(&self, request: &ApprovalRequest) -> Result<Decision, PluginError>;
}

impl<P: ApprovalPolicy + ?Sized> ApprovalPolicy for Box<P> {
    fn evaluate(&self, request: &ApprovalRequest) -> Result<Decision, PluginError> {
        (**self).evaluate(request)
    }
}

impl<P: ApprovalPolicy + ?Sized> ApprovalPolicy for std::sync::Arc<P> {
    fn evaluate(&self, request: &ApprovalRequest) -> Result<Decision, PluginError> {
        (**self).evaluate(request)
    }
}

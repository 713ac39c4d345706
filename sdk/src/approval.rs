//! The `ApprovalPolicy` plugin kind: decides whether a device that proved a
//! pairing code may receive a certificate.

use abi_stable::StableAbi;

use crate::{DeviceId, PluginError};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub(crate) device_id: DeviceId,
    pub(crate) device_name: String,
    pub(crate) method: PairingMethod,
    pub(crate) remote_addr: String,
    pub(crate) capabilities: Vec<String>,
    pub(crate) unix_time_secs: u64,
}

impl ApprovalRequest {
    /// Built by the host (and by tests).
    pub fn new(
        device_id: DeviceId,
        device_name: &str,
        method: PairingMethod,
        remote_addr: &str,
        capabilities: &[&str],
        unix_time_secs: u64,
    ) -> Self {
        Self {
            device_id,
            device_name: device_name.to_owned(),
            method,
            remote_addr: remote_addr.to_owned(),
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            unix_time_secs,
        }
    }

    /// The id of the device asking (derived by the host from the key the
    /// device proved it holds).
    pub fn device_id(&self) -> DeviceId {
        self.device_id
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
        self.capabilities.iter().map(String::as_str)
    }

    /// When the request was made, in seconds since the Unix epoch (UTC). A
    /// policy uses this rather than reading a clock, so it can be tested.
    pub fn unix_time_secs(&self) -> u64 {
        self.unix_time_secs
    }
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Issue the certificate now.
    Approve,
    /// Refuse; the reason is shown to the device and the operator.
    Deny(String),
    /// Wait for an operator to approve or reject.
    Pending,
}

impl Decision {
    /// A `Deny` with `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self::Deny(reason.into())
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

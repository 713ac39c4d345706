//! # `pin-qr`: Keygate's built-in approval policy
//!
//! The host asks an approval policy only after a device has proved a
//! pairing code (a PIN through the PAKE, or a QR code's one-time token) and
//! signed the pairing transcript with its key. This policy then either
//! leaves the request for an operator, or approves it at once:
//!
//! ```toml
//! [plugins.approval]
//! use = "pin-qr"
//! [plugins.approval.config]     # optional
//! auto_approve = false          # default: an operator decides every request
//! ```
//!
//! - `auto_approve = false` (the default): every request is
//!   [`Decision::Pending`]. The operator sees it in `keygate pairing list`
//!   with its check code and approves or rejects it.
//! - `auto_approve = true`: every request is [`Decision::Approve`]d. Whoever
//!   holds a live code gets a certificate, so the code is the whole
//!   credential: mint short-lived codes and hand them over in person.
//!
//! It never denies: refusing unknown, expired, burned or wrongly proved
//! codes, revoked devices and rate-limited addresses is the host's job and
//! happens before a policy is asked.
#![forbid(unsafe_code)]

use keygate_sdk::{
    ApprovalPlugin, ApprovalPolicy, ApprovalRequest, Decision, PluginContext, PluginError,
};
use serde::Deserialize;

/// The policy's config table, `[plugins.approval.config]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinQrConfig {
    /// Approve every request whose proof verified, without an operator.
    #[serde(default)]
    pub auto_approve: bool,
}

/// The `pin-qr` approval policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinQrPolicy {
    config: PinQrConfig,
}

impl PinQrPolicy {
    /// The policy with `config`.
    pub fn new(config: PinQrConfig) -> Self {
        Self { config }
    }
}

impl ApprovalPolicy for PinQrPolicy {
    fn evaluate(&self, _request: &ApprovalRequest) -> Result<Decision, PluginError> {
        Ok(if self.config.auto_approve {
            Decision::Approve
        } else {
            Decision::Pending
        })
    }
}

impl ApprovalPlugin for PinQrPolicy {
    const NAME: &'static str = "pin-qr";
    const DESCRIPTION: &'static str = "PIN/QR pairing: an operator approves each request, or auto_approve once the proof verified";

    fn from_config(config: &str, _ctx: PluginContext) -> Result<Self, PluginError> {
        Ok(Self::new(keygate_sdk::config::parse(config)?))
    }
}

keygate_sdk::register_builtin_plugins! {
    approvals: [PinQrPolicy],
}

#[cfg(test)]
mod tests {
    use keygate_sdk::{DeviceId, PairingMethod};

    use super::*;

    fn request(method: PairingMethod) -> ApprovalRequest {
        let id: DeviceId = DeviceId::from_public_key(&[7u8; 32]);
        ApprovalRequest::new(id, "sensor", method, "127.0.0.1:5000", &["echo"], 0)
    }

    fn policy(config: &str) -> Result<PinQrPolicy, PluginError> {
        PinQrPolicy::from_config(
            config,
            keygate_sdk_testing::test_context("pin-qr", std::path::Path::new(".")),
        )
    }

    #[test]
    fn by_default_every_request_waits_for_an_operator() {
        let p = policy("").unwrap();
        for method in [PairingMethod::Pin, PairingMethod::Qr] {
            assert_eq!(p.evaluate(&request(method)).unwrap(), Decision::Pending);
        }
        let explicit = policy("auto_approve = false").unwrap();
        assert_eq!(
            explicit.evaluate(&request(PairingMethod::Pin)).unwrap(),
            Decision::Pending
        );
    }

    #[test]
    fn auto_approve_approves_every_verified_request() {
        let p = policy("auto_approve = true").unwrap();
        for method in [PairingMethod::Pin, PairingMethod::Qr] {
            assert_eq!(p.evaluate(&request(method)).unwrap(), Decision::Approve);
        }
    }

    #[test]
    fn config_errors_name_the_line_and_field() {
        let err = policy("auto_approve = \"yes\"").unwrap_err().to_string();
        assert!(err.contains("auto_approve"), "{err}");
        assert!(err.contains("line 1"), "{err}");
        let err = policy("auto_aprove = true").unwrap_err().to_string();
        assert!(err.contains("auto_aprove"), "{err}");
    }
}

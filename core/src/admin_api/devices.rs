//! `/api/v1/devices` and `/api/v1/certificates`: what was issued, and
//! revoking it.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Operator;
use super::error::{ApiError, ErrorBody, OptionalBody};
use super::{ApiState, blocking, rfc3339};
use crate::identity::{CertFingerprint, DeviceId};
use crate::state::RevokeOutcome;

/// A device.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// Its id.
    pub device_id: String,
    /// The name it gave.
    pub name: String,
    /// The capabilities it asked for.
    pub capabilities: Vec<String>,
    /// First enrolment (RFC 3339).
    pub enrolled_at: String,
    /// Whether it is revoked.
    pub revoked: bool,
    /// When (RFC 3339).
    pub revoked_at: Option<String>,
    /// Why.
    pub revoke_reason: Option<String>,
}

/// A client certificate.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateView {
    /// SHA-256 of its DER, hex.
    pub fingerprint: String,
    /// The device it is bound to.
    pub device_id: String,
    /// Serial, hex.
    pub serial: String,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// Whether it is revoked.
    pub revoked: bool,
    /// When (RFC 3339).
    pub revoked_at: Option<String>,
    /// Why.
    pub revoke_reason: Option<String>,
}

/// Why something is revoked.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// Recorded with the revocation and in the audit log.
    #[serde(default)]
    pub reason: String,
}

/// What a revocation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// `revoked` now, or `already_revoked` (nothing was written).
    pub outcome: &'static str,
    /// When it was revoked (RFC 3339).
    pub revoked_at: String,
    /// The recorded reason.
    pub reason: String,
}

impl From<RevokeOutcome> for Revoked {
    fn from(o: RevokeOutcome) -> Self {
        let (outcome, r) = match o {
            RevokeOutcome::Revoked(r) => ("revoked", r),
            RevokeOutcome::AlreadyRevoked(r) => ("already_revoked", r),
        };
        Self {
            outcome,
            revoked_at: rfc3339(r.at),
            reason: r.reason,
        }
    }
}

/// Every device.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices",
    responses((status = 200, body = [DeviceView]), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_devices(
    State(state): State<Arc<ApiState>>,
    _: Operator,
) -> Result<Json<Vec<DeviceView>>, ApiError> {
    let listing = blocking(&state, |s| Ok(s.identity.devices()?)).await?;
    Ok(Json(
        listing
            .records
            .into_iter()
            .map(|d| DeviceView {
                device_id: d.device_id.to_string(),
                name: d.name,
                capabilities: d.capabilities,
                enrolled_at: rfc3339(d.enrolled_at),
                revoked: d.revoked.is_some(),
                revoked_at: d.revoked.as_ref().map(|r| rfc3339(r.at)),
                revoke_reason: d.revoked.map(|r| r.reason),
            })
            .collect(),
    ))
}

/// Revokes a device: it never pairs or connects again, and its live
/// connection closes.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices",
    params(("id" = String, Path, description = "The device id", pattern = "^kgd1[02-9ac-hj-np-z]{38}$")),
    request_body(content = Option<RevokeBody>, description = "Optional: no body revokes without a reason"),
    responses((status = 200, body = Revoked), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_device(
    State(state): State<Arc<ApiState>>,
    operator: Operator,
    Path(id): Path<String>,
    OptionalBody(body): OptionalBody<RevokeBody>,
) -> Result<Json<Revoked>, ApiError> {
    let id = DeviceId::parse(id.trim()).map_err(|e| ApiError::bad_field("id", e.to_string()))?;
    let outcome = blocking(&state, move |s| {
        Ok(s.identity
            .revoke_device(&id, &body.reason, SystemTime::now(), &operator.actor)?)
    })
    .await?;
    Ok(Json(outcome.into()))
}

/// Every client certificate.
#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates",
    responses((status = 200, body = [CertificateView]), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_certificates(
    State(state): State<Arc<ApiState>>,
    _: Operator,
) -> Result<Json<Vec<CertificateView>>, ApiError> {
    let listing = blocking(&state, |s| Ok(s.identity.certificates()?)).await?;
    Ok(Json(
        listing
            .records
            .into_iter()
            .map(|c| CertificateView {
                fingerprint: c.fingerprint.to_string(),
                device_id: c.device_id.to_string(),
                serial: c.serial_hex,
                not_before: rfc3339(c.not_before),
                not_after: rfc3339(c.not_after),
                revoked: c.revoked.is_some(),
                revoked_at: c.revoked.as_ref().map(|r| rfc3339(r.at)),
                revoke_reason: c.revoked.map(|r| r.reason),
            })
            .collect(),
    ))
}

/// Revokes one certificate; its device may pair again.
#[utoipa::path(post, path = "/api/v1/certificates/{fingerprint}/revoke", tag = "certificates",
    params(("fingerprint" = String, Path, description = "SHA-256 of the certificate, 64 hex digits", pattern = "^[0-9a-fA-F]{64}$")),
    request_body(content = Option<RevokeBody>, description = "Optional: no body revokes without a reason"),
    responses((status = 200, body = Revoked), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_certificate(
    State(state): State<Arc<ApiState>>,
    operator: Operator,
    Path(fingerprint): Path<String>,
    OptionalBody(body): OptionalBody<RevokeBody>,
) -> Result<Json<Revoked>, ApiError> {
    let fp = CertFingerprint::parse(fingerprint.trim())
        .map_err(|e| ApiError::bad_field("fingerprint", e.to_string()))?;
    let outcome = blocking(&state, move |s| {
        Ok(s.identity
            .revoke_certificate(&fp, &body.reason, SystemTime::now(), &operator.actor)?)
    })
    .await?;
    Ok(Json(outcome.into()))
}

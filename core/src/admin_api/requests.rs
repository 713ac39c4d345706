//! `/api/v1/requests`: the pairing requests devices filed, and deciding
//! them (the same rules as `keygate pairing approve|reject`).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Operator;
use super::error::{ApiError, Body, ErrorBody};
use super::{ApiState, blocking, rfc3339};
use crate::state::pairing::{ApprovalRecord, ApprovalState, RequestRefusal};

/// A pairing request, as the API answers it and `keygate pairing list
/// --json` prints it. Never a code: a request does not hold one.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestView {
    /// Its id.
    pub id: String,
    /// The device that filed it.
    pub device_id: String,
    /// The name the device gave.
    pub name: String,
    /// `pin` or `qr`.
    pub method: &'static str,
    /// `pending`, `approved`, `rejected` or `expired`.
    pub status: &'static str,
    /// What the device shows: compare before approving.
    pub check_code: String,
    /// Where the device connected from.
    pub remote_addr: String,
    /// The capabilities it asked for.
    pub capabilities: Vec<String>,
    /// RFC 3339.
    pub requested_at: String,
    /// When it expires undecided (RFC 3339).
    pub expires_at: Option<String>,
    /// When it was decided (RFC 3339).
    pub decided_at: Option<String>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// The certificate issued on approval.
    pub certificate_fingerprint: Option<String>,
}

impl RequestView {
    /// `r` as seen at `now` (its status depends on the time).
    pub fn new(r: &ApprovalRecord, now: SystemTime) -> Self {
        let (decided_at, decided_by, reason) = match &r.decision {
            ApprovalState::Pending => (None, None, None),
            ApprovalState::Approved { at, by } => (Some(rfc3339(*at)), Some(by.clone()), None),
            ApprovalState::Rejected { at, by, reason } => {
                (Some(rfc3339(*at)), Some(by.clone()), Some(reason.clone()))
            }
        };
        Self {
            id: r.id.clone(),
            device_id: r.device_id.to_string(),
            name: r.device_name.clone(),
            method: keygate_sdk::PairingMethod::from(r.method).as_str(),
            status: r.status(now).as_str(),
            check_code: r.check_code.clone(),
            remote_addr: r.remote_addr.clone(),
            capabilities: r.capabilities.clone(),
            requested_at: rfc3339(r.requested_at),
            expires_at: (r.expires_at != u64::MAX).then(|| rfc3339(r.expires_at)),
            decided_at,
            decided_by,
            reason,
            certificate_fingerprint: r.certificate.as_ref().map(|c| c.fingerprint.to_string()),
        }
    }
}

/// Why a request is rejected.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Told to the device and recorded.
    pub reason: String,
}

/// Every request, newest first.
#[utoipa::path(get, path = "/api/v1/requests", tag = "requests",
    responses((status = 200, body = [RequestView]), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_requests(
    State(state): State<Arc<ApiState>>,
    _: Operator,
) -> Result<Json<Vec<RequestView>>, ApiError> {
    let listing = blocking(&state, |s| Ok(s.identity.approvals()?)).await?;
    let now = SystemTime::now();
    let mut records = listing.records;
    records.sort_by_key(|r| std::cmp::Reverse(r.requested_at));
    Ok(Json(
        records.iter().map(|r| RequestView::new(r, now)).collect(),
    ))
}

fn decided(outcome: Result<ApprovalRecord, RequestRefusal>) -> Result<Json<RequestView>, ApiError> {
    match outcome {
        Ok(record) => Ok(Json(RequestView::new(&record, SystemTime::now()))),
        Err(refusal @ RequestRefusal::Unknown(_)) => Err(ApiError::not_found(refusal.to_string())),
        Err(refusal) => Err(ApiError::conflict(refusal.to_string())),
    }
}

/// Approves a pending request: the device is enrolled and its
/// certificate issued. Approving again returns the same request.
#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", tag = "requests",
    params(("id" = String, Path, description = "The request id", pattern = "^[0-9a-f]{32}$")),
    responses((status = 200, body = RequestView), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approve(
    State(state): State<Arc<ApiState>>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    let outcome = blocking(&state, move |s| {
        Ok(s.identity
            .approve_request(id.trim(), &operator.actor, SystemTime::now())?)
    })
    .await?;
    decided(outcome)
}

/// Rejects a pending request with a reason the device is told.
#[utoipa::path(post, path = "/api/v1/requests/{id}/reject", tag = "requests",
    params(("id" = String, Path, description = "The request id", pattern = "^[0-9a-f]{32}$")),
    request_body = RejectBody,
    responses((status = 200, body = RequestView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reject(
    State(state): State<Arc<ApiState>>,
    operator: Operator,
    Path(id): Path<String>,
    Body(body): Body<RejectBody>,
) -> Result<Json<RequestView>, ApiError> {
    let outcome = blocking(&state, move |s| {
        Ok(s.identity.reject_request(
            id.trim(),
            &operator.actor,
            &body.reason,
            SystemTime::now(),
        )?)
    })
    .await?;
    decided(outcome)
}

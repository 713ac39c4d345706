//! `/api/v1/audit`: the audit log, as `keygate audit list` and `keygate
//! audit verify` show it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Operator;
use super::error::{ApiError, ErrorBody};
use super::{ApiState, blocking, rfc3339};
use crate::state::audit::{AuditEntry, AuditVerdict};

/// How many entries a listing returns unless asked.
const DEFAULT_LIMIT: usize = 200;
/// The most a listing returns.
const MAX_LIMIT: usize = 10_000;

/// Which entries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// How many of the newest entries (1 to 10000; default 200).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// One change within an entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditChangeView {
    /// Who made it.
    pub actor: String,
    /// What it was (`request_approved`, `device_revoked`, ...).
    pub action: String,
    /// What it was done to.
    pub subject: String,
    /// A reason, a method, a hash...
    pub details: std::collections::BTreeMap<String, String>,
}

/// One entry: the changes of one state mutation.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Its number, from 1.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// Its SHA-256 (hex).
    pub hash: String,
    /// The hash of the entry before it.
    pub prev: String,
    /// Its changes, in order.
    pub events: Vec<AuditChangeView>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(e: AuditEntry) -> Self {
        Self {
            seq: e.seq,
            at: rfc3339(e.at),
            hash: e.hash,
            prev: e.prev,
            events: e
                .events
                .into_iter()
                .map(|v| AuditChangeView {
                    actor: v.actor.to_string(),
                    action: v.action.as_str().to_owned(),
                    subject: v.subject,
                    details: v.details,
                })
                .collect(),
        }
    }
}

/// Where the chain breaks.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditBreakView {
    /// The entry's number (for a missing entry, the one expected).
    pub seq: u64,
    /// Its store key.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// What a check of the chain found.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerifyView {
    /// Whether the chain holds.
    pub ok: bool,
    /// How many entries it holds (when intact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// The last entry's hash (when intact).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The first entry that breaks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<AuditBreakView>,
}

/// The newest entries of the audit log, oldest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [AuditEntryView]), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_audit(
    State(state): State<Arc<ApiState>>,
    _: Operator,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditEntryView>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_field("limit", e.body_text()))?;
    let limit = query.limit.map_or(DEFAULT_LIMIT, |n| n as usize);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_field(
            "limit",
            format!("limit: {limit} is not between 1 and {MAX_LIMIT}"),
        ));
    }
    let entries = blocking(&state, |s| Ok(s.identity.audit_entries()?)).await?;
    let skip = entries.len().saturating_sub(limit);
    Ok(Json(
        entries
            .into_iter()
            .skip(skip)
            .map(AuditEntryView::from)
            .collect(),
    ))
}

/// Walks the chain and names the first entry edited, removed or out of
/// place.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerifyView), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn verify_audit(
    State(state): State<Arc<ApiState>>,
    _: Operator,
) -> Result<Json<AuditVerifyView>, ApiError> {
    let verdict = blocking(&state, |s| Ok(s.identity.verify_audit()?)).await?;
    Ok(Json(match verdict {
        AuditVerdict::Intact { entries, head } => AuditVerifyView {
            ok: true,
            entries: Some(entries),
            head: Some(head),
            broken: None,
        },
        AuditVerdict::Broken(b) => AuditVerifyView {
            ok: false,
            entries: None,
            head: None,
            broken: Some(AuditBreakView {
                seq: b.seq,
                key: b.key,
                reason: b.problem,
            }),
        },
    }))
}

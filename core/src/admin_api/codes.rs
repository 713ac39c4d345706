//! `/api/v1/codes`: minting pairing codes (the PIN or URI is in the answer
//! once) and listing the live ones (never their secrets).

use std::sync::Arc;
use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Operator;
use super::error::{ApiError, Body, ErrorBody};
use super::{ApiState, blocking, rfc3339};
use crate::pairing::QrMatrix;
use crate::pairing::mint::{MintError, Minted, mint};
use crate::state::pairing::Method;

/// What to mint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    /// `pin` or `qr`.
    pub kind: Kind,
    /// Its life, with units (`"90s"`, `"10m"`; 30s to 24h); the configured
    /// one when absent.
    #[serde(default)]
    #[schema(pattern = "^([0-9]+[smhd])+$", example = "10m")]
    pub ttl: Option<String>,
}

/// A kind of code.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A PIN to type on the device.
    Pin,
    /// A QR code to scan.
    Qr,
}

/// A code just minted: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct MintedView {
    /// Its session id.
    pub id: String,
    /// `pin` or `qr`.
    pub kind: Kind,
    /// The PIN (a PIN code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// The `keygate://` URI (a QR code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The QR code as an SVG image (a QR code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub svg: Option<String>,
    /// RFC 3339.
    pub expires_at: String,
}

/// A live code, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CodeView {
    /// Its session id.
    pub id: String,
    /// `pin` or `qr`.
    pub kind: Kind,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Failed attempts it still allows.
    pub attempts_left: u32,
}

fn kind_of(method: Method) -> Kind {
    match method {
        Method::Pin => Kind::Pin,
        Method::Qr => Kind::Qr,
    }
}

/// Mints a code.
#[utoipa::path(post, path = "/api/v1/codes", tag = "codes",
    request_body = MintBody,
    responses((status = 201, body = MintedView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn mint_code(
    State(state): State<Arc<ApiState>>,
    operator: Operator,
    Body(body): Body<MintBody>,
) -> Result<(StatusCode, Json<MintedView>), ApiError> {
    let ttl = body
        .ttl
        .as_deref()
        .map(crate::time::parse_duration)
        .transpose()
        .map_err(|e| ApiError::bad_field("ttl", format!("ttl: {e}")))?;
    let method = match body.kind {
        Kind::Pin => Method::Pin,
        Kind::Qr => Method::Qr,
    };
    let minted = blocking(&state, move |s| {
        mint(
            &s.identity,
            &s.pairing,
            &s.advertise,
            method,
            ttl,
            &operator.actor,
            SystemTime::now(),
        )
        .map_err(|e| match e {
            MintError::Ttl(m) => ApiError::bad_field("ttl", format!("ttl: {m}")),
            MintError::State(e) => e.into(),
            MintError::PinLength(e) => ApiError::internal(e.to_string()),
        })
    })
    .await?;
    let session = minted.session();
    let mut view = MintedView {
        id: session.id.clone(),
        kind: kind_of(session.method),
        pin: None,
        uri: None,
        svg: None,
        expires_at: rfc3339(session.expires_at),
    };
    match &minted {
        Minted::Pin { session } => view.pin = Some(session.secret.to_string()),
        Minted::Qr { uri, .. } => {
            let qr = QrMatrix::encode(uri).map_err(|e| ApiError::internal(e.to_string()))?;
            view.svg = Some(qr.to_svg());
            view.uri = Some(uri.to_string());
        }
    }
    Ok((StatusCode::CREATED, Json(view)))
}

/// The live codes (not expired, attempts left), without their secrets.
#[utoipa::path(get, path = "/api/v1/codes", tag = "codes",
    responses((status = 200, body = [CodeView]), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_codes(
    State(state): State<Arc<ApiState>>,
    _: Operator,
) -> Result<Json<Vec<CodeView>>, ApiError> {
    let now = crate::time::unix_secs(SystemTime::now());
    let sessions = blocking(&state, |s| Ok(s.identity.pairing_sessions()?)).await?;
    Ok(Json(
        sessions
            .into_iter()
            .filter(|s| s.expires_at > now && s.attempts_left > 0)
            .map(|s| CodeView {
                id: s.id.clone(),
                kind: kind_of(s.method),
                created_at: rfc3339(s.created_at),
                expires_at: rfc3339(s.expires_at),
                attempts_left: s.attempts_left,
            })
            .collect(),
    ))
}

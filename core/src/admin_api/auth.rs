//! Who is calling: `Authorization: Bearer TOKEN`, checked against the
//! operators in identity state on every request (a revoked operator's
//! token stops working at once, on every gateway of the state).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
use crate::state::Actor;

/// The operator a request was made by.
pub struct Operator {
    /// As decisions and the audit log name it: `operator:NAME`.
    pub actor: Actor,
}

impl FromRequestParts<Arc<ApiState>> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("no Authorization: Bearer token"))?;
        // The scheme's name is case-insensitive (RFC 9110, 11.1).
        let token = header
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer TOKEN`")
            })?
            .to_owned();
        let identity = state.identity.clone();
        let found = tokio::task::spawn_blocking(move || identity.authenticate_operator(&token))
            .await
            .map_err(|_| ApiError::internal("the token check stopped"))??;
        match found {
            Some(record) => Ok(Operator {
                actor: Actor::operator(&record.name),
            }),
            None => Err(ApiError::unauthorized(
                "the token is not a live operator's (unknown, malformed or revoked)",
            )),
        }
    }
}

//! Who is calling: `Authorization: Bearer TOKEN`, or the web console's
//! session cookie. Both are checked against the operators in identity
//! state on every request (a revoked operator's token and sessions stop
//! working at once, on every gateway of the state).
//!
//! A session cookie is an ambient credential (the browser sends it by
//! itself), so a state-changing request (any method but `GET`, `HEAD`,
//! `OPTIONS`, `TRACE`) made with it must also carry the session's CSRF
//! token in `X-CSRF-Token`, or it is refused with `403` before anything
//! runs. A bearer token is never ambient and needs none. When a request
//! carries an `Authorization` header, that alone decides, exactly as it
//! did before the console existed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiState;
use super::error::ApiError;
use super::session::{self, CSRF_HEADER};
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
        let header = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(header) => header,
            None => {
                return match ConsoleSession::from_parts(parts, state).await? {
                    Some(session) => Ok(Operator {
                        actor: session.actor,
                    }),
                    None => Err(ApiError::unauthorized("no Authorization: Bearer token")),
                };
            }
        };
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

/// An operator logged in to the web console: the request carried a live
/// session's cookie (and, unless its method is safe, the session's CSRF
/// token).
pub struct ConsoleSession {
    /// As decisions and the audit log name it: `operator:NAME`.
    pub actor: Actor,
    /// The operator's name.
    pub name: String,
    /// The session id (from the cookie).
    pub id: String,
    /// The session's CSRF token.
    pub csrf: String,
}

impl ConsoleSession {
    /// The session the request's cookie names: `None` without a cookie,
    /// `401` for an unknown or expired session or a revoked operator's
    /// (the session is then ended), `403` for a state-changing request
    /// without the session's CSRF token.
    async fn from_parts(
        parts: &Parts,
        state: &Arc<ApiState>,
    ) -> Result<Option<ConsoleSession>, ApiError> {
        let Some(id) = session::session_cookie(&parts.headers, state.tls) else {
            return Ok(None);
        };
        let view = state.sessions.touch(&id, Instant::now()).ok_or_else(|| {
            ApiError::unauthorized("the console session is unknown or has expired: log in again")
        })?;
        if !parts.method.is_safe() {
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if given.is_empty() {
                return Err(ApiError::csrf(
                    "a change made with the console's session cookie must carry the session's \
                     CSRF token in X-CSRF-Token (GET /console/session gives it); nothing was done",
                ));
            }
            if !session::csrf_matches(&view, given) {
                return Err(ApiError::csrf(
                    "the X-CSRF-Token header is not this session's CSRF token; nothing was done",
                ));
            }
        }
        let identity = state.identity.clone();
        let (name, hash) = (view.operator.clone(), view.token_hash.clone());
        let live = tokio::task::spawn_blocking(move || identity.live_operator(&name, &hash))
            .await
            .map_err(|_| ApiError::internal("the session check stopped"))??;
        if live.is_none() {
            state.sessions.remove(&id);
            return Err(ApiError::unauthorized(
                "the session's operator is no longer live (revoked): log in with a live token",
            ));
        }
        Ok(Some(ConsoleSession {
            actor: Actor::operator(&view.operator),
            name: view.operator,
            id,
            csrf: view.csrf.to_string(),
        }))
    }
}

impl FromRequestParts<Arc<ApiState>> for ConsoleSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        ConsoleSession::from_parts(parts, state)
            .await?
            .ok_or_else(|| ApiError::unauthorized("not logged in to the console"))
    }
}

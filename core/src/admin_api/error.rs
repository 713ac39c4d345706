//! The API's errors: a status and a JSON body that says what was wrong
//! (`{"error": CODE, "message": TEXT}`, with `field` when one input was).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::IdentityError;

/// An error's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `unauthorized`, `csrf`, `bad_request`, `not_found`,
    /// `conflict`, `unavailable`, `internal`.
    pub error: &'static str,
    /// What was wrong, for a person.
    pub message: String,
    /// The input at fault, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error,
                message: message.into(),
                field: None,
            },
        }
    }

    /// 401: no token, or not a live operator's.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `csrf`: a change made with the console's session cookie
    /// without the session's CSRF token (`field`: `X-CSRF-Token`).
    pub fn csrf(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "csrf", message);
        e.body.field = Some("X-CSRF-Token".to_owned());
        e
    }

    /// 400 naming `field`.
    pub fn bad_field(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "bad_request", message);
        e.body.field = Some(field.to_owned());
        e
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the state says no (a decision already made).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 503: the store or the gateway cannot answer now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What was wrong.
    pub fn message(&self) -> &str {
        &self.body.message
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match &e {
            IdentityError::UnknownDevice(_)
            | IdentityError::UnknownCertificate(_)
            | IdentityError::UnknownOperator(_) => Self::not_found(e.to_string()),
            IdentityError::DeviceRevoked { .. }
            | IdentityError::OperatorExists(_)
            | IdentityError::TooManyLiveCodes { .. } => Self::conflict(e.to_string()),
            IdentityError::OperatorName { .. } => Self::bad_field("name", e.to_string()),
            IdentityError::Store(_) | IdentityError::Lock(_) | IdentityError::Raced { .. } => {
                Self::unavailable(e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "admin API: state error");
                Self::internal(e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"keygate\""),
            );
        }
        response
    }
}

/// A JSON body that names the field it could not read (axum's own
/// rejection says only "Failed to deserialize").
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !is_json {
            return Err(ApiError::bad_request(
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(value) => Ok(Body(value)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                // A missing field is named in serde's message, not its path.
                let field = if path == "." {
                    missing_field(&inner.to_string()).unwrap_or_else(|| "body".to_owned())
                } else {
                    path
                };
                Err(ApiError::bad_field(&field, format!("{field}: {inner}")))
            }
        }
    }
}

/// A JSON body that may be left out (no body at all reads as the
/// default); one that is sent is read as [`Body`] reads it.
pub struct OptionalBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for OptionalBody<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the body: {e}")))?;
        if bytes.is_empty() {
            return Ok(OptionalBody(T::default()));
        }
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
        Body::from_request(req, state)
            .await
            .map(|Body(v)| OptionalBody(v))
    }
}

/// The field a "missing field `x`" or "unknown field `x`" message names.
fn missing_field(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("unknown field `"))?;
    Some(rest[..rest.find('`')?].to_owned())
}

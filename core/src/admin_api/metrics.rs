//! `GET /metrics`: the gateway's Prometheus metrics (text format 0.0.4),
//! without a token, unless `[admin] metrics = false` (then `404`). What
//! each metric means is in `docs/gateway.md`, "Metrics".

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorBody};
use super::{ApiState, blocking};
use crate::metrics::scrape::Snapshot;

/// The gateway's metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 404, description = "Off (`[admin] metrics = false`)", body = ErrorBody),
        (status = 503, description = "The state cannot be read", body = ErrorBody)))]
pub async fn scrape(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    if state.metrics.is_none() {
        return Err(ApiError::not_found(
            "metrics are off ([admin] metrics = false)",
        ));
    }
    let text = blocking(&state, |s| {
        let Some(metrics) = &s.metrics else {
            return Err(ApiError::not_found("metrics are off"));
        };
        let snapshot = Snapshot::take(&s.gateway, &s.identity, SystemTime::now())
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        metrics
            .encode(&snapshot)
            .map_err(|_| ApiError::internal("the metrics could not be written"))
    })
    .await?;
    Ok(([(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

//! `/api/v1/nodes`: the gateway's connected nodes, and invoking one of
//! their capabilities.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Operator;
use super::error::{ApiError, Body, ErrorBody};
use super::{ApiState, blocking};
use crate::gateway::admin::NodeView;
use crate::identity::DeviceId;
use keygate_proto::RefusalCode;

/// What to invoke.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeBody {
    /// A capability the node registered (`echo`, ...).
    pub capability: String,
    /// Text handed to it.
    #[serde(default)]
    pub payload: String,
}

/// The node's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvokeView {
    /// Whether the capability succeeded.
    pub ok: bool,
    /// Its output, or its error text (UTF-8, lossy).
    pub payload: String,
}

/// The connected nodes.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes",
    responses((status = 200, body = [NodeView]), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_nodes(
    State(state): State<Arc<ApiState>>,
    _: Operator,
) -> Result<Json<Vec<NodeView>>, ApiError> {
    Ok(Json(
        state
            .gateway
            .nodes()
            .into_iter()
            .map(NodeView::from)
            .collect(),
    ))
}

/// Invokes a capability of a connected node and returns its answer.
#[utoipa::path(post, path = "/api/v1/nodes/{id}/invoke", tag = "nodes",
    params(("id" = String, Path, description = "The node's device id", pattern = "^kgd1[02-9ac-hj-np-z]{38}$")),
    request_body = InvokeBody,
    responses((status = 200, body = InvokeView), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn invoke(
    State(state): State<Arc<ApiState>>,
    _: Operator,
    Path(id): Path<String>,
    Body(body): Body<InvokeBody>,
) -> Result<Json<InvokeView>, ApiError> {
    let id = DeviceId::parse(id.trim()).map_err(|e| ApiError::bad_field("id", e.to_string()))?;
    if body.capability.is_empty() {
        return Err(ApiError::bad_field("capability", "capability: empty"));
    }
    let answer = blocking(&state, move |s| {
        s.gateway
            .invoke(&id, &body.capability, body.payload.into_bytes())
            .map_err(|refusal| match refusal.code {
                RefusalCode::UnknownCapability => ApiError::bad_field("capability", refusal.reason),
                RefusalCode::NodeUnavailable => ApiError::not_found(refusal.reason),
                _ => ApiError::unavailable(refusal.reason),
            })
    })
    .await?;
    Ok(Json(InvokeView {
        ok: answer.ok,
        payload: String::from_utf8_lossy(&answer.payload).into_owned(),
    }))
}

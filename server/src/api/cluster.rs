//! The cluster: where this node stands, and join tokens for new nodes.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use portico_app::error::ApiError;

use super::extract::{ApiFailure, Authed};
use crate::cluster::ClusterStatus;
use crate::state::AppState;
use crate::storage::Storage;
use portico_app::model::storage::{CreatedJoinToken, JoinTokenView};

/// This node's view of the cluster: its Raft role, the leader, the members.
#[utoipa::path(get, path = "/api/v1/cluster", tag = "cluster",
    responses((status = 200, body = ClusterStatus), (status = 401, body = ApiError)))]
pub async fn status(State(s): State<AppState>, Authed(_caller): Authed) -> Json<ClusterStatus> {
    Json(s.storage.cluster_status())
}

/// Create a join token (admin). It is shown in this answer only, serves
/// once and expires after an hour.
#[utoipa::path(post, path = "/api/v1/cluster/join-tokens", tag = "cluster",
    responses((status = 201, body = CreatedJoinToken),
              (status = 403, body = ApiError, description = "Not an admin"),
              (status = 409, body = ApiError, description = "This node has no cluster address, or too many tokens are open"),
              (status = 503, body = ApiError, description = "The cluster has no leader")))]
pub async fn create_join_token(
    State(s): State<AppState>,
    Authed(caller): Authed,
) -> Result<(StatusCode, Json<CreatedJoinToken>), ApiFailure> {
    Ok((StatusCode::CREATED, Json(Storage::create_join_token(&s.storage, &caller).await?)))
}

/// The join tokens that may still admit a node (admin): unused and not
/// expired. Their secrets are never shown again.
#[utoipa::path(get, path = "/api/v1/cluster/join-tokens", tag = "cluster",
    responses((status = 200, body = Vec<JoinTokenView>),
              (status = 403, body = ApiError, description = "Not an admin")))]
pub async fn list_join_tokens(
    State(s): State<AppState>,
    Authed(caller): Authed,
) -> Result<Json<Vec<JoinTokenView>>, ApiFailure> {
    Ok(Json(s.storage.join_tokens(&caller).await?))
}

/// Revoke an unused join token (admin): it admits no node any more.
#[utoipa::path(delete, path = "/api/v1/cluster/join-tokens/{id}", tag = "cluster",
    params(("id" = String, Path, description = "The token's id: 16 hex digits, the middle part of the token")),
    responses((status = 204, description = "Revoked"),
              (status = 403, body = ApiError, description = "Not an admin"),
              (status = 404, body = ApiError, description = "No unused token has this id"),
              (status = 503, body = ApiError, description = "The cluster has no leader")))]
pub async fn revoke_join_token(
    State(s): State<AppState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiFailure> {
    s.storage.revoke_join_token(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

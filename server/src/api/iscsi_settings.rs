//! `/api/v1` routes for iSCSI settings: discovery CHAP (`/iscsi/discovery`,
//! the same for every portal), and a target group's session parameters
//! (`/target-groups/{name}/session`) and privileges
//! (`/target-groups/{name}/privileges`). Each is a thin call into
//! [`Storage`](crate::storage::Storage); a PUT replaces the whole setting.

use axum::extract::{Path, State};
use axum::Json;
use portico_app::error::ApiError;
use portico_app::model::discovery::DiscoverySettings;
use portico_app::model::privileges::{PrivilegeSettings, PrivilegesView};
use portico_app::model::session_settings::{SessionSettings, SessionView};

use super::extract::{ApiFailure, ApiJson, Authed};
use crate::state::AppState;
use crate::storage::Command;

type ApiResult<T> = Result<T, ApiFailure>;

/// CHAP on discovery sessions (user names; secrets are never returned).
/// `none` means any host that reaches a portal may ask for the targets.
#[utoipa::path(get, path = "/api/v1/iscsi/discovery", tag = "iscsi",
    responses((status = 200, body = DiscoverySettings), (status = 401, body = ApiError)))]
pub async fn get_discovery(State(s): State<AppState>, Authed(c): Authed) -> ApiResult<Json<DiscoverySettings>> {
    Ok(Json(s.storage.discovery(&c).await?))
}

/// Set CHAP on discovery sessions: `none`, `one-way` with the CHAP user
/// initiators log in as, or `mutual` with a second user the target answers
/// as. Applied live to new discovery sessions on every portal.
#[utoipa::path(put, path = "/api/v1/iscsi/discovery", tag = "iscsi", request_body = DiscoverySettings,
    responses((status = 200, body = DiscoverySettings), (status = 403, body = ApiError),
              (status = 422, body = ApiError, description = "A CHAP user is missing, unknown or the same for both directions")))]
pub async fn put_discovery(
    State(s): State<AppState>,
    Authed(c): Authed,
    ApiJson(settings): ApiJson<DiscoverySettings>,
) -> ApiResult<Json<DiscoverySettings>> {
    s.storage.execute(&c, Command::SetDiscovery(settings)).await?;
    Ok(Json(s.storage.discovery(&c).await?))
}

/// The group's session parameters: what was chosen, what new sessions are
/// offered, and the engine's defaults.
#[utoipa::path(get, path = "/api/v1/target-groups/{name}/session", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = SessionView), (status = 404, body = ApiError)))]
pub async fn get_session(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
) -> ApiResult<Json<SessionView>> {
    Ok(Json(s.storage.target_group(&c, &group).await?.session))
}

/// Replace the group's session parameters; a setting left out takes the
/// engine's default. New sessions negotiate with them; sessions already
/// logged in keep what they negotiated.
#[utoipa::path(put, path = "/api/v1/target-groups/{name}/session", tag = "target-groups", params(("name" = String, Path)),
    request_body = SessionSettings,
    responses((status = 200, body = SessionView), (status = 404, body = ApiError),
              (status = 422, body = ApiError, description = "A setting outside its range, with a message per setting")))]
pub async fn put_session(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
    ApiJson(settings): ApiJson<SessionSettings>,
) -> ApiResult<Json<SessionView>> {
    s.storage.execute(&c, Command::SetGroupSession { group: group.clone(), settings }).await?;
    Ok(Json(s.storage.target_group(&c, &group).await?.session))
}

/// Which commands that reach every host the group's initiators may send.
#[utoipa::path(get, path = "/api/v1/target-groups/{name}/privileges", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = PrivilegesView), (status = 404, body = ApiError)))]
pub async fn get_privileges(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
) -> ApiResult<Json<PrivilegesView>> {
    Ok(Json(s.storage.target_group(&c, &group).await?.privileges))
}

/// Replace the group's privileges; one left out takes the engine's default.
/// Applied live, to sessions already logged in too.
#[utoipa::path(put, path = "/api/v1/target-groups/{name}/privileges", tag = "target-groups", params(("name" = String, Path)),
    request_body = PrivilegeSettings,
    responses((status = 200, body = PrivilegesView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn put_privileges(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
    ApiJson(privileges): ApiJson<PrivilegeSettings>,
) -> ApiResult<Json<PrivilegesView>> {
    s.storage.execute(&c, Command::SetGroupPrivileges { group: group.clone(), privileges }).await?;
    Ok(Json(s.storage.target_group(&c, &group).await?.privileges))
}

//! `/api/v1` routes for block storage: volumes, target groups (targets, LUNs,
//! ACL, connections), CHAP users and nodes. Each is a thin call into
//! [`Storage`](crate::storage::Storage).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use portico_app::error::ApiError;
use portico_app::model::storage::*;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiFailure, ApiJson, Authed};
use crate::state::AppState;
use crate::storage::Command;

type ApiResult<T> = Result<T, ApiFailure>;
type Created<T> = ApiResult<(StatusCode, Json<T>)>;

#[derive(Debug, Deserialize, IntoParams)]
pub struct ForceQuery {
    /// Do it even though it detaches LUNs or cuts the Active/Optimized path.
    #[serde(default)]
    pub force: bool,
}

fn force(q: Result<Query<ForceQuery>, axum::extract::rejection::QueryRejection>) -> Result<bool, ApiFailure> {
    q.map(|Query(q)| q.force).map_err(|e| ApiFailure(ApiError::new(400, e.body_text())))
}

#[utoipa::path(get, path = "/api/v1/volumes", tag = "volumes", responses((status = 200, body = Vec<VolumeView>), (status = 401, body = ApiError)))]
pub async fn list_volumes(State(s): State<AppState>, Authed(c): Authed) -> ApiResult<Json<Vec<VolumeView>>> {
    Ok(Json(s.storage.volumes(&c).await?))
}

#[utoipa::path(post, path = "/api/v1/volumes", tag = "volumes", request_body = NewVolume,
    responses((status = 201, body = VolumeView), (status = 403, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_volume(
    State(s): State<AppState>,
    Authed(c): Authed,
    ApiJson(v): ApiJson<NewVolume>,
) -> Created<VolumeView> {
    let name = v.name.clone();
    s.storage.execute(&c, Command::CreateVolume(v)).await?;
    Ok((StatusCode::CREATED, Json(s.storage.volume(&c, &name).await?)))
}

#[utoipa::path(get, path = "/api/v1/volumes/{name}", tag = "volumes", params(("name" = String, Path)),
    responses((status = 200, body = VolumeView), (status = 404, body = ApiError)))]
pub async fn get_volume(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<VolumeView>> {
    Ok(Json(s.storage.volume(&c, &name).await?))
}

/// Grow a volume online (initiators see CAPACITY DATA HAS CHANGED) or set its limits.
#[utoipa::path(patch, path = "/api/v1/volumes/{name}", tag = "volumes", params(("name" = String, Path)), request_body = VolumePatch,
    responses((status = 200, body = VolumeView), (status = 404, body = ApiError), (status = 422, body = ApiError, description = "Shrinking is refused")))]
pub async fn update_volume(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<VolumePatch>,
) -> ApiResult<Json<VolumeView>> {
    s.storage.execute(&c, Command::UpdateVolume { name: name.clone(), patch }).await?;
    Ok(Json(s.storage.volume(&c, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/volumes/{name}", tag = "volumes", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ApiError), (status = 409, body = ApiError, description = "Attached to a target group")))]
pub async fn delete_volume(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.storage.execute(&c, Command::DeleteVolume { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A planned switchover (operators and admins): the volume's primary, and
/// with it the Active/Optimized path of its LUN, moves to another node
/// that keeps an in-sync copy. The old primary completes what it admitted;
/// initiators retry what it refuses on the new path.
#[utoipa::path(post, path = "/api/v1/volumes/{name}/primary", tag = "volumes", params(("name" = String, Path)), request_body = PrimaryMove,
    responses((status = 200, body = VolumeView), (status = 403, body = ApiError), (status = 404, body = ApiError),
              (status = 409, body = ApiError, description = "The node keeps no in-sync copy, is not online, or holds the primary already"),
              (status = 422, body = ApiError, description = "No node has that name"),
              (status = 429, body = ApiError, description = "The volume was switched over 3 times in the last minute"),
              (status = 503, body = ApiError, description = "The primary's node could not be asked to hand over")))]
pub async fn move_primary(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
    ApiJson(to): ApiJson<PrimaryMove>,
) -> ApiResult<Json<VolumeView>> {
    s.storage.move_primary(&c, &name, &to.node).await?;
    Ok(Json(s.storage.volume(&c, &name).await?))
}

/// The timeline of the volume's primary: each failover, switchover and
/// failback, newest first: when, why, and from which node to which.
#[utoipa::path(get, path = "/api/v1/volumes/{name}/moves", tag = "volumes", params(("name" = String, Path)),
    responses((status = 200, body = Vec<VolumeMove>), (status = 404, body = ApiError)))]
pub async fn volume_moves(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<VolumeMove>>> {
    Ok(Json(s.storage.volume_moves(&c, &name).await?))
}

/// The timeline of the primaries of the group's volumes, newest first.
#[utoipa::path(get, path = "/api/v1/target-groups/{name}/moves", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = Vec<VolumeMove>), (status = 404, body = ApiError)))]
pub async fn group_moves(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<VolumeMove>>> {
    Ok(Json(s.storage.group_moves(&c, &name).await?))
}

/// The path state of each LUN through each target of the group, now: a
/// LUN's Active/Optimized path is the target on the node that holds its
/// volume's primary, and moves with it in a failover, switchover or failback.
#[utoipa::path(get, path = "/api/v1/target-groups/{name}/paths", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = Vec<TargetPaths>), (status = 404, body = ApiError)))]
pub async fn group_paths(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<TargetPaths>>> {
    Ok(Json(s.storage.group_paths(&c, &name).await?))
}

/// The volume's IOPS and throughput over the last minutes (5-second samples).
#[utoipa::path(get, path = "/api/v1/volumes/{name}/activity", tag = "volumes", params(("name" = String, Path)),
    responses((status = 200, body = VolumeActivity), (status = 404, body = ApiError)))]
pub async fn volume_activity(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<VolumeActivity>> {
    Ok(Json(s.storage.volume_activity(&c, &name).await?))
}

/// The volume's SCSI reservations: registrations, the persistent
/// reservation and its holder, and an SPC-2 reservation if any.
#[utoipa::path(get, path = "/api/v1/volumes/{name}/reservations", tag = "volumes", params(("name" = String, Path)),
    responses((status = 200, body = VolumeReservations), (status = 404, body = ApiError)))]
pub async fn volume_reservations(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<VolumeReservations>> {
    Ok(Json(s.storage.volume_reservations(&c, &name).await?))
}

#[utoipa::path(get, path = "/api/v1/target-groups", tag = "target-groups", responses((status = 200, body = Vec<TargetGroupView>)))]
pub async fn list_groups(State(s): State<AppState>, Authed(c): Authed) -> ApiResult<Json<Vec<TargetGroupView>>> {
    Ok(Json(s.storage.target_groups(&c).await?))
}

#[utoipa::path(post, path = "/api/v1/target-groups", tag = "target-groups", request_body = NewTargetGroup,
    responses((status = 201, body = TargetGroupView), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_group(
    State(s): State<AppState>,
    Authed(c): Authed,
    ApiJson(g): ApiJson<NewTargetGroup>,
) -> Created<TargetGroupView> {
    let name = g.name.clone();
    s.storage.execute(&c, Command::CreateTargetGroup(g)).await?;
    Ok((StatusCode::CREATED, Json(s.storage.target_group(&c, &name).await?)))
}

#[utoipa::path(get, path = "/api/v1/target-groups/{name}", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = TargetGroupView), (status = 404, body = ApiError)))]
pub async fn get_group(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<TargetGroupView>> {
    Ok(Json(s.storage.target_group(&c, &name).await?))
}

#[utoipa::path(patch, path = "/api/v1/target-groups/{name}", tag = "target-groups", params(("name" = String, Path)), request_body = TargetGroupPatch,
    responses((status = 200, body = TargetGroupView), (status = 422, body = ApiError)))]
pub async fn update_group(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<TargetGroupPatch>,
) -> ApiResult<Json<TargetGroupView>> {
    s.storage.execute(&c, Command::UpdateTargetGroup { name: name.clone(), patch }).await?;
    Ok(Json(s.storage.target_group(&c, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/target-groups/{name}", tag = "target-groups", params(("name" = String, Path), ForceQuery),
    responses((status = 204), (status = 409, body = ApiError, description = "LUNs attached and no force")))]
pub async fn delete_group(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
    q: Result<Query<ForceQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<StatusCode> {
    s.storage.execute(&c, Command::DeleteTargetGroup { name, force: force(q)? }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/target-groups/{name}/start", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = TargetGroupView)))]
pub async fn start_group(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<TargetGroupView>> {
    s.storage.execute(&c, Command::SetGroupRunning { name: name.clone(), running: true }).await?;
    Ok(Json(s.storage.target_group(&c, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/target-groups/{name}/stop", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = TargetGroupView)))]
pub async fn stop_group(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<TargetGroupView>> {
    s.storage.execute(&c, Command::SetGroupRunning { name: name.clone(), running: false }).await?;
    Ok(Json(s.storage.target_group(&c, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/target-groups/{name}/targets", tag = "target-groups", params(("name" = String, Path)), request_body = TargetSpec,
    responses((status = 201, body = TargetGroupView), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn add_target(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
    ApiJson(target): ApiJson<TargetSpec>,
) -> Created<TargetGroupView> {
    s.storage.execute(&c, Command::AddTarget { group: group.clone(), target }).await?;
    Ok((StatusCode::CREATED, Json(s.storage.target_group(&c, &group).await?)))
}

#[utoipa::path(delete, path = "/api/v1/target-groups/{name}/targets/{iqn}", tag = "target-groups",
    params(("name" = String, Path), ("iqn" = String, Path), ForceQuery),
    responses((status = 204), (status = 409, body = ApiError, description = "Holds the Active/Optimized path and no force")))]
pub async fn remove_target(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path((group, iqn)): Path<(String, String)>,
    q: Result<Query<ForceQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<StatusCode> {
    s.storage.execute(&c, Command::RemoveTarget { group, iqn, force: force(q)? }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/target-groups/{name}/luns", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = Vec<LunView>)))]
pub async fn list_luns(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
) -> ApiResult<Json<Vec<LunView>>> {
    Ok(Json(s.storage.target_group(&c, &group).await?.luns))
}

#[utoipa::path(post, path = "/api/v1/target-groups/{name}/luns", tag = "target-groups", params(("name" = String, Path)), request_body = NewLun,
    responses((status = 201, body = LunView), (status = 409, body = ApiError)))]
pub async fn attach_lun(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
    ApiJson(lun): ApiJson<NewLun>,
) -> Created<LunView> {
    let volume = lun.volume.clone();
    s.storage.execute(&c, Command::AttachVolume { group: group.clone(), lun }).await?;
    let g = s.storage.target_group(&c, &group).await?;
    let view = g.luns.into_iter().find(|l| l.volume == volume).ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(delete, path = "/api/v1/target-groups/{name}/luns/{lun}", tag = "target-groups",
    params(("name" = String, Path), ("lun" = u8, Path)), responses((status = 204), (status = 404, body = ApiError)))]
pub async fn detach_lun(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path((group, lun)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let lun: u8 = lun.parse().map_err(|_| ApiError::new(400, "A LUN id is a number from 0 to 255."))?;
    s.storage.execute(&c, Command::DetachLun { group, lun }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/target-groups/{name}/acl", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = Vec<AclRuleView>)))]
pub async fn list_acl(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
) -> ApiResult<Json<Vec<AclRuleView>>> {
    Ok(Json(s.storage.target_group(&c, &group).await?.acl))
}

#[utoipa::path(post, path = "/api/v1/target-groups/{name}/acl", tag = "target-groups", params(("name" = String, Path)), request_body = NewAclRule,
    responses((status = 201, body = AclRuleView), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn add_acl(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
    ApiJson(rule): ApiJson<NewAclRule>,
) -> Created<AclRuleView> {
    // The rule is stored under the normal form of the name (case folded).
    let initiator = normalize_iscsi_name(&rule.initiator).unwrap_or_else(|_| rule.initiator.clone());
    s.storage.execute(&c, Command::AddAclRule { group: group.clone(), rule }).await?;
    let g = s.storage.target_group(&c, &group).await?;
    let view = g.acl.into_iter().find(|r| r.initiator == initiator).ok_or_else(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(patch, path = "/api/v1/target-groups/{name}/acl/{initiator}", tag = "target-groups",
    params(("name" = String, Path), ("initiator" = String, Path)), request_body = AclPatch,
    responses((status = 200, body = AclRuleView), (status = 404, body = ApiError)))]
pub async fn update_acl(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path((group, initiator)): Path<(String, String)>,
    ApiJson(patch): ApiJson<AclPatch>,
) -> ApiResult<Json<AclRuleView>> {
    s.storage.execute(&c, Command::UpdateAclRule { group: group.clone(), initiator: initiator.clone(), patch }).await?;
    let initiator = normalize_iscsi_name(&initiator).unwrap_or(initiator);
    let g = s.storage.target_group(&c, &group).await?;
    Ok(Json(g.acl.into_iter().find(|r| r.initiator == initiator).ok_or_else(ApiError::internal)?))
}

#[utoipa::path(delete, path = "/api/v1/target-groups/{name}/acl/{initiator}", tag = "target-groups",
    params(("name" = String, Path), ("initiator" = String, Path)), responses((status = 204), (status = 404, body = ApiError)))]
pub async fn delete_acl(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path((group, initiator)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.storage.execute(&c, Command::DeleteAclRule { group, initiator }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/target-groups/{name}/connections", tag = "target-groups", params(("name" = String, Path)),
    responses((status = 200, body = Vec<ConnectionView>)))]
pub async fn connections(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(group): Path<String>,
) -> ApiResult<Json<Vec<ConnectionView>>> {
    Ok(Json(s.storage.connections(&c, &group).await?))
}

#[utoipa::path(get, path = "/api/v1/chap-users", tag = "chap-users", responses((status = 200, body = Vec<ChapUserView>)))]
pub async fn list_chap_users(State(s): State<AppState>, Authed(c): Authed) -> ApiResult<Json<Vec<ChapUserView>>> {
    Ok(Json(s.storage.chap_users(&c).await?))
}

async fn chap_user_view(s: &AppState, c: &portico_app::service::Caller, name: &str) -> ApiResult<ChapUserView> {
    Ok(s.storage.chap_users(c).await?.into_iter().find(|u| u.name == name).ok_or_else(ApiError::internal)?)
}

#[utoipa::path(post, path = "/api/v1/chap-users", tag = "chap-users", request_body = NewChapUser,
    responses((status = 201, body = ChapUserView), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_chap_user(
    State(s): State<AppState>,
    Authed(c): Authed,
    ApiJson(u): ApiJson<NewChapUser>,
) -> Created<ChapUserView> {
    let name = u.name.clone();
    s.storage.execute(&c, Command::CreateChapUser(u)).await?;
    Ok((StatusCode::CREATED, Json(chap_user_view(&s, &c, &name).await?)))
}

#[utoipa::path(patch, path = "/api/v1/chap-users/{name}", tag = "chap-users", params(("name" = String, Path)), request_body = ChapUserPatch,
    responses((status = 200, body = ChapUserView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn update_chap_user(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<ChapUserPatch>,
) -> ApiResult<Json<ChapUserView>> {
    s.storage.execute(&c, Command::UpdateChapUser { name: name.clone(), patch }).await?;
    Ok(Json(chap_user_view(&s, &c, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/chap-users/{name}", tag = "chap-users", params(("name" = String, Path)),
    responses((status = 204), (status = 409, body = ApiError, description = "Used by a target group")))]
pub async fn delete_chap_user(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.storage.execute(&c, Command::DeleteChapUser { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", responses((status = 200, body = Vec<NodeView>)))]
pub async fn list_nodes(State(s): State<AppState>, Authed(c): Authed) -> ApiResult<Json<Vec<NodeView>>> {
    Ok(Json(s.storage.nodes(&c).await?))
}

#[utoipa::path(get, path = "/api/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path)),
    responses((status = 200, body = NodeView), (status = 404, body = ApiError)))]
pub async fn get_node(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<Json<NodeView>> {
    Ok(Json(s.storage.node(&c, &name).await?))
}

/// Remove a node from the cluster (admin). It must hold no volumes or
/// targets, and the node answering cannot remove itself.
#[utoipa::path(delete, path = "/api/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 403, body = ApiError), (status = 404, body = ApiError),
              (status = 409, body = ApiError, description = "It holds volumes or targets, or it is the node answering"),
              (status = 503, body = ApiError)))]
pub async fn remove_node(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.storage.remove_node(&c, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(patch, path = "/api/v1/nodes/{name}", tag = "nodes", params(("name" = String, Path)), request_body = NodePatch,
    responses((status = 200, body = NodeView), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn update_node(
    State(s): State<AppState>,
    Authed(c): Authed,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<NodePatch>,
) -> ApiResult<Json<NodeView>> {
    s.storage.execute(&c, Command::UpdateNode { name: name.clone(), patch }).await?;
    Ok(Json(s.storage.node(&c, &name).await?))
}

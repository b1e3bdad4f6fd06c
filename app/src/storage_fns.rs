//! Server functions of the storage pages: each builds one storage command
//! (or one read) and hands it to the shared [`StorageService`](crate::service::StorageService).

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use crate::error::ApiError;
use crate::model::storage::*;

#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    use leptos::prelude::*;

    use crate::error::ApiError;
    use crate::model::storage::Command;
    use crate::server_fns::ssr::{caller, fail};
    use crate::service::{Caller, SharedStorage};

    pub async fn storage() -> Result<(SharedStorage, Caller), ApiError> {
        let (_, caller) = caller().await?;
        let storage = use_context::<SharedStorage>().ok_or_else(ApiError::internal)?;
        Ok((storage, caller))
    }

    pub async fn run(command: Command) -> Result<(), ApiError> {
        let go = async {
            let (s, c) = storage().await?;
            s.execute(&c, command).await
        };
        go.await.map_err(fail)
    }

    pub fn failed(e: ApiError) -> ApiError {
        fail(e)
    }
}

/// An empty text field means "not given".
#[cfg(feature = "ssr")]
pub(crate) fn opt(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// The volumes, and the nodes a new one may be placed on, in one answer.
#[server(prefix = "/rpc", endpoint = "storage/volumes-page", input = Json)]
pub async fn get_volumes_page() -> Result<VolumesPageData, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        Ok(VolumesPageData { volumes: s.volumes(&c).await?, nodes: s.node_names(&c).await? })
    };
    go.await.map_err(ssr::failed)
}

/// A write-cache policy chosen in a form; empty → `None`.
#[cfg(feature = "ssr")]
fn write_cache(text: String) -> Result<Option<WriteCache>, ApiError> {
    match opt(text) {
        None => Ok(None),
        Some(t) => WriteCache::parse(&t)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_field("write_cache", "Choose write-through, write-back or initiator.")),
    }
}

#[server(prefix = "/rpc", endpoint = "storage/volumes/create", input = Json)]
pub async fn create_volume(
    name: String,
    size: String,
    block_size: u32,
    #[server(default)] replicas: Option<u8>,
    #[server(default)] write_cache: String,
    #[server(default)] node: String,
) -> Result<(), ApiError> {
    ssr::run(Command::CreateVolume(NewVolume {
        name: name.trim().to_string(),
        size: SizeInput::Text(size),
        block_size,
        replicas: replicas.unwrap_or(1),
        write_cache: self::write_cache(write_cache).map_err(ssr::failed)?.unwrap_or_default(),
        node: opt(node),
    }))
    .await
}

#[server(prefix = "/rpc", endpoint = "storage/volumes/update", input = Json)]
pub async fn update_volume(
    name: String,
    size: String,
    iops_limit: String,
    mbps_limit: String,
    #[server(default)] write_cache: String,
    #[server(default)] replicas: Option<u8>,
) -> Result<(), ApiError> {
    let number = |field: &str, v: String| -> Result<Option<u64>, ApiError> {
        opt(v)
            .map(|v| {
                v.parse::<u64>().map_err(|_| ApiError::invalid_field(field, "A whole number; 0 removes the limit."))
            })
            .transpose()
    };
    let patch = VolumePatch {
        size: opt(size).map(SizeInput::Text),
        iops_limit: number("iops_limit", iops_limit).map_err(ssr::failed)?,
        mbps_limit: number("mbps_limit", mbps_limit).map_err(ssr::failed)?,
        write_cache: self::write_cache(write_cache).map_err(ssr::failed)?,
        replicas,
        auto_failback: None,
    };
    ssr::run(Command::UpdateVolume { name, patch }).await
}

#[server(prefix = "/rpc", endpoint = "storage/volumes/delete", input = Json)]
pub async fn delete_volume(name: String) -> Result<(), ApiError> {
    ssr::run(Command::DeleteVolume { name }).await
}

/// The groups with what the new-group form offers (nodes by name, CHAP
/// users): one call, so that the page is drawn from one answer.
#[server(prefix = "/rpc", endpoint = "storage/groups-page", input = Json)]
pub async fn get_groups_page() -> Result<GroupsPageData, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        let groups = s.target_groups(&c).await?;
        let nodes = s.node_names(&c).await?;
        let chap_users = s.chap_users(&c).await?.into_iter().map(|u| u.name).collect();
        Ok(GroupsPageData { groups, nodes, chap_users })
    };
    go.await.map_err(ssr::failed)
}

/// A group with what its forms may choose: CHAP users, nodes with their
/// iSCSI addresses, unattached volumes. One call, so that a page is drawn
/// from one answer.
#[server(prefix = "/rpc", endpoint = "storage/group-page", input = Json)]
pub async fn get_group_page(name: String) -> Result<GroupPageData, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        let group = s.target_group(&c, &name).await?;
        let chap_users = s.chap_users(&c).await?.into_iter().map(|u| u.name).collect();
        let nodes = s.node_choices(&c).await?;
        let free_volumes =
            s.volumes(&c).await?.into_iter().filter(|v| v.attached_to.is_none()).map(|v| v.name).collect();
        Ok(GroupPageData { group, chap_users, nodes, free_volumes })
    };
    go.await.map_err(ssr::failed)
}

/// Splits "a:3260, b:3260" or one per line.
#[cfg(feature = "ssr")]
fn portals(text: &str) -> Vec<String> {
    text.split([',', '\n', ' ']).map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
}

/// The full IQN for a suffix typed in a form; empty → Portico's default.
#[cfg(feature = "ssr")]
fn iqn_from_suffix(suffix: String) -> Option<String> {
    opt(suffix).map(|s| format!("{IQN_PREFIX}:{s}"))
}

/// "0, 1 4" → the LUN ids; empty → all LUNs.
#[cfg(feature = "ssr")]
fn parse_luns(text: String) -> Result<Option<Vec<u8>>, ApiError> {
    match opt(text) {
        None => Ok(None),
        Some(text) => text
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().parse::<u8>())
            .collect::<Result<Vec<u8>, _>>()
            .map(Some)
            .map_err(|_| ApiError::invalid_field("luns", "List LUN ids such as 0, 1, 4 — or leave empty for all.")),
    }
}

#[cfg(feature = "ssr")]
pub(crate) fn chap(mode: &str, user: String, mutual_user: String) -> Result<ChapSetting, ApiError> {
    let mode =
        ChapMode::parse(mode).ok_or_else(|| ApiError::invalid_field("chap.mode", "Choose none, one-way or mutual."))?;
    Ok(ChapSetting { mode, user: opt(user), mutual_user: opt(mutual_user) })
}

#[server(prefix = "/rpc", endpoint = "storage/groups/create", input = Json)]
pub async fn create_group(
    name: String,
    node: String,
    portals: String,
    iqn_suffix: String,
    chap_mode: String,
    chap_user: String,
    mutual_user: String,
) -> Result<(), ApiError> {
    let chap = chap(&chap_mode, chap_user, mutual_user).map_err(ssr::failed)?;
    let targets = if node.trim().is_empty() {
        Vec::new()
    } else {
        vec![TargetSpec {
            node: node.trim().to_string(),
            portals: self::portals(&portals),
            iqn: iqn_from_suffix(iqn_suffix),
        }]
    };
    ssr::run(Command::CreateTargetGroup(NewTargetGroup {
        name: name.trim().to_string(),
        targets,
        acl_enabled: false,
        chap,
        other_paths: OtherPaths::Standby,
    }))
    .await
}

#[server(prefix = "/rpc", endpoint = "storage/groups/delete", input = Json)]
pub async fn delete_group(name: String, force: bool) -> Result<(), ApiError> {
    ssr::run(Command::DeleteTargetGroup { name, force }).await
}

#[server(prefix = "/rpc", endpoint = "storage/groups/running", input = Json)]
pub async fn set_group_running(name: String, running: bool) -> Result<(), ApiError> {
    ssr::run(Command::SetGroupRunning { name, running }).await
}

#[server(prefix = "/rpc", endpoint = "storage/groups/chap", input = Json)]
pub async fn set_group_chap(
    group: String,
    chap_mode: String,
    chap_user: String,
    mutual_user: String,
) -> Result<(), ApiError> {
    let chap = chap(&chap_mode, chap_user, mutual_user).map_err(ssr::failed)?;
    ssr::run(Command::UpdateTargetGroup {
        name: group,
        patch: TargetGroupPatch { chap: Some(chap), ..Default::default() },
    })
    .await
}

#[server(prefix = "/rpc", endpoint = "storage/groups/acl-enabled", input = Json)]
pub async fn set_group_acl(group: String, enabled: bool) -> Result<(), ApiError> {
    ssr::run(Command::UpdateTargetGroup {
        name: group,
        patch: TargetGroupPatch { acl_enabled: Some(enabled), ..Default::default() },
    })
    .await
}

#[server(prefix = "/rpc", endpoint = "storage/groups/other-paths", input = Json)]
pub async fn set_group_other_paths(group: String, other_paths: String) -> Result<(), ApiError> {
    let other = OtherPaths::parse(&other_paths)
        .ok_or_else(|| ApiError::invalid_field("other_paths", "Choose standby or active-non-optimized."))?;
    ssr::run(Command::UpdateTargetGroup {
        name: group,
        patch: TargetGroupPatch { other_paths: Some(other), ..Default::default() },
    })
    .await
}

#[server(prefix = "/rpc", endpoint = "storage/targets/add", input = Json)]
pub async fn add_target(group: String, node: String, portals: String, iqn_suffix: String) -> Result<(), ApiError> {
    let target = TargetSpec {
        node: node.trim().to_string(),
        portals: self::portals(&portals),
        iqn: iqn_from_suffix(iqn_suffix),
    };
    ssr::run(Command::AddTarget { group, target }).await
}

#[server(prefix = "/rpc", endpoint = "storage/targets/remove", input = Json)]
pub async fn remove_target(group: String, iqn: String, force: bool) -> Result<(), ApiError> {
    ssr::run(Command::RemoveTarget { group, iqn, force }).await
}

#[server(prefix = "/rpc", endpoint = "storage/luns/attach", input = Json)]
pub async fn attach_lun(group: String, volume: String, lun: String) -> Result<(), ApiError> {
    let lun = opt(lun)
        .map(|l| {
            l.parse::<u8>()
                .map_err(|_| ApiError::invalid_field("lun", "A LUN id is 0 to 255; leave empty for the next free one."))
        })
        .transpose()
        .map_err(ssr::failed)?;
    ssr::run(Command::AttachVolume { group, lun: NewLun { volume, lun } }).await
}

#[server(prefix = "/rpc", endpoint = "storage/luns/detach", input = Json)]
pub async fn detach_lun(group: String, lun: u8) -> Result<(), ApiError> {
    ssr::run(Command::DetachLun { group, lun }).await
}

/// An ACL rule's own CHAP from a form: mode `group` (or empty) is the group's.
#[cfg(feature = "ssr")]
pub(crate) fn own_chap(mode: &str, user: String, mutual_user: String) -> Result<Option<ChapSetting>, ApiError> {
    match mode {
        "" | "group" => Ok(None),
        _ => chap(mode, user, mutual_user).map(Some),
    }
}

#[server(prefix = "/rpc", endpoint = "storage/acl/add", input = Json)]
pub async fn add_acl_rule(
    group: String,
    initiator: String,
    alias: String,
    luns: String,
    chap_mode: String,
    chap_user: String,
    mutual_user: String,
) -> Result<(), ApiError> {
    let luns = parse_luns(luns).map_err(ssr::failed)?;
    let chap = own_chap(&chap_mode, chap_user, mutual_user).map_err(ssr::failed)?;
    ssr::run(Command::AddAclRule {
        group,
        rule: NewAclRule { initiator: initiator.trim().to_string(), alias: opt(alias), luns, chap, privileges: None },
    })
    .await
}

#[server(prefix = "/rpc", endpoint = "storage/acl/update", input = Json)]
pub async fn update_acl_rule(group: String, initiator: String, luns: String) -> Result<(), ApiError> {
    let luns = parse_luns(luns).map_err(ssr::failed)?;
    let patch = AclPatch { luns: Some(luns), ..Default::default() };
    ssr::run(Command::UpdateAclRule { group, initiator, patch }).await
}

#[server(prefix = "/rpc", endpoint = "storage/acl/delete", input = Json)]
pub async fn delete_acl_rule(group: String, initiator: String) -> Result<(), ApiError> {
    ssr::run(Command::DeleteAclRule { group, initiator }).await
}

#[server(prefix = "/rpc", endpoint = "storage/groups/connections", input = Json)]
pub async fn group_connections(name: String) -> Result<Vec<ConnectionView>, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.connections(&c, &name).await
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "storage/chap-users", input = Json)]
pub async fn list_chap_users() -> Result<Vec<ChapUserView>, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.chap_users(&c).await
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "storage/chap-users/create", input = Json)]
pub async fn create_chap_user(name: String, secret: String, description: String) -> Result<(), ApiError> {
    ssr::run(Command::CreateChapUser(NewChapUser {
        name: name.trim().to_string(),
        secret,
        description: opt(description),
    }))
    .await
}

#[server(prefix = "/rpc", endpoint = "storage/chap-users/secret", input = Json)]
pub async fn set_chap_secret(name: String, secret: String) -> Result<(), ApiError> {
    ssr::run(Command::UpdateChapUser { name, patch: ChapUserPatch { secret: Some(secret), description: None } }).await
}

#[server(prefix = "/rpc", endpoint = "storage/chap-users/delete", input = Json)]
pub async fn delete_chap_user(name: String) -> Result<(), ApiError> {
    ssr::run(Command::DeleteChapUser { name }).await
}

#[server(prefix = "/rpc", endpoint = "storage/nodes", input = Json)]
pub async fn list_nodes() -> Result<Vec<NodeView>, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.nodes(&c).await
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "storage/nodes/traffic", input = Json)]
pub async fn set_traffic(node: String, interface: String, traffic_types: String) -> Result<(), ApiError> {
    let types = traffic_types.split([',', ' ']).filter(|s| !s.is_empty()).map(str::to_string).collect();
    ssr::run(Command::UpdateNode {
        name: node,
        patch: NodePatch {
            interfaces: vec![InterfacePatch { name: interface, traffic_types: types }],
            maintenance: None,
        },
    })
    .await
}

#[server(prefix = "/rpc", endpoint = "storage/nodes/maintenance", input = Json)]
pub async fn set_maintenance(node: String, on: bool) -> Result<(), ApiError> {
    ssr::run(Command::UpdateNode { name: node, patch: NodePatch { interfaces: Vec::new(), maintenance: Some(on) } })
        .await
}

#[server(prefix = "/rpc", endpoint = "cluster/join-token", input = Json)]
pub async fn create_join_token() -> Result<CreatedJoinToken, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.create_join_token(&c).await
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "cluster/nodes/remove", input = Json)]
pub async fn remove_node(node: String) -> Result<(), ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.remove_node(&c, &node).await
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "cluster/join-tokens", input = Json)]
pub async fn list_join_tokens() -> Result<Vec<JoinTokenView>, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.join_tokens(&c).await
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "cluster/join-token/revoke", input = Json)]
pub async fn revoke_join_token(id: String) -> Result<(), ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.revoke_join_token(&c, &id).await
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "storage/reservations", input = Json)]
pub async fn list_reservations() -> Result<Vec<VolumeReservations>, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.reservations(&c).await
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "storage/volumes/activity", input = Json)]
pub async fn get_volume_activity(name: String) -> Result<VolumeActivity, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.volume_activity(&c, &name).await
    };
    go.await.map_err(ssr::failed)
}

/// A planned switchover: the primary of `name`, and with it the
/// Active/Optimized path of its LUN, moves to `node`. Answers with the
/// node that holds the primary now.
#[server(prefix = "/rpc", endpoint = "storage/volumes/primary", input = Json)]
pub async fn move_primary(name: String, node: String) -> Result<String, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        let node = node.trim().to_string();
        s.move_primary(&c, &name, &node).await?;
        Ok(node)
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "storage/volumes/auto-failback", input = Json)]
pub async fn set_auto_failback(name: String, on: bool) -> Result<(), ApiError> {
    let patch = VolumePatch { auto_failback: Some(on), ..Default::default() };
    ssr::run(Command::UpdateVolume { name, patch }).await
}

#[server(prefix = "/rpc", endpoint = "storage/volumes/moves", input = Json)]
pub async fn get_volume_moves(name: String) -> Result<Vec<VolumeMove>, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.volume_moves(&c, &name).await
    };
    go.await.map_err(ssr::failed)
}

#[server(prefix = "/rpc", endpoint = "storage/groups/moves", input = Json)]
pub async fn get_group_moves(name: String) -> Result<Vec<VolumeMove>, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.group_moves(&c, &name).await
    };
    go.await.map_err(ssr::failed)
}

/// The path states of the group's targets, for the page to refresh them
/// without reloading the rest.
#[server(prefix = "/rpc", endpoint = "storage/groups/paths", input = Json)]
pub async fn get_group_paths(name: String) -> Result<Vec<TargetPaths>, ApiError> {
    let go = async {
        let (s, c) = ssr::storage().await?;
        s.group_paths(&c, &name).await
    };
    go.await.map_err(ssr::failed)
}

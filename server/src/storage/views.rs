//! Reading storage objects as API views (a fixed number of queries per call,
//! whatever the number of objects).

use std::collections::BTreeMap;

use super::paths::{other_paths, path_state};
use super::{chap_usage, columns, privileges, session_settings};
use portico_app::model::storage::*;
use sqlx::SqlitePool;

type VolumeRow = (
    String,
    i64,
    i64,
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
    String,
    Option<String>,
    Option<i64>,
    String,
    String,
);

pub async fn volumes(pool: &SqlitePool, name: Option<&str>) -> sqlx::Result<Vec<VolumeView>> {
    let rows: Vec<VolumeRow> = sqlx::query_as(
        "SELECT v.name, v.size, v.block_size, v.replicas, v.wwn, v.serial, v.iops_limit, v.mbps_limit, v.state, v.created_at, \
                g.name, l.lun, v.write_cache, n.name \
         FROM volumes v JOIN nodes n ON n.id = v.node_id LEFT JOIN luns l ON l.volume_id = v.id LEFT JOIN target_groups g ON g.id = l.group_id \
         WHERE ? IS NULL OR v.name = ? ORDER BY v.name",
    )
    .bind(name)
    .bind(name)
    .fetch_all(pool)
    .await?;
    let copies: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT v.name, n.name, c.in_sync FROM volume_copies c JOIN volumes v ON v.id = c.volume_id \
         JOIN nodes n ON n.id = c.node_id WHERE ? IS NULL OR v.name = ? ORDER BY n.name",
    )
    .bind(name)
    .bind(name)
    .fetch_all(pool)
    .await?;
    let mut volumes: Vec<VolumeView> = rows
        .into_iter()
        .map(
            |(
                name,
                size,
                block_size,
                replicas,
                wwn,
                serial,
                iops,
                mbps,
                state,
                created_at,
                group,
                lun,
                write_cache,
                node,
            )| VolumeView {
                name,
                size: size as u64,
                block_size: block_size as u32,
                replicas: replicas as u8,
                wwn,
                serial,
                thin: true,
                iops_limit: iops.map(|v| v as u64),
                mbps_limit: mbps.map(|v| v as u64),
                state,
                attached_to: group,
                lun: lun.map(|l| l as u8),
                created_at,
                // The column's CHECK constraint allows only the three policies.
                write_cache: WriteCache::parse(&write_cache).unwrap_or_default(),
                wce: None,
                node,
                copies: Vec::new(),
                preferred_node: None,
                auto_failback: true,
            },
        )
        .collect();
    for (volume, node, in_sync) in copies {
        if let Some(v) = volumes.iter_mut().find(|v| v.name == volume) {
            v.copies.push(VolumeCopy { node, in_sync, link: None, copied_bytes: 0, left_bytes: 0, resync_rate: 0 });
            if !in_sync {
                v.state = "degraded".into();
            }
        }
    }
    let failback: Vec<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT v.name, n.name, v.auto_failback FROM volumes v LEFT JOIN nodes n ON n.id = v.preferred_node_id \
         WHERE ? IS NULL OR v.name = ?",
    )
    .bind(name)
    .bind(name)
    .fetch_all(pool)
    .await?;
    for (volume, preferred, auto) in failback {
        if let Some(v) = volumes.iter_mut().find(|v| v.name == volume) {
            v.preferred_node = preferred;
            v.auto_failback = auto;
        }
    }
    Ok(volumes)
}

/// The moves of the primary of `volume` (or of the volumes attached to
/// `group`), newest first.
pub async fn moves(pool: &SqlitePool, volume: Option<&str>, group: Option<&str>) -> sqlx::Result<Vec<VolumeMove>> {
    type Row = (String, String, String, String, String, i64, String, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT m.volume, m.at, m.kind, m.from_node, m.to_node, m.epoch, m.cause, m.held_ms FROM volume_moves m \
         WHERE (?1 IS NULL OR m.volume = ?1) AND (?2 IS NULL OR m.volume IN (SELECT v.name FROM volumes v \
            JOIN luns l ON l.volume_id = v.id JOIN target_groups g ON g.id = l.group_id WHERE g.name = ?2)) \
         ORDER BY m.id DESC LIMIT 500",
    )
    .bind(volume)
    .bind(group)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(volume, at, kind, from_node, to_node, epoch, cause, held_ms)| VolumeMove {
            volume,
            at,
            kind,
            from_node,
            to_node,
            epoch: epoch as u64,
            cause,
            held_ms: held_ms.map(|ms| ms.max(0) as u64),
        })
        .collect())
}

/// The path through a target on `target_node` to a LUN whose volume's
/// primary is on `volume_node`, in a group whose other paths are `other`.
fn path(lun: i64, target_node: i64, volume_node: i64, other: OtherPaths) -> PathView {
    PathView { lun: lun as u8, state: path_state(target_node, volume_node, other) }
}

/// The path states of the targets of `group`, in port group order, each with
/// its LUNs in order; `None` when there is no such group. One query, for a
/// page that asks every few seconds.
pub async fn group_paths(pool: &SqlitePool, group: &str) -> sqlx::Result<Option<Vec<TargetPaths>>> {
    // A group with no target gives one row of NULLs, a target with no LUN
    // one row with a NULL LUN, so that both are told from a missing group.
    type Row = (Option<String>, Option<i64>, Option<i64>, Option<i64>, String);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.iqn, t.node_id, l.lun, v.node_id, g.other_paths FROM target_groups g \
         LEFT JOIN targets t ON t.group_id = g.id LEFT JOIN luns l ON l.group_id = g.id \
         LEFT JOIN volumes v ON v.id = l.volume_id WHERE g.name = ? ORDER BY t.tpg, t.iqn, l.lun",
    )
    .bind(group)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut targets: Vec<TargetPaths> = Vec::new();
    for (iqn, target_node, lun, volume_node, other) in rows {
        let (Some(iqn), Some(target_node)) = (iqn, target_node) else { continue };
        if targets.last().is_none_or(|t| t.iqn != iqn) {
            targets.push(TargetPaths { iqn, paths: Vec::new() });
        }
        if let (Some(lun), Some(volume_node), Some(t)) = (lun, volume_node, targets.last_mut()) {
            t.paths.push(path(lun, target_node, volume_node, other_paths(&other)));
        }
    }
    Ok(Some(targets))
}

/// id, name, state, ACL on, CHAP mode, CHAP user, mutual user, session settings, privileges, created, other paths.
type GroupRow = (i64, String, String, bool, String, Option<String>, Option<String>, String, String, String, String);

/// group id, initiator, alias, LUNs, own CHAP mode, CHAP user, mutual user, own privileges.
type AclRow =
    (i64, String, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);

pub async fn target_groups(pool: &SqlitePool, name: Option<&str>) -> sqlx::Result<Vec<TargetGroupView>> {
    let groups: Vec<GroupRow> = sqlx::query_as(
        "SELECT g.id, g.name, g.state, g.acl_enabled, g.chap_mode, cu.name, mu.name, g.session_settings, g.privileges, g.created_at, \
                g.other_paths \
         FROM target_groups g LEFT JOIN chap_users cu ON cu.id = g.chap_user_id LEFT JOIN chap_users mu ON mu.id = g.mutual_chap_user_id \
         WHERE ? IS NULL OR g.name = ? ORDER BY g.name",
    )
    .bind(name)
    .bind(name)
    .fetch_all(pool)
    .await?;
    let targets: Vec<(i64, i64, String, String, String, i64)> = sqlx::query_as(
        "SELECT t.group_id, t.node_id, n.name, t.iqn, t.portals, t.tpg FROM targets t JOIN nodes n ON n.id = t.node_id ORDER BY t.tpg",
    )
    .fetch_all(pool)
    .await?;
    let luns: Vec<(i64, i64, String, i64, i64)> = sqlx::query_as(
        "SELECT l.group_id, l.lun, v.name, v.size, v.node_id FROM luns l JOIN volumes v ON v.id = l.volume_id ORDER BY l.lun",
    )
    .fetch_all(pool)
    .await?;
    let acl: Vec<AclRow> = sqlx::query_as(
        "SELECT a.group_id, a.initiator, a.alias, a.luns, a.chap_mode, cu.name, mu.name, a.privileges FROM acl_rules a \
         LEFT JOIN chap_users cu ON cu.id = a.chap_user_id LEFT JOIN chap_users mu ON mu.id = a.mutual_chap_user_id \
         ORDER BY a.initiator",
    )
    .fetch_all(pool)
    .await?;

    let mut by_group: BTreeMap<i64, TargetGroupView> = BTreeMap::new();
    let mut order = Vec::new();
    for (id, name, state, acl_enabled, mode, user, mutual_user, session, group_privileges, created_at, other) in groups
    {
        order.push(id);
        by_group.insert(
            id,
            TargetGroupView {
                name,
                state,
                acl_enabled,
                chap: ChapSetting { mode: ChapMode::parse(&mode).unwrap_or(ChapMode::None), user, mutual_user },
                other_paths: other_paths(&other),
                session: session_settings::view(session_settings::parse(&session)?),
                privileges: privileges::view(privileges::parse(&group_privileges)?),
                targets: Vec::new(),
                luns: Vec::new(),
                acl: Vec::new(),
                created_at,
            },
        );
    }
    for (gid, node_id, node, iqn, portals, tpg) in targets {
        if let Some(g) = by_group.get_mut(&gid) {
            let portals = columns::json(format!("portals of {iqn}"), &portals)?;
            let other = g.other_paths;
            let paths = luns
                .iter()
                .filter(|l| l.0 == gid)
                .map(|&(_, lun, _, _, volume_node)| path(lun, node_id, volume_node, other))
                .collect();
            g.targets.push(TargetView { node, iqn, portals, tpg: tpg as u16, paths });
        }
    }
    for (gid, lun, volume, size, _) in luns {
        if let Some(g) = by_group.get_mut(&gid) {
            g.luns.push(LunView { lun: lun as u8, volume, size: size as u64 });
        }
    }
    for (gid, initiator, alias, luns, chap_mode, user, mutual_user, own_privileges) in acl {
        if let Some(g) = by_group.get_mut(&gid) {
            let luns = luns.map(|l| columns::json(format!("LUNs of {initiator}"), &l)).transpose()?;
            let chap = chap_mode.and_then(|m| ChapMode::parse(&m)).map(|mode| ChapSetting { mode, user, mutual_user });
            let privileges = own_privileges.map(|p| privileges::parse(&p)).transpose()?;
            g.acl.push(AclRuleView { initiator, alias, luns, chap, privileges });
        }
    }
    Ok(order.into_iter().filter_map(|id| by_group.remove(&id)).collect())
}

pub async fn chap_users(pool: &SqlitePool) -> sqlx::Result<Vec<ChapUserView>> {
    let users: Vec<(i64, String, Option<String>, String)> =
        sqlx::query_as("SELECT id, name, description, created_at FROM chap_users ORDER BY name")
            .fetch_all(pool)
            .await?;
    let uses = chap_usage::all(pool).await?;
    Ok(users
        .into_iter()
        .map(|(id, name, description, created_at)| ChapUserView {
            name,
            description,
            used_by: uses.iter().filter(|(u, _)| *u == id).map(|(_, g)| g.clone()).collect(),
            created_at,
        })
        .collect())
}

/// The nodes, `this_node` marked as the one answering.
pub async fn nodes(
    pool: &SqlitePool,
    this_node: i64,
    name: Option<&str>,
    cluster: &crate::cluster::ClusterStatus,
    statuses: &BTreeMap<u64, crate::cluster::ClusterStatus>,
) -> sqlx::Result<Vec<NodeView>> {
    type Row = (i64, String, String, String, Option<i64>, Option<String>, String);
    let nodes: Vec<Row> = sqlx::query_as(
        "SELECT id, name, state, last_heartbeat, raft_id, cluster_addr, engine_problems FROM nodes \
         WHERE ? IS NULL OR name = ? ORDER BY name",
    )
    .bind(name)
    .bind(name)
    .fetch_all(pool)
    .await?;
    let ifaces: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT node_id, name, addresses, traffic_types FROM interfaces ORDER BY name")
            .fetch_all(pool)
            .await?;
    let mut out = Vec::new();
    for (id, name, state, last_heartbeat, raft_id, cluster_addr, engine_problems) in nodes {
        let engine_problems = columns::json(format!("engine status of {name}"), &engine_problems)?;
        let raft_id = raft_id.map(|r| r as u64);
        let own = raft_id.and_then(|r| statuses.get(&r));
        let raft_role = raft_id.and_then(|r| {
            if let Some(own) = own {
                return Some(match own.role.as_str() {
                    "leader" => "leader",
                    "candidate" => "candidate",
                    "learner" => "learner",
                    _ => "follower",
                });
            }
            let member = cluster.members.iter().find(|m| m.raft_id == r)?;
            Some(match (cluster.leader == Some(r), member.voter) {
                (true, _) => "leader",
                (false, true) => "follower",
                (false, false) => "learner",
            })
        });
        let mut interfaces = Vec::new();
        for (_, n, a, t) in ifaces.iter().filter(|i| i.0 == id) {
            interfaces.push(InterfaceView {
                name: n.clone(),
                addresses: columns::json(format!("addresses of {n}"), a)?,
                traffic_types: columns::json(format!("traffic types of {n}"), t)?,
            });
        }
        out.push(NodeView {
            name,
            state,
            is_local: id == this_node,
            last_heartbeat,
            interfaces,
            raft_id,
            raft_role: raft_role.map(str::to_string),
            cluster_addr,
            engine_problems,
            applied_index: own.map(|s| s.applied_index),
            last_contact_ms: raft_id.and_then(|r| {
                let leader = statuses.values().find(|s| s.role == "leader")?;
                if leader.node_id == r {
                    Some(0)
                } else {
                    leader.last_contact_ms.get(&r).copied()
                }
            }),
        });
    }
    Ok(out)
}

/// The engine's snapshot of a volume's reservations, for the API.
pub fn reservations(volume: String, s: target_engine::scsi::ReservationStatus) -> VolumeReservations {
    VolumeReservations {
        volume,
        generation: s.generation,
        persistent: s.persistent,
        registrations: s
            .registrations
            .into_iter()
            .map(|r| RegistrationView {
                initiator: r.initiator,
                isid: r.isid,
                relative_target_port: r.relative_target_port,
                key: format!("{:016x}", r.key),
                holder: r.holder,
            })
            .collect(),
        reservation: s.reservation.map(str::to_string),
        spc2_holder: s.spc2_holder,
    }
}

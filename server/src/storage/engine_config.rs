//! Derives the local engine's configuration from the database: every volume
//! placed on this node, every target of a running group that lives on this
//! node, with its LUNs, CHAP, ACL (each rule with its own CHAP and
//! privileges), session parameters and privileges, and the discovery CHAP
//! every node shares.
//!
//! A group's targets on several nodes all export every LUN of the group
//! (PRODUCT.md). A volume another node holds is exported here as a remote
//! unit, standby only; and every volume lists the port groups of the other
//! nodes with their states, so that REPORT TARGET PORT GROUPS answers the
//! same through every port of the cluster (CLUSTER.md §1).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use portico_app::model::storage::WriteCache;
use sqlx::SqliteConnection;
use target_engine::config::{
    AclEntry, AluaState, BackendKind, ChapConfig, ChapMode, EngineConfig, PeerPortGroup, PeerTarget, Size,
    TargetConfig, VolumeConfig, WriteCache as EngineWriteCache,
};
use target_engine::replication::config::{ReplicaPlacement, ReplicationNode, VolumePlacement};

use super::paths::{engine_state, other_paths, path_state};
use super::secret_box::SecretBox;
use super::{privileges, session_settings, volume_files};

#[derive(Debug, thiserror::Error)]
pub enum DeriveError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("stored data is damaged: {0}")]
    Damaged(String),
}

impl From<super::columns::Damaged> for DeriveError {
    fn from(d: super::columns::Damaged) -> Self {
        DeriveError::Damaged(d.to_string())
    }
}

/// id, name, size, block size, WWN, serial, IOPS limit, MB/s limit,
/// write-cache policy, the primary's node, epoch.
type VolumeRow = (i64, String, i64, i64, String, String, Option<i64>, Option<i64>, String, i64, i64);

/// A CHAP setting as stored: mode, CHAP secret and user, mutual secret and user.
type ChapRow = (Option<String>, Option<Vec<u8>>, Option<String>, Option<Vec<u8>>, Option<String>);

/// group id, IQN, portals, TPG, ACL on, session settings, privileges, then the group's CHAP.
type TargetRow = (
    i64,
    String,
    String,
    i64,
    bool,
    String,
    String,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
);

/// initiator, LUNs, privileges, then the rule's own CHAP.
type AclRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
);

/// The engine's CHAP for a stored setting: `None` when the mode is none
/// (or absent), else the users with their secrets unsealed.
fn chap_config(
    secrets: &SecretBox,
    (mode, secret, user, mutual_secret, mutual_user): ChapRow,
) -> Result<Option<ChapConfig>, DeriveError> {
    let open = |sealed: Option<Vec<u8>>| -> Result<Option<String>, DeriveError> {
        sealed.map(|s| secrets.open(&s).map_err(|e| DeriveError::Damaged(e.to_string()))).transpose()
    };
    Ok(match mode.as_deref() {
        Some("one-way") => {
            Some(ChapConfig { mode: ChapMode::OneWay, user, secret: open(secret)?, ..Default::default() })
        }
        Some("mutual") => Some(ChapConfig {
            mode: ChapMode::Mutual,
            user,
            secret: open(secret)?,
            target_user: mutual_user,
            target_secret: open(mutual_secret)?,
        }),
        _ => None,
    })
}

/// The engine's volume for a stored one: its image and state files when
/// its data is here (`data_dir`), a remote unit (exported standby only)
/// when another node holds it (`None`).
fn volume_config(row: VolumeRow, data_dir: Option<&Path>) -> Result<VolumeConfig, DeriveError> {
    let (_, name, size, block_size, wwn, serial, iops_limit, mbps_limit, write_cache, _, _) = row;
    let write_cache = match WriteCache::parse(&write_cache) {
        Some(WriteCache::WriteThrough) => EngineWriteCache::WriteThrough,
        Some(WriteCache::WriteBack) => EngineWriteCache::WriteBack,
        Some(WriteCache::Initiator) => EngineWriteCache::Initiator,
        None => return Err(DeriveError::Damaged(format!("volume {name}: write cache {write_cache:?}"))),
    };
    Ok(VolumeConfig {
        path: data_dir.map(|d| volume_files::image_path(d, &name)),
        backend: if data_dir.is_some() { BackendKind::File } else { BackendKind::Remote },
        // The unit's state (APTPL reservations, mode parameters), named
        // here with the image so that a delete finds every file.
        state_file: data_dir.map(|d| volume_files::reservation_path(d, &name)),
        name,
        size: Size(size as u64),
        block_size: block_size as u32,
        read_only: false,
        wwn: Some(wwn),
        serial: Some(serial),
        iops_limit: iops_limit.map(|v| v as u64),
        mbps_limit: mbps_limit.map(|v| v as u64),
        reservations: true,
        write_cache,
        // Set by `derive` for a volume with copies on several nodes.
        replication: None,
        peer_port_groups: Vec::new(),
        // Set by `derive` where a group exports the volume.
        preferred_port_group: None,
    })
}

const VOLUME_COLUMNS: &str =
    "v.id, v.name, v.size, v.block_size, v.wwn, v.serial, v.iops_limit, v.mbps_limit, v.write_cache, v.node_id, v.epoch";

pub async fn derive(
    conn: &mut SqliteConnection,
    node_id: i64,
    data_dir: &Path,
    secrets: &SecretBox,
) -> Result<EngineConfig, DeriveError> {
    // Every volume with a copy here: its primary's and the others.
    let volumes: Vec<VolumeRow> = sqlx::query_as(&format!(
        "SELECT {VOLUME_COLUMNS} FROM volumes v WHERE v.node_id = ?1 \
         OR v.id IN (SELECT volume_id FROM volume_copies WHERE node_id = ?1) ORDER BY v.name"
    ))
    .bind(node_id)
    .fetch_all(&mut *conn)
    .await?;
    // The volumes another node holds that a target here exports: standby
    // here, so that every port of the group reports the same port groups.
    let remote: Vec<VolumeRow> = sqlx::query_as(&format!(
        "SELECT DISTINCT {VOLUME_COLUMNS} FROM volumes v JOIN luns l ON l.volume_id = v.id \
         JOIN targets t ON t.group_id = l.group_id JOIN target_groups g ON g.id = t.group_id \
         JOIN nodes n ON n.id = t.node_id \
         WHERE t.node_id = ?1 AND v.node_id <> ?1 AND g.state = 'running' AND n.state <> 'maintenance' \
         AND v.id NOT IN (SELECT volume_id FROM volume_copies WHERE node_id = ?1) ORDER BY v.name"
    ))
    .bind(node_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut volume_names = BTreeMap::new();
    let mut config = EngineConfig::default();
    let held_here = volumes.into_iter().map(|row| (row, Some(data_dir)));
    for (row, data_dir) in held_here.chain(remote.into_iter().map(|row| (row, None))) {
        let (id, primary, epoch) = (row.0, row.9, row.10);
        let mut volume = volume_config(row, data_dir)?;
        if data_dir.is_some() {
            volume.replication = placement(conn, id, primary, epoch).await?;
        }
        volume.peer_port_groups = peer_port_groups(conn, id, node_id).await?;
        volume.preferred_port_group = preferred_port_group(conn, id).await?;
        volume_names.insert(id, volume.name.clone());
        config.volumes.push(volume);
    }

    if config.volumes.iter().any(|v| v.replication.is_some()) {
        config.replication = Some(replication_node(conn, node_id, data_dir).await?);
    }

    let discovery: ChapRow = sqlx::query_as(
        "SELECT s.discovery_chap_mode, cu.secret, cu.name, mu.secret, mu.name FROM iscsi_settings s \
         LEFT JOIN chap_users cu ON cu.id = s.discovery_chap_user_id \
         LEFT JOIN chap_users mu ON mu.id = s.discovery_mutual_chap_user_id WHERE s.id = 1",
    )
    .fetch_one(&mut *conn)
    .await?;
    config.discovery.chap = chap_config(secrets, discovery)?;

    let targets: Vec<TargetRow> = sqlx::query_as(
            "SELECT g.id, t.iqn, t.portals, t.tpg, g.acl_enabled, g.session_settings, g.privileges, \
                    g.chap_mode, cu.secret, cu.name, mu.secret, mu.name \
             FROM targets t JOIN target_groups g ON g.id = t.group_id \
             LEFT JOIN chap_users cu ON cu.id = g.chap_user_id LEFT JOIN chap_users mu ON mu.id = g.mutual_chap_user_id \
             JOIN nodes n ON n.id = t.node_id \
             WHERE t.node_id = ? AND g.state = 'running' AND n.state <> 'maintenance' ORDER BY t.tpg",
        )
        .bind(node_id)
        .fetch_all(&mut *conn)
        .await?;
    for (group_id, iqn, portals, tpg, acl_enabled, session, group_privileges, mode, secret, user, msecret, muser) in
        targets
    {
        let portals: Vec<SocketAddr> =
            serde_json::from_str(&portals).map_err(|e| DeriveError::Damaged(format!("portals of {iqn}: {e}")))?;
        let luns: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "SELECT l.lun, l.volume_id, v.node_id, g.other_paths FROM luns l JOIN volumes v ON v.id = l.volume_id \
             JOIN target_groups g ON g.id = l.group_id WHERE l.group_id = ? ORDER BY l.lun",
        )
        .bind(group_id)
        .fetch_all(&mut *conn)
        .await?;
        let lun_ids: Vec<u64> = luns.iter().map(|(l, ..)| *l as u64).collect();
        // Every LUN of the group is served: the volumes another node holds as remote units.
        let served: Vec<&(i64, i64, i64, String)> =
            luns.iter().filter(|(_, vol, ..)| volume_names.contains_key(vol)).collect();
        let alua: BTreeMap<String, AluaState> = served
            .iter()
            .map(|(lun, _, volume_node, other)| {
                (lun.to_string(), engine_state(path_state(node_id, *volume_node, other_paths(other))))
            })
            .collect();
        let luns: BTreeMap<String, String> =
            served.iter().map(|(lun, vol, ..)| (lun.to_string(), volume_names[vol].clone())).collect();
        let chap = chap_config(secrets, (mode, secret, user, msecret, muser))?;
        let group_privileges = privileges::defaults().with(&privileges::parse(&group_privileges)?);
        let acl = if acl_enabled {
            let rules: Vec<AclRow> = sqlx::query_as(
                "SELECT a.initiator, a.luns, a.privileges, a.chap_mode, cu.secret, cu.name, mu.secret, mu.name \
                 FROM acl_rules a LEFT JOIN chap_users cu ON cu.id = a.chap_user_id \
                 LEFT JOIN chap_users mu ON mu.id = a.mutual_chap_user_id WHERE a.group_id = ? ORDER BY a.initiator",
            )
            .bind(group_id)
            .fetch_all(&mut *conn)
            .await?;
            let mut entries = Vec::new();
            for (initiator, allowed, own_privileges, mode, secret, user, msecret, muser) in rules {
                let allowed: Vec<u64> = match allowed {
                    None => lun_ids.clone(),
                    Some(json) => {
                        let list: Vec<u64> = serde_json::from_str(&json)
                            .map_err(|e| DeriveError::Damaged(format!("ACL of {initiator}: {e}")))?;
                        list.into_iter().filter(|l| lun_ids.contains(l)).collect()
                    }
                };
                let chap = chap_config(secrets, (mode, secret, user, msecret, muser))?;
                // What the rule does not choose follows the group.
                let privileges = own_privileges
                    .map(|json| privileges::parse(&json).map(|p| privileges::engine(group_privileges.with(&p))))
                    .transpose()?;
                entries.push(AclEntry { initiator, luns: allowed, chap, privileges });
            }
            Some(entries)
        } else {
            None
        };
        config.targets.push(TargetConfig {
            iqn,
            portals,
            tpg: tpg as u16,
            // One port per target port group, numbered alike on every node.
            relative_port: Some(tpg as u16),
            luns,
            chap,
            acl,
            alua,
            privileges: privileges::engine(group_privileges),
            session: session_settings::limits(&session_settings::parse(&session)?),
        });
    }
    config.discovery.peer_targets = peer_targets(conn, node_id).await?;
    Ok(config)
}

/// Where the copies of volume `volume_id` are, if it has more than one:
/// its primary on node `primary` at `epoch`, and each other copy with its
/// node's replication address and whether the primary counts it in sync.
/// Node ids are the replicas' ids in the engine (the same on every node).
async fn placement(
    conn: &mut SqliteConnection,
    volume_id: i64,
    primary: i64,
    epoch: i64,
) -> Result<Option<VolumePlacement>, DeriveError> {
    let copies: Vec<(i64, bool, String, Option<String>)> = sqlx::query_as(
        "SELECT c.node_id, c.in_sync, n.name, n.replication_addr FROM volume_copies c \
         JOIN nodes n ON n.id = c.node_id WHERE c.volume_id = ? ORDER BY c.node_id",
    )
    .bind(volume_id)
    .fetch_all(&mut *conn)
    .await?;
    if copies.is_empty() {
        return Ok(None);
    }
    let mut replicas = Vec::new();
    for (node, in_sync, name, address) in copies {
        let address = replication_address(&name, address)?;
        replicas.push(ReplicaPlacement { node: node as u32, address, in_sync });
    }
    Ok(Some(VolumePlacement { epoch: epoch as u64, primary: primary as u32, min_in_sync: 1, replicas }))
}

fn replication_address(node: &str, address: Option<String>) -> Result<SocketAddr, DeriveError> {
    let address = address.ok_or_else(|| DeriveError::Damaged(format!("node {node} has no replication address")))?;
    address.parse().map_err(|e| DeriveError::Damaged(format!("replication address of {node}: {e}")))
}

/// This node's part in replication, for a node that keeps a copy of a
/// replicated volume.
async fn replication_node(
    conn: &mut SqliteConnection,
    node_id: i64,
    data_dir: &Path,
) -> Result<ReplicationNode, DeriveError> {
    let (name, address): (String, Option<String>) =
        sqlx::query_as("SELECT name, replication_addr FROM nodes WHERE id = ?")
            .bind(node_id)
            .fetch_one(&mut *conn)
            .await?;
    Ok(ReplicationNode {
        node: node_id as u32,
        listen: replication_address(&name, address)?,
        cluster: "portico".into(),
        key_file: super::replication::key_file(data_dir),
        resync_mbps: RESYNC_MBPS,
        // The node's own guard (mutual TLS with the nodes' certificates) goes before it.
        transport: Default::default(),
    })
}

/// What resyncing one volume may take of the disks and the network, MB/s.
const RESYNC_MBPS: u64 = 200;

/// The port groups on other nodes that export volume `volume_id` (the
/// running targets of its group there), each in the state the cluster
/// gives it; every target is one port group with one port, numbered alike
/// on every node.
async fn peer_port_groups(
    conn: &mut SqliteConnection,
    volume_id: i64,
    node_id: i64,
) -> Result<Vec<PeerPortGroup>, DeriveError> {
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "SELECT t.tpg, t.node_id, v.node_id, g.other_paths FROM luns l JOIN volumes v ON v.id = l.volume_id \
         JOIN targets t ON t.group_id = l.group_id JOIN target_groups g ON g.id = t.group_id \
         JOIN nodes n ON n.id = t.node_id \
         WHERE l.volume_id = ? AND t.node_id <> ? AND g.state = 'running' AND n.state <> 'maintenance' \
         ORDER BY t.tpg",
    )
    .bind(volume_id)
    .bind(node_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(tpg, target_node, volume_node, other)| PeerPortGroup {
            tpg: tpg as u16,
            relative_port: tpg as u16,
            state: engine_state(path_state(target_node, volume_node, other_paths(&other))),
        })
        .collect())
}

/// The port group of volume `volume_id`'s group on the node where its
/// primary belongs (its preferred node), which REPORT TARGET PORT GROUPS
/// marks with the PREF bit through every port.
async fn preferred_port_group(conn: &mut SqliteConnection, volume_id: i64) -> Result<Option<u16>, DeriveError> {
    let tpg: Option<(i64,)> = sqlx::query_as(
        "SELECT t.tpg FROM volumes v JOIN luns l ON l.volume_id = v.id \
         JOIN targets t ON t.group_id = l.group_id AND t.node_id = v.preferred_node_id WHERE v.id = ?",
    )
    .bind(volume_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(tpg.map(|(tpg,)| tpg as u16))
}

/// The targets of running groups that other nodes serve: discovery through
/// this node lists them too, as their ACLs admit (CLUSTER.md §0).
async fn peer_targets(conn: &mut SqliteConnection, node_id: i64) -> Result<Vec<PeerTarget>, DeriveError> {
    let rows: Vec<(i64, String, String, i64, bool)> = sqlx::query_as(
        "SELECT g.id, t.iqn, t.portals, t.tpg, g.acl_enabled FROM targets t \
         JOIN target_groups g ON g.id = t.group_id JOIN nodes n ON n.id = t.node_id \
         WHERE t.node_id <> ? AND g.state = 'running' AND n.state <> 'maintenance' ORDER BY t.tpg",
    )
    .bind(node_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut peers = Vec::new();
    for (group_id, iqn, portals, tpg, acl_enabled) in rows {
        let portals: Vec<SocketAddr> =
            serde_json::from_str(&portals).map_err(|e| DeriveError::Damaged(format!("portals of {iqn}: {e}")))?;
        let portals: Vec<SocketAddr> = portals.into_iter().filter(|p| !p.ip().is_unspecified()).collect();
        if portals.is_empty() {
            continue;
        }
        let initiators = if acl_enabled {
            let rules: Vec<(String,)> =
                sqlx::query_as("SELECT initiator FROM acl_rules WHERE group_id = ? ORDER BY initiator")
                    .bind(group_id)
                    .fetch_all(&mut *conn)
                    .await?;
            Some(rules.into_iter().map(|(i,)| i).collect())
        } else {
            None
        };
        peers.push(PeerTarget { iqn, portals, tpg: tpg as u16, initiators });
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use portico_app::model::storage::Command;
    use serde_json::json;

    use super::*;
    use crate::storage::commands;
    use crate::storage::proposal::{self, Change, Here};
    use crate::storage::quotas::Limits;

    /// Decides `change` as node `node_id` would, and applies it.
    async fn commit(pool: &sqlx::SqlitePool, here: &Here<'_>, change: Change) {
        let proposal = proposal::decide(change, here).expect("decided");
        let mut tx = pool.begin().await.unwrap();
        commands::apply(proposal, &mut tx).await.expect("applied");
        tx.commit().await.unwrap();
    }

    fn storage(command: serde_json::Value) -> Change {
        Change::Storage(serde_json::from_value::<Command>(command).expect("a command"))
    }

    /// What REPORT TARGET PORT GROUPS would list for `volume` through a
    /// port of `config`: this node's groups and the peers', with states.
    fn reported(config: &EngineConfig, volume: &str) -> BTreeMap<u16, AluaState> {
        let v = config.volumes.iter().find(|v| v.name == volume).expect("the volume is exported");
        let own = config.targets.iter().filter_map(|t| {
            let (lun, _) = t.lun_map().into_iter().find(|(_, name)| name == volume)?;
            Some((t.tpg, t.alua_state(lun)))
        });
        own.chain(v.peer_port_groups.iter().map(|p| (p.tpg, p.state))).collect()
    }

    /// CLUSTER.md §1: a group with a target on each of three nodes and a
    /// volume that node 2 holds. Each node's engine runs its own target,
    /// exports the LUN (node 2 from its image, the others as a remote unit),
    /// and all three report the same port groups: node 2's active/optimized,
    /// the others standby.
    #[tokio::test]
    async fn a_group_spanning_three_nodes_derives_alike_on_each() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(dir.path()).await.unwrap();
        let secrets = SecretBox::open_or_create(dir.path()).unwrap();
        let limits = Limits::default();
        let here = |node_id| Here { node_id, secrets: &secrets, limits: &limits, data_dir: dir.path() };
        for (n, address) in [(1, "10.0.0.1"), (2, "10.0.0.2"), (3, "10.0.0.3")] {
            let interfaces = BTreeMap::from([("eth0".to_string(), vec![address.to_string()])]);
            let change = Change::RegisterNode { name: format!("n{n}"), interfaces, member: Default::default() };
            commit(&pool, &here(n), change).await;
        }
        commit(&pool, &here(2), storage(json!({"command": "create_volume", "name": "v", "size": "64MiB"}))).await;
        commit(&pool, &here(1), storage(json!({"command": "create_volume", "name": "idle", "size": "64MiB"}))).await;
        let targets: Vec<_> =
            (1..=3).map(|n| json!({"node": format!("n{n}"), "portals": [format!("10.0.0.{n}")]})).collect();
        commit(&pool, &here(1), storage(json!({"command": "create_target_group", "name": "g", "targets": targets})))
            .await;
        commit(&pool, &here(3), storage(json!({"command": "attach_volume", "group": "g", "lun": {"volume": "v"}})))
            .await;

        let mut conn = pool.acquire().await.unwrap();
        let mut reports = Vec::new();
        for n in 1..=3 {
            let config = derive(&mut conn, n, dir.path(), &secrets).await.unwrap();
            config.validate().unwrap_or_else(|e| panic!("node {n}: {e}"));
            assert_eq!(config.targets.len(), 1, "node {n} runs its own target only");
            let v = config.volumes.iter().find(|v| v.name == "v").unwrap();
            let state = config.targets[0].alua_state(0);
            if n == 2 {
                assert_eq!((v.backend, state), (BackendKind::File, AluaState::ActiveOptimized));
                assert!(v.path.is_some() && v.state_file.is_some());
            } else {
                assert_eq!((v.backend, state), (BackendKind::Remote, AluaState::Standby), "node {n}");
                assert!(v.path.is_none() && v.state_file.is_none(), "node {n} keeps no file of v");
            }
            assert_eq!(v.peer_port_groups.len(), 2, "node {n}");
            assert!(v.peer_port_groups.iter().all(|p| p.tpg == p.relative_port && p.tpg != config.targets[0].tpg));
            // Every node marks node 2's group preferred: v was created
            // there, and its primary is there.
            let active = reported(&config, "v").into_iter().find(|(_, s)| *s == AluaState::ActiveOptimized);
            assert_eq!(v.preferred_port_group, active.map(|(tpg, _)| tpg), "node {n}");
            // A volume no group exports is only where it is held.
            assert_eq!(config.volumes.iter().any(|v| v.name == "idle"), n == 1, "node {n}");
            reports.push(reported(&config, "v"));
        }
        assert_eq!(reports[0], reports[1]);
        assert_eq!(reports[1], reports[2]);
        let optimized: Vec<u16> =
            reports[0].iter().filter(|(_, s)| **s == AluaState::ActiveOptimized).map(|(t, _)| *t).collect();
        assert_eq!(optimized.len(), 1, "one active/optimized port group: {:?}", reports[0]);

        // Node 3 in maintenance: its target stops, and the others no longer list its group.
        commit(
            &pool,
            &here(1),
            storage(json!({"command": "update_node", "name": "n3", "patch": {"maintenance": true}})),
        )
        .await;
        let config = derive(&mut conn, 1, dir.path(), &secrets).await.unwrap();
        let v = config.volumes.iter().find(|v| v.name == "v").unwrap();
        assert_eq!(v.peer_port_groups.len(), 1);
        assert!(derive(&mut conn, 3, dir.path(), &secrets).await.unwrap().targets.is_empty());
    }

    /// CLUSTER.md §2: a volume with its primary on node 1 and a copy on
    /// node 2, exported by a group with a target on each of three nodes.
    /// Nodes 1 and 2 keep a copy (File, with the same placement), node 3
    /// none (a remote unit); a mark made at the volume's epoch reaches the
    /// placement, one made at another epoch is refused. Promoted to node 2,
    /// node 2's path is the one active/optimized on every node.
    #[tokio::test]
    async fn a_replicated_volume_derives_a_copy_on_each_of_its_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let pool = crate::db::open(dir.path()).await.unwrap();
        let secrets = SecretBox::open_or_create(dir.path()).unwrap();
        let limits = Limits::default();
        let here = |node_id| Here { node_id, secrets: &secrets, limits: &limits, data_dir: dir.path() };
        for n in 1..=3 {
            let interfaces = BTreeMap::from([("eth0".to_string(), vec![format!("10.0.0.{n}")])]);
            let member =
                proposal::Membership { replication_addr: Some(format!("10.0.1.{n}:3270")), ..Default::default() };
            commit(&pool, &here(n), Change::RegisterNode { name: format!("n{n}"), interfaces, member }).await;
        }
        let create = storage(json!({"command": "create_volume", "name": "r", "size": "64MiB", "replicas": 2}));
        let mut proposal = proposal::decide(create, &here(1)).unwrap();
        proposal.decided.node_id = Some(1);
        proposal.decided.copies = vec![2];
        let mut tx = pool.begin().await.unwrap();
        commands::apply(proposal, &mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let targets: Vec<_> =
            (1..=3).map(|n| json!({"node": format!("n{n}"), "portals": [format!("10.0.0.{n}")]})).collect();
        commit(&pool, &here(1), storage(json!({"command": "create_target_group", "name": "g", "targets": targets})))
            .await;
        commit(&pool, &here(1), storage(json!({"command": "attach_volume", "group": "g", "lun": {"volume": "r"}})))
            .await;

        let mut conn = pool.acquire().await.unwrap();
        let mut placements = Vec::new();
        for n in 1..=3 {
            let config = derive(&mut conn, n, dir.path(), &secrets).await.unwrap();
            config.validate().unwrap_or_else(|e| panic!("node {n}: {e}"));
            let v = config.volumes.iter().find(|v| v.name == "r").unwrap();
            let state = config.targets[0].alua_state(0);
            match n {
                3 => {
                    assert_eq!((v.backend, state), (BackendKind::Remote, AluaState::Standby));
                    assert!(v.replication.is_none() && config.replication.is_none(), "node 3 keeps no copy");
                }
                _ => {
                    assert_eq!(v.backend, BackendKind::File, "node {n} keeps a copy");
                    let expected = if n == 1 { AluaState::ActiveOptimized } else { AluaState::Standby };
                    assert_eq!(state, expected, "node {n}");
                    let node = config.replication.as_ref().expect("node {n} takes part in replication");
                    assert_eq!((node.node, node.listen.to_string()), (n as u32, format!("10.0.1.{n}:3270")));
                    assert_eq!(node.key_file, crate::storage::replication::key_file(dir.path()));
                    placements.push(v.replication.clone().expect("a placement"));
                }
            }
        }
        assert_eq!(placements[0], placements[1], "both copies see the same placement");
        let p = &placements[0];
        assert_eq!((p.epoch, p.primary, p.replicas.len()), (1, 1, 1));
        assert_eq!((p.replicas[0].node, p.replicas[0].in_sync), (2, true));
        assert_eq!(p.replicas[0].address.to_string(), "10.0.1.2:3270");

        let mark = |epoch, in_sync| Change::MarkCopy { volume: "r".into(), epoch, node_id: 2, in_sync };
        let mut tx = pool.begin().await.unwrap();
        let stale = commands::apply(proposal::decide(mark(2, false), &here(1)).unwrap(), &mut tx).await;
        assert_eq!(stale.err().map(|e| e.status), Some(409), "a mark at another epoch is refused");
        commands::apply(proposal::decide(mark(1, false), &here(1)).unwrap(), &mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let config = derive(&mut conn, 1, dir.path(), &secrets).await.unwrap();
        let v = config.volumes.iter().find(|v| v.name == "r").unwrap();
        assert!(!v.replication.as_ref().unwrap().replicas[0].in_sync);
        let views = crate::storage::views::volumes(&pool, Some("r")).await.unwrap();
        assert_eq!(views[0].state, "degraded");
        assert_eq!(views[0].copies.len(), 1);

        // CLUSTER.md §3: the controller moves the primary to node 2 only if
        // its copy is in sync, its node online, and the epoch is still the
        // one it saw.
        let cause = proposal::PromoteCause::NodeOffline { node: "n1".into() };
        let promote = |epoch| Change::Promote { volume: "r".into(), epoch, to: 2, cause: cause.clone(), held_ms: None };
        let tried = |change: Change| {
            let pool = pool.clone();
            let proposal = proposal::decide(change, &here(3)).unwrap();
            async move {
                let mut tx = pool.begin().await.unwrap();
                let answer = commands::apply(proposal, &mut tx).await;
                tx.commit().await.unwrap();
                answer.map(|e| e.detail.unwrap_or_default()).map_err(|e| e.message)
            }
        };
        // A failover applies only while the old primary's node is offline.
        let refused = tried(promote(1)).await.unwrap_err();
        assert_eq!(refused, "The primary of r is on n1, online: no failover for n1 being offline.");
        tried(Change::SetNodeState { name: "n1".into(), online: false }).await.unwrap();
        let refused = tried(promote(1)).await.unwrap_err();
        assert_eq!(refused, "The copy of r on n2 is not in sync.");
        tried(mark(1, true)).await.unwrap();
        tried(Change::SetNodeState { name: "n2".into(), online: false }).await.unwrap();
        assert_eq!(tried(promote(1)).await.unwrap_err(), "n2 is offline: it cannot take r.");
        tried(Change::SetNodeState { name: "n2".into(), online: true }).await.unwrap();
        assert_eq!(tried(promote(2)).await.unwrap_err(), "The volume r is at epoch 1, not 2.");
        let detail = tried(promote(1)).await.unwrap();
        assert_eq!(
            detail,
            "n1 went offline: the primary moves from n1 to n2 at epoch 2; \
             its copy is out of sync until it is resynced"
        );
        assert_eq!(tried(promote(1)).await.unwrap_err(), "The volume r is at epoch 2, not 1.", "never twice");
        for n in 1..=3 {
            let config = derive(&mut conn, n, dir.path(), &secrets).await.unwrap();
            config.validate().unwrap_or_else(|e| panic!("node {n}: {e}"));
            let expected = if n == 2 { AluaState::ActiveOptimized } else { AluaState::Standby };
            assert_eq!(config.targets[0].alua_state(0), expected, "node {n}'s path after the move");
            let reported = reported(&config, "r");
            let optimized: Vec<u16> =
                reported.iter().filter(|(_, s)| **s == AluaState::ActiveOptimized).map(|(t, _)| *t).collect();
            assert_eq!(optimized.len(), 1, "node {n} reports one active/optimized group: {reported:?}");
            let v = config.volumes.iter().find(|v| v.name == "r").unwrap();
            if n < 3 {
                let p = v.replication.as_ref().expect("a placement");
                assert_eq!((p.epoch, p.primary, p.replicas.len()), (2, 2, 1));
                assert_eq!((p.replicas[0].node, p.replicas[0].in_sync), (1, false), "the old primary's copy");
            }
        }
    }
}

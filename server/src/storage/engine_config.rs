//! Derives the local engine's configuration from the database: every volume
//! placed on this node, every target of a running group that lives on this
//! node, with its LUNs, CHAP, ACL (each rule with its own CHAP and
//! privileges), session parameters and privileges, and the discovery CHAP
//! every node shares.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use portico_app::model::storage::WriteCache;
use sqlx::SqliteConnection;
use target_engine::config::{
    AclEntry, AluaState, BackendKind, ChapConfig, ChapMode, EngineConfig, PeerTarget, Size, TargetConfig, VolumeConfig,
    WriteCache as EngineWriteCache,
};

use super::paths::{engine_state, path_state};
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

/// id, name, size, block size, WWN, serial, IOPS limit, MB/s limit, write-cache policy.
type VolumeRow = (i64, String, i64, i64, String, String, Option<i64>, Option<i64>, String);

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

pub async fn derive(
    conn: &mut SqliteConnection,
    node_id: i64,
    data_dir: &Path,
    secrets: &SecretBox,
) -> Result<EngineConfig, DeriveError> {
    let volumes: Vec<VolumeRow> = sqlx::query_as(
        "SELECT id, name, size, block_size, wwn, serial, iops_limit, mbps_limit, write_cache \
         FROM volumes WHERE node_id = ? ORDER BY name",
    )
    .bind(node_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut volume_names = BTreeMap::new();
    let mut config = EngineConfig::default();
    for (id, name, size, block_size, wwn, serial, iops_limit, mbps_limit, write_cache) in volumes {
        volume_names.insert(id, name.clone());
        let write_cache = match WriteCache::parse(&write_cache) {
            Some(WriteCache::WriteThrough) => EngineWriteCache::WriteThrough,
            Some(WriteCache::WriteBack) => EngineWriteCache::WriteBack,
            Some(WriteCache::Initiator) => EngineWriteCache::Initiator,
            None => return Err(DeriveError::Damaged(format!("volume {name}: write cache {write_cache:?}"))),
        };
        let state_file = Some(volume_files::reservation_path(data_dir, &name));
        config.volumes.push(VolumeConfig {
            path: Some(volume_files::image_path(data_dir, &name)),
            name,
            backend: BackendKind::File,
            size: Size(size as u64),
            block_size: block_size as u32,
            read_only: false,
            wwn: Some(wwn),
            serial: Some(serial),
            iops_limit: iops_limit.map(|v| v as u64),
            mbps_limit: mbps_limit.map(|v| v as u64),
            reservations: true,
            // The unit's state (APTPL reservations, mode parameters), named
            // here with the image so that a delete finds every file.
            state_file,
            write_cache,
            // One copy until the cluster control plane places replicas.
            replication: None,
        });
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
        let luns: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT l.lun, l.volume_id, v.node_id FROM luns l JOIN volumes v ON v.id = l.volume_id \
             WHERE l.group_id = ? ORDER BY l.lun",
        )
        .bind(group_id)
        .fetch_all(&mut *conn)
        .await?;
        let lun_ids: Vec<u64> = luns.iter().map(|(l, _, _)| *l as u64).collect();
        // A volume placed on another node is not served here (replication comes later).
        let served: Vec<&(i64, i64, i64)> = luns.iter().filter(|(_, vol, _)| volume_names.contains_key(vol)).collect();
        let alua: BTreeMap<String, AluaState> = served
            .iter()
            .map(|&&(lun, _, volume_node)| (lun.to_string(), engine_state(path_state(node_id, volume_node))))
            .collect();
        let luns: BTreeMap<String, String> =
            served.iter().map(|&&(lun, vol, _)| (lun.to_string(), volume_names[&vol].clone())).collect();
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

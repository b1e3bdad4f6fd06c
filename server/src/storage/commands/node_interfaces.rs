//! Nodes and their network interfaces: a node registers itself and what
//! its interfaces' addresses are; an operator chooses the traffic types
//! each interface carries.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use portico_app::error::ApiError;
use portico_app::model::storage::*;

use super::{db, field, Effects, Tx};
use crate::storage::columns;
use crate::storage::nodes::{address_matches, DEFAULT_TRAFFIC, TRAFFIC_TYPES};
use crate::storage::proposal::{Decided, Membership};

/// The addresses of a node's interfaces that carry iSCSI traffic.
pub(super) async fn iscsi_addresses(tx: &mut Tx<'_>, node_id: i64) -> Result<Vec<String>, ApiError> {
    let ifaces: Vec<(String, String, String)> =
        sqlx::query_as("SELECT name, addresses, traffic_types FROM interfaces WHERE node_id = ?")
            .bind(node_id)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
    let mut out = Vec::new();
    for (name, addresses, types) in ifaces {
        let types: Vec<String> = columns::json(format!("traffic types of {name}"), &types)?;
        if types.iter().any(|t| t == "iscsi") {
            out.extend(columns::json::<Vec<String>>(format!("addresses of {name}"), &addresses)?);
        }
    }
    Ok(out)
}

/// Adds the node (online: the first node registers as it creates the
/// cluster), or refreshes its cluster address and what its interfaces hold
/// now (an interface that is gone keeps its row, as an operator's choice of
/// traffic types is kept). A new interface carries the default traffic. A
/// known node's state is the leader's to judge ([`set_state`]).
pub(super) async fn register(
    tx: &mut Tx<'_>,
    d: &Decided,
    name: &str,
    interfaces: &BTreeMap<String, Vec<String>>,
    member: &Membership,
) -> Result<Effects, ApiError> {
    if let Some(raft_id) = member.raft_id {
        let holder: Option<(String,)> = sqlx::query_as("SELECT name FROM nodes WHERE raft_id = ? AND name <> ?")
            .bind(raft_id as i64)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
        if let Some((other,)) = holder {
            return Err(ApiError::conflict(format!(
                "Raft node {raft_id} is the node {other}; a node named {name} cannot register as it."
            )));
        }
    }
    if let Some(key) = &member.cert_key {
        let pinned: Option<(Option<String>,)> = sqlx::query_as("SELECT cert_key FROM nodes WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
        match pinned {
            Some((Some(pinned),)) if &pinned != key => {
                return Err(ApiError::conflict(format!(
                    "The cluster knows {name} by another key; a node cannot change its key by registering."
                )))
            }
            Some((Some(_),)) => {}
            _ => super::members::check_key_is_new(tx, key).await?,
        }
    }
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO nodes (name, state, last_heartbeat, raft_id, cluster_addr, replication_addr, cert_key) \
         VALUES (?, 'online', ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
         cert_key = COALESCE(cert_key, excluded.cert_key), \
         raft_id = COALESCE(excluded.raft_id, raft_id), cluster_addr = COALESCE(excluded.cluster_addr, cluster_addr), \
         replication_addr = COALESCE(excluded.replication_addr, replication_addr) RETURNING id",
    )
    .bind(name)
    .bind(&d.at)
    .bind(member.raft_id.map(|r| r as i64))
    .bind(&member.cluster_addr)
    .bind(&member.replication_addr)
    .bind(&member.cert_key)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    for (ifname, addrs) in interfaces {
        sqlx::query(
            "INSERT INTO interfaces (node_id, name, addresses, traffic_types) VALUES (?, ?, ?, ?) \
             ON CONFLICT (node_id, name) DO UPDATE SET addresses = excluded.addresses",
        )
        .bind(id)
        .bind(ifname)
        .bind(serde_json::to_string(addrs).unwrap_or_default())
        .bind(serde_json::to_string(DEFAULT_TRAFFIC).unwrap_or_default())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(Effects { detail: Some(format!("{} interface(s)", interfaces.len())), ..Default::default() })
}

/// A node seen going offline or coming back online (the leader's liveness
/// check). A node in maintenance stays there.
pub(super) async fn set_state(tx: &mut Tx<'_>, d: &Decided, name: &str, online: bool) -> Result<Effects, ApiError> {
    let state = if online { "online" } else { "offline" };
    let changed = sqlx::query(
        "UPDATE nodes SET state = ?, last_heartbeat = ? WHERE name = ? AND state NOT IN (?, 'maintenance')",
    )
    .bind(state)
    .bind(&d.at)
    .bind(name)
    .bind(state)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(Effects { detail: (changed.rows_affected() > 0).then(|| format!("now {state}")), ..Default::default() })
}

/// Records what the node's engine could not bring up.
pub(super) async fn report_engine(
    tx: &mut Tx<'_>,
    name: &str,
    problems: &[portico_app::model::NodeProblem],
) -> Result<Effects, ApiError> {
    let json = serde_json::to_string(problems).map_err(|_| ApiError::internal())?;
    sqlx::query("UPDATE nodes SET engine_problems = ? WHERE name = ?")
        .bind(json)
        .bind(name)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Effects { detail: Some(format!("{} problem(s)", problems.len())), ..Default::default() })
}

/// Removes a node that holds nothing: its volumes and targets must have
/// been deleted or moved first.
pub(super) async fn remove(tx: &mut Tx<'_>, d: &Decided, name: &str) -> Result<Effects, ApiError> {
    let node: Option<(i64, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT id, raft_id, cert_key FROM nodes WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
    let (node_id, raft_id, cert_key) = node.ok_or_else(|| ApiError::not_found(format!("The node {name}")))?;
    if raft_id == Some(crate::cluster::certs::SIGNER as i64) {
        return Err(ApiError::conflict(format!(
            "{name} created the cluster and holds its certificate authority, which signs the certificates of joining and renewing nodes: it cannot be removed."
        )));
    }
    let (volumes, targets): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM volumes WHERE node_id = ?1) + (SELECT COUNT(*) FROM volume_copies WHERE node_id = ?1), \
                (SELECT COUNT(*) FROM targets WHERE node_id = ?1)",
    )
    .bind(node_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    if volumes + targets > 0 {
        return Err(ApiError::conflict(format!(
            "{name} holds copies of {volumes} volume(s) and {targets} target(s): delete them, or remove its targets from their groups, first."
        )));
    }
    sqlx::query("DELETE FROM nodes WHERE id = ?").bind(node_id).execute(&mut **tx).await.map_err(db)?;
    // Its key is refused from now on, by every member that applies this.
    if let (Some(key), Some(raft_id)) = (cert_key, raft_id) {
        sqlx::query(
            "INSERT OR IGNORE INTO revoked_node_keys (cert_key, raft_id, name, revoked_at) VALUES (?, ?, ?, ?)",
        )
        .bind(key)
        .bind(raft_id)
        .bind(name)
        .bind(&d.at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(Effects { detail: Some("removed from the cluster; its key is revoked".into()), ..Default::default() })
}

pub(super) async fn update(tx: &mut Tx<'_>, at: &str, name: &str, patch: NodePatch) -> Result<Effects, ApiError> {
    let node: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM nodes WHERE name = ?").bind(name).fetch_optional(&mut **tx).await.map_err(db)?;
    let (node_id,) = node.ok_or_else(|| ApiError::not_found(format!("The node {name}")))?;
    if patch.interfaces.is_empty() && patch.maintenance.is_none() {
        return Err(ApiError::new(
            422,
            "Nothing to change: give interfaces with their traffic_types, or maintenance true or false.",
        ));
    }
    let mut changes = BTreeMap::new();
    if let Some(on) = patch.maintenance {
        // Out of maintenance a node is offline until the leader sees it answer.
        let to = if on { "maintenance" } else { "offline" };
        sqlx::query("UPDATE nodes SET state = ?, last_heartbeat = ? WHERE id = ? AND (state = 'maintenance') <> ?")
            .bind(to)
            .bind(at)
            .bind(node_id)
            .bind(on)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.insert("maintenance".to_string(), if on { "on" } else { "off" }.to_string());
    }
    for i in patch.interfaces {
        if let Some(bad) = i.traffic_types.iter().find(|t| !TRAFFIC_TYPES.contains(&t.as_str())) {
            return Err(field(
                "interfaces",
                format!("Unknown traffic type {bad:?}; known: {}.", TRAFFIC_TYPES.join(", ")),
            ));
        }
        let mut types = i.traffic_types.clone();
        types.sort();
        types.dedup();
        let res = sqlx::query("UPDATE interfaces SET traffic_types = ? WHERE node_id = ? AND name = ?")
            .bind(serde_json::to_string(&types).unwrap_or_default())
            .bind(node_id)
            .bind(&i.name)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        if res.rows_affected() == 0 {
            return Err(field("interfaces", format!("{name} has no interface {}.", i.name)));
        }
        changes.insert(i.name, types.join("+"));
    }
    // A portal must stay on an iSCSI interface.
    let portals: Vec<(String, String)> = sqlx::query_as("SELECT iqn, portals FROM targets WHERE node_id = ?")
        .bind(node_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
    let iscsi = iscsi_addresses(tx, node_id).await?;
    for (iqn, list) in portals {
        let list: Vec<String> = columns::json(format!("portals of {iqn}"), &list)?;
        for p in list {
            let Ok(sa) = p.parse::<SocketAddr>() else { continue };
            if !address_matches(&iscsi, sa.ip()) {
                return Err(ApiError::conflict(format!(
                    "The portal {p} of {iqn} needs an interface carrying iSCSI traffic."
                )));
            }
        }
    }
    let detail = changes.into_iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ");
    Ok(Effects { detail: Some(detail), ..Default::default() })
}

//! Targets of a group, at most one per node, each with its portals on that
//! node's iSCSI interfaces.

use std::net::{IpAddr, SocketAddr};

use portico_app::error::ApiError;
use portico_app::model::storage::*;

use super::node_interfaces::iscsi_addresses;
use super::{db, field, group_id, Effects, Tx};
use crate::storage::nodes::address_matches;

const DEFAULT_PORT: u16 = 3260;

/// Parses "ip:port" or "ip" (port 3260).
fn parse_portal(p: &str) -> Result<SocketAddr, String> {
    if let Ok(sa) = p.parse::<SocketAddr>() {
        return if sa.port() == 0 { Err(format!("{p}: the port cannot be 0.")) } else { Ok(sa) };
    }
    p.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, DEFAULT_PORT)).map_err(|_| format!("{p:?} is not ip:port."))
}

fn sanitize_for_iqn(s: &str) -> String {
    s.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .collect()
}

pub(super) async fn add(tx: &mut Tx<'_>, gid: i64, group: &str, t: TargetSpec, at: &str) -> Result<Effects, ApiError> {
    let node: Option<(i64,)> = sqlx::query_as("SELECT id FROM nodes WHERE name = ?")
        .bind(&t.node)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    let Some((node_id,)) = node else {
        return Err(field(&format!("{at}.node"), format!("There is no node named {}.", t.node)));
    };
    super::ensure_not_in_maintenance(tx, node_id, "target").await?;
    let (taken,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM targets WHERE group_id = ? AND node_id = ?")
        .bind(gid)
        .bind(node_id)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    if taken > 0 {
        return Err(ApiError::conflict(format!(
            "The group {group} already has a target on node {}: one per node.",
            t.node
        )));
    }
    if t.portals.is_empty() {
        return Err(field(&format!("{at}.portals"), "Give at least one portal (ip:port)."));
    }
    let iscsi = iscsi_addresses(tx, node_id).await?;
    let mut portals = Vec::new();
    for p in &t.portals {
        let sa = parse_portal(p).map_err(|m| field(&format!("{at}.portals"), m))?;
        if !address_matches(&iscsi, sa.ip()) {
            return Err(field(
                &format!("{at}.portals"),
                format!("{} is not an address of an interface of {} that carries iSCSI traffic.", sa.ip(), t.node),
            ));
        }
        if !portals.contains(&sa) {
            portals.push(sa);
        }
    }
    let iqn = match t.iqn {
        Some(iqn) => iqn,
        None => format!("{IQN_PREFIX}:{}.{}", sanitize_for_iqn(group), sanitize_for_iqn(&t.node)),
    };
    let iqn = normalize_iscsi_name(&iqn).map_err(|m| field(&format!("{at}.iqn"), m))?;
    // Never a number an earlier target had: reservations name it.
    let (tpg,): (i64,) =
        sqlx::query_as("UPDATE counters SET value = value + 1 WHERE name = 'target_port' RETURNING value")
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
    if tpg > i64::from(u16::MAX) {
        return Err(ApiError::conflict("All 65535 target port numbers have been handed out; none is reused."));
    }
    let portal_text: Vec<String> = portals.iter().map(ToString::to_string).collect();
    let res = sqlx::query("INSERT INTO targets (group_id, node_id, iqn, portals, tpg) VALUES (?, ?, ?, ?, ?) ON CONFLICT (iqn) DO NOTHING")
        .bind(gid)
        .bind(node_id)
        .bind(&iqn)
        .bind(serde_json::to_string(&portal_text).unwrap_or_default())
        .bind(tpg)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("The IQN {iqn} is already used by another target.")));
    }
    Ok(Effects { detail: Some(format!("{iqn} on {} at {}", t.node, portal_text.join(", "))), ..Default::default() })
}

pub(super) async fn remove(tx: &mut Tx<'_>, group: &str, iqn: &str, force: bool) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, group).await?;
    let target: Option<(i64, i64)> = sqlx::query_as("SELECT id, node_id FROM targets WHERE group_id = ? AND iqn = ?")
        .bind(gid)
        .bind(iqn)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    let Some((tid, node_id)) = target else {
        return Err(ApiError::not_found(format!("The target {iqn} in {group}")));
    };
    // The Active/Optimized path of a LUN is the target on the node that holds
    // the volume's primary replica.
    let (optimized,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM luns l JOIN volumes v ON v.id = l.volume_id WHERE l.group_id = ? AND v.node_id = ?",
    )
    .bind(gid)
    .bind(node_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    if optimized > 0 && !force {
        return Err(ApiError::conflict(format!(
            "{iqn} holds the Active/Optimized path of {optimized} LUN(s): removing it cuts initiators off. Use force to remove it anyway."
        )));
    }
    sqlx::query("DELETE FROM targets WHERE id = ?").bind(tid).execute(&mut **tx).await.map_err(db)?;
    Ok(Effects::default())
}

//! Volumes: create, grow or limit, delete.

use portico_app::error::{ApiError, FieldErrors};
use portico_app::model::storage::*;

use super::{db, field, name_taken, undecided, volume_row, Effects, Tx};
use crate::storage::proposal::{Decided, PromoteCause};

/// Largest volume we create: 64 TiB.
const MAX_VOLUME: u64 = 64 << 40;

/// Bytes from a size given as a number or as text with a unit (the engine's
/// own parser, so the API and `portico engine` read sizes the same way).
fn size_bytes(size: &SizeInput) -> Result<u64, String> {
    match size {
        SizeInput::Bytes(n) => Ok(*n),
        SizeInput::Text(s) => target_engine::config::parse_size(s)
            .ok_or_else(|| format!("{s:?} is not a size: write bytes or a number with KiB, MiB, GiB or TiB.")),
    }
}

pub(super) async fn create(tx: &mut Tx<'_>, d: &Decided, v: NewVolume) -> Result<Effects, ApiError> {
    let mut errors = FieldErrors::default();
    errors.check("name", check_object_name(&v.name));
    let size = size_bytes(&v.size);
    if let Err(msg) = &size {
        errors.check("size", Err(msg.clone()));
    }
    if v.block_size != 512 && v.block_size != 4096 {
        errors.check("block_size", Err("The block size is 512 or 4096 bytes.".into()));
    }
    if let Ok(size) = size {
        if size == 0 || size > MAX_VOLUME {
            errors.check("size", Err("A volume has 1 byte to 64 TiB.".into()));
        } else if size % u64::from(v.block_size.max(1)) != 0 {
            errors
                .check("size", Err(format!("The size must be a multiple of the block size ({} bytes).", v.block_size)));
        }
    }
    let (nodes,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM nodes").fetch_one(&mut **tx).await.map_err(db)?;
    if !(1..=3).contains(&v.replicas) {
        errors.check("replicas", Err("A volume has 1 to 3 replicas.".into()));
    } else if i64::from(v.replicas) > nodes {
        errors.check(
            "replicas",
            Err(format!("{} replicas need {} nodes; the cluster has {nodes}.", v.replicas, v.replicas)),
        );
    }
    errors.into_result()?;
    let size = size.expect("validated");
    let (Some(wwn), Some(serial), Some(node_id)) = (&d.wwn, &d.serial, d.node_id) else {
        return Err(undecided("a new volume's WWN, serial and node"));
    };
    super::ensure_not_in_maintenance(tx, node_id, "volume").await?;
    let res = sqlx::query(
        "INSERT INTO volumes (name, size, block_size, replicas, wwn, serial, node_id, created_at, write_cache, \
         preferred_node_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?7) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&v.name)
    .bind(size as i64)
    .bind(i64::from(v.block_size))
    .bind(i64::from(v.replicas))
    .bind(wwn)
    .bind(serial)
    .bind(node_id)
    .bind(&d.at)
    .bind(v.write_cache.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(name_taken("volume", &v.name));
    }
    let (node,): (String,) =
        sqlx::query_as("SELECT name FROM nodes WHERE id = ?").bind(node_id).fetch_one(&mut **tx).await.map_err(db)?;
    let mut detail = format!("{} bytes, {}-byte blocks, {}, on {node}", size, v.block_size, v.write_cache.as_str());
    let copies = add_copies(tx, &v.name, node_id, &d.copies, usize::from(v.replicas) - 1, true).await?;
    if !copies.is_empty() {
        detail.push_str(&format!(", copies on {}", copies.join(", ")));
    }
    Ok(Effects { detail: Some(detail), create_image: Some((v.name, size)), ..Default::default() })
}

/// Records copies of volume `volume` (primary on `primary`) on `nodes`:
/// `wanted` distinct nodes other than the primary's, none in maintenance,
/// each with a replication address. A new volume's copies are all zeros
/// alike, so they start `in_sync`; a copy added later does not. Returns
/// the nodes' names.
async fn add_copies(
    tx: &mut Tx<'_>,
    volume: &str,
    primary: i64,
    nodes: &[i64],
    wanted: usize,
    in_sync: bool,
) -> Result<Vec<String>, ApiError> {
    let distinct: std::collections::BTreeSet<i64> = nodes.iter().copied().collect();
    if nodes.len() != wanted || distinct.len() != wanted || distinct.contains(&primary) {
        return Err(undecided("the nodes of a new volume's other copies"));
    }
    let mut names = Vec::new();
    for &node_id in nodes {
        let row: Option<(String, String, Option<String>)> =
            sqlx::query_as("SELECT name, state, replication_addr FROM nodes WHERE id = ?")
                .bind(node_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?;
        let Some((name, state, address)) = row else {
            return Err(field("replicas", "A node chosen for a copy has left the cluster; try again."));
        };
        if state == "maintenance" {
            return Err(field("replicas", format!("{name} is in maintenance and takes no new copies.")));
        }
        if address.is_none() {
            return Err(field("replicas", format!("{name} has no replication address (serve --replication-addr).")));
        }
        sqlx::query(
            "INSERT INTO volume_copies (volume_id, node_id, in_sync) \
             SELECT id, ?, ? FROM volumes WHERE name = ?",
        )
        .bind(node_id)
        .bind(in_sync)
        .bind(volume)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        names.push(name);
    }
    Ok(names)
}

/// Marks the copy of `volume` on node `node_id` in or out of sync, if the
/// volume is still at `epoch` (its primary saw the copy at that epoch).
pub(super) async fn mark_copy(
    tx: &mut Tx<'_>,
    volume: &str,
    epoch: u64,
    node_id: i64,
    in_sync: bool,
) -> Result<Effects, ApiError> {
    let row: Option<(i64, i64)> = sqlx::query_as("SELECT id, epoch FROM volumes WHERE name = ?")
        .bind(volume)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    let (id, current) = row.ok_or_else(|| ApiError::not_found(format!("The volume {volume}")))?;
    if current as u64 != epoch {
        return Err(ApiError::conflict(format!("The volume {volume} is at epoch {current}, not {epoch}.")));
    }
    let res = sqlx::query("UPDATE volume_copies SET in_sync = ? WHERE volume_id = ? AND node_id = ?")
        .bind(in_sync)
        .bind(id)
        .bind(node_id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("A copy of {volume} on node {node_id}")));
    }
    let what = if in_sync { "back in sync" } else { "out of sync" };
    Ok(Effects { detail: Some(format!("the copy on node {node_id} is {what} at epoch {epoch}")), ..Default::default() })
}

/// Replaces the copy of `volume` on node `from` with a new one on node
/// `to`, out of sync; the epoch goes up. The new copy's node makes its image.
pub(super) async fn replace_copy(tx: &mut Tx<'_>, volume: &str, from: i64, to: i64) -> Result<Effects, ApiError> {
    let (id, size, _) = volume_row(tx, volume).await?;
    let (primary,): (i64,) =
        sqlx::query_as("SELECT node_id FROM volumes WHERE id = ?").bind(id).fetch_one(&mut **tx).await.map_err(db)?;
    let (held,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM volume_copies WHERE volume_id = ? AND node_id = ?")
        .bind(id)
        .bind(to)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    if to == primary || held > 0 {
        return Err(ApiError::conflict(format!("Node {to} holds a copy of {volume} already.")));
    }
    let removed = sqlx::query("DELETE FROM volume_copies WHERE volume_id = ? AND node_id = ?")
        .bind(id)
        .bind(from)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if removed.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("A copy of {volume} on node {from}")));
    }
    let added = add_copies(tx, volume, primary, &[to], 1, false).await?;
    sqlx::query("UPDATE volumes SET epoch = epoch + 1 WHERE id = ?").bind(id).execute(&mut **tx).await.map_err(db)?;
    let (from_name,): (String,) =
        sqlx::query_as("SELECT COALESCE((SELECT name FROM nodes WHERE id = ?), 'a removed node')")
            .bind(from)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
    Ok(Effects {
        detail: Some(format!("the copy on {from_name} is replaced by a new one on {}", added.join(", "))),
        create_image: Some((volume.to_string(), size as u64)),
        dropped_copies: vec![(volume.to_string(), from)],
        ..Default::default()
    })
}

/// Moves the primary of `volume` to node `to`, if the volume is still at
/// `epoch`, `to` keeps an in-sync copy of it and is online: the old
/// primary's node keeps an out-of-sync copy, and the epoch goes up.
/// The moves of one volume its timeline keeps.
const MOVES_KEPT: i64 = 200;

pub(super) async fn promote(
    tx: &mut Tx<'_>,
    at: &str,
    volume: &str,
    (epoch, to): (u64, i64),
    cause: &PromoteCause,
    held_ms: Option<u64>,
) -> Result<Effects, ApiError> {
    let row: Option<(i64, i64, i64)> = sqlx::query_as("SELECT id, node_id, epoch FROM volumes WHERE name = ?")
        .bind(volume)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    let (id, from, current) = row.ok_or_else(|| ApiError::not_found(format!("The volume {volume}")))?;
    if current as u64 != epoch {
        return Err(ApiError::conflict(format!("The volume {volume} is at epoch {current}, not {epoch}.")));
    }
    // A failover for an offline node applies only while the cluster still
    // counts that node offline: the controller decided on a mark that may
    // have been undone since (a leader that acted on its predecessor's
    // mark, a node back before the change committed).
    if let PromoteCause::NodeOffline { node } = cause {
        let (from_name, from_state): (String, String) = sqlx::query_as("SELECT name, state FROM nodes WHERE id = ?")
            .bind(from)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
        if &from_name != node || from_state != "offline" {
            return Err(ApiError::conflict(format!(
                "The primary of {volume} is on {from_name}, {from_state}: no failover for {node} being offline."
            )));
        }
    }
    let copy: Option<(bool, String, String)> = sqlx::query_as(
        "SELECT c.in_sync, n.name, n.state FROM volume_copies c JOIN nodes n ON n.id = c.node_id \
         WHERE c.volume_id = ? AND c.node_id = ?",
    )
    .bind(id)
    .bind(to)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    let Some((in_sync, to_name, state)) = copy else {
        return Err(ApiError::conflict(format!("Node {to} keeps no copy of {volume}.")));
    };
    if !in_sync {
        return Err(ApiError::conflict(format!("The copy of {volume} on {to_name} is not in sync.")));
    }
    if state != "online" {
        return Err(ApiError::conflict(format!("{to_name} is {state}: it cannot take {volume}.")));
    }
    let old_in_sync = cause.handed_over();
    sqlx::query("UPDATE volume_copies SET node_id = ?, in_sync = ? WHERE volume_id = ? AND node_id = ?")
        .bind(from)
        .bind(old_in_sync)
        .bind(id)
        .bind(to)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    sqlx::query("UPDATE volumes SET node_id = ?, epoch = epoch + 1 WHERE id = ?")
        .bind(to)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    let (from_name,): (String,) =
        sqlx::query_as("SELECT COALESCE((SELECT name FROM nodes WHERE id = ?), 'a removed node')")
            .bind(from)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
    // An operator's or an initiator's choice is where the primary belongs
    // from now on; a failover or a failback keeps the preferred node.
    if let PromoteCause::Planned { .. } = cause {
        sqlx::query("UPDATE volumes SET preferred_node_id = ? WHERE id = ?")
            .bind(to)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    sqlx::query(
        "INSERT INTO volume_moves (volume, at, kind, from_node, to_node, epoch, cause, held_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(volume)
    .bind(at)
    .bind(cause.kind())
    .bind(&from_name)
    .bind(&to_name)
    .bind(epoch as i64 + 1)
    .bind(cause.to_string())
    .bind(held_ms.map(|ms| ms as i64))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    // The timeline keeps each volume's newest moves.
    sqlx::query(
        "DELETE FROM volume_moves WHERE volume = ?1 AND id NOT IN \
         (SELECT id FROM volume_moves WHERE volume = ?1 ORDER BY id DESC LIMIT ?2)",
    )
    .bind(volume)
    .bind(MOVES_KEPT)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let old_copy = match old_in_sync {
        true => "it handed over with everything settled, and its copy stays in sync",
        false => "its copy is out of sync until it is resynced",
    };
    Ok(Effects {
        detail: Some(format!(
            "{cause}: the primary moves from {from_name} to {to_name} at epoch {}; {old_copy}",
            epoch + 1
        )),
        ..Default::default()
    })
}

pub(super) async fn update(tx: &mut Tx<'_>, d: &Decided, name: &str, patch: VolumePatch) -> Result<Effects, ApiError> {
    let (id, size, block_size) = volume_row(tx, name).await?;
    let mut changes = Vec::new();
    let mut effects = Effects::default();
    if let Some(wanted) = patch.replicas {
        if let Some((change, added)) = change_copies(tx, d, id, name, wanted, &mut effects.dropped_copies).await? {
            changes.push(change);
            // A node that gets a copy makes its image.
            if added {
                effects.create_image = Some((name.to_string(), size as u64));
            }
        }
    }
    if let Some(new) = &patch.size {
        let new = size_bytes(new).map_err(|m| field("size", m))?;
        if new < size as u64 {
            return Err(field("size", "Volumes can only grow: shrinking would destroy data."));
        }
        if new > MAX_VOLUME || new % block_size as u64 != 0 {
            return Err(field("size", format!("Up to 64 TiB, a multiple of the block size ({block_size} bytes).")));
        }

        if new != size as u64 {
            sqlx::query("UPDATE volumes SET size = ? WHERE id = ?")
                .bind(new as i64)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            changes.push(format!("grown from {size} to {new} bytes"));
        }
    }
    for (column, value) in [("iops_limit", patch.iops_limit), ("mbps_limit", patch.mbps_limit)] {
        if let Some(v) = value {
            let v = if v == 0 { None } else { Some(v as i64) };
            sqlx::query(&format!("UPDATE volumes SET {column} = ? WHERE id = ?"))
                .bind(v)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            changes.push(format!("{column} {}", v.map(|v| v.to_string()).unwrap_or_else(|| "none".into())));
        }
    }
    if let Some(policy) = patch.write_cache {
        sqlx::query("UPDATE volumes SET write_cache = ? WHERE id = ?")
            .bind(policy.as_str())
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push(format!("write cache {}", policy.as_str()));
    }
    if let Some(on) = patch.auto_failback {
        sqlx::query("UPDATE volumes SET auto_failback = ? WHERE id = ?")
            .bind(on)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push(format!("automatic failback {}", if on { "on" } else { "off" }));
    }
    if changes.is_empty() {
        return Err(ApiError::new(
            422,
            "Nothing to change: give size, iops_limit, mbps_limit, write_cache, auto_failback or another number of replicas.",
        ));
    }
    effects.detail = Some(changes.join("; "));
    Ok(effects)
}

/// Makes volume `id` have `wanted` copies: new ones on the nodes decided
/// (`d.copies`, out of sync until resynced), or the ones taken away chosen
/// here, out-of-sync copies first, then the newest node. The epoch goes up,
/// so that marks made for the old set of copies no longer apply. `None`
/// when the volume has that many copies already; else what changed, and
/// whether copies were added.
async fn change_copies(
    tx: &mut Tx<'_>,
    d: &Decided,
    id: i64,
    name: &str,
    wanted: u8,
    dropped: &mut Vec<(String, i64)>,
) -> Result<Option<(String, bool)>, ApiError> {
    let (nodes,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM nodes").fetch_one(&mut **tx).await.map_err(db)?;
    if !(1..=3).contains(&wanted) || i64::from(wanted) > nodes {
        return Err(field(
            "replicas",
            format!("A volume has 1 to 3 copies, at most one per node; the cluster has {nodes}."),
        ));
    }
    let (primary, current): (i64, i64) = sqlx::query_as(
        "SELECT node_id, (SELECT COUNT(*) FROM volume_copies WHERE volume_id = ?1) + 1 FROM volumes WHERE id = ?1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await
    .map_err(db)?;
    let wanted = i64::from(wanted);
    let change = if wanted > current {
        // A new copy holds nothing yet: its primary resyncs it in full.
        let added = add_copies(tx, name, primary, &d.copies, (wanted - current) as usize, false).await?;
        format!("copies {current} → {wanted}: added on {}", added.join(", "))
    } else if wanted < current {
        let removed: Vec<(i64, String)> = sqlx::query_as(
            "SELECT c.node_id, n.name FROM volume_copies c JOIN nodes n ON n.id = c.node_id \
             WHERE c.volume_id = ? ORDER BY c.in_sync, c.node_id DESC LIMIT ?",
        )
        .bind(id)
        .bind(current - wanted)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for (node_id, _) in &removed {
            sqlx::query("DELETE FROM volume_copies WHERE volume_id = ? AND node_id = ?")
                .bind(id)
                .bind(node_id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            dropped.push((name.to_string(), *node_id));
        }
        let removed: Vec<String> = removed.into_iter().map(|(_, n)| n).collect();
        format!("copies {current} → {wanted}: removed from {}", removed.join(", "))
    } else {
        return Ok(None);
    };
    sqlx::query("UPDATE volumes SET replicas = ?, epoch = epoch + 1 WHERE id = ?")
        .bind(wanted)
        .bind(id)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Some((change, wanted > current)))
}

pub(super) async fn delete(tx: &mut Tx<'_>, name: &str) -> Result<Effects, ApiError> {
    let (id, _, _) = volume_row(tx, name).await?;
    let attached: Option<(String, i64)> = sqlx::query_as(
        "SELECT g.name, l.lun FROM luns l JOIN target_groups g ON g.id = l.group_id WHERE l.volume_id = ?",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    if let Some((group, lun)) = attached {
        return Err(ApiError::conflict(format!(
            "The volume {name} is attached to {group} as LUN {lun}: detach it first."
        )));
    }
    let holders: Vec<(i64,)> = sqlx::query_as(
        "SELECT node_id FROM volumes WHERE id = ?1 UNION SELECT node_id FROM volume_copies WHERE volume_id = ?1",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    sqlx::query("DELETE FROM volumes WHERE id = ?").bind(id).execute(&mut **tx).await.map_err(db)?;
    sqlx::query("DELETE FROM volume_moves WHERE volume = ?").bind(name).execute(&mut **tx).await.map_err(db)?;
    Ok(Effects {
        remove_volume: Some(name.to_string()),
        dropped_copies: holders.into_iter().map(|(node,)| (name.to_string(), node)).collect(),
        ..Default::default()
    })
}

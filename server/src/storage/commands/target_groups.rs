//! Target groups: create (with their first targets), CHAP and ACL switch,
//! the state of the other paths, start and stop, delete.

use portico_app::error::ApiError;
use portico_app::model::storage::*;

use super::{db, field, group_id, name_taken, resolve_chap, targets, Effects, Tx};
use crate::storage::proposal::Decided;

pub(super) async fn create(tx: &mut Tx<'_>, d: &Decided, g: NewTargetGroup) -> Result<Effects, ApiError> {
    check_object_name(&g.name).map_err(|m| field("name", m))?;
    let (user, mutual) = resolve_chap(tx, &g.chap).await?;
    let (gid,): (i64,) = match sqlx::query_as(
        "INSERT INTO target_groups (name, state, acl_enabled, chap_mode, chap_user_id, mutual_chap_user_id, created_at, \
                                    other_paths) \
         VALUES (?, 'running', ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING id",
    )
    .bind(&g.name)
    .bind(g.acl_enabled)
    .bind(g.chap.mode.as_str())
    .bind(user)
    .bind(mutual)
    .bind(&d.at)
    .bind(g.other_paths.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?
    {
        Some(row) => row,
        None => return Err(name_taken("target group", &g.name)),
    };
    for (i, t) in g.targets.into_iter().enumerate() {
        targets::add(tx, gid, &g.name, t, &format!("targets[{i}]")).await?;
    }
    Ok(Effects::default())
}

pub(super) async fn update(tx: &mut Tx<'_>, name: &str, patch: TargetGroupPatch) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, name).await?;
    let mut changes = Vec::new();
    if let Some(acl) = patch.acl_enabled {
        sqlx::query("UPDATE target_groups SET acl_enabled = ? WHERE id = ?")
            .bind(acl)
            .bind(gid)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push(if acl { "ACL on".to_string() } else { "ACL off".to_string() });
    }
    if let Some(chap) = patch.chap {
        let (user, mutual) = resolve_chap(tx, &chap).await?;
        sqlx::query("UPDATE target_groups SET chap_mode = ?, chap_user_id = ?, mutual_chap_user_id = ? WHERE id = ?")
            .bind(chap.mode.as_str())
            .bind(user)
            .bind(mutual)
            .bind(gid)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push(format!("CHAP {}", chap.mode.as_str()));
    }
    if let Some(other) = patch.other_paths {
        sqlx::query("UPDATE target_groups SET other_paths = ? WHERE id = ?")
            .bind(other.as_str())
            .bind(gid)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push(format!("other paths {}", other.as_str()));
    }
    if changes.is_empty() {
        return Err(ApiError::new(422, "Nothing to change: give acl_enabled, chap or other_paths."));
    }
    Ok(Effects { detail: Some(changes.join("; ")), ..Default::default() })
}

pub(super) async fn delete(tx: &mut Tx<'_>, name: &str, force: bool) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, name).await?;
    let (luns,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM luns WHERE group_id = ?")
        .bind(gid)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
    if luns > 0 && !force {
        return Err(ApiError::conflict(format!(
            "The group {name} has {luns} LUN(s) attached: detach them first, or delete with force."
        )));
    }
    sqlx::query("DELETE FROM target_groups WHERE id = ?").bind(gid).execute(&mut **tx).await.map_err(db)?;
    Ok(Effects { detail: (luns > 0).then(|| format!("forced: {luns} LUN(s) detached")), ..Default::default() })
}

pub(super) async fn set_running(tx: &mut Tx<'_>, name: &str, running: bool) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, name).await?;
    sqlx::query("UPDATE target_groups SET state = ? WHERE id = ?")
        .bind(if running { "running" } else { "stopped" })
        .bind(gid)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Effects::default())
}

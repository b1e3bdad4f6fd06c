//! LUNs: a volume attached to a group under a number, exported by every
//! target of the group.

use portico_app::error::ApiError;
use portico_app::model::storage::*;

use super::{db, field, group_id, volume_row, Effects, Tx};

pub(super) async fn attach(tx: &mut Tx<'_>, group: &str, new: NewLun) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, group).await?;
    let (vid, _, _) = volume_row(tx, &new.volume).await.map_err(|e| field("volume", e.message))?;
    let attached: Option<(String, i64)> = sqlx::query_as(
        "SELECT g.name, l.lun FROM luns l JOIN target_groups g ON g.id = l.group_id WHERE l.volume_id = ?",
    )
    .bind(vid)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    if let Some((other, lun)) = attached {
        return Err(ApiError::conflict(format!(
            "The volume {} is already attached to {other} as LUN {lun}.",
            new.volume
        )));
    }
    let used: Vec<(i64,)> =
        sqlx::query_as("SELECT lun FROM luns WHERE group_id = ?").bind(gid).fetch_all(&mut **tx).await.map_err(db)?;
    let used: Vec<u8> = used.into_iter().map(|(l,)| l as u8).collect();
    let lun = match new.lun {
        Some(l) if used.contains(&l) => return Err(ApiError::conflict(format!("LUN {l} is already used in {group}."))),
        Some(l) => l,
        None => (0..=255u8)
            .find(|l| !used.contains(l))
            .ok_or_else(|| ApiError::conflict("All 256 LUN ids of the group are used."))?,
    };
    sqlx::query("INSERT INTO luns (group_id, lun, volume_id) VALUES (?, ?, ?)")
        .bind(gid)
        .bind(i64::from(lun))
        .bind(vid)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Effects { detail: Some(format!("{} as LUN {lun}", new.volume)), ..Default::default() })
}

pub(super) async fn detach(tx: &mut Tx<'_>, group: &str, lun: u8) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, group).await?;
    let res = sqlx::query("DELETE FROM luns WHERE group_id = ? AND lun = ?")
        .bind(gid)
        .bind(i64::from(lun))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("LUN {lun} of {group}")));
    }
    Ok(Effects::default())
}

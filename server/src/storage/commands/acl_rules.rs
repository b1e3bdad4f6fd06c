//! ACL rule commands: which initiators may log in to a group's targets, the
//! LUNs each sees, and, per initiator, its own CHAP users (one-way or
//! mutual, replacing the group's for it, as LIO's per-initiator
//! authentication does) and privileges unlike the group's.
//!
//! An initiator with its own CHAP must prove its own secret: a host that
//! knows the group's secret cannot log in under this initiator's name and
//! get its LUN view. A rule's own CHAP is never "none", so a rule cannot
//! open a group that asks for CHAP.

use portico_app::error::ApiError;
use portico_app::model::privileges::PrivilegeSettings;
use portico_app::model::storage::{normalize_iscsi_name, AclPatch, ChapMode, ChapSetting, NewAclRule};

use super::{check_description, db, field, group_id, resolve_chap, Effects, Tx};
use crate::storage::privileges;

/// The LUN list as stored: sorted JSON, `None` for all LUNs.
async fn check_luns(tx: &mut Tx<'_>, gid: i64, luns: &Option<Vec<u8>>) -> Result<Option<String>, ApiError> {
    let Some(list) = luns else { return Ok(None) };
    let used: Vec<(i64,)> =
        sqlx::query_as("SELECT lun FROM luns WHERE group_id = ?").bind(gid).fetch_all(&mut **tx).await.map_err(db)?;
    if let Some(missing) = list.iter().find(|l| !used.iter().any(|(u,)| *u == i64::from(**l))) {
        return Err(field("luns", format!("LUN {missing} is not attached to this group.")));
    }
    let mut sorted = list.clone();
    sorted.sort_unstable();
    sorted.dedup();
    Ok(Some(serde_json::to_string(&sorted).unwrap_or_default()))
}

/// A rule's own CHAP as stored: mode, CHAP user id, mutual CHAP user id;
/// all `None` when the group's CHAP applies.
struct OwnChap {
    mode: Option<&'static str>,
    user: Option<i64>,
    mutual: Option<i64>,
}

async fn own_chap(tx: &mut Tx<'_>, chap: Option<&ChapSetting>) -> Result<OwnChap, ApiError> {
    let Some(chap) = chap else { return Ok(OwnChap { mode: None, user: None, mutual: None }) };
    if chap.mode == ChapMode::None {
        return Err(field(
            "chap.mode",
            "An initiator's own CHAP is one-way or mutual; leave chap out (null) to use the group's.",
        ));
    }
    let (user, mutual) = resolve_chap(tx, chap).await?;
    Ok(OwnChap { mode: Some(chap.mode.as_str()), user, mutual })
}

/// What the audit log says of a rule's CHAP and privileges.
fn describe(chap: Option<&ChapSetting>, privileges: Option<&PrivilegeSettings>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = chap {
        out.push(format!("own CHAP {} as {}", c.mode.as_str(), c.user.as_deref().unwrap_or("?")));
    }
    if let Some(p) = privileges.filter(|p| !p.is_empty()) {
        out.push(format!("privileges {}", privileges::describe(p)));
    }
    out
}

pub(super) async fn add(tx: &mut Tx<'_>, group: &str, rule: NewAclRule) -> Result<Effects, ApiError> {
    let (gid, _) = group_id(tx, group).await?;
    let initiator = normalize_iscsi_name(&rule.initiator).map_err(|m| field("initiator", m))?;
    check_description(rule.alias.as_deref()).map_err(|m| field("alias", m))?;
    let luns = check_luns(tx, gid, &rule.luns).await?;
    let chap = own_chap(tx, rule.chap.as_ref()).await?;
    let res = sqlx::query(
        "INSERT INTO acl_rules (group_id, initiator, alias, luns, chap_mode, chap_user_id, mutual_chap_user_id, privileges) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(gid)
    .bind(&initiator)
    .bind(&rule.alias)
    .bind(&luns)
    .bind(chap.mode)
    .bind(chap.user)
    .bind(chap.mutual)
    .bind(rule.privileges.as_ref().and_then(privileges::stored_override))
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(ApiError::conflict(format!("{initiator} already has a rule in {group}.")));
    }
    let mut detail = vec![format!("LUNs {}", luns.unwrap_or_else(|| "all".into()))];
    detail.extend(describe(rule.chap.as_ref(), rule.privileges.as_ref()));
    Ok(Effects { detail: Some(detail.join("; ")), ..Default::default() })
}

pub(super) async fn update(
    tx: &mut Tx<'_>,
    group: &str,
    initiator: &str,
    patch: AclPatch,
) -> Result<Effects, ApiError> {
    // The rule is stored under the normal form of the name.
    let initiator = &normalize_iscsi_name(initiator).unwrap_or_else(|_| initiator.to_string());
    let (gid, _) = group_id(tx, group).await?;
    let exists: Option<(String,)> =
        sqlx::query_as("SELECT initiator FROM acl_rules WHERE group_id = ? AND initiator = ?")
            .bind(gid)
            .bind(initiator)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
    if exists.is_none() {
        return Err(ApiError::not_found(format!("The ACL rule for {initiator} in {group}")));
    }
    let mut changes = Vec::new();
    if let Some(alias) = &patch.alias {
        check_description(Some(alias)).map_err(|m| field("alias", m))?;
        sqlx::query("UPDATE acl_rules SET alias = ? WHERE group_id = ? AND initiator = ?")
            .bind(alias)
            .bind(gid)
            .bind(initiator)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push("alias changed".to_string());
    }
    if let Some(luns) = &patch.luns {
        let luns = check_luns(tx, gid, luns).await?;
        sqlx::query("UPDATE acl_rules SET luns = ? WHERE group_id = ? AND initiator = ?")
            .bind(&luns)
            .bind(gid)
            .bind(initiator)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push(format!("LUNs {}", luns.unwrap_or_else(|| "all".into())));
    }
    if let Some(chap) = &patch.chap {
        let own = own_chap(tx, chap.as_ref()).await?;
        sqlx::query(
            "UPDATE acl_rules SET chap_mode = ?, chap_user_id = ?, mutual_chap_user_id = ? WHERE group_id = ? AND initiator = ?",
        )
        .bind(own.mode)
        .bind(own.user)
        .bind(own.mutual)
        .bind(gid)
        .bind(initiator)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        changes.extend(describe(chap.as_ref(), None));
        if chap.is_none() {
            changes.push("the group's CHAP".into());
        }
    }
    if let Some(p) = &patch.privileges {
        sqlx::query("UPDATE acl_rules SET privileges = ? WHERE group_id = ? AND initiator = ?")
            .bind(p.as_ref().and_then(privileges::stored_override))
            .bind(gid)
            .bind(initiator)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        match p.filter(|p| !p.is_empty()) {
            Some(p) => changes.push(format!("privileges {}", privileges::describe(&p))),
            None => changes.push("the group's privileges".into()),
        }
    }
    if changes.is_empty() {
        return Err(ApiError::new(422, "Nothing to change: give alias, luns, chap or privileges."));
    }
    Ok(Effects { detail: Some(changes.join("; ")), ..Default::default() })
}

pub(super) async fn delete(tx: &mut Tx<'_>, group: &str, initiator: &str) -> Result<Effects, ApiError> {
    let initiator = &normalize_iscsi_name(initiator).unwrap_or_else(|_| initiator.to_string());
    let (gid, _) = group_id(tx, group).await?;
    let res = sqlx::query("DELETE FROM acl_rules WHERE group_id = ? AND initiator = ?")
        .bind(gid)
        .bind(initiator)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(ApiError::not_found(format!("The ACL rule for {initiator} in {group}")));
    }
    Ok(Effects::default())
}

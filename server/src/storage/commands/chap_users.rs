//! CHAP users: the names and secrets that groups, ACL rules and discovery
//! name. Secrets arrive sealed in the proposal.

use portico_app::error::{ApiError, FieldErrors};
use portico_app::model::storage::*;

use super::{chap_id, check_description, db, field, name_taken, undecided, Effects, Tx};
use crate::storage::chap_usage;
use crate::storage::proposal::Decided;

pub(super) async fn create(tx: &mut Tx<'_>, d: &Decided, u: NewChapUser) -> Result<Effects, ApiError> {
    let mut errors = FieldErrors::default();
    errors.check("name", check_chap_name(&u.name));
    errors.check("description", check_description(u.description.as_deref()));
    errors.into_result()?;
    let Some(sealed) = &d.sealed_secret else { return Err(undecided("a new CHAP user's sealed secret")) };
    let res = sqlx::query("INSERT INTO chap_users (name, secret, description, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING")
        .bind(&u.name)
        .bind(sealed)
        .bind(&u.description)
        .bind(&d.at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    if res.rows_affected() == 0 {
        return Err(name_taken("CHAP user", &u.name));
    }
    Ok(Effects::default())
}

/// CHAP user names go on the wire (CHAP_N): printable ASCII, 1–63.
pub(crate) fn check_chap_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 || !name.chars().all(|c| c.is_ascii_graphic()) {
        return Err("Use 1 to 63 printable characters without spaces.".into());
    }
    Ok(())
}

/// A new secret comes sealed in `d`; the patch's clear text was blanked.
pub(super) async fn update(
    tx: &mut Tx<'_>,
    d: &Decided,
    name: &str,
    patch: ChapUserPatch,
) -> Result<Effects, ApiError> {
    let id = chap_id(tx, name).await?;
    let mut changes = Vec::new();
    if let Some(sealed) = &d.sealed_secret {
        sqlx::query("UPDATE chap_users SET secret = ? WHERE id = ?")
            .bind(sealed)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push("secret changed");
    }
    if let Some(d) = &patch.description {
        check_description(Some(d)).map_err(|m| field("description", m))?;
        sqlx::query("UPDATE chap_users SET description = ? WHERE id = ?")
            .bind(d)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        changes.push("description changed");
    }
    if changes.is_empty() {
        return Err(ApiError::new(422, "Nothing to change: give secret or description."));
    }
    Ok(Effects { detail: Some(changes.join("; ")), ..Default::default() })
}

pub(super) async fn delete(tx: &mut Tx<'_>, name: &str) -> Result<Effects, ApiError> {
    let id = chap_id(tx, name).await?;
    let users = chap_usage::of(&mut **tx, id).await.map_err(db)?;
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "The CHAP user {name} is used by {}: change their CHAP setting first.",
            users.join(", ")
        )));
    }
    sqlx::query("DELETE FROM chap_users WHERE id = ?").bind(id).execute(&mut **tx).await.map_err(db)?;
    Ok(Effects::default())
}
